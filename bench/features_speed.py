"""Feature extraction speed (issue 2): seconds of audio per CPU second for batch ``extract``,
streaming pushes of 100 ms through ``FeatureExtractor``, and librosa's mfcc + spectral_contrast
with the same framing, all on the same music-like audio, interleaved."""

from __future__ import annotations

import numpy as np

from bench.common import Section, fmt, table
from streamer.audio.synth import music
from streamer.features.mfcc import FeatureConfig, FeatureExtractor, extract
from streamer.util.timing import interleaved, stats

CHUNK_SECONDS = 0.1


def librosa_features(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The same 20 columns the librosa way: two calls, each with its own STFT."""
    import librosa

    mfcc = librosa.feature.mfcc(
        y=audio,
        sr=cfg.sample_rate,
        n_mfcc=cfg.n_mfcc,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.frame_length,
        n_mels=cfg.n_filters,
        center=False,
    )
    contrast = librosa.feature.spectral_contrast(
        y=audio,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.frame_length,
        n_bands=cfg.contrast_bands,
        fmin=cfg.contrast_fmin,
        quantile=cfg.contrast_quantile,
        center=False,
    )
    return np.vstack([mfcc, contrast]).T


def stream(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    extractor = FeatureExtractor(cfg)
    step = round(CHUNK_SECONDS * cfg.sample_rate)
    return np.concatenate([extractor.push(audio[i : i + step]) for i in range(0, audio.size, step)])


def run(quick: bool = False) -> Section:
    cfg = FeatureConfig()
    seconds = 3.0 if quick else 60.0
    repeats = 2 if quick else 9
    audio = music(seconds).astype(np.float32)
    # Warm up every contender once (numba compiles librosa's kernels on first use; table caches).
    warm = {"batch": extract(audio, cfg), "stream": stream(audio, cfg), "librosa": librosa_features(audio, cfg)}
    assert warm["batch"].shape == warm["stream"].shape, "streaming and batch disagree on frames"
    contenders = {
        "batch": lambda: extract(audio, cfg),
        "stream_100ms": lambda: stream(audio, cfg),
        "librosa": lambda: librosa_features(audio, cfg),
    }
    limited = {f"{name}_1_blas_thread": fn for name, fn in contenders.items()}
    times = interleaved({**contenders, **limited}, repeats, one_blas_thread=frozenset(limited))
    speed = {name: stats([seconds / t for t in ts]) for name, ts in times.items()}
    # Ratios per round (same round = same machine conditions), then the median of those.
    ratio_batch = stats([lb / b for lb, b in zip(times["librosa"], times["batch"], strict=True)])
    ratio_stream = stats([lb / s for lb, s in zip(times["librosa"], times["stream_100ms"], strict=True)])
    ratio_1 = {
        name: stats(
            [lb / x for lb, x in zip(times["librosa_1_blas_thread"], times[f"{name}_1_blas_thread"], strict=True)]
        )
        for name in ("batch", "stream_100ms")
    }
    data = {
        "audio_seconds": seconds,
        "repeats": repeats,
        "frames": int(warm["batch"].shape[0]),
        "audio_seconds_per_cpu_second": speed,
        "cpu_seconds": {name: stats(ts) for name, ts in times.items()},
        "speedup_vs_librosa": {"batch": ratio_batch, "stream_100ms": ratio_stream},
        "speedup_vs_librosa_1_blas_thread": ratio_1,
    }
    rows = [
        [name, fmt(s["median"]), f"{fmt(s['min'])}-{fmt(s['max'])}", fmt(1000 * stats(times[name])["median"] / seconds)]
        for name, s in speed.items()
    ]
    md = (
        f"{seconds:g} s of synthetic music (chords + drums + noise, `streamer/audio/synth.py`), 16 kHz, "
        f"{data['frames']} frames of 20 features; CPU time (`time.process_time`), {repeats} interleaved "
        "rounds, librosa warmed up first (numba compilation excluded). librosa computes the same "
        "columns with `feature.mfcc` (n_mels 26) + `feature.spectral_contrast` (n_bands 6, fmin 200), "
        "same frame/hop/FFT, `center=False`.\n\n"
        + table(["contender", "audio s per CPU s (median)", "range", "CPU ms per audio s"], rows)
        + "\n\n"
        f"Speed-up over librosa (median of per-round ratios): batch **{fmt(ratio_batch['median'])}x**, "
        f"streaming 100 ms pushes **{fmt(ratio_stream['median'])}x**. With one BLAS thread for all: batch "
        f"{fmt(ratio_1['batch']['median'])}x, streaming {fmt(ratio_1['stream_100ms']['median'])}x. "
        "(`_1_blas_thread` rows: the same call inside `threadpoolctl.threadpool_limits(1, 'blas')`; numpy's "
        "OpenBLAS otherwise runs the filterbank matrix product on 2 threads whose spin-waiting shows as "
        "CPU time on a busy machine.)"
    )
    return Section("features", "Feature extraction speed (issue 2)", data, md)
