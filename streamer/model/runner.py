"""Running a model file: standardise and quantise a feature window exactly as its metadata says,
invoke a LiteRT interpreter, and return label probabilities.

The daemon, `moodstream evaluate` and the trainer's int8 evaluation all call :meth:`ModelRunner.predict`,
so a model is scored the way it will be used. TensorFlow is never imported here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from streamer.features.frontend import window_input
from streamer.features.mfcc import centre_columns
from streamer.model.metadata import ModelFileError, ModelMetadata, read_metadata

log = logging.getLogger(__name__)


def _interpreter(path: Path, threads: int) -> tuple[Any, str]:
    """A LiteRT interpreter from whichever package is installed, and its name."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter(model_path=str(path), num_threads=threads), "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        raise ModelFileError(
            "no TFLite interpreter: install ai-edge-litert (pip install ai-edge-litert) "
            "or, on platforms without its wheels, tflite-runtime with numpy<2"
        ) from None
    return Interpreter(model_path=str(path), num_threads=threads), "tflite-runtime"


class ModelRunner:
    """One loaded model: ``predict(window)`` -> probabilities over ``labels``."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.metadata: ModelMetadata = read_metadata(self.path)
        try:
            self._interp, self.backend = _interpreter(self.path, threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{self.path}: the interpreter cannot load it ({exc})") from None
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]
        self._check_tensors()
        meta = self.metadata
        self._mean = np.asarray(meta.mean, dtype=np.float32)
        self._inv_std = (1.0 / np.asarray(meta.std, dtype=np.float64)).astype(np.float32)
        log.info(
            "model %s (%s on %s, %s) labels=%s window=%.1fs backend=%s",
            self.name,
            meta.architecture,
            meta.features,
            "int8" if meta.quantized else "float32",
            ",".join(self.labels),
            meta.window_seconds,
            self.backend,
        )

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def window_frames(self) -> int:
        return self.metadata.window_frames

    def _check_tensors(self) -> None:
        """The interpreter's tensors must be what the metadata describes, or predictions are garbage."""
        meta = self.metadata
        expected_in = (1, meta.window_frames, meta.feature_config.n_features)
        shape = tuple(int(x) for x in self._input["shape"])
        if shape != expected_in:
            raise ModelFileError(f"{self.path}: input shape {shape}, metadata implies {expected_in}")
        out = tuple(int(x) for x in self._output["shape"])
        if out != (1, len(meta.labels)):
            raise ModelFileError(f"{self.path}: output shape {out} does not fit {len(meta.labels)} labels")
        for which, details, (scale, zero) in (
            ("input", self._input, meta.input_quantization),
            ("output", self._output, meta.output_quantization),
        ):
            t_scale, t_zero = details["quantization"]
            if not np.isclose(t_scale, scale, rtol=1e-6, atol=0) or (scale and t_zero != zero):
                raise ModelFileError(
                    f"{self.path}: {which} quantisation ({t_scale}, {t_zero}) differs from the "
                    f"metadata ({scale}, {zero})"
                )

    def predict(self, window: np.ndarray) -> np.ndarray:
        """(window_frames, n_features) raw feature-ring rows -> (n_labels,) float32 probabilities."""
        x = np.asarray(window, dtype=np.float32)
        expected = (self.window_frames, self.metadata.feature_config.n_features)
        if x.shape != expected:
            raise ValueError(f"window must have shape {expected}, got {x.shape}")
        # the front-end's own window step (log-mel: level normalisation and log), then the
        # metadata's centring (MFCC log energy), then the standardisation
        x = window_input(self.metadata.feature_config, x)
        x = centre_columns(x, self.metadata.centred_columns)
        x = (x - self._mean) * self._inv_std
        scale, zero = self.metadata.input_quantization
        if scale:
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(self._input["dtype"])
        self._interp.set_tensor(self._input["index"], x[np.newaxis])
        self._interp.invoke()
        y = self._interp.get_tensor(self._output["index"])[0]
        scale, zero = self.metadata.output_quantization
        if scale:
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)
