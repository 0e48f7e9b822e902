"""Shared fixtures. ``tiny_model`` is a real int8 model file trained in seconds, through the
trainer's own fit and export code, on three synthetic moods that ``tiny_model_audio`` can make
on demand: angry = loud noise and fast drums, happy = bright major chords and drums,
sad = slow, quiet, low chords."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.audio import chords, drums, noise

pytest_plugins = ["tests.pulse"]  # the ``pulse`` fixture: a private PulseAudio server

TINY_LABELS = ("angry", "happy", "sad")
TINY_WINDOW_S = 2.0


def mood_audio(label: str, seconds: float, seed: int = 0) -> np.ndarray:
    """Synthetic audio of one of the tiny model's moods, float32 16 kHz mono."""
    if label == "angry":
        x = 0.5 * drums(seconds, bpm=180, seed=seed) + noise(seconds, seed=seed, level=0.25)
    elif label == "happy":
        x = 1.5 * chords(seconds, seed=seed, root=440.0) + 0.4 * drums(seconds, bpm=120, seed=seed)
    elif label == "sad":
        x = 0.4 * chords(seconds, seed=seed, root=110.0) + noise(seconds, seed=seed, level=0.002)
    else:
        raise ValueError(f"unknown mood {label!r}; tiny moods are {TINY_LABELS}")
    return np.clip(x, -1, 1).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_model_audio() -> Callable[..., np.ndarray]:
    """``tiny_model_audio(label, seconds, seed=0)`` -> audio the tiny model should recognise."""
    return mood_audio


def mood_windows(
    frames: int, hop: int, clips: int, seconds: float, seed_base: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised feature windows of synthetic moods, their labels, the statistics and a
    validation mask (every fifth window): the tiny model's data, and the trainer benchmark's."""
    from streamer.features import extract
    from trainer.segments import segment, standardisation, standardise

    xs, ys = [], []
    for k, label in enumerate(TINY_LABELS):
        for clip in range(clips):
            w = segment(extract(mood_audio(label, seconds, seed=seed_base + clip)), frames, hop)
            xs.append(w)
            ys += [k] * len(w)
    x, y = np.concatenate(xs), np.asarray(ys)
    mean, std = standardisation(x)
    return standardise(x, mean, std), y, mean, std, np.arange(len(y)) % 5 == 0


def train_tiny_model(out_dir: Path, seed: int = 0) -> Path:
    """Train and export the tiny int8 model (a float twin is written beside it)."""
    from streamer.features import FeatureConfig
    from streamer.metadata import FORMAT_VERSION, ModelMetadata
    from trainer.architectures import build
    from trainer.export import export
    from trainer.fit import fit
    from trainer.segments import window_geometry

    config = FeatureConfig()
    frames, hop = window_geometry(config, TINY_WINDOW_S, 0.5)
    xs_, y, mean, std, val = mood_windows(frames, hop, clips=6, seconds=8.0, seed_base=seed * 100)
    model = build("cnn", frames, config.n_features, len(TINY_LABELS), seed=seed)
    summary = fit(model, xs_[~val], y[~val], xs_[val], y[val], epochs=12, patience=12, seed=seed)
    meta = ModelMetadata(
        format_version=FORMAT_VERSION,
        name="tiny-test",
        architecture="cnn",
        labels=TINY_LABELS,
        feature_config=config,
        window_seconds=TINY_WINDOW_S,
        window_frames=frames,
        mean=tuple(map(float, mean)),
        std=tuple(map(float, std)),
        input_quantization=(0.0, 0),
        output_quantization=(0.0, 0),
        train_step_seconds=hop / config.frames_per_second,
        training={"data": "synthetic moods (tests/conftest.py)", "epochs": summary["epochs_run"]},
    )
    path = out_dir / "tiny-int8.tflite"
    export(model, meta, xs_[~val], path, out_dir / "tiny-float.tflite")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a real int8 .tflite with moodstream metadata, labels angry/happy/sad, 2 s window."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))
