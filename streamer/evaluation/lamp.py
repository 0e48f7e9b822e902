"""What a lamp sees, scored: every hop's shown state against the song playing when the hop ended.

- accuracy: hops whose shown label is the song's mood, over the hops after a song's first
  ``settle_s`` seconds (an "uncertain" hop counts as not right);
- uncertain: the share of those hops that claim no label;
- changes per 10 min: changes of what is shown (a label, or "uncertain") within songs beyond the
  one a new mood needs, as a lamp that follows every event would change; and of the claimed label
  alone (a lamp that keeps its colour while uncertain);
- latency: from a mood change to the first hop that shows the new mood (median and p90; a song that
  never shows it counts as missed);
- false changes: the share of same-mood song changes, after a correctly shown song, at which the
  shown label leaves that mood within the new song's first ``settle_s`` seconds.

Intervals resample the songs (95 %, percentile bootstrap)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SETTLE_S = 12.0  # a song's first seconds, in which the shown mood may still be the previous song's
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Song:
    """One clip's place in a stream (seconds of stream time)."""

    file: str
    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Hop:
    """What the daemon showed when a hop ended: a label, or "uncertain", "silence", "warming_up"."""

    time_s: float
    shown: str
    label: str | None
    raw: tuple[float, ...]
    rms_dbfs: float
    novelty: float  # the change detector's probability that a new song started at this hop
    summary: tuple[float, ...] = ()  # what the change detector heard, empty when silent (pipeline_hops keeps it)


def _extra_changes(before: str | None, shown: Sequence[str], mood: str) -> int:
    """Changes along ``before, *shown`` beyond the one that reaching ``mood`` needs."""
    seq = [x for x in (before, *shown) if x is not None]
    changes = sum(a != b for a, b in itertools.pairwise(seq))
    needed = int(bool(seq) and seq[0] != mood and mood in seq)
    return max(0, changes - needed)


def song_records(songs: Sequence[Song], hops: Sequence[Hop], settle_s: float = SETTLE_S) -> list[dict[str, Any]]:
    """Per song: settled hops, right ones, uncertain ones, changes of what is shown (and of the claimed
    label alone) beyond the one its mood needs, latency to its mood (at a mood change) and whether the
    shown label left it early (at a same-mood change)."""
    records = []
    shown_before: str | None = None  # what was shown last, carried over song changes
    claimed_before: str | None = None  # the label claimed last
    k = 0
    for i, song in enumerate(songs):
        while k < len(hops) and hops[k].time_s <= song.start_s:
            shown_before, claimed_before = hops[k].shown, hops[k].label or claimed_before
            k += 1
        mine = []
        while k < len(hops) and hops[k].time_s <= song.end_s:
            mine.append(hops[k])
            k += 1
        settled = [h for h in mine if h.time_s - song.start_s >= settle_s]
        previous = songs[i - 1].label if i else None
        claims = [h.label for h in mine if h.label]
        early = [h.label for h in mine if h.label and h.time_s - song.start_s < settle_s]
        records.append(
            {
                "file": song.file,
                "label": song.label,
                "seconds": song.end_s - song.start_s,
                "settled": len(settled),
                "right": sum(h.label == song.label for h in settled),
                "uncertain": sum(h.shown == "uncertain" for h in settled),
                "extra_changes": _extra_changes(shown_before, [h.shown for h in mine], song.label),
                "extra_label_changes": _extra_changes(claimed_before, claims, song.label),
                "mood_change": previous is not None and previous != song.label,
                "latency_s": next((h.time_s - song.start_s for h in mine if h.label == song.label), None),
                # a same-mood change after a song that ended showing its mood: did the label leave it?
                "same_mood": previous == song.label and claimed_before == song.label,
                "left_early": any(label != song.label for label in early),
            }
        )
        if mine:
            shown_before = mine[-1].shown
        claimed_before = claims[-1] if claims else claimed_before
    return records


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The stream's figures from per-song records (used as is and on bootstrap resamples)."""
    settled = sum(r["settled"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    changes = [r for r in records if r["mood_change"]]
    latencies = [r["latency_s"] for r in changes if r["latency_s"] is not None]
    same = [r for r in records if r["same_mood"]]
    return {
        "accuracy": sum(r["right"] for r in records) / settled if settled else None,
        "uncertain": sum(r["uncertain"] for r in records) / settled if settled else None,
        "changes_per_10min": 600.0 * sum(r["extra_changes"] for r in records) / seconds if seconds else None,
        "label_changes_per_10min": 600.0 * sum(r["extra_label_changes"] for r in records) / seconds
        if seconds
        else None,
        "latency_median_s": float(np.median(latencies)) if latencies else None,
        "latency_p90_s": float(np.percentile(latencies, 90)) if latencies else None,
        "missed_mood_changes": (len(changes) - len(latencies)) / len(changes) if changes else None,
        "false_change_share": sum(r["left_early"] for r in same) / len(same) if same else None,
    }


def intervals(records: Sequence[dict[str, Any]], seed: int = 0, n: int = BOOTSTRAP) -> dict[str, list[float]]:
    """95 % percentile intervals of every figure, the songs resampled with replacement."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n if records else 0):
        sample = [records[i] for i in rng.integers(0, len(records), len(records))]
        for key, value in summarise(sample).items():
            if value is not None:
                draws.setdefault(key, []).append(value)
    return {key: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for key, v in draws.items()}
