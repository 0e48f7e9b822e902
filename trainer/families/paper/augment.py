"""Augmentation of training audio only: pitch shift +-2 semitones and time stretch 0.8x / 1.2x
(librosa.effects), as in the paper, and random capture-chain draws (``chain0``, ``chain1``, ...:
streamer.audio.chain.random_chain, seeded by the file's content and the copy's number; computed in
trainer.families.paper.featurecache). Validation and test audio is never passed through here."""

from __future__ import annotations

import numpy as np

ORIGINAL = "original"
AUGMENTATIONS = ("pitch+2", "pitch-2", "stretch0.8", "stretch1.2")
CHAIN_PREFIX = "chain"


def chain_variants(copies: int) -> tuple[str, ...]:
    """Names of ``copies`` capture-chain copies of a clip."""
    return tuple(f"{CHAIN_PREFIX}{k}" for k in range(copies))


def is_chain(variant: str) -> bool:
    return variant.startswith(CHAIN_PREFIX)


def chain_seed(content: str, variant: str) -> int:
    """The seed of one chained copy: from the file's content hash (the same bytes draw the same
    chain wherever the data is copied) and the copy's number."""
    return (int(content[:8], 16) * 1000 + int(variant.removeprefix(CHAIN_PREFIX))) % 2**31


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
