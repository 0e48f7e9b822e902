"""`moodstream evaluate DATA_DIR [--model FILE] [--chain NAME] --json OUT.json`: score a model on
a labelled folder the daemon's way.

Every clip is decoded like a file source (streamer.audio.decode), fed through the daemon's own
:class:`~streamer.core.pipeline.Pipeline` (same features, window, model runner and gate) and decided by
:func:`~streamer.core.pipeline.clip_decision`; there is no second inference path to disagree with.
``--chain`` first passes each clip through a simulated capture chain (streamer.audio.chain: room,
microphone, noise, level, codec), seeded per clip from ``--chain-seed``; its libraries come with
the ``train`` extra and are imported only then.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from streamer.audio.chain import apply_chain, clip_seed
from streamer.audio.decode import AudioError, load_audio
from streamer.config import Settings
from streamer.core.pipeline import Pipeline, clip_decision
from streamer.evaluation.labelled import audio_files, file_groups, label_folders
from streamer.evaluation.metrics import bootstrap_intervals, classification_metrics
from streamer.model.runner import ModelRunner


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
