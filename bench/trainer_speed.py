"""Trainer (issue 7.5): feature extraction speed in x real time on every core, and seconds per
epoch per architecture on small synthetic data (a few epochs, through ``trainer.families.paper.fit``).

TensorFlow is heavy and keeps threads alive, so the training runs in a child process
(``python -m bench.trainer_speed --json OUT``) and the benchmark process stays clean for the
streaming figures. The child also exports each architecture's int8 and float model into
cache/bench/models (same window and overlap as the shipped models, ``trainer.make_models``): the
other benchmarks use them where no shipped model of that kind (architecture, int8/float) exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import CACHE, Section, fmt, table
from streamer.features.mfcc import FeatureConfig
from streamer.util.timing import stats

MODELS = CACHE / "models"


def extraction_speed(quick: bool) -> dict:
    """Wall-clock x real time of the trainer's own feature step (``trainer.families.paper.featurecache.features``:
    decode, ``extract``, write the cache; a process per core) on WAV files of synthetic moods, with
    an empty cache so that everything is computed."""
    import soundfile

    from streamer.audio.synth import MOODS as TINY_LABELS
    from streamer.audio.synth import mood_audio
    from trainer.families.paper.augment import ORIGINAL
    from trainer.families.paper.featurecache import Job, features

    seconds, clips = (10.0, 4) if quick else (30.0, 24)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        folder = Path(tmp)
        jobs = []
        for i in range(clips):
            path = folder / f"clip{i}.wav"
            soundfile.write(path, mood_audio(TINY_LABELS[i % 3], seconds, seed=i), 16000, subtype="PCM_16")
            jobs.append(Job(path, (ORIGINAL,)))
        workers = min(2, os.cpu_count() or 1)
        start = time.monotonic()
        done, failed = features(jobs, FeatureConfig(), folder / "cache", workers=workers)
        wall = time.monotonic() - start
    if failed or len(done) != clips:
        raise RuntimeError(f"feature extraction failed for {failed}")
    audio = seconds * clips
    return {
        "workers": workers,
        "clips": clips,
        "audio_seconds": audio,
        "frames": int(sum(f.shape[0] for f in done.values())),
        "wall_seconds": wall,
        "x_real_time": audio / wall,
    }


def _epoch_timer() -> Any:
    """A Keras callback recording the wall time of each epoch in ``seconds`` (Keras imported late)."""
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
    """Per architecture: one epoch through ``trainer.families.paper.fit`` (compiles and traces: the first epoch),
    then further epochs of the same compiled model timed one by one (the steady epochs); then
    the int8 and float export."""
    import keras

    from streamer.audio.synth import MOODS as TINY_LABELS
    from streamer.model.metadata import FORMAT_VERSION, ModelMetadata
    from trainer.common.export import export
    from trainer.families.paper.architectures import ARCHITECTURES, batch_one_copy, build
    from trainer.families.paper.fit import class_weights, fit
    from trainer.families.paper.run import RunConfig
    from trainer.families.paper.segments import window_geometry
    from trainer.families.paper.tiny import mood_windows

    shipped = RunConfig(data_dir="", out="")  # the shipped models' settings are RunConfig's defaults
    WINDOW_S = shipped.window_seconds
    config = FeatureConfig()
    frames, hop = window_geometry(config, WINDOW_S, shipped.overlap)
    x, y, mean, std, val = mood_windows(frames, hop, clips=2 if quick else 12, seconds=WINDOW_S + 30.0)
    steady_epochs = 2 if quick else 3
    MODELS.mkdir(parents=True, exist_ok=True)
    out: dict = {
        "window_seconds": WINDOW_S,
        "window_frames": frames,
        "train_windows": int((~val).sum()),
        "val_windows": int(val.sum()),
        "batch_size": 64,
        "steady_epochs": steady_epochs,
        "architectures": {},
    }
    for arch in ARCHITECTURES[:1] if quick else ARCHITECTURES:
        model = build(arch, frames, config.n_features, len(TINY_LABELS), seed=0)
        start = time.monotonic()
        summary = fit(model, x[~val], y[~val], x[val], y[val], epochs=1, patience=1, seed=0)
        first = time.monotonic() - start
        timer = _epoch_timer()
        labels = keras.utils.to_categorical(y, len(TINY_LABELS))
        # The same arguments as trainer.families.paper.fit (class weights included), so the traced step is reused.
        model.fit(
            x[~val],
            labels[~val],
            validation_data=(x[val], labels[val]),
            epochs=steady_epochs,
            batch_size=64,
            class_weight=class_weights(y[~val], len(TINY_LABELS)),
            shuffle=True,
            callbacks=[timer],
            verbose=0,
        )
        steady = stats(timer.seconds)
        meta = ModelMetadata(
            format_version=FORMAT_VERSION,
            name=f"bench-{arch}",
            architecture=arch,
            labels=TINY_LABELS,
            feature_config=config,
            window_seconds=WINDOW_S,
            window_frames=frames,
            mean=tuple(map(float, mean)),
            std=tuple(map(float, std)),
            input_quantization=(0.0, 0),
            output_quantization=(0.0, 0),
            train_step_seconds=hop / config.frames_per_second,
            training={
                "data": "synthetic moods (trainer/families/paper/tiny.py), benchmark only",
                "epochs": summary["epochs_run"] + steady_epochs,
            },
        )
        start = time.monotonic()
        export(
            batch_one_copy(model, arch),
            meta,
            x[~val][:200],
            MODELS / f"{arch}-int8.tflite",
            MODELS / f"{arch}-float.tflite",
        )
        out["architectures"][arch] = {
            "first_epoch_seconds": first,
            "steady_epoch_seconds": steady,
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
        [
            arch,
            fmt(a["first_epoch_seconds"]),
            fmt(a["steady_epoch_seconds"]["median"])
            + f" ({fmt(a['steady_epoch_seconds']['min'])}-{fmt(a['steady_epoch_seconds']['max'])})",
            fmt(a["steady_seconds_per_1000_windows"]),
            fmt(a["export_seconds_int8_and_float"]),
        ]
        for arch, a in ep["architectures"].items()
    ]
    md = (
        f"**Feature extraction for training**: the trainer's own step (`trainer.families.paper.featurecache.features`: "
        f"decode, `streamer.features.mfcc.extract`, write the cache) with {fx['workers']} worker processes on "
        f"{fx['clips']} WAV files of synthetic moods, {fmt(fx['audio_seconds'])} s of audio, empty cache: "
        f"**{fmt(fx['x_real_time'])}x real time** (wall clock {fmt(fx['wall_seconds'])} s, worker start-up "
        "included; originals only, the augmented variants cost librosa's pitch shift / time stretch on top).\n\n"
        f"**Seconds per epoch** (`trainer.families.paper.fit`, Adam, batch {ep['batch_size']}), "
        f"{ep['train_windows']} training + "
        f"{ep['val_windows']} validation windows of {ep['window_seconds']:g} s ({ep['window_frames']} frames) "
        f"from synthetic moods. The first epoch runs through `trainer.families.paper.fit` and includes compiling "
        f"and graph "
        f"tracing; then {ep['steady_epochs']} more epochs of the same compiled model are timed one by one "
        "(median, range). Wall clock, 2 cores, TensorFlow's default threading. Each model is then exported "
        "(int8 + float) into `cache/bench/models/`: the other benchmarks use these where no shipped model "
        "of that kind exists.\n\n"
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
