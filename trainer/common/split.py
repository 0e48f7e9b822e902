"""Splits. The honest one keeps every group (artist) in a single part, stratified by label;
the paper's leaky one splits augmented segments at random (reported only for comparison)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.common.dataset import Clip, scan

PARTS = ("train", "val", "test")
FRACTIONS = (0.70, 0.15, 0.15)


def split_by_group(
    labels: Sequence[str], groups: Sequence[str], seed: int = 0, fractions: Sequence[float] = FRACTIONS
) -> dict[str, list[int]]:
    """Indices per part: no group in two parts; each part close to its share of every label.

    Groups go largest first (ties in seeded random order) to the part whose unmet share of the
    group's labels is largest."""
    chunks = _assign(labels, groups, seed, fractions)
    return dict(zip(PARTS[: len(fractions)], chunks, strict=True))


def group_folds(labels: Sequence[str], groups: Sequence[str], k: int = 5, seed: int = 0) -> list[list[int]]:
    """k folds for cross-validation by the same rule: no group in two folds, labels balanced."""
    return _assign(labels, groups, seed, [1.0 / k] * k)


def _assign(labels: Sequence[str], groups: Sequence[str], seed: int, fractions: Sequence[float]) -> list[list[int]]:
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    totals = Counter(labels)
    target = [{label: f * n for label, n in totals.items()} for f in fractions]
    current: list[Counter[str]] = [Counter() for _ in fractions]
    rng = np.random.default_rng(seed)
    names = list(members)
    order = rng.permutation(len(names))
    ordered = sorted((names[i] for i in order), key=lambda g: -len(members[g]))
    out: list[list[int]] = [[] for _ in fractions]
    for g in ordered:
        counts = Counter(labels[i] for i in members[g])

        def need(p: int, counts: Counter[str] = counts) -> float:
            return sum(c * (target[p][lab] - current[p][lab]) / max(target[p][lab], 1e-9) for lab, c in counts.items())

        best = max(range(len(fractions)), key=need)
        current[best].update(counts)
        out[best].extend(members[g])
    return [sorted(ix) for ix in out]


def split_random(labels: Sequence[str], seed: int = 0, fractions: Sequence[float] = FRACTIONS) -> dict[str, list[int]]:
    """Stratified random split of items (the paper's protocol applies it to augmented segments)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[int]] = {p: [] for p in PARTS[: len(fractions)]}
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    for ix in by_label.values():
        ix = list(rng.permutation(ix))
        cuts = np.round(np.cumsum(fractions)[:-1] * len(ix)).astype(int)
        for part, chunk in zip(out, np.split(np.asarray(ix, dtype=int), cuts), strict=True):
            out[part].extend(int(i) for i in chunk)
    return {p: sorted(ix) for p, ix in out.items()}


@dataclass(frozen=True)
class Split:
    """Clips of a label set and the trainer's artist-disjoint split of them (seed 0, 70/15/15)."""

    clips: list[Clip]
    labels: list[str]
    parts: dict[str, list[int]]


def load_split(data_dir: Path, labels: list[str], seed: int = 0) -> Split:
    clips, labels = scan(data_dir, labels)
    parts = split_by_group([c.label for c in clips], [c.group for c in clips], seed)
    return Split(clips, labels, parts)
