"""The one feature pipeline: MFCC (python_speech_features' definition) + spectral contrast (librosa's).

Both are computed here with numpy alone, from one FFT per frame; the tests hold the MFCC to
python_speech_features 0.6 itself and the contrast to librosa. Neither library, nor scipy, is
imported at run time: on a Pi that is a lighter install and about half the daemon's start-up.

The trainer calls :func:`extract` on whole clips; the daemon pushes audio chunks into a
:class:`FeatureExtractor` as they arrive. ``extract`` *is* a single push into a fresh extractor, so
the two cannot drift apart: a test proves that any chunking yields the batch frames.

Frame convention: only complete frames are emitted. Frame ``i`` covers samples
``[i*hop, i*hop + frame_length)`` of the pre-emphasised signal, so ``n`` samples give
``max(0, 1 + (n - frame_length) // hop)`` frames. python_speech_features additionally zero-pads a
last partial frame; that frame is never produced here (a stream cannot know it is the last one).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from streamer.features.settings import FrameSettings

WINDOWS = ("hamming", "hann", "rect")


@dataclass(frozen=True)
class FeatureConfig(FrameSettings):
    """Feature settings; they ride inside every model file (see :meth:`to_dict`)."""

    kind: ClassVar[str] = "mfcc_contrast"

    sample_rate: int = 16000
    frame_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_fft: int = 512
    window: str = "hamming"  # python_speech_features' default is rect; hamming tames leakage
    preemphasis: float = 0.97
    n_mfcc: int = 13
    n_filters: int = 26
    ceplifter: int = 22
    append_energy: bool = True
    contrast_bands: int = 6
    contrast_fmin: float = 200.0
    contrast_quantile: float = 0.02

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if not 0 < self.hop_length <= self.frame_length <= self.n_fft:
            raise ValueError("need 0 < hop_length <= frame_length <= n_fft")
        if not 0 < self.n_mfcc <= self.n_filters:
            raise ValueError("need 0 < n_mfcc <= n_filters")
        if not 0 < self.contrast_fmin * 2 ** (self.contrast_bands - 1) < self.sample_rate / 2:
            raise ValueError("need 0 < contrast_fmin * 2**(contrast_bands - 1) < Nyquist")
        if not 0 < self.contrast_quantile < 1:
            raise ValueError("contrast_quantile must be in (0, 1)")

    @property
    def frame_samples(self) -> int:
        return self.frame_length

    @property
    def n_features(self) -> int:
        return self.n_mfcc + self.contrast_bands + 1


class _Tables:
    """Per-config constants, built once: window, mel filterbank, the DCT and lifter as a matrix and
    a vector (python_speech_features' ``dct`` + ``lifter``, up to rounding), contrast bands.

    Tables rather than library calls because the daemon pushes about 100 frames at a time, where
    each call's fixed cost counts more than its work."""

    def __init__(self, config: FeatureConfig) -> None:
        n = config.frame_length
        self.window = {
            "hamming": np.hamming(n),
            "hann": np.hanning(n),
            "rect": np.ones(n),
        }[config.window]
        self.filterbank = _mel_filterbank(config).T  # (n_bins, n_filters)
        self.dct = _dct_matrix(config.n_filters)[:, : config.n_mfcc]
        L = config.ceplifter
        self.lift = 1 + (L / 2.0) * np.sin(np.pi * np.arange(config.n_mfcc) / L) if L > 0 else None
        self.bands = _contrast_bands(config)
        # Bands whose quantile is a single bin (most of them at 16 kHz) need only their min and max:
        # one ufunc.reduceat over (start, stop) pairs does them all; [::2] keeps the pairs' results.
        self.single = [k for k, (_, count) in enumerate(self.bands) if count == 1]
        edges = [e for k in self.single for e in (self.bands[k][0].start, self.bands[k][0].stop)]
        if edges and edges[-1] == 1 + config.n_fft // 2:
            edges.pop()  # reduceat runs the last start to the end by itself
        self.single_edges = np.asarray(edges, dtype=np.intp)


def _mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """python_speech_features.get_filterbanks(n_filters, n_fft, rate, 0, rate / 2), line for line:
    triangles between mel-spaced FFT bins (a test holds it to the original)."""
    mel = np.linspace(0.0, 2595 * np.log10(1 + config.sample_rate / 2 / 700.0), config.n_filters + 2)
    bins = np.floor((config.n_fft + 1) * (700 * (10 ** (mel / 2595.0) - 1)) / config.sample_rate)
    fbank = np.zeros((config.n_filters, config.n_fft // 2 + 1))
    for j in range(config.n_filters):
        for i in range(int(bins[j]), int(bins[j + 1])):
            fbank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            fbank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fbank


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix: ``x @ _dct_matrix(n)`` is scipy's ``dct(x, norm="ortho")``."""
    k = np.arange(n)
    basis = np.cos(np.pi * np.outer(2 * k + 1, k) / (2 * n)) * np.sqrt(2.0 / n)
    basis[:, 0] /= np.sqrt(2.0)
    return basis


def _contrast_bands(config: FeatureConfig) -> list[tuple[slice, int]]:
    """Bins (a contiguous range) and quantile count per band, exactly as
    librosa.feature.spectral_contrast."""
    n_bins = 1 + config.n_fft // 2
    freq = np.arange(n_bins) * config.sample_rate / config.n_fft
    octa = np.zeros(config.contrast_bands + 2)
    octa[1:] = config.contrast_fmin * 2.0 ** np.arange(0, config.contrast_bands + 1)
    bands = []
    for k, (f_low, f_high) in enumerate(itertools.pairwise(octa)):
        current = (freq >= f_low) & (freq <= f_high)
        idx = np.flatnonzero(current)
        if k > 0:
            current[idx[0] - 1] = True
        if k == config.contrast_bands:
            current[idx[-1] + 1 :] = True
        bins = np.flatnonzero(current)
        count = max(int(np.rint(config.contrast_quantile * current.sum())), 1)
        if k < config.contrast_bands:
            bins = bins[:-1]
        bands.append((slice(int(bins[0]), int(bins[-1]) + 1), count))  # a slice: no fancy-index copy
    return bands


class FeatureExtractor:
    """Streaming extractor: :meth:`push` returns the frames that each chunk completed.

    State is the last raw sample (for pre-emphasis; python_speech_features leaves the very first
    sample as it is, i.e. the sample before the stream counts as 0) and the pre-emphasised samples
    not yet consumed by a complete frame, fewer than ``frame_length`` of them.
    """

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self._tables = _tables_for(self.config)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (after a gap in the audio, for example)."""
        self._pending = np.zeros(0, dtype=np.float64)
        self._last = 0.0
        self.frames_emitted = 0

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add mono samples (float in [-1, 1] or int16); return (k, n_features) float32 frames."""
        return _frame_features(self._frames(chunk), self.config, self._tables)

    def _frames(self, chunk: np.ndarray) -> np.ndarray:
        """Windowless pre-emphasised frames that this chunk completed: (k, frame_length)."""
        x = as_mono_float(chunk)
        cfg = self.config
        if x.size:
            emphasised = np.empty_like(x)
            emphasised[0] = x[0] - cfg.preemphasis * self._last
            emphasised[1:] = x[1:] - cfg.preemphasis * x[:-1]
            self._last = float(x[-1])
            self._pending = np.concatenate([self._pending, emphasised])
        n = cfg.n_frames(self._pending.size)
        if n == 0:
            return np.zeros((0, cfg.frame_length))
        step = self._pending.strides[0]  # a read-only view of the n frames; windowing copies it
        frames = np.lib.stride_tricks.as_strided(
            self._pending, (n, cfg.frame_length), (cfg.hop_length * step, step), writeable=False
        )
        self._pending = self._pending[n * cfg.hop_length :].copy()
        self.frames_emitted += n
        return frames


def extract(signal: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """Batch features of a whole mono signal: (n_frames, n_features) float32."""
    return FeatureExtractor(config).push(signal)


def centre_columns(windows: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
    """Subtract each window's own mean from ``columns`` of (..., frames, F) windows: a gain on the
    input moves only the log-energy column (the MFCCs beside it and the contrast are level-free),
    and only by a constant, which this removes. Applying it twice changes nothing."""
    if not columns:
        return windows
    out = np.array(windows, dtype=np.float32)
    cols = list(columns)
    out[..., cols] -= out[..., cols].mean(axis=-2, keepdims=True)
    return out


def magnitude_spectra(signal: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """The per-frame magnitude spectra that :func:`extract` computes on: (n_frames, 1 + n_fft/2).

    Exposed so that tests can hand the very same spectra to librosa."""
    extractor = FeatureExtractor(config)
    return _magnitude(extractor._frames(signal), extractor.config, extractor._tables)


def _magnitude(frames: np.ndarray, cfg: FeatureConfig, tables: _Tables) -> np.ndarray:
    # Windowed straight into a zero-padded buffer: the same transform as rfft(..., n=n_fft),
    # without a padded copy of the windowed frames.
    padded = np.zeros((frames.shape[0], cfg.n_fft))
    np.multiply(frames, tables.window, out=padded[:, : cfg.frame_length])
    return np.abs(np.fft.rfft(padded, axis=1))


def _frame_features(frames: np.ndarray, cfg: FeatureConfig, tables: _Tables) -> np.ndarray:
    magnitude = _magnitude(frames, cfg, tables)
    power = magnitude**2 / cfg.n_fft  # python_speech_features.sigproc.powspec
    out = np.empty((frames.shape[0], cfg.n_features), dtype=np.float32)
    out[:, : cfg.n_mfcc] = _mfcc(power, cfg, tables)
    out[:, cfg.n_mfcc :] = _contrast(magnitude, tables)
    return out


def _mfcc(power: np.ndarray, cfg: FeatureConfig, tables: _Tables) -> np.ndarray:
    """python_speech_features.mfcc from power spectra, step for step."""
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    fbank = power @ tables.filterbank
    fbank = np.where(fbank == 0, eps, fbank)
    cep = np.log(fbank) @ tables.dct
    if tables.lift is not None:
        cep *= tables.lift
    if cfg.append_energy:
        cep[:, 0] = np.log(energy)
    return cep


def _contrast(magnitude: np.ndarray, tables: _Tables) -> np.ndarray:
    """Peak over valley in dB per band (librosa's definition, per frame, without its global
    ``top_db`` clamp, which needs the whole recording and so cannot stream)."""
    shape = (magnitude.shape[0], len(tables.bands))
    valley, peak = np.empty(shape), np.empty(shape)
    if tables.single:
        valley[:, tables.single] = np.minimum.reduceat(magnitude, tables.single_edges, axis=1)[:, ::2]
        peak[:, tables.single] = np.maximum.reduceat(magnitude, tables.single_edges, axis=1)[:, ::2]
    for k, (bins, count) in enumerate(tables.bands):
        if count > 1:
            ordered = np.sort(magnitude[:, bins], axis=1)
            valley[:, k] = ordered[:, :count].mean(axis=1)
            peak[:, k] = ordered[:, -count:].mean(axis=1)
    return _db(peak) - _db(valley)


def _db(x: np.ndarray) -> np.ndarray:
    """librosa.power_to_db with ref=1, amin=1e-10 and no top_db."""
    return 10.0 * np.log10(np.maximum(1e-10, x))


_TABLES: dict[FeatureConfig, _Tables] = {}


def _tables_for(config: FeatureConfig) -> _Tables:
    tables = _TABLES.get(config)
    if tables is None:
        tables = _TABLES[config] = _Tables(config)
    return tables


def as_mono_float(chunk: np.ndarray) -> np.ndarray:
    """A pushed chunk as 1-D float64 samples (both front-ends accept the same chunks)."""
    x = np.asarray(chunk)
    if x.ndim == 2 and 1 in x.shape:
        x = x.reshape(-1)
    if x.ndim != 1:
        raise ValueError(f"features need mono audio (1-D samples), got shape {x.shape}: mix or pick a channel first")
    if x.dtype == np.int16:
        return x.astype(np.float64) / 32768.0
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"samples must be float in [-1, 1] or int16, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("audio contains NaN or infinite samples")
    return x
