"""Augmentation of training audio only: pitch shift +-2 semitones and time stretch 0.8x / 1.2x
(librosa.effects), as in the paper. Validation and test audio is never passed through here."""

from __future__ import annotations

import numpy as np

ORIGINAL = "original"
AUGMENTATIONS = ("pitch+2", "pitch-2", "stretch0.8", "stretch1.2")


def apply(audio: np.ndarray, name: str, sample_rate: int) -> np.ndarray:
    """One named variant of ``audio`` (``original`` returns it unchanged)."""
    if name == ORIGINAL:
        return audio
    import librosa  # heavy import (numba), only needed when augmenting

    if name.startswith("pitch"):
        out = librosa.effects.pitch_shift(audio, sr=sample_rate, n_steps=float(name[5:]))
    elif name.startswith("stretch"):
        out = librosa.effects.time_stretch(audio, rate=float(name[7:]))
    else:
        raise ValueError(f"unknown augmentation {name!r} (known: {', '.join(AUGMENTATIONS)})")
    return np.clip(out, -1.0, 1.0).astype(np.float32)
