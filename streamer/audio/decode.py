"""Decoding any file soundfile reads into 16 kHz mono float32: shared by the trainer, the file
source and `moodstream evaluate`, so that every path hears a file the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioError(ValueError):
    """A file that cannot be used as audio, with the reason in the message."""


def to_mono(samples: np.ndarray, channel: int = -1) -> np.ndarray:
    """(n,) or (n, channels) -> (n,): one channel by index, or the mean of all (channel=-1)."""
    if samples.ndim == 1:
        return samples
    if samples.ndim != 2:
        raise AudioError(f"expected (samples, channels) audio, got shape {samples.shape}")
    if channel >= 0:
        if channel >= samples.shape[1]:
            raise AudioError(f"channel {channel} requested but the audio has {samples.shape[1]}")
        return samples[:, channel]
    return samples.mean(axis=1)


def resample(samples: np.ndarray, rate: int, target: int = 16000) -> np.ndarray:
    """High-quality resampling (soxr); a no-op when the rates match."""
    if rate == target:
        return samples
    return soxr.resample(samples, rate, target, quality="HQ")


def open_audio(path: str | Path) -> sf.SoundFile:
    """The file opened for reading; AudioError when it is missing, not audio, or empty."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        audio = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: not a readable audio file ({exc})") from None
    if audio.frames == 0:
        audio.close()
        raise AudioError(f"{path}: contains no samples")
    return audio


def read_block(audio: sf.SoundFile, frames: int = -1) -> np.ndarray:
    """Up to ``frames`` more frames (all that is left by default) as float32 (n, channels)."""
    try:
        return audio.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{audio.name}: not a readable audio file ({exc})") from None


def load_audio(path: str | Path, target_rate: int = 16000, channel: int = -1) -> np.ndarray:
    """Whole file as float32 mono at ``target_rate``; AudioError when it is missing or not audio."""
    with open_audio(path) as audio:
        samples, rate = read_block(audio), audio.samplerate
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: contains no samples")
    mono = to_mono(samples, channel)
    out = resample(mono, rate, target_rate).astype(np.float32, copy=False)
    if not np.all(np.isfinite(out)):
        raise AudioError(f"{path}: decoded to NaN or infinite samples")
    return out
