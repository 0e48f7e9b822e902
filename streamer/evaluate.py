"""`moodstream evaluate DATA_DIR [--model FILE] [--chain NAME] --json OUT.json`: score a model on
a labelled folder the daemon's way.

Every clip is decoded like a file source (streamer.audio_io), fed through the daemon's own
:class:`~streamer.pipeline.Pipeline` (same features, window, model runner and gate) and decided by
:func:`~streamer.pipeline.clip_decision`; there is no second inference path to disagree with.
``--chain`` first passes each clip through a simulated capture chain (streamer.chain: room,
microphone, noise, level, codec), seeded per clip from ``--chain-seed``; its libraries come with
the ``train`` extra and are imported only then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from streamer import config as config_mod
from streamer import shipped
from streamer.atomic import write_atomic
from streamer.audio_io import AudioError, load_audio
from streamer.chain import CHAINS, ChainError, apply_chain, check_available, check_name, clip_seed
from streamer.config import ConfigError, Settings
from streamer.labelled import MetadataError, audio_files, file_groups, label_folders
from streamer.metadata import ModelFileError
from streamer.metrics import bootstrap_intervals, classification_metrics, describe_intervals
from streamer.pipeline import Pipeline, clip_decision
from streamer.runner import ModelRunner


def clip_probabilities(
    path: Path, runner: ModelRunner, settings: Settings, chain: str | None = None, chain_seed: int = 0
) -> np.ndarray | None:
    """The daemon's verdict on one file (None when no hop was classified: too short or silent)."""
    rate = runner.metadata.feature_config.sample_rate
    audio = load_audio(path, rate, settings.source.channel)
    if chain is not None:
        audio = apply_chain(chain, audio, rate, clip_seed(chain_seed, path.name))
    return clip_decision(Pipeline(runner, settings).process(audio))


def evaluate(
    data_dir: Path, runner: ModelRunner, settings: Settings, chain: str | None = None, chain_seed: int = 0
) -> dict[str, Any]:
    """Metrics over every clip whose label the model knows; the rest is reported, not scored."""
    labels = runner.labels
    groups = file_groups(data_dir)
    y_true, y_pred, scored, clip_groups = [], [], [], []
    skipped_labels: Counter[str] = Counter()
    skipped_files: list[dict[str, str]] = []
    for label in label_folders(data_dir):
        files = audio_files(data_dir / label)
        if label not in labels:
            skipped_labels[label] += len(files)
            continue
        for path in files:
            try:
                probs = clip_probabilities(path, runner, settings, chain, chain_seed)
            except AudioError as exc:
                skipped_files.append({"file": str(path), "reason": str(exc)})
                continue
            if probs is None:
                reason = f"no hop classified (shorter than the {runner.metadata.window_seconds:g} s window, or silent)"
                skipped_files.append({"file": str(path), "reason": reason})
                continue
            y_true.append(labels.index(label))
            y_pred.append(int(np.argmax(probs)))
            scored.append({"file": str(path), "label": label, "predicted": labels[y_pred[-1]]})
            rel = path.relative_to(data_dir).as_posix()
            clip_groups.append(groups.get(rel) or f"file:{rel}")
    m = classification_metrics(y_true, y_pred, labels)
    meta = runner.metadata
    return {
        "labels": list(labels),
        "n_clips": m["n"],
        **{k: v for k, v in m.items() if k != "n"},
        "intervals": bootstrap_intervals(y_true, y_pred, len(labels)),
        "group_intervals": bootstrap_intervals(y_true, y_pred, len(labels), clip_groups) if groups else None,
        "model": {
            "name": meta.name,
            "path": str(runner.path),
            "architecture": meta.architecture,
            "window_seconds": meta.window_seconds,
            "backend": runner.backend,
        },
        "hop_seconds": settings.model.hop_seconds,
        "chain": {"name": chain or "none", "seed": chain_seed if chain else None},
        "data_dir": str(data_dir),
        "skipped_labels": dict(skipped_labels),
        "skipped_files": skipped_files,
        "clips": scored,
    }


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
