"""A tiny model of synthetic moods (streamer.audio.synth), trained in seconds through the family's
own feature, fit and export code: the tests' real int8 model file, and the trainer benchmark's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamer.audio.synth import MOODS, mood_audio

WINDOW_S = 2.0


def mood_windows(
    frames: int, hop: int, clips: int, seconds: float, seed_base: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised feature windows of synthetic moods, their labels, the statistics and a
    validation mask (every fifth window): the tiny model's data, and the trainer benchmark's."""
    from streamer.features.mfcc import extract
    from trainer.families.paper.segments import segment, standardisation, standardise

    xs, ys = [], []
    for k, label in enumerate(MOODS):
        for clip in range(clips):
            w = segment(extract(mood_audio(label, seconds, seed=seed_base + clip)), frames, hop)
            xs.append(w)
            ys += [k] * len(w)
    x, y = np.concatenate(xs), np.asarray(ys)
    mean, std = standardisation(x)
    return standardise(x, mean, std), y, mean, std, np.arange(len(y)) % 5 == 0


def train_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Train and export the tiny int8 model (a float twin is written beside it)."""
    from streamer.features.mfcc import FeatureConfig
    from streamer.model.metadata import FORMAT_VERSION, ModelMetadata
    from trainer.common.export import export
    from trainer.families.paper.architectures import batch_one_copy, build
    from trainer.families.paper.fit import fit
    from trainer.families.paper.segments import window_geometry

    config = FeatureConfig()
    frames, hop = window_geometry(config, WINDOW_S, 0.5)
    xs_, y, mean, std, val = mood_windows(frames, hop, clips=6, seconds=8.0, seed_base=seed * 100)
    model = build("cnn", frames, config.n_features, len(MOODS), seed=seed)
    summary = fit(model, xs_[~val], y[~val], xs_[val], y[val], epochs=12, patience=12, seed=seed)
    meta = ModelMetadata(
        format_version=FORMAT_VERSION,
        name="tiny-test",
        architecture="cnn",
        labels=MOODS,
        feature_config=config,
        window_seconds=WINDOW_S,
        window_frames=frames,
        mean=tuple(map(float, mean)),
        std=tuple(map(float, std)),
        input_quantization=(0.0, 0),
        output_quantization=(0.0, 0),
        train_step_seconds=hop / config.frames_per_second,
        training={"data": "synthetic moods (trainer/families/paper/tiny.py)", "epochs": summary["epochs_run"]},
    )
    path = out_dir / "tiny-int8.tflite"
    export(batch_one_copy(model, "cnn"), meta, xs_[~val], path, out_dir / "tiny-float.tflite")
    return path
