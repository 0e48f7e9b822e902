"""musicnn's log-mel front-end: streaming equals batch, the filterbank and spectrogram equal
librosa's (musicnn's own extractor), the level normalisations do what they claim."""

from __future__ import annotations

import numpy as np
import pytest

from streamer.audio.synth import chords, drums, music, noise
from streamer.features.logmel import LogMelConfig, LogMelExtractor, mel_filterbank, mel_power, model_input

CFG = LogMelConfig()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_chunking_equals_batch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    signal = music(12.0, seed=seed)
    batch = mel_power(signal)
    ex = LogMelExtractor()
    parts, pos = [], 0
    while pos < signal.size:
        size = int(np.exp(rng.uniform(0, np.log(5 * 16000))))  # 1 sample to 5 s, log-uniformly
        parts.append(ex.push(signal[pos : pos + size]))
        pos += size
    streamed = np.concatenate(parts)
    assert streamed.shape == batch.shape == (CFG.n_frames(signal.size), 96)
    np.testing.assert_array_equal(streamed, batch)
    # and therefore the network's input, for every normalisation
    for cfg in (
        CFG,
        LogMelConfig(normalisation="none"),
        LogMelConfig(normalisation="band_mean", band_reference=(1.0,) * 96),
    ):
        np.testing.assert_array_equal(model_input(streamed[-187:], cfg), model_input(batch[-187:], cfg))


def test_frame_count_convention() -> None:
    assert CFG.n_frames(511) == 0
    assert CFG.n_frames(512) == 1
    assert CFG.n_frames(767) == 1
    assert CFG.n_frames(768) == 2
    assert CFG.frames_for(3.0) == 186
    assert CFG.frames_for(3.008) == 187  # musicnn's 3 s patch
    assert CFG.frames_per_second == 62.5
    ex = LogMelExtractor()
    assert ex.push(np.zeros(0)).shape == (0, 96)
    assert ex.push(np.full(511, 0.1)).shape == (0, 96)
    assert ex.push(np.full(1, 0.1)).shape == (1, 96)
    assert ex.frames_emitted == 1


def test_filterbank_equals_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=96)
    np.testing.assert_allclose(mel_filterbank(CFG), ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("make", [chords, drums, noise, music], ids=["chords", "drums", "noise", "music"])
def test_mel_power_equals_librosa_melspectrogram(make) -> None:
    """musicnn's extractor: librosa.feature.melspectrogram(sr=16000, hop 256, n_fft 512, 96 mels).
    librosa centres frames (pads half a frame); ours start at sample 0, so ours[i] is its [i + 1]."""
    librosa = pytest.importorskip("librosa")
    signal = make(5.0)
    ref = librosa.feature.melspectrogram(y=signal, sr=16000, hop_length=256, n_fft=512, n_mels=96).T
    ours = mel_power(signal)
    n = ours.shape[0]
    np.testing.assert_allclose(ours, ref[1 : n + 1], rtol=1e-4, atol=1e-6 * ref.max())
    logs = model_input(ours, LogMelConfig(normalisation="none"))
    np.testing.assert_allclose(logs, np.log10(10000 * ref[1 : n + 1] + 1), atol=1e-4)


def test_rms_normalisation_removes_the_level() -> None:
    signal = music(4.0)
    quiet, loud = mel_power(0.01 * signal), mel_power(0.9 * signal)
    cfg = LogMelConfig(normalisation="rms", reference_power=0.5, max_gain_db=80.0)
    np.testing.assert_allclose(model_input(quiet[:187], cfg), model_input(loud[:187], cfg), atol=2e-4)
    # without it, musicnn's input depends on the level
    raw = LogMelConfig(normalisation="none")
    assert np.abs(model_input(quiet[:187], raw) - model_input(loud[:187], raw)).mean() > 0.5
    # the window's mean power is the reference after the gain
    power = quiet[:187] * (0.5 / quiet[:187].mean())
    np.testing.assert_allclose(model_input(quiet[:187], cfg), np.log10(10000 * power + 1), rtol=1e-5)


def test_rms_gain_is_capped_and_silence_finite() -> None:
    cfg = LogMelConfig(normalisation="rms", reference_power=1.0, max_gain_db=40.0)
    silent = model_input(np.zeros((187, 96), dtype=np.float32), cfg)
    assert np.all(silent == 0.0)
    faint = np.full((187, 96), 1e-9, dtype=np.float32)  # the gain would be +90 dB
    np.testing.assert_allclose(model_input(faint, cfg), np.log10(10000 * 1e-9 * 1e4 + 1), rtol=1e-4)


def test_loud_music_stays_finite_in_float32() -> None:
    """musicnn's extractor casts to float16 before the log: loud music became inf there."""
    loud = np.clip(10 * music(3.0), -1, 1)
    x = model_input(mel_power(loud), LogMelConfig(normalisation="none"))
    assert x.dtype == np.float32 and np.all(np.isfinite(x))
    assert mel_power(loud).max() > np.finfo(np.float16).max / 10000  # float16 * 10000 would overflow


def test_band_mean_replaces_each_band_mean() -> None:
    ref = tuple(np.linspace(0.5, 2.0, 96))
    cfg = LogMelConfig(normalisation="band_mean", band_reference=ref)
    x = model_input(mel_power(music(4.0)), cfg)
    np.testing.assert_allclose(x.mean(axis=0), ref, atol=1e-5)


def test_band_mean_removes_a_microphone_response_and_the_level() -> None:
    """A microphone's response is a gain per band; after the rms gain the log is nearly linear in
    the power where music has energy, so band_mean takes most of the response out; rms cannot."""
    power = mel_power(music(4.0))[:187]
    response = np.geomspace(4.0, 0.25, 96, dtype=np.float32)  # a 24 dB downward tilt
    coloured = 0.05 * power * response  # and 26 dB quieter
    band = LogMelConfig(normalisation="band_mean", reference_power=0.33, band_reference=tuple(np.linspace(2, 3, 96)))
    rms = LogMelConfig(normalisation="rms", reference_power=0.33)
    has_energy = power.mean(axis=0) > 1e-4
    band_err = np.abs(model_input(coloured, band) - model_input(power, band))[:, has_energy]
    rms_err = np.abs(model_input(coloured, rms) - model_input(power, rms))[:, has_energy]
    assert np.median(rms_err) > 0.3  # a tilt of +-12 dB is +-1.2 in log10
    assert np.median(band_err) < 0.05 * np.median(rms_err)  # not exact: the log's +1 floor in quiet bands


def test_config_round_trips_and_rejects_bad_settings() -> None:
    cfg = LogMelConfig(normalisation="band_mean", band_reference=tuple(range(96)))
    assert LogMelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown musicnn_logmel settings"):
        LogMelConfig.from_dict({**CFG.to_dict(), "n_mfcc": 13})
    with pytest.raises(ValueError, match="normalisation"):
        LogMelConfig(normalisation="loudness")
    with pytest.raises(ValueError, match="band_reference"):
        LogMelConfig(normalisation="band_mean")
