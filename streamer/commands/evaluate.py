"""`moodstream evaluate DATA_DIR [--model FILE] [--chain NAME] --json OUT.json`: score a model on
a labelled folder the daemon's way (streamer.evaluation.evaluate), print the summary, write the JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from streamer import config as config_mod
from streamer.audio.chain import CHAINS, ChainError, check_available, check_name
from streamer.config import ConfigError
from streamer.evaluation.evaluate import evaluate
from streamer.evaluation.labelled import MetadataError
from streamer.evaluation.metrics import describe_intervals
from streamer.model import shipped
from streamer.model.metadata import ModelFileError
from streamer.model.runner import ModelRunner
from streamer.util.atomic import write_atomic


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("data_dir", type=Path, help="folder with one sub-folder per label (any audio format or rate)")
    a("--json", type=Path, help="write the metrics here as JSON")
    a("--config", type=Path, help=f"TOML settings (default: {config_mod.SYSTEM_CONFIG} if it exists)")
    config_mod.add_flags(parser, ("model.path", "model.hop_seconds", "gate.silence_dbfs", "source.channel"))
    # evaluate's own options, not daemon settings (no config key): the capture chain to simulate
    chains = parser.add_argument_group("capture chain (needs the train extra)")
    chains.add_argument(
        "--chain",
        metavar="NAME",
        help="pass every clip through this simulated capture chain first: " + ", ".join(CHAINS),
    )
    chains.add_argument(
        "--chain-seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the chain's random draws, each clip its own draw (default %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    try:
        if args.json:
            _check_writable(Path(args.json))
        if args.chain is not None:
            check_name(args.chain)
            check_available()
        settings = config_mod.load(args.config, config_mod.overrides_from_args(args))
        runner = ModelRunner(shipped.resolve(settings.model.path))
        result = evaluate(args.data_dir, runner, settings, args.chain, args.chain_seed)
    except (ConfigError, ModelFileError, MetadataError, FileNotFoundError, ChainError) as exc:
        print(f"moodstream evaluate: {exc}", file=sys.stderr)
        return 2
    print(_summary(result))  # first: a failed write below must not lose what was measured
    if args.json:
        try:
            write_atomic(args.json, json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            print(f"moodstream evaluate: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0 if result["n_clips"] else 1


def _check_writable(path: Path) -> None:
    """Refuse a --json path that cannot be written before spending minutes on the evaluation."""
    folder = path.parent
    if path.is_dir() or not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"--json {path}: cannot write there (need a file in a writable folder)")


def _chain_note(r: dict[str, Any]) -> str:
    chain = r["chain"]
    return f" through chain {chain['name']} (seed {chain['seed']})" if chain["seed"] is not None else ""


def _summary(r: dict[str, Any]) -> str:
    lines = [
        f"{r['model']['name']} on {r['data_dir']}{_chain_note(r)}: {r['n_clips']} clips, accuracy {r['accuracy']:.3f}, "
        f"balanced accuracy {r['balanced_accuracy']:.3f}, macro-F1 {r['macro_f1']:.3f}",
        f"  {describe_intervals(r['intervals'])}",
    ]
    if groups := r["group_intervals"]:
        unit = f"{groups['units']} artist groups of metadata.csv"
        lines.append(f"  {describe_intervals(groups, unit)}")
    lines += [
        f"  {label:10s} P {c['precision']:.3f}  R {c['recall']:.3f}  F1 {c['f1']:.3f}  n {c['support']}"
        for label, c in r["per_class"].items()
    ]
    if r["skipped_labels"]:
        lines.append(
            "  labels unknown to the model, skipped: "
            + ", ".join(f"{k} ({n} files)" for k, n in r["skipped_labels"].items())
        )
    lines += [f"  skipped {s['file']}: {s['reason']}" for s in r["skipped_files"]]
    return "\n".join(lines)
