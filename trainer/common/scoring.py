"""Scoring a model at window level and clip level (window probabilities averaged per clip, the
daemon's clip decision), with the metric code that `moodstream evaluate` uses too."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamer.evaluation.metrics import classification_metrics
from streamer.model.runner import ModelRunner


def runner_probabilities(runner: ModelRunner, windows: np.ndarray) -> np.ndarray:
    """(N, frames, F) raw-feature windows -> (N, L) through the exported file, as the daemon runs it."""
    return np.stack([runner.predict(w) for w in windows]) if len(windows) else np.zeros((0, len(runner.labels)))


def clip_probabilities(probs: np.ndarray, y: np.ndarray, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean window probabilities per clip and each clip's label."""
    ids = np.unique(clips)
    return (
        np.stack([probs[clips == c].mean(axis=0) for c in ids]),
        np.asarray([y[clips == c][0] for c in ids]),
    )


def score(probs: np.ndarray, y: np.ndarray, clips: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """{"window": metrics, "clip": metrics}."""
    clip_p, clip_y = clip_probabilities(probs, y, clips)
    return {
        "window": classification_metrics(y, probs.argmax(axis=1), labels),
        "clip": classification_metrics(clip_y, clip_p.argmax(axis=1), labels),
    }


def timed(fn: Callable[[np.ndarray], np.ndarray], window: np.ndarray, repeats: int = 50) -> float:
    """Median milliseconds of one call (batch-1 inference time for the model card)."""
    fn(window)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(window)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)
