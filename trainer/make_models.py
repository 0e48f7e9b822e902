"""`make models`: reproduce the shipped models and their model card from the labelled data.

Runs the configuration recorded here (honest protocol, 3 and 4 classes, every architecture and
the baseline, plus the paper's leaky protocol for comparison), picks each class count's best
int8 model by its VALIDATION clip-level macro-F1, copies it to models/, scores it the daemon's way
with `moodstream evaluate` on the test part, and writes models/README.md with the figures.
Each run folder is resumable: rerunning skips what is finished."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from streamer.atomic import write_atomic
from trainer.card import model_card
from trainer.run import RunConfig, run

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "4q"

# The configuration of the shipped models (window chosen by measurement: see models/README.md).
WINDOW_S = 10.0
OVERLAP = 0.5
PATIENCE = 12
TIME_BUDGET_MIN = 4.5  # per model: the seven models train in about an hour on 2 shared cores
RUNS = {
    "3class": dict(labels=("angry", "happy", "sad"), protocol="honest", architectures=("cnn", "cnn_lstm", "cnn_gru")),
    "4class": dict(labels=("angry", "happy", "sad", "calm"), protocol="honest",
                   architectures=("cnn", "cnn_lstm", "cnn_gru")),
    "3class-paper": dict(labels=("angry", "happy", "sad"), protocol="paper", architectures=("cnn_gru",)),
}


def best_architecture(results: dict[str, dict[str, Any]]) -> str:
    """Highest validation clip-level macro-F1 of the int8 file (the test part stays untouched)."""
    deep = {k: v for k, v in results.items() if "int8" in v.get("val", {})}
    return max(deep, key=lambda k: (deep[k]["val"]["int8"]["clip"]["macro_f1"], deep[k]["val"]["int8"]["window"]["macro_f1"]))


def test_folder(data: Path, split_json: Path, dest: Path) -> Path:
    """A labelled folder of symlinks to exactly the test part's clips (for `moodstream evaluate`)."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in json.loads(split_json.read_text())["test"]:
        link = dest / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((data / rel).resolve())
    return dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.make_models", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(os.environ.get("MOODSTREAM_DATA", DEFAULT_DATA)))
    p.add_argument("--runs", type=Path, default=REPO / "runs" / "models")
    p.add_argument("--cache", type=Path, default=REPO / "runs" / "cache")
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(RUNS))
    p.add_argument("--models", type=Path, default=MODELS, help="where the shipped files and the card go")
    p.add_argument("--time-budget", type=float, default=TIME_BUDGET_MIN, help="minutes per model")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.data.is_dir():
        print(f"make models: no data at {args.data} (set MOODSTREAM_DATA or --data)", file=sys.stderr)
        return 2
    names = args.only.split(",") if args.only else list(RUNS)
    results = {}
    for name in names:
        spec = RUNS[name]
        config = RunConfig(
            data_dir=str(args.data), out=str(args.runs / name), labels=spec["labels"], window_seconds=WINDOW_S,
            overlap=OVERLAP, architectures=spec["architectures"], protocol=spec["protocol"], patience=PATIENCE,
            time_budget_s=args.time_budget * 60, name="moodstream",
        )
        results[name] = run(config, args.cache)
    ship(args.data, args.runs, args.models)
    return 0


def ship(data: Path, runs: Path, models: Path = MODELS) -> None:
    """Copy the best honest model of each class count to models/, evaluate it, write the card."""
    from streamer import cli as moodstream

    shipped = {}
    for name in ("3class", "4class"):
        metrics_file = runs / name / "metrics.json"
        if not metrics_file.is_file():
            continue
        metrics = json.loads(metrics_file.read_text())
        arch = best_architecture(metrics["results"])
        target = models / f"moodstream-{name}.tflite"
        write_atomic(target, (runs / name / arch / "model-int8.tflite").read_bytes())
        folder = test_folder(data, runs / name / "split.json", runs / name / "test-data")
        evaluation = runs / name / "evaluate-test.json"
        moodstream.main(["evaluate", str(folder), "--model", str(target), "--json", str(evaluation)])
        shipped[name] = {"architecture": arch, "file": target.name, "size": target.stat().st_size,
                         "evaluate": json.loads(evaluation.read_text())}
        write_atomic(models / f"metrics-{name}.json", json.dumps(_small(metrics), indent=2) + "\n")
        write_atomic(models / f"report-{name}.md", (runs / name / "report.md").read_text())
    paper = runs / "3class-paper" / "metrics.json"
    paper_metrics = json.loads(paper.read_text()) if paper.is_file() else None
    if paper_metrics:
        write_atomic(models / "metrics-3class-paper.json", json.dumps(_small(paper_metrics), indent=2) + "\n")
    write_atomic(models / "README.md", model_card(runs, shipped, paper_metrics))


def _small(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics without the per-epoch histories (the card and report keep what matters)."""
    return {
        "run": metrics["run"],
        "results": {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in metrics["results"].items()},
    }


if __name__ == "__main__":
    sys.exit(main())
