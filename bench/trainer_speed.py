"""Trainer (issue 7.5): feature extraction speed in x real time on every core, and seconds per
epoch per architecture on small synthetic data (a few epochs, through ``trainer.fit``).

TensorFlow is heavy and keeps threads alive, so the training runs in a child process
(``python -m bench.trainer_speed --json OUT``) and the benchmark process stays clean for the
streaming figures. The child also exports each architecture's int8 and float model into
cache/bench/models: the models the other benchmarks use when no shipped model exists yet.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bench.common import CACHE, Section, fmt, stats, table
from streamer.features import FeatureConfig, extract

MODELS = CACHE / "models"
WINDOW_S = 3.0  # fallback models' window; shipped models bring their own


def _clip_features(args: tuple[str, int, float]) -> int:
    from tests.conftest import mood_audio

    label, seed, seconds = args
    return extract(mood_audio(label, seconds, seed=seed)).shape[0]


def _synthesis_seconds(jobs: list[tuple[str, int, float]]) -> float:
    from tests.conftest import mood_audio

    start = time.monotonic()
    for label, seed, seconds in jobs:
        mood_audio(label, seconds, seed=seed)
    return time.monotonic() - start


def extraction_speed(quick: bool) -> dict:
    """Wall-clock x real time of ``extract`` over many clips with one worker per core.

    The synthetic audio is made inside the workers too; its cost is measured alone (one process)
    and reported, so the feature figure is not flattered or hidden by it."""
    from tests.conftest import TINY_LABELS

    seconds = 10.0 if quick else 30.0
    jobs = [(TINY_LABELS[i % 3], i, seconds) for i in range(4 if quick else 16)]
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(_clip_features, jobs[:cores]))  # start the workers, import everything
        start = time.monotonic()
        frames = sum(pool.map(_clip_features, jobs))
        wall = time.monotonic() - start
    audio = seconds * len(jobs)
    synth = _synthesis_seconds(jobs[:2]) * len(jobs) / 2 / cores
    return {"workers": cores, "clips": len(jobs), "audio_seconds": audio, "frames": frames,
            "wall_seconds": wall, "x_real_time": audio / wall,
            "synthesis_wall_seconds_estimate": synth,
            "x_real_time_features_only": audio / max(1e-9, wall - synth)}


class _EpochTimer:
    """Keras callback recording the wall time of each epoch."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
                self._start = time.monotonic()

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                self.seconds.append(time.monotonic() - self._start)

        return Timer()


