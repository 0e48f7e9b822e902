"""musicnn's front-end: a 96-band mel power spectrogram (n_fft 512, hop 256 at 16 kHz, librosa's
Slaney mel filterbank, as musicnn was trained), computed with numpy alone, incrementally.

The streaming extractor emits *linear* mel power frames; they fill the daemon's feature ring. The
per-window level normalisation and musicnn's ``log10(10000 * mel + 1)`` happen on the window the
model is about to see (:func:`model_input`), because a level normalisation needs the whole window.
Everything is float32 or wider: musicnn's own extractor casts the mel to float16 before the log,
which overflows to infinity on loud music.

Frame convention (as streamer.features.mfcc): only complete frames, frame ``i`` covers samples
``[i*hop, i*hop + n_fft)``; librosa's ``center=True`` padding is not reproduced (a stream has no
future to reflect), so frame ``i`` here is librosa's centred frame ``i + 1`` (see the tests).

Normalisations (chosen by cross-validation on clean and room audio, see models/README.md):
- ``none``: musicnn's input as it is: depends on the absolute level;
- ``rms``: the window scaled so that its mean mel power is ``reference_power`` (a gain, so the
  result does not depend on the input level at all; capped at +-``max_gain_db``);
- ``band_mean``: the ``rms`` gain, then each band's log value has its window mean replaced by
  ``band_reference`` (a microphone's or loudspeaker's response is a per-band gain, an offset
  in the log: this takes it out, and the music's own average spectrum with it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from streamer.features.mfcc import as_mono_float
from streamer.features.settings import FrameSettings

NORMALISATIONS = ("none", "rms", "band_mean")


@dataclass(frozen=True)
class LogMelConfig(FrameSettings):
    """Log-mel settings; they ride inside every model file of this kind."""

    kind: ClassVar[str] = "musicnn_logmel"

    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 96
    fmin: float = 0.0
    fmax: float = 8000.0
    normalisation: str = "rms"
    reference_power: float = 1.0  # mean mel power of a window after the ``rms`` gain
    max_gain_db: float = 40.0
    band_reference: tuple[float, ...] = field(default_factory=tuple)  # n_mels values for ``band_mean``

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        if not 0 < self.hop_length <= self.n_fft:
            raise ValueError("need 0 < hop_length <= n_fft")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError("need 0 <= fmin < fmax <= Nyquist")
        if not (np.isfinite(self.reference_power) and self.reference_power > 0):
            raise ValueError("reference_power must be finite and > 0")
        if self.normalisation == "band_mean" and len(self.band_reference) != self.n_mels:
            raise ValueError(f"band_mean normalisation needs {self.n_mels} band_reference values")
        object.__setattr__(self, "band_reference", tuple(float(v) for v in self.band_reference))

    @property
    def frame_samples(self) -> int:
        return self.n_fft

    @property
    def n_features(self) -> int:
        return self.n_mels


def _hz_to_mel(f: float | np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log_region = f >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(m: float | np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), m * 200.0 / 3)


def mel_filterbank(config: LogMelConfig) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) (Slaney scale and area norm): (n_mels, bins)."""
    fft_freqs = np.linspace(0, config.sample_rate / 2, 1 + config.n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.fmax), config.n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


class LogMelExtractor:
    """Streaming mel power: :meth:`push` returns the (k, n_mels) float32 frames a chunk completed.

    State is the samples not yet consumed by a complete frame (fewer than ``n_fft``)."""

    def __init__(self, config: LogMelConfig | None = None) -> None:
        self.config = config or LogMelConfig()
        n = self.config.n_fft
        self._window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)  # periodic Hann, as librosa
        self._filterbank = mel_filterbank(self.config).T  # (bins, n_mels)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (after a gap in the audio)."""
        self._pending = np.zeros(0, dtype=np.float64)
        self.frames_emitted = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        cfg = self.config
        self._pending = np.concatenate([self._pending, as_mono_float(chunk)])
        n = cfg.n_frames(self._pending.size)
        if n == 0:
            return np.zeros((0, cfg.n_mels), dtype=np.float32)
        step = self._pending.strides[0]
        frames = np.lib.stride_tricks.as_strided(
            self._pending, (n, cfg.n_fft), (cfg.hop_length * step, step), writeable=False
        )
        power = np.abs(np.fft.rfft(frames * self._window, axis=1)) ** 2
        self._pending = self._pending[n * cfg.hop_length :].copy()
        self.frames_emitted += n
        return (power @ self._filterbank).astype(np.float32)


def mel_power(signal: np.ndarray, config: LogMelConfig | None = None) -> np.ndarray:
    """Batch mel power of a whole mono signal: one push into a fresh extractor (so streaming
    cannot drift from it)."""
    return LogMelExtractor(config).push(signal)


def model_input(power: np.ndarray, config: LogMelConfig) -> np.ndarray:
    """A window (or a batch of windows, frames on the second-last axis) of mel power -> the
    network's input: level-normalised ``log10(10000 * mel + 1)`` in float32."""
    x = np.asarray(power, dtype=np.float32)
    if config.normalisation in ("rms", "band_mean"):
        mean = x.mean(axis=(-2, -1), keepdims=True, dtype=np.float64)
        limit = 10.0 ** (config.max_gain_db / 10.0)
        gain = np.clip(config.reference_power / np.maximum(mean, 1e-30), 1.0 / limit, limit)
        x = (x * gain).astype(np.float32)
    log = np.log10(np.float32(10000.0) * x + np.float32(1.0), dtype=np.float32)
    if config.normalisation == "band_mean":
        log = log - log.mean(axis=-2, keepdims=True) + np.asarray(config.band_reference, dtype=np.float32)
    return log.astype(np.float32)
