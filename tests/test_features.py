"""The one feature pipeline: streaming equals batch, and each part equals its reference library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import python_speech_features as psf

from streamer.audio.synth import chords, drums, music, noise
from streamer.features.mfcc import (
    FeatureConfig,
    FeatureExtractor,
    extract,
    magnitude_spectra,
)

CFG = FeatureConfig()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_chunking_equals_batch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    signal = music(12.0, seed=seed)
    batch = extract(signal)
    ex = FeatureExtractor()
    parts, pos = [], 0
    while pos < signal.size:
        # 1 sample up to 5 s, log-uniformly so that tiny chunks are common
        size = int(np.exp(rng.uniform(0, np.log(5 * 16000))))
        parts.append(ex.push(signal[pos : pos + size]))
        pos += size
    streamed = np.concatenate(parts)
    assert streamed.shape == batch.shape == (CFG.n_frames(signal.size), 20)
    assert np.max(np.abs(streamed - batch)) <= 1e-5


def test_frame_count_convention() -> None:
    assert CFG.n_frames(399) == 0
    assert CFG.n_frames(400) == 1
    assert CFG.n_frames(559) == 1
    assert CFG.n_frames(560) == 2
    assert extract(np.zeros(16000) + 0.1).shape == (98, 20)
    assert CFG.frames_for(30.0) == 2998


@pytest.mark.parametrize(
    "window, lift, nfilt, numcep",
    [
        ("hamming", 22, 26, 13),
        ("hann", 22, 26, 13),
        ("rect", 22, 26, 13),
        ("hamming", 0, 26, 13),
        ("hamming", 15, 40, 20),  # the DCT and lifter tables for other shapes
    ],
)
def test_mfcc_equals_python_speech_features(window: str, lift: int, nfilt: int, numcep: int) -> None:
    cfg = FeatureConfig(window=window, ceplifter=lift, n_filters=nfilt, n_mfcc=numcep)
    signal = music(5.0)
    winfunc = {"hamming": np.hamming, "hann": np.hanning, "rect": lambda n: np.ones((n,))}[window]
    ref = psf.mfcc(
        signal,
        16000,
        winlen=0.025,
        winstep=0.01,
        numcep=numcep,
        nfilt=nfilt,
        nfft=512,
        preemph=0.97,
        ceplifter=lift,
        appendEnergy=True,
        winfunc=winfunc,
    )
    ours = extract(signal, cfg)[:, :numcep]
    # python_speech_features adds one zero-padded partial frame at the end; we emit only
    # complete frames, so the reference has exactly one frame more when the signal does not
    # end on a frame boundary.
    assert ref.shape[0] == ours.shape[0] + 1
    np.testing.assert_allclose(ours, ref[: ours.shape[0]], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "make",
    [lambda: chords(6.0), lambda: drums(6.0), lambda: noise(6.0), lambda: music(6.0)],
    ids=["chords", "drums", "noise", "music"],
)
@pytest.mark.parametrize(
    "cfg",
    [
        CFG,
        FeatureConfig(contrast_quantile=0.1),  # several bins per quantile: the sorted path
        FeatureConfig(n_fft=1024, contrast_bands=5, contrast_fmin=300.0),
    ],
    ids=["default", "q0.1", "nfft1024"],
)
def test_contrast_equals_librosa_on_same_spectra(make, cfg: FeatureConfig) -> None:
    librosa = pytest.importorskip("librosa")
    signal = make()
    spectra = magnitude_spectra(signal, cfg)
    ref = librosa.feature.spectral_contrast(
        S=spectra.T,
        sr=16000,
        n_fft=cfg.n_fft,
        fmin=cfg.contrast_fmin,
        n_bands=cfg.contrast_bands,
        quantile=cfg.contrast_quantile,
    ).T
    ours = extract(signal, cfg)[:, cfg.n_mfcc :]
    assert ours.shape == ref.shape
    # librosa's power_to_db clamps at 80 dB below the maximum over the whole recording, which a
    # stream cannot know; compare the frames where that clamp cannot bite (every bin within
    # 80 dB of the global maximum), and require that they are most of the audio.
    unclamped = spectra.min(axis=1) >= spectra.max() * 1e-8
    assert unclamped.mean() > 0.5
    # Tolerance: our output is float32, values up to ~60 dB.
    np.testing.assert_allclose(ours[unclamped], ref[unclamped], atol=1e-3)


def test_contrast_of_digital_silence_is_zero() -> None:
    out = extract(np.concatenate([np.zeros(8000), music(0.5)]))
    assert np.all(out[:40, 13:] == 0.0)  # peak == valley: no contrast, not librosa's clamp artefact


def test_empty_and_short_chunks_complete_frames_later() -> None:
    ex = FeatureExtractor()
    assert ex.push(np.zeros(0)).shape == (0, 20)
    assert ex.push(np.full(399, 0.1)).shape == (0, 20)
    assert ex.push(np.full(1, 0.1)).shape == (1, 20)
    assert ex.push(np.full(160, 0.1)).shape == (1, 20)
    assert ex.frames_emitted == 2


def test_int16_is_scaled_like_float() -> None:
    signal = music(2.0)
    as_int = np.round(signal * 32767).astype(np.int16)
    np.testing.assert_allclose(extract(as_int), extract(as_int / 32768.0), atol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_rejected(bad: float) -> None:
    signal = music(1.0)
    signal[100] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        extract(signal)


def test_multichannel_is_rejected_clearly() -> None:
    stereo = np.stack([music(1.0), music(1.0)], axis=1)
    with pytest.raises(ValueError, match="mono"):
        extract(stereo)
    # a single column is still mono
    assert extract(stereo[:, :1]).shape == extract(stereo[:, 0]).shape


def test_other_dtypes_are_rejected() -> None:
    with pytest.raises(ValueError, match="dtype"):
        extract(np.zeros(1000, dtype=np.int32))


def test_reset_restarts_the_stream() -> None:
    signal = music(1.0)
    ex = FeatureExtractor()
    first = ex.push(signal)
    ex.reset()
    np.testing.assert_array_equal(ex.push(signal), first)


def test_config_round_trips_and_rejects_unknown() -> None:
    cfg = FeatureConfig(window="hann", contrast_quantile=0.05)
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown mfcc_contrast settings"):
        FeatureConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="window"):
        FeatureConfig(window="blackman")


def test_silence_is_finite() -> None:
    out = extract(np.zeros(16000))
    assert np.all(np.isfinite(out))


def test_the_daemon_imports_neither_scipy_nor_python_speech_features() -> None:
    """They are the tests' references, not run-time dependencies (pyproject keeps them in dev)."""
    code = (
        "import sys, streamer.cli, streamer.daemon, streamer.model.runner, streamer.features.mfcc; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'python_speech_features')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
