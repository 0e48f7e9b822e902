"""Cutting a clip's feature frames into the windows the model sees, and the standardisation
statistics (training part only) that travel inside the model file."""

from __future__ import annotations

import numpy as np

from streamer.features.mfcc import FeatureConfig


def window_geometry(config: FeatureConfig, window_seconds: float, overlap: float) -> tuple[int, int]:
    """(frames per window, frames between window starts) for a window length and overlap in [0, 1)."""
    if window_seconds <= 0 or not 0 <= overlap < 1:
        raise ValueError("need window > 0 seconds and 0 <= overlap < 1")
    frames = config.frames_for(window_seconds)
    hop = max(1, round(window_seconds * (1 - overlap) * config.frames_per_second))
    return frames, hop


def segment(frames: np.ndarray, window_frames: int, hop_frames: int) -> np.ndarray:
    """(n_frames, F) -> (n_windows, window_frames, F); windows that fit completely, none otherwise.

    Slicing a clip's frames is what the daemon does to its continuous feature stream, so the
    trainer's windows are the daemon's windows."""
    n = frames.shape[0]
    if n < window_frames:
        return np.zeros((0, window_frames, frames.shape[1]), dtype=np.float32)
    starts = range(0, n - window_frames + 1, hop_frames)
    return np.stack([frames[s : s + window_frames] for s in starts]).astype(np.float32)


def standardisation(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std over every frame of the training windows."""
    flat = windows.reshape(-1, windows.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    std = np.maximum(flat.std(axis=0), 1e-6)
    return mean.astype(np.float32), std.astype(np.float32)


def standardise(windows: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Exactly what streamer.model.runner.ModelRunner.predict does before quantising."""
    return ((windows - mean) * (1.0 / std.astype(np.float64)).astype(np.float32)).astype(np.float32)