def epochs(quick: bool) -> dict:
    """Per architecture: one epoch through ``trainer.fit`` (compiles and traces: the first epoch),
    then further epochs of the same compiled model timed one by one (the steady epochs); then
    the int8 and float export."""
    import keras

    from streamer.modelfile import FORMAT_VERSION, ModelMetadata
    from tests.conftest import TINY_LABELS, mood_audio
    from trainer.export import export
    from trainer.fit import fit
    from trainer.models import ARCHITECTURES, build
    from trainer.segments import segment, standardisation, standardise, window_geometry

    config = FeatureConfig()
    frames, hop = window_geometry(config, WINDOW_S, 0.5)
    xs, ys = [], []
    for k, label in enumerate(TINY_LABELS):
        for clip in range(2 if quick else 8):
            w = segment(extract(mood_audio(label, 12.0, seed=clip)), frames, hop)
            xs.append(w)
            ys += [k] * len(w)
    x, y = np.concatenate(xs), np.asarray(ys)
    mean, std = standardisation(x)
    x = standardise(x, mean, std)
    val = np.arange(len(y)) % 5 == 0
    steady_epochs = 2 if quick else 5
    MODELS.mkdir(parents=True, exist_ok=True)
    out: dict = {"window_seconds": WINDOW_S, "window_frames": frames, "train_windows": int((~val).sum()),
                 "val_windows": int(val.sum()), "batch_size": 64, "steady_epochs": steady_epochs,
                 "architectures": {}}
    for arch in ARCHITECTURES[:1] if quick else ARCHITECTURES:
        model = build(arch, frames, config.n_features, len(TINY_LABELS), seed=0)
        start = time.monotonic()
        summary = fit(model, x[~val], y[~val], x[val], y[val], epochs=1, patience=1, seed=0)
        first = time.monotonic() - start
        timer = _EpochTimer()
        labels = keras.utils.to_categorical(y, len(TINY_LABELS))
        model.fit(x[~val], labels[~val], validation_data=(x[val], labels[val]), epochs=steady_epochs,
                  batch_size=64, callbacks=[timer], verbose=0)
        steady = stats(timer.seconds)
        meta = ModelMetadata(
            format_version=FORMAT_VERSION, name=f"bench-{arch}", architecture=arch, labels=TINY_LABELS,
            feature_config=config, window_seconds=WINDOW_S, window_frames=frames,
            mean=tuple(map(float, mean)), std=tuple(map(float, std)),
            input_quantization=(0.0, 0), output_quantization=(0.0, 0), hop_seconds=hop / config.frames_per_second,
            training={"data": "synthetic moods (tests/conftest.py), benchmark only",
                      "epochs": summary["epochs_run"] + steady_epochs},
        )
        start = time.monotonic()
        export(model, meta, x[~val][:200], MODELS / f"{arch}-int8.tflite", MODELS / f"{arch}-float.tflite")
        out["architectures"][arch] = {
            "first_epoch_seconds": first, "steady_epoch_seconds": steady,
            "steady_seconds_per_1000_windows": 1000 * steady["median"] / out["train_windows"],
            "export_seconds_int8_and_float": time.monotonic() - start,
        }
    return out


def run(quick: bool = False) -> Section:
    out = CACHE / "trainer_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "bench.trainer_speed", "--json", str(out)] + (["--quick"] if quick else [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"trainer benchmark child failed:\n{done.stderr[-3000:]}")
    data = json.loads(out.read_text())
    fx, ep = data["extraction"], data["epochs"]
    rows = [
        [arch, fmt(a["first_epoch_seconds"]), fmt(a["steady_epoch_seconds"]["median"])
         + f" ({fmt(a['steady_epoch_seconds']['min'])}-{fmt(a['steady_epoch_seconds']['max'])})",
         fmt(a["steady_seconds_per_1000_windows"]), fmt(a["export_seconds_int8_and_float"])]
        for arch, a in ep["architectures"].items()
    ]
    md = (
        f"**Feature extraction for training**: {fx['clips']} synthetic clips, {fmt(fx['audio_seconds'])} s of "
        f"audio, `streamer.features.extract` in {fx['workers']} worker processes (one per core): "
        f"**{fmt(fx['x_real_time'])}x real time** wall clock including making the synthetic audio in the "
        f"workers (about {fmt(fx['synthesis_wall_seconds_estimate'])} s of the {fmt(fx['wall_seconds'])} s); "
        f"features alone about {fmt(fx['x_real_time_features_only'])}x real time.\n\n"
        f"**Seconds per epoch** (`trainer.fit`, Adam, batch {ep['batch_size']}), {ep['train_windows']} training + "
        f"{ep['val_windows']} validation windows of {ep['window_seconds']:g} s ({ep['window_frames']} frames) "
        f"from synthetic moods. The first epoch runs through `trainer.fit` and includes compiling and graph "
        f"tracing; then {ep['steady_epochs']} more epochs of the same compiled model are timed one by one "
        "(median, range). Wall clock, 2 cores, TensorFlow's default threading. Each model is then "
        "exported (int8 + float) into `cache/bench/models/`.\n\n"
        + table(["architecture", "first epoch s", "steady epoch s (range)", "s per 1000 windows", "export s"], rows)
    )
    return Section("trainer", "Trainer speed (issue 7.5)", data, md)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    data = {"extraction": extraction_speed(args.quick), "epochs": epochs(args.quick)}
    tmp = args.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
