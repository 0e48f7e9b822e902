"""Other settings of the temporal model, replayed over hops the daemon's pipeline recorded (the same
model outputs and timbre summaries): how a study compares settings without running the network
again. A test holds a replay equal to the daemon."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from streamer.config import SmoothingSettings
from streamer.core.changepoint import ChangeDetector
from streamer.core.temporal import MoodFilter
from streamer.evaluation.lamp import Hop


def replay(
    hops: Sequence[Hop],
    labels: Sequence[str],
    smoothing: SmoothingSettings,
    hop_s: float,
    temperature: float = 1.0,
    runs: Sequence[np.ndarray | None] | None = None,
) -> list[Hop]:
    """The hops a daemon with other settings of the mood filter would have shown: the same model
    outputs and summaries (from :func:`pipeline_hops`) through :class:`~streamer.core.temporal.MoodFilter`
    as the pipeline drives it (a silent hop resets it). Studies compare settings this way without
    running the network again; a test holds it equal to the daemon (``temperature``: the model
    file's). ``runs``: the change detector's
    answers per hop (:func:`detect`), when a study replays many settings of the same song length."""
    mood = MoodFilter(smoothing, hop_s, len(labels), temperature)
    out = []
    for i, h in enumerate(hops):
        if not h.summary:  # silent: the pipeline reset the filter
            mood.reset()
            out.append(h)
            continue
        raw = np.asarray(h.raw) if h.raw else None
        if runs is None:
            _, index, novelty = mood.update(np.asarray(h.summary), raw)
        else:
            _, index, novelty = mood.follow(runs[i], raw)  # type: ignore[arg-type]
        label = labels[index] if index is not None and h.raw else None
        shown = "warming_up" if not h.raw else label or "uncertain"
        out.append(dataclasses.replace(h, shown=shown, label=label, novelty=round(novelty, 4)))
    return out


def detect(hops: Sequence[Hop], hop_s: float, song_seconds: float) -> list[np.ndarray | None]:
    """The change detector's answer (P(run length)) at every audible hop, as the pipeline drives it."""
    changes = ChangeDetector(hop_s, song_seconds)
    runs: list[np.ndarray | None] = []
    for h in hops:
        if not h.summary:
            changes.reset()
            runs.append(None)
        else:
            runs.append(changes.update(np.asarray(h.summary)))
    return runs
