"""YAMNet (Google's MobileNet v1 on AudioSet, 521 classes) as a frozen teacher, run by LiteRT from
its TFLite file: 0.96 s frames of 16 kHz audio (15600 samples) in; out, per frame, the 1024-value
embedding that feeds its final dense layer. A window longer than a frame is cut into frames every
0.48 s (YAMNet's own patch hop) and its embedding is their mean.

The embedding is not an output of the file: it is read from the interpreter with every tensor
preserved, found by its place in the graph (the input of the op that makes the scores from a
1024-value vector), not by a name that another conversion could change.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

FRAME = 15600  # samples at 16 kHz: 0.975 s (96 log-mel frames of 10 ms plus the STFT's window)
FRAME_HOP = 7680  # 0.48 s
EMBEDDING = 1024


class YAMNet:
    """:meth:`__call__` maps 16 kHz windows (n, samples >= FRAME) to (n, 1024) embeddings; :meth:`tags`
    gives the 521 AudioSet scores of each window (frame mean)."""

    def __init__(self, weights: Path, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        with warnings.catch_warnings():  # "for debugging purposes only": reading one inner tensor is the point
            warnings.simplefilter("ignore", UserWarning)
            self._interp = Interpreter(str(weights), num_threads=threads, experimental_preserve_all_tensors=True)
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]
        self._emb = embedding_tensor(self._interp)

    def frames(self, window: np.ndarray) -> np.ndarray:
        """(frames, 1024 + 521): embedding and scores of each 0.96 s frame of one window."""
        starts = range(0, len(window) - FRAME + 1, FRAME_HOP)
        if not starts:
            raise ValueError(f"YAMNet needs at least {FRAME} samples, got {len(window)}")
        rows = []
        for s in starts:
            self._interp.set_tensor(self._in, np.ascontiguousarray(window[s : s + FRAME], dtype=np.float32))
            self._interp.invoke()
            emb = self._interp.get_tensor(self._emb).reshape(-1)
            rows.append(np.concatenate([emb, self._interp.get_tensor(self._out).reshape(-1)]))
        return np.stack(rows)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        return np.stack([self.frames(w)[:, :EMBEDDING].mean(axis=0) for w in np.atleast_2d(windows)])

    def tags(self, windows: np.ndarray) -> np.ndarray:
        return np.stack([self.frames(w)[:, EMBEDDING:].mean(axis=0) for w in np.atleast_2d(windows)])


def embedding_tensor(interp) -> int:
    """Index of the 1024-value tensor that the scores are computed from: walking back from the output
    through single-input ops (the sigmoid), the float input of the last op with a (1, 1024) one."""
    out = interp.get_output_details()[0]["index"]
    shapes = {t["index"]: tuple(t["shape"]) for t in interp.get_tensor_details()}
    producer = {int(o): op for op in interp._get_ops_details() for o in op["outputs"]}
    tensor = out
    for _ in range(8):
        op = producer[tensor]
        found = [int(i) for i in op["inputs"] if i >= 0 and shapes.get(int(i)) == (1, EMBEDDING)]
        if found:
            return found[0]
        tensor = int(op["inputs"][-1] if len(op["inputs"]) else -1)
    raise ValueError("no 1024-value embedding before the scores: not a YAMNet file")
