"""Music-like audio made from code: the tests', the benchmarks' and the tiny model's stand-in for
recordings (no recording is ever needed to test or measure moodstream).

``mood_audio`` makes three synthetic moods that a tiny model can learn in seconds: angry = loud
noise and fast drums, happy = bright major chords and drums, sad = slow, quiet, low chords."""

from __future__ import annotations

import numpy as np

SR = 16000


def chords(seconds: float, sr: int = SR, seed: int = 0, root: float = 220.0) -> np.ndarray:
    """A chord progression of harmonic tones with a decaying envelope per chord."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = np.zeros(n)
    chord_len = int(0.5 * sr)
    for start in range(0, n, chord_len):
        seg = slice(start, min(n, start + chord_len))
        tt = t[seg] - t[start]
        env = np.exp(-3.0 * tt)
        base = root * 2 ** (rng.integers(0, 12) / 12)
        for ratio in (1.0, 1.25, 1.5):
            for h in range(1, 5):
                out[seg] += env * np.sin(2 * np.pi * base * ratio * h * t[seg]) / h
    return 0.2 * out / np.max(np.abs(out))


def drums(seconds: float, sr: int = SR, bpm: float = 120.0, seed: int = 1) -> np.ndarray:
    """Kick (decaying low sine) and hi-hat (decaying noise bursts)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    out = np.zeros(n)
    beat = int(60.0 / bpm * sr)
    k = np.arange(int(0.15 * sr)) / sr
    kick = np.sin(2 * np.pi * 60 * k) * np.exp(-25 * k)
    hat = rng.normal(0, 1, int(0.05 * sr)) * np.exp(-80 * k[: int(0.05 * sr)])
    for i, start in enumerate(range(0, n, beat // 2)):
        sound = kick if i % 2 == 0 else 0.3 * hat
        end = min(n, start + sound.size)
        out[start:end] += sound[: end - start]
    return 0.5 * out / np.max(np.abs(out))


def noise(seconds: float, sr: int = SR, seed: int = 2, level: float = 0.05) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, level, int(seconds * sr))


def music(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Chords + drums + a little noise, the stand-in for real music in tests."""
    return chords(seconds, sr, seed) + drums(seconds, sr, seed=seed + 1) + noise(seconds, sr, seed + 2, 0.01)


MOODS = ("angry", "happy", "sad")


def mood_audio(label: str, seconds: float, seed: int = 0) -> np.ndarray:
    """Synthetic audio of one of the tiny model's moods, float32 16 kHz mono."""
    if label == "angry":
        x = 0.5 * drums(seconds, bpm=180, seed=seed) + noise(seconds, seed=seed, level=0.25)
    elif label == "happy":
        x = 1.5 * chords(seconds, seed=seed, root=440.0) + 0.4 * drums(seconds, bpm=120, seed=seed)
    elif label == "sad":
        x = 0.4 * chords(seconds, seed=seed, root=110.0) + noise(seconds, seed=seed, level=0.002)
    else:
        raise ValueError(f"unknown mood {label!r}; the synthetic moods are {MOODS}")
    return np.clip(x, -1, 1).astype(np.float32)
