"""Shared fixtures. ``tiny_model`` is a real int8 model file trained in seconds, through the
trainer's own fit and export code (trainer.families.paper.tiny), on three synthetic moods that
``tiny_model_audio`` can make on demand (streamer.audio.synth.mood_audio)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from streamer.audio.synth import MOODS, mood_audio
from trainer.families.paper.tiny import WINDOW_S, train_tiny_model

pytest_plugins = ["tests.pulse"]  # the ``pulse`` fixture: a private PulseAudio server

TINY_LABELS = MOODS
TINY_WINDOW_S = WINDOW_S


@pytest.fixture(scope="session")
def tiny_model_audio() -> Callable[..., np.ndarray]:
    """``tiny_model_audio(label, seconds, seed=0)`` -> audio the tiny model should recognise."""
    return mood_audio


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a real int8 .tflite with moodstream metadata, labels angry/happy/sad, 2 s window."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny_model"))
