"""`moodstream-train DATA_DIR --out OUT`: train, export (int8 + float TFLite) and report.

DATA_DIR has one folder per label and optionally a metadata.csv (file, label, group column such
as artist). OUT collects the models, curves, report.md and metrics.json; a finished model there
is not retrained when the same command runs again."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

# What the `train` extra brings (pyproject.toml); the daemon's own dependencies are always there.
TRAIN_EXTRA = frozenset({"tensorflow", "keras", "librosa", "sklearn", "matplotlib", "tqdm", "flatbuffers"})


class MissingExtra(Exception):
    """A module of the `train` extra is not installed; the message says how to get it."""


def _trainer() -> ModuleType:
    """trainer.families.paper.run, with every module of the `train` extra that training imports."""
    try:
        import trainer.common.export
        import trainer.families.paper.baseline
        import trainer.families.paper.run
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in TRAIN_EXTRA:
            raise
        raise MissingExtra(
            f"training needs the 'train' extra ({top} is not installed): "
            "pip install 'moodstream[train]', or in the checkout `make .venv/.all`"
        ) from None
    return trainer.families.paper.run


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "moodstream" / "features"


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    """The flags, their defaults read from RunConfig (declared once there); needs the train extra."""
    from trainer.families.paper.prepare import PROTOCOLS
    from trainer.families.paper.run import RunConfig

    d = RunConfig(data_dir="", out="")
    p = argparse.ArgumentParser(prog="moodstream-train", description=__doc__.splitlines()[0])
    p.add_argument("data_dir", type=Path, help="folder with one sub-folder per label")
    p.add_argument("--out", type=Path, required=True, help="run folder (models, report, metrics)")
    p.add_argument("--labels", type=_csv, help="comma-separated subset of label folders, e.g. angry,happy,sad")
    p.add_argument("--window", type=float, default=d.window_seconds, help="window length in s (default %(default)s)")
    p.add_argument(
        "--overlap", type=float, default=d.overlap, help="window overlap fraction in [0, 1) (default %(default)s)"
    )
    p.add_argument(
        "--architectures",
        type=_csv,
        default=d.architectures,
        help="comma-separated: cnn,cnn_lstm,cnn_gru (default) and linear (the baseline's model, shippable)",
    )
    p.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the logistic-regression floor")
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=d.protocol,
        help="honest: split by group first (default); paper: augment+segment, then split at random (leaky)",
    )
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no pitch shift / time stretch")
    p.add_argument(
        "--chain-copies",
        type=int,
        default=d.chain_copies,
        help="random capture-chain copies of each training clip (room, mic, noise, level, codec; needs pedalboard)"
        " (default %(default)s)",
    )
    p.add_argument(
        "--chain-only", dest="clean_copies", action="store_false", help="train on the chained copies without the clean"
    )
    p.add_argument(
        "--centre-energy", action="store_true", help="level-free input: subtract each window's mean log energy"
    )
    p.add_argument(
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        help="L2 penalty on the output layer (default %(default)s)",
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help="at most this many (default %(default)s)")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="(default %(default)s)")
    p.add_argument("--learning-rate", type=float, default=d.learning_rate, help="(default %(default)s)")
    p.add_argument(
        "--time-budget", type=float, help="minutes per model; training stops after the epoch that exceeds it"
    )
    p.add_argument("--seed", type=int, default=d.seed, help="(default %(default)s)")
    p.add_argument("--group-column", help="metadata.csv column that groups clips (default: artist when present)")
    p.add_argument("--name", default=d.name, help="model name prefix (default %(default)s)")
    p.add_argument("--cache", type=Path, default=default_cache(), help="feature cache folder")
    p.add_argument("--workers", type=int, help="feature extraction processes (default: up to 2)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        training = _trainer()
    except MissingExtra as exc:
        print(f"moodstream-train: {exc}", file=sys.stderr)
        return 2
    from streamer.audio.decode import AudioError
    from trainer.common.dataset import DatasetError
    from trainer.families.paper.architectures import ARCHITECTURES

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    unknown = [a for a in args.architectures if a not in ARCHITECTURES]
    if unknown:
        print(f"moodstream-train: unknown architecture(s) {unknown}; choose from {ARCHITECTURES}", file=sys.stderr)
        return 2
    config = training.RunConfig(
        data_dir=str(args.data_dir),
        out=str(args.out),
        labels=args.labels,
        window_seconds=args.window,
        overlap=args.overlap,
        architectures=tuple(args.architectures),
        baseline=args.baseline,
        protocol=args.protocol,
        augment=args.augment,
        chain_copies=args.chain_copies,
        clean_copies=args.clean_copies,
        centre_energy=args.centre_energy,
        weight_decay=args.weight_decay,
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        time_budget_s=args.time_budget * 60 if args.time_budget else None,
        seed=args.seed,
        group_column=args.group_column,
        name=args.name,
    )
    try:
        results = training.run(config, args.cache, args.workers)
    except (DatasetError, training.RunError, AudioError, ValueError) as exc:
        print(f"moodstream-train: {exc}", file=sys.stderr)
        return 1
    leaky = " (paper protocol: LEAKY, the test part shares songs with training)" if config.protocol == "paper" else ""
    for name, result in results.items():
        kind = "int8" if "int8" in result["test"] else "float"
        m = result["test"][kind]["clip"]
        print(f"{name:10s} {kind:5s} test clip-level accuracy {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f}{leaky}")
    print(f"report: {args.out / 'report.md'}")
    return 0
