"""Data preparation: scan -> split -> features (augmented for training only) -> windows.

The honest protocol splits clips by group before anything else, so augmented copies and
overlapping windows of one song (or artist) never straddle parts. The paper protocol augments and
segments everything first and then splits windows at random: the leaky figure, for comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamer.features.mfcc import FeatureConfig
from trainer.common.dataset import Clip, scan
from trainer.common.split import PARTS, split_by_group, split_random
from trainer.families.paper.augment import AUGMENTATIONS, ORIGINAL, chain_variants
from trainer.families.paper.featurecache import Job, features
from trainer.families.paper.segments import segment, window_geometry

PROTOCOLS = ("honest", "paper")


@dataclass
class Part:
    """Raw-feature windows, their label indices and the index of the clip each came from."""

    x: np.ndarray
    y: np.ndarray
    clips: np.ndarray


@dataclass
class Prepared:
    labels: list[str]
    clips: list[Clip]
    parts: dict[str, Part]
    window_frames: int
    hop_frames: int
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts per part and label (clips, groups, windows) for the report and the model file."""
        out: dict[str, Any] = {}
        for name, part in self.parts.items():
            ids = np.unique(part.clips)
            out[name] = {
                "windows": len(part.y),
                "clips": len(ids),
                "groups": len({self.clips[i].group for i in ids}),
                "clips_per_label": {
                    label: int(sum(self.clips[i].label == label for i in ids)) for label in self.labels
                },
                "windows_per_label": {label: int(np.sum(part.y == k)) for k, label in enumerate(self.labels)},
            }
        return out


def prepare(
    data_dir: Path,
    labels: list[str] | None,
    window_seconds: float,
    overlap: float,
    cache: Path,
    *,
    protocol: str = "honest",
    augment: bool = True,
    seed: int = 0,
    group_column: str | None = None,
    config: FeatureConfig | None = None,
    workers: int | None = None,
    chain_copies: int = 0,
    clean_copies: bool = True,
) -> Prepared:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    config = config or FeatureConfig()
    clips, labels = scan(data_dir, labels, group_column)
    frames, hop = window_geometry(config, window_seconds, overlap)
    variants = (ORIGINAL, *(AUGMENTATIONS if augment else ()), *chain_variants(chain_copies))
    if protocol == "honest":
        split = split_by_group([c.label for c in clips], [c.group for c in clips], seed)
        part_of = {i: p for p, ix in split.items() for i in ix}
        wanted = [variants if part_of[i] == "train" else (ORIGINAL,) for i in range(len(clips))]
    else:
        wanted = [variants] * len(clips)
    feats, failed = features([Job(c.path, v) for c, v in zip(clips, wanted, strict=True)], config, cache, workers)
    if not clean_copies and chain_copies:  # training on chained copies only (ORIGINAL still checks the length)
        wanted = [tuple(v for v in vs if v != ORIGINAL) if len(vs) > 1 else vs for vs in wanted]
    skipped = {str(path): reason.removeprefix(f"{path}: ") for path, reason in failed.items()}
    # every usable window: (clip index, variant, windows)
    units: list[tuple[int, np.ndarray]] = []
    for i, (clip, vs) in enumerate(zip(clips, wanted, strict=True)):
        if str(clip.path) in skipped:
            continue
        if feats[(clip.path, ORIGINAL)].shape[0] < frames:
            skipped[str(clip.path)] = f"shorter than the {window_seconds:g} s window"
            continue
        units += [(i, segment(feats[(clip.path, v)], frames, hop)) for v in vs]
    index = {label: k for k, label in enumerate(labels)}
    clip_of = np.concatenate([np.full(len(w), i) for i, w in units])
    x = np.concatenate([w for _, w in units])
    y = np.asarray([index[clips[i].label] for i in clip_of])
    if protocol == "honest":
        chosen = {p: np.flatnonzero([part_of[i] == p for i in clip_of]) for p in PARTS}
    else:
        chosen = {p: np.asarray(ix, dtype=int) for p, ix in split_random(list(y), seed).items()}
    parts = {p: Part(x[ix], y[ix], clip_of[ix]) for p, ix in chosen.items()}
    empty = [p for p, part in parts.items() if len(part.y) == 0 or len(np.unique(part.y)) < len(labels)]
    if empty:
        raise ValueError(f"not enough usable clips: part(s) {', '.join(empty)} lack some label")
    return Prepared(labels, clips, parts, frames, hop, skipped)
