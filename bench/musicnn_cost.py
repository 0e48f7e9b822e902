"""The musicnn family's cost per hop (issue 18): its log-mel front-end (``LogMelExtractor.push`` of
one hop of audio) and one model run (``ModelRunner.predict``: level normalisation, log, quantise,
invoke) on one 3 s patch, for each musicnn-family file in models/ and the float file it was
exported with (runs/models/musicnn-*/model-float.tflite) where that is present. CPU time, one
interpreter thread and one BLAS thread, as the daemon runs.

Per 1 s hop the daemon runs the model once (one patch per hop); with fewer patches per second
(``--hop 3``: one per 3 s) the cost per second of audio is a third of it."""

from __future__ import annotations

from pathlib import Path

from bench.common import ROOT, Section, Skipped, fmt, table, target
from streamer.model.metadata import read_metadata
from trainer.common.cost import PI_SLOWDOWN

SHIPPED = ROOT / "models"
RUNS = ROOT / "runs" / "models"
BUDGET_MS = 10.0
SIZE_LIMIT_MB = 4.0


def family_files(models: Path = SHIPPED, runs: Path = RUNS) -> list[Path]:
    """Shipped musicnn-family files, then the float files they were exported beside."""
    shipped = [p for p in sorted(models.glob("*.tflite")) if read_metadata(p).features == "musicnn_logmel"]
    floats = sorted(runs.glob("musicnn-*/model-float.tflite")) if runs.is_dir() else []
    return shipped + floats


def run(quick: bool = False, models: Path = SHIPPED, runs: Path = RUNS) -> Section:
    from trainer.common.cost import per_hop

    files = family_files(models, runs)
    if not files:
        raise Skipped("no musicnn-family model in models/ (`make models` ships them)")
    rows, data, targets = [], [], []
    for path in files:
        cost = per_hop(path, quick)
        total, size_mb, kind = cost["ms_per_1s_hop"], cost["size_mb"], cost["kind"]
        name = f"{path.parent.name}/{path.name}" if path.parent != models else path.name
        front, infer = cost["front_end_ms_per_hop"]["median"], cost["inference_ms_per_patch"]["median"]
        rows.append(
            [name, kind, fmt(size_mb), fmt(front), fmt(infer), fmt(total), fmt(total / 3)]
            + [fmt(total * k) for k in PI_SLOWDOWN.values()]
        )
        data.append({"model": name, **cost})
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
            + [f"{n} est. ms per 1 s hop" for n in PI_SLOWDOWN],
            rows,
        )
    )
    return Section("musicnn", "musicnn family: front-end + inference per hop (issue 18)", {"models": data}, md, targets)
