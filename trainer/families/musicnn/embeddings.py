"""The musicnn family's data: frozen MSD-network embeddings of every clip, per 3 s patch, under a
capture condition, cached by the file's content.

A clip's patches are the windows the daemon's pipeline would hand the model (streamer.features.logmel
frames, 187 per patch, level-normalised per patch), taken every ``HEAD_STRIDE_S`` seconds; each goes
through trainer.families.musicnn.network's Keras rebuild to its 200-value penultimate layer. Conditions:

- ``clean``: the clip as it is;
- ``room``: streamer.audio.chain's ``room`` chain with `moodstream evaluate --chain room`'s per-clip
  seed (chain seed 0), so the room test figures here and evaluate's are the same rooms;
- ``augment-K``: streamer.audio.chain.random_chain, the K-th training draw of the clip (augmentation).

``python -m trainer embed ...`` fills the cache (run it in the background: the network
costs about 0.1 s per patch on an idle core).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from streamer.audio.decode import AudioError, load_audio
from streamer.features.logmel import LogMelConfig, mel_power, model_input
from streamer.util.atomic import write_atomic
from trainer.common.cache import content_digest, save_array
from trainer.common.dataset import Clip
from trainer.common.paths import RUN_CACHE
from trainer.common.split import load_split

log = logging.getLogger(__name__)

CACHE = RUN_CACHE / "musicnn-embeddings"
CACHE_VERSION = 1
PATCH_FRAMES = 187
WINDOW_S = 3.008  # 187 frames of hop 256 at 16 kHz: streamer.features.logmel.LogMelConfig().frames_for(3.008) == 187
# between the patches a head is trained on (3 per 30 s clip: the CPU budget); the daemon hops by its own setting
HEAD_STRIDE_S = 9.0
# the family is scored at this hop (`moodstream evaluate --hop 3`): the network costs ~0.1 s per run here
EVALUATE_HOP_S = 3.0


def condition_audio(audio: np.ndarray, condition: str, name: str) -> np.ndarray:
    """The clip as captured under ``condition`` (16 kHz float32)."""
    if condition == "clean":
        return audio
    from streamer.audio import chain

    if condition == "room":
        return chain.apply_chain("room", audio, 16000, chain.clip_seed(0, name))
    if condition.startswith("augment-"):
        k = int(condition.removeprefix("augment-"))
        seed = int.from_bytes(hashlib.sha1(f"augment:{k}:{name}".encode()).digest()[:4], "little")
        return chain.random_chain(audio, 16000, seed)
    raise ValueError(f"unknown condition {condition!r} (clean, room, augment-K)")


def patches(audio: np.ndarray, config: LogMelConfig, stride_s: float = HEAD_STRIDE_S) -> np.ndarray | None:
    """(n, 187, 96) network inputs: every ``stride_s`` seconds one patch, as the runner prepares it."""
    power = mel_power(audio, config)
    step = round(stride_s * config.frames_per_second)
    starts = range(0, power.shape[0] - PATCH_FRAMES + 1, step)
    return np.stack([model_input(power[s : s + PATCH_FRAMES], config) for s in starts]) if len(starts) else None


def patch_power(audio: np.ndarray, config: LogMelConfig, stride_s: float = HEAD_STRIDE_S) -> np.ndarray:
    """Mean mel power of each patch (for the ``rms`` reference)."""
    power = mel_power(audio, config)
    step = round(stride_s * config.frames_per_second)
    return np.asarray([power[s : s + PATCH_FRAMES].mean() for s in range(0, power.shape[0] - PATCH_FRAMES + 1, step)])


def reference_power(clips: list[Clip], config: LogMelConfig) -> float:
    """Median mean mel power of the clean patches of ``clips`` (training clips only)."""
    values = [patch_power(load_audio(c.path, config.sample_rate), config) for c in clips]
    return float(np.median(np.concatenate(values)))


def _key(content: str, condition: str, config: LogMelConfig) -> str:
    ident = json.dumps([CACHE_VERSION, content, condition, config.to_dict(), HEAD_STRIDE_S], sort_keys=True)
    return hashlib.sha1(ident.encode()).hexdigest()


class Embedder:
    """The frozen network as a float TFLite model (XNNPACK: several times faster than Keras here),
    converted once from the Keras rebuild and kept in the weights' cache."""

    def __init__(self, cache: Path | None = None, threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter

        from trainer.families.musicnn import network as musicnn

        path = (cache or musicnn.CACHE) / "msd_musicnn_penultimate_float.tflite"
        if not path.is_file():
            import tensorflow as tf

            write_atomic(path, tf.lite.TFLiteConverter.from_keras_model(musicnn.build()).convert())
        self._interp = Interpreter(model_path=str(path), num_threads=threads)
        self._interp.allocate_tensors()
        self._in = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[0]["index"]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = []
        for patch in np.asarray(x, dtype=np.float32):
            self._interp.set_tensor(self._in, patch[np.newaxis])
            self._interp.invoke()
            rows.append(self._interp.get_tensor(self._out)[0].copy())
        return np.stack(rows)


def embeddings(
    clips: list[Clip], condition: str, config: LogMelConfig, cache: Path = CACHE, embedder: Embedder | None = None
) -> dict[Path, np.ndarray]:
    """clip path -> (n_patches, 200) embeddings; clips that cannot be used are left out (logged)."""
    return embed_configs(clips, condition, [config], cache, embedder)[0]


def cached_embeddings(
    clips: list[Clip], condition: str, config: LogMelConfig, cache: Path = CACHE
) -> dict[Path, np.ndarray]:
    """The clips whose embeddings are in the cache (nothing is computed)."""
    out = {}
    for clip in clips:
        file = cache / f"{_key(content_digest(clip.path), condition, config)}.npy"
        if file.is_file():
            out[clip.path] = np.load(file)
    return out


def embed_configs(
    clips: list[Clip],
    condition: str,
    configs: list[LogMelConfig],
    cache: Path = CACHE,
    embedder: Embedder | None = None,
) -> list[dict[Path, np.ndarray]]:
    """:func:`embeddings` for several log-mel settings at once: a clip's capture chain (the slow
    part) runs once for all of them."""
    out: list[dict[Path, np.ndarray]] = [{} for _ in configs]
    todo = []
    for clip in clips:
        content = content_digest(clip.path)
        missing = []
        for k, config in enumerate(configs):
            file = cache / f"{_key(content, condition, config)}.npy"
            if file.is_file():
                out[k][clip.path] = np.load(file)
            else:
                missing.append((k, file))
        if missing:
            todo.append((clip, missing))
    if todo:
        embedder = embedder or Embedder()
        t0 = time.perf_counter()
        for i, (clip, missing) in enumerate(todo):
            try:
                audio = condition_audio(load_audio(clip.path, configs[0].sample_rate), condition, clip.path.name)
            except (AudioError, ValueError) as exc:
                log.warning("%s: skipped (%s)", clip.path, exc)
                continue
            for k, file in missing:
                x = patches(audio, configs[k])
                if x is None:
                    log.warning("%s: shorter than one patch, skipped", clip.path)
                    continue
                emb = embedder(x)
                save_array(file, emb)
                out[k][clip.path] = emb
            if (i + 1) % 25 == 0 or i + 1 == len(todo):
                rate = (time.perf_counter() - t0) / (i + 1)
                log.info("%s: %d/%d clips embedded, %.2f s per clip", condition, i + 1, len(todo), rate)
    return out


def main(argv: list[str] | None = None) -> int:
    from trainer.common.paths import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="python -m trainer embed", description="cache musicnn embeddings")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--labels", default="angry,happy,sad,calm")
    p.add_argument("--conditions", default="clean,room")
    p.add_argument("--normalisation", default="rms", help="comma-separated: one capture chain run for all")
    p.add_argument("--shard", default="0/1", help="I/N: embed every N-th clip from the I-th (parallel jobs)")
    p.add_argument("--reference-power", type=float, required=True)
    p.add_argument("--parts", default="train,val,test", help="which parts of the split to embed")
    p.add_argument("--only-labels", help="embed only the clips of these labels (comma-separated)")
    p.add_argument("--cache", type=Path, default=CACHE)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    split = load_split(args.data, args.labels.split(","))
    chosen = sorted({i for part in args.parts.split(",") for i in split.parts[part]})
    if args.only_labels:
        chosen = [i for i in chosen if split.clips[i].label in args.only_labels.split(",")]
    shard, shards = (int(v) for v in args.shard.split("/"))
    chosen = chosen[shard::shards]
    configs = [
        LogMelConfig(normalisation=n, reference_power=args.reference_power) for n in args.normalisation.split(",")
    ]
    embedder = Embedder()
    for condition in args.conditions.split(","):
        embed_configs([split.clips[i] for i in chosen], condition, configs, args.cache, embedder)
    return 0
