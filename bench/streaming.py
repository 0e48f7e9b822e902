"""Streaming cost (issue 7.1): CPU seconds per second of audio for features + inference + smoothing
(``streamer.core.pipeline.Pipeline`` fed blocks as the daemon's source delivers them), per model,
int8 and float, hop 1 s and 0.5 s; against the naive way: at every hop, recompute the features of
the whole window from the last samples (``streamer.features.mfcc.extract``, and librosa) and run the model.
All contenders of one (model, hop) run interleaved on the same audio."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from bench.common import Section, fmt, table, target
from bench.features_speed import librosa_features
from bench.models import BenchModel, headline_model, is_default, models_under_test
from streamer.audio.synth import music
from streamer.config import SourceSettings, from_dict
from streamer.core.pipeline import Pipeline
from streamer.core.ring import sample_ring
from streamer.features.frontend import expect
from streamer.features.mfcc import FeatureConfig, FeatureExtractor, extract
from streamer.model.runner import ModelRunner
from streamer.util.timing import interleaved, stats

BLOCK_SECONDS = SourceSettings().block_seconds  # the daemon's default (hops 1 s and 0.5 s split evenly)
HOPS = (1.0, 0.5)


def _blocks(audio: np.ndarray, rate: int) -> list[np.ndarray]:
    step = round(BLOCK_SECONDS * rate)
    return [audio[i : i + step] for i in range(0, audio.size, step)]


class Naive:
    """Keeps the last window of samples; at every hop recomputes the window's features.

    ``extra`` samples are added to the window for librosa, whose frames span n_fft samples."""

    def __init__(self, runner: ModelRunner, hop_seconds: float, features, extra: int = 0) -> None:
        cfg = expect(runner.metadata.feature_config, FeatureConfig)
        self.runner, self.features = runner, features
        self.window_samples = cfg.frame_length + (runner.window_frames - 1) * cfg.hop_length + extra
        self.ring = sample_ring(cfg.sample_rate, seconds=self.window_samples / cfg.sample_rate + 1)
        self.hop = round(hop_seconds * cfg.sample_rate)
        self.fill = 0
        self.outputs = 0

    def process(self, block: np.ndarray) -> None:
        while block.size:
            take = min(block.size, self.hop - self.fill)
            self.ring.push(block[:take])
            self.fill += take
            block = block[take:]
            if self.fill == self.hop:
                self.fill = 0
                if len(self.ring) >= self.window_samples:
                    window = self.features(self.ring.latest(self.window_samples))[-self.runner.window_frames :]
                    self.runner.predict(window)
                    self.outputs += 1


def measure(model: BenchModel, hop: float, seconds: float, repeats: int) -> dict:
    runner = ModelRunner(model.path)
    cfg = expect(runner.metadata.feature_config, FeatureConfig)
    settings = from_dict({"model": {"hop_seconds": hop, "path": str(model.path)}}).validate()
    pipeline = Pipeline(runner, settings)
    naive = Naive(runner, hop, lambda s: extract(s, cfg))
    naive_librosa = Naive(runner, hop, lambda s: librosa_features(s, cfg), extra=cfg.n_fft - cfg.frame_length)
    warm = _blocks(music(runner.metadata.window_seconds + 1.0, seed=5).astype(np.float32), cfg.sample_rate)
    blocks = _blocks(music(seconds, seed=7).astype(np.float32), cfg.sample_rate)
    states: list[str] = []
    for b in warm:  # fill every window, compile librosa's numba kernels, touch every code path
        states += [e.state for e in pipeline.process(b)]
        naive.process(b)
        naive_librosa.process(b)
    emitted: list = []

    def run_pipeline() -> None:
        for b in blocks:
            emitted.extend(pipeline.process(b))

    def run_naive(which: Naive):
        def go() -> None:
            for b in blocks:
                which.process(b)

        return go

    def run_features() -> None:  # the pipeline's own feature work: one push per hop
        for h in hops:
            extractor.push(h)

    def run_inference() -> None:  # the model's run, once per hop as the pipeline calls it
        for _ in hops:
            runner.predict(window)

    extractor = FeatureExtractor(cfg)
    window = pipeline.features.latest(runner.window_frames)
    step = round(hop * cfg.sample_rate)
    audio = np.concatenate(blocks)
    hops = [audio[i : i + step] for i in range(0, audio.size, step)]
    contenders = {
        "pipeline": run_pipeline,
        "features_per_hop": run_features,
        "inference_per_hop": run_inference,
        "naive_features": run_naive(naive),
        "naive_librosa": run_naive(naive_librosa),
    }
    # One BLAS thread for all, as the `moodstream` command runs (streamer/util/tuning.py); set once,
    # outside the timed calls, so that setting it is no contender's cost.
    with threadpool_limits(limits=1, user_api="blas"):
        times = interleaved(contenders, repeats)
    hops_per_run = round(seconds / hop)
    if len(emitted) != repeats * hops_per_run or not emitted[-1].raw:  # the model ran (a label or uncertain)
        raise RuntimeError(
            f"pipeline emitted {len(emitted)} events (last state "
            f"{emitted[-1].state if emitted else None}), expected {repeats * hops_per_run} emotions"
        )
    per_audio = {k: stats([t / seconds for t in v]) for k, v in times.items()}
    return {
        "model": model.path.name,
        "architecture": model.metadata.architecture,
        "kind": model.kind,
        "shipped": model.shipped,
        "window_seconds": runner.metadata.window_seconds,
        "hop_seconds": hop,
        "ratio_ceiling": runner.metadata.window_seconds / hop,
        "backend": runner.backend,
        "audio_seconds": seconds,
        "repeats": repeats,
        "cpu_seconds_per_audio_second": per_audio,
        "naive_over_pipeline": stats([n / p for n, p in zip(times["naive_features"], times["pipeline"], strict=True)]),
        "naive_librosa_over_pipeline": stats(
            [n / p for n, p in zip(times["naive_librosa"], times["pipeline"], strict=True)]
        ),
        # What a pipeline with no work of its own beyond its features and the model would reach.
        "naive_over_features_and_inference": stats(
            [
                n / (f + i)
                for n, f, i in zip(
                    times["naive_features"], times["features_per_hop"], times["inference_per_hop"], strict=True
                )
            ]
        ),
    }


def run(quick: bool = False) -> Section:
    every = models_under_test()
    main = headline_model(every)
    main_is_default = is_default(main.path)
    # Every shipped model, int8 and float: the other kind of its architecture beside it (the other
    # architectures' costs differ only by the inference time per window, in the table above).
    shipped = sorted((m for m in every if m.shipped), key=lambda m: m != main) or [main]
    # each model once, even when two shipped models share an architecture (both linear)
    models = (
        [main]
        if quick
        else list(
            {m.path: m for s in shipped for m in every if m.metadata.architecture == s.metadata.architecture}.values()
        )
    )
    seconds, repeats = (2.0, 2) if quick else (20.0, 7)
    rows_data = [measure(m, hop, seconds, repeats) for m in models for hop in HOPS]
    headline = next(r for r in rows_data if r["model"] == main.path.name and r["hop_seconds"] == 1.0)
    rows = [
        [
            r["model"],
            "shipped" if r["shipped"] else "benchmark's",
            r["architecture"],
            r["kind"],
            f"{r['hop_seconds']:g}",
            fmt(100 * r["cpu_seconds_per_audio_second"]["pipeline"]["median"]),
            fmt(100 * r["cpu_seconds_per_audio_second"]["features_per_hop"]["median"]),
            fmt(100 * r["cpu_seconds_per_audio_second"]["inference_per_hop"]["median"]),
            fmt(100 * r["cpu_seconds_per_audio_second"]["naive_features"]["median"]),
            fmt(100 * r["cpu_seconds_per_audio_second"]["naive_librosa"]["median"]),
            f"**{fmt(r['naive_over_pipeline']['median'])}**",
            fmt(r["naive_librosa_over_pipeline"]["median"]),
            fmt(r["naive_over_features_and_inference"]["median"]),
            f"{fmt(r['ratio_ceiling'])} ({fmt(100 * r['naive_over_pipeline']['median'] / r['ratio_ceiling'], 2)}%)",
        ]
        for r in rows_data
    ]
    md = (
        "Models: every shipped one and the other kind (int8/float) of its architecture; "
        "where that is not shipped, the twin trained and exported by the trainer benchmark on synthetic "
        f"data (`cache/bench/models/`, same window). {seconds:g} s of synthetic music per run in "
        f"{BLOCK_SECONDS * 1000:g} ms blocks, "
        f"after a warm-up that fills the window; {repeats} interleaved rounds, process CPU time; medians; "
        "every contender with one BLAS thread, as `moodstream` runs (`streamer/util/tuning.py`). "
        "The pipeline is `streamer.core.pipeline.Pipeline` (incremental features, rings, level gate, model, "
        'smoothing, the event); "its features" is `FeatureExtractor.push` alone, once per hop as the '
        'pipeline calls it, and "its model" `ModelRunner.predict` alone, once per hop. The naive '
        "contenders keep the last window of samples and at every hop "
        "recompute all its features (`streamer.features.mfcc.extract`, or librosa `mfcc` + `spectral_contrast`) "
        "and run the same `ModelRunner` (no level gate or smoothing: the naive side is flattered). "
        "Interpreter: ai-edge-litert, 1 thread.\n\n"
        "**The ceiling.** Per hop the pipeline computes a hop of frames and runs the model once; the naive "
        "way computes a window of frames and runs the model once. So naive/pipeline is below "
        f"window / hop ({fmt(headline['window_seconds'])} s / 1 s = {fmt(headline['ratio_ceiling'])}x) "
        "whatever the code does: the model's run, the same on both sides, "
        'and the pipeline\'s own per-hop work only lower it. "naive/(features+model)" is the ratio '
        "that a pipeline doing nothing but its features and the model's run would reach, measured in "
        "the same rounds; the last column gives the ceiling and how much of it was reached.\n\n"
        + table(
            [
                "model",
                "origin",
                "arch",
                "kind",
                "hop s",
                "pipeline % of a core",
                "its features %",
                "its model %",
                "naive % (ours)",
                "naive % (librosa)",
                "naive/pipeline",
                "librosa naive/pipeline",
                "naive/(features+model)",
                "ceiling (reached)",
            ],
            rows,
        )
        + f"\n\nHeadline ({main.label}{', the daemon default' if main_is_default else ''}, hop 1 s): "
        f"**{fmt(100 * headline['cpu_seconds_per_audio_second']['pipeline']['median'])}% of one core**, "
        f"the naive recompute costs **{fmt(headline['naive_over_pipeline']['median'])}x** as much "
        f"(librosa naive {fmt(headline['naive_librosa_over_pipeline']['median'])}x), against a ceiling "
        f"of {fmt(headline['ratio_ceiling'])}x; with no per-hop work besides its features and the model "
        f"it would be {fmt(headline['naive_over_features_and_inference']['median'])}x."
    )
    targets = []
    for r in rows_data:  # the shipped models' rows, the headline's model first
        if not r["shipped"]:
            continue
        default = " (the default)" if r["model"] == main.path.name and main_is_default else ""
        if r["hop_seconds"] == 1.0:
            targets.append(
                target(
                    f"streaming CPU, {r['model']}{default}, hop 1 s",
                    100 * r["cpu_seconds_per_audio_second"]["pipeline"]["median"],
                    1.0,
                    "% of one core",
                )
            )
        targets.append(
            target(
                f"CPU saved vs naive recompute, {r['model']}, hop {r['hop_seconds']:g} s "
                f"(ceiling {fmt(r['ratio_ceiling'])}x)",
                r["naive_over_pipeline"]["median"],
                10.0,
                "x",
                higher_is_better=True,
            )
        )
    return Section("streaming", "Streaming cost (issue 7.1)", {"runs": rows_data}, md, targets)
