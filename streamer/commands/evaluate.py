"""`moodstream evaluate DATA_DIR [--model FILE] [--chain NAME] [--stream] --json OUT.json`: score a model
on a labelled folder the daemon's way, clip by clip (streamer.evaluation.evaluate) or, with
``--stream``, as one stream played into the daemon (streamer.evaluation.stream); print the summary,
write the JSON."""

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
from streamer.evaluation.lamp import SETTLE_S
from streamer.evaluation.metrics import describe_intervals
from streamer.evaluation.stream import evaluate_stream
from streamer.model import shipped
from streamer.model.metadata import ModelFileError
from streamer.model.runner import ModelRunner
from streamer.util.atomic import write_atomic


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("data_dir", type=Path, help="folder with one sub-folder per label (any audio format or rate)")
    a("--json", type=Path, help="write the metrics here as JSON")
    config_mod.add_config_flag(parser)
    smoothing = tuple(f"smoothing.{f.name}" for section, _, f in config_mod.declared() if section == "smoothing")
    config_mod.add_flags(parser, ("model.path", "model.hop_seconds", "gate.silence_dbfs", "source.channel", *smoothing))
    live = parser.add_argument_group("as a lamp sees it (--stream)")
    live.add_argument(
        "--stream",
        action="store_true",
        help="play the clips back to back as one stream into the daemon and score every hop's shown mood",
    )
    live.add_argument("--streams", type=int, default=1, metavar="N", help="seeded shuffles to play (default 1)")
    live.add_argument(
        "--gap", type=float, default=0.0, metavar="S", help="seconds of silence between songs (default 0)"
    )
    live.add_argument(
        "--settle",
        type=float,
        default=SETTLE_S,
        metavar="S",
        help="a song's first seconds, not scored for accuracy (default %(default)g)",
    )
    live.add_argument("--hops", action="store_true", help="keep every hop in the JSON (for studies)")
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
        settings = config_mod.from_args(args)
        runner = ModelRunner(shipped.resolve(settings.model.path))
        if args.stream:
            _check_stream_args(args)
            result = evaluate_stream(
                args.data_dir,
                runner,
                settings,
                args.chain,
                args.chain_seed,
                args.streams,
                args.gap,
                args.settle,
                args.hops,
            )
        else:
            result = evaluate(args.data_dir, runner, settings, args.chain, args.chain_seed)
    except (ConfigError, ModelFileError, MetadataError, FileNotFoundError, ChainError) as exc:
        print(f"moodstream evaluate: {exc}", file=sys.stderr)
        return 2
    # first: a failed write below must not lose what was measured
    print(_stream_summary(result) if args.stream else _summary(result))
    if args.json:
        try:
            write_atomic(args.json, json.dumps(result, indent=2) + "\n")
        except OSError as exc:
            print(f"moodstream evaluate: cannot write {args.json}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    return 0 if result.get("n_clips", result.get("songs")) else 1


def _check_stream_args(args: argparse.Namespace) -> None:
    if not 1 <= args.streams <= 100:
        raise ConfigError(f"--streams {args.streams}: must be 1 to 100")
    if not 0 <= args.gap <= 60:
        raise ConfigError(f"--gap {args.gap:g}: must be 0 to 60 seconds")
    if not 0 <= args.settle <= 600:
        raise ConfigError(f"--settle {args.settle:g}: must be 0 to 600 seconds")


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


def _stream_summary(r: dict[str, Any]) -> str:
    iv = r["intervals"]

    def fig(key: str, fmt: str, unit: str = "") -> str:
        value = r[key]
        if value is None:
            return "-"
        low, high = iv.get(key, (value, value))
        return f"{value:{fmt}}{unit} ({low:{fmt}}-{high:{fmt}})"

    return "\n".join(
        [
            f"{r['model']['name']} on {r['data_dir']} as {r['streams']} stream(s){_chain_note(r)}: "
            f"{r['songs']} songs, hop {r['hop_seconds']:g} s, scored after {r['settle_s']:g} s of each song",
            f"  shown mood right {fig('accuracy', '.3f')}, uncertain {fig('uncertain', '.3f')}",
            f"  changes within songs per 10 min {fig('changes_per_10min', '.1f')}"
            f" (of the claimed label alone {fig('label_changes_per_10min', '.1f')})",
            f"  to a new mood: median {fig('latency_median_s', '.1f', ' s')}, p90 {fig('latency_p90_s', '.1f', ' s')},"
            f" never shown {fig('missed_mood_changes', '.3f')}",
            f"  same-mood song changes where the label left the mood {fig('false_change_share', '.3f')}",
            "  (95 % intervals, songs resampled)",
        ]
    )
