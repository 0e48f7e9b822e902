"""`make models`: reproduce the shipped models, their cards and models/index.json from the labelled
data, family by family (trainer.families.registry). Each family trains its runs (``--only``
names some), then ships what its runs hold: the files, their figures through the daemon's own
path on the test part, and its card. Everything is resumable: rerunning skips what is finished."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from streamer.util.atomic import write_atomic
from trainer.common.paths import DEFAULT_DATA, MODELS, RUN_CACHE, RUNS
from trainer.families.family import Family, Job
from trainer.families.registry import DEFAULT_MODEL, FAMILIES

# per model: all of `make models` (13 networks, features included) took 50 min on 2 shared cores
TIME_BUDGET_MIN = 4.5


def main(argv: list[str] | None = None, families: tuple[Family, ...] = FAMILIES, default: str = DEFAULT_MODEL) -> int:
    runs = [run for f in families for run in f.runs]
    p = argparse.ArgumentParser(prog="python -m trainer make-models", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled folder (default: $MOODSTREAM_DATA)")
    p.add_argument("--runs", type=Path, default=RUNS)
    p.add_argument("--cache", type=Path, default=RUN_CACHE)
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(runs))
    p.add_argument("--ship-only", action="store_true", help="train nothing; ship what the runs hold")
    p.add_argument("--models", type=Path, default=MODELS, help="where the shipped files and the cards go")
    p.add_argument("--time-budget", type=float, default=TIME_BUDGET_MIN, help="minutes per model")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.data.is_dir():
        print(f"make models: no data at {args.data} (set MOODSTREAM_DATA or --data)", file=sys.stderr)
        return 2
    names = [] if args.ship_only else args.only.split(",") if args.only else runs
    if unknown := [n for n in names if n not in runs]:
        print(f"make models: unknown --only name(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    job = Job(args.data, args.runs, args.cache, args.models, args.time_budget)
    for family in families:
        trained = [n for n in names if n in family.runs]
        for name in trained:
            family.train(name, job)
        if args.ship_only or trained:  # else it would rewrite the card from nothing new
            family.ship(job)
    write_index(args.models, families, default)
    return 0


def write_index(models: Path, families: tuple[Family, ...], default: str = DEFAULT_MODEL) -> None:
    """models/index.json: every shipped file by short name with its family and card, and the
    default model; `moodstream` lists, resolves and describes the shipped models from it."""
    index = {
        "default": default,
        "models": {
            short: {"family": f.name, "card": f.card}
            for f in families
            for short in f.shipped
            if (models / f"moodstream-{short}.tflite").is_file()
        },
    }
    if default not in index["models"]:
        raise RuntimeError(f"make models: the default model {default!r} is not in {models}")
    write_atomic(models / "index.json", json.dumps(index, indent=2) + "\n")
