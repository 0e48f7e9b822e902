"""The musicnn family's cost per hop (issue 18): its log-mel front-end (``LogMelExtractor.push`` of
one hop of audio) and one model run (``ModelRunner.predict``: level normalisation, log, quantise,
invoke) on one 3 s patch, for each musicnn-family file in models/ and the float file it was
exported with (runs/models/musicnn-*/model-float.tflite) where that is present. CPU time, one
interpreter thread and one BLAS thread, as the daemon runs.

Per 1 s hop the daemon runs the model once (one patch per hop); with fewer patches per second
(``--hop 3``: one per 3 s) the cost per second of audio is a third of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.common import ROOT, Section, Skipped, fmt, interleaved, stats, table, target
from bench.pi_estimate import SLOWDOWN
from streamer.audio.synth import music
from streamer.model.metadata import read_metadata

SHIPPED = ROOT / "models"
RUNS = ROOT / "runs" / "models"
HOP_S = 1.0
BUDGET_MS = 10.0
SIZE_LIMIT_MB = 4.0


def family_files(models: Path = SHIPPED, runs: Path = RUNS) -> list[Path]:
    """Shipped musicnn-family files, then the float files they were exported beside."""
    shipped = [p for p in sorted(models.glob("*.tflite")) if read_metadata(p).features == "musicnn_logmel"]
    floats = sorted(runs.glob("musicnn-*/model-float.tflite")) if runs.is_dir() else []
    return shipped + floats


def run(quick: bool = False, models: Path = SHIPPED, runs: Path = RUNS) -> Section:
    from threadpoolctl import threadpool_limits

    from streamer.features.frontend import expect
    from streamer.features.logmel import LogMelConfig, LogMelExtractor
    from streamer.model.runner import ModelRunner

    files = family_files(models, runs)
    if not files:
        raise Skipped("no musicnn-family model in models/ (`make models` ships them)")
    calls, repeats = (2, 2) if quick else (10, 7)
    rows, data, targets = [], [], []
    audio = music(6.0, seed=11).astype(np.float32)
    for path in files:
        runner = ModelRunner(path, threads=1)
        cfg = expect(runner.metadata.feature_config, LogMelConfig)
        extractor = LogMelExtractor(cfg)
        step = round(HOP_S * cfg.sample_rate)
        window = extractor.push(audio)[-runner.window_frames :]
        hop = audio[:step]

        def front(ex=extractor, h=hop) -> None:
            for _ in range(calls):
                ex.push(h)

        def infer(r=runner, w=window) -> None:
            for _ in range(calls):
                r.predict(w)

        with threadpool_limits(limits=1, user_api="blas"):
            times = interleaved({"front": front, "inference": infer}, repeats)
        front_ms = stats([1000 * t / calls for t in times["front"]])
        infer_ms = stats([1000 * t / calls for t in times["inference"]])
        total = front_ms["median"] + infer_ms["median"]
        size_mb = path.stat().st_size / 1e6
        kind = "int8" if runner.metadata.quantized else "float"
        name = f"{path.parent.name}/{path.name}" if path.parent != models else path.name
        rows.append(
            [name, kind, fmt(size_mb), fmt(front_ms["median"]), fmt(infer_ms["median"]), fmt(total), fmt(total / 3)]
            + [fmt(total * k) for k in SLOWDOWN.values()]
        )
        data.append(
            {
                "model": name,
                "kind": kind,
                "size_mb": size_mb,
                "front_end_ms_per_hop": front_ms,
                "inference_ms_per_patch": infer_ms,
                "ms_per_1s_hop": total,
                "pi_estimate_ms_per_1s_hop": {n: total * k for n, k in SLOWDOWN.items()},
            }
        )
        if path.parent == models:
            targets.append(target(f"{path.name}: front-end + inference per 1 s hop", total, BUDGET_MS, "ms"))
            targets.append(target(f"{path.name}: file size", size_mb, SIZE_LIMIT_MB, "MB"))
    md = (
        "CPU ms, one thread, medians over interleaved rounds. A patch is 187 log-mel frames (3.008 s); the "
        "front-end is one hop's `LogMelExtractor.push`, inference one `ModelRunner.predict` (level "
        "normalisation, log, quantise, invoke). The Pi columns are the estimate of `bench/pi_estimate.py` "
        "(this machine's figure times an assumed per-core slowdown), not measurements.\n\n"
        + table(
            [
                "model",
                "kind",
                "MB",
                "front-end ms/hop",
                "inference ms/patch",
                "ms per 1 s hop (1 patch/s)",
                "ms per s at 1 patch/3 s",
            ]
            + [f"{n} est. ms per 1 s hop" for n in SLOWDOWN],
            rows,
        )
    )
    return Section("musicnn", "musicnn family: front-end + inference per hop (issue 18)", {"models": data}, md, targets)
