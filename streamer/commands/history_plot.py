"""The history timeline as a picture: mood colour bands, smoothed probabilities, level and marks.

matplotlib is the ``plot`` extra (``pip install 'moodstream[plot]'``); the daemon never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from streamer.sinks.history import Hop, Mark
from streamer.sinks.protocol import label_color

GREY = "#b0b0b0"
EXTRA = "plot"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _color(hop: Hop) -> str:
    if hop.state == "emotion" and hop.label:
        return label_color(hop.label)
    return GREY if hop.state == "uncertain" else "#eeeeee"


def _runs(hops: Sequence[Hop], num: Callable[[float], float]) -> list[tuple[float, float, str]]:
    """(start, width, colour) in the axis' units (``num`` of epoch seconds) for each run of one
    colour without a gap."""
    runs: list[list[Any]] = []
    for hop in hops:
        start, end, color = num(hop.time - hop.duration), num(hop.time), _color(hop)
        if runs and runs[-1][2] == color and start - runs[-1][1] < (end - start) / 2:
            runs[-1][1] = end
        else:
            runs.append([start, end, color])
    return [(a, b - a, c) for a, b, c in runs]


def _grouped(marks: Sequence[Mark], within: float) -> list[tuple[float, str]]:
    """Marks closer than ``within`` seconds share one line and one label ("session 1 end · session 2 start")."""
    groups: list[tuple[float, list[str]]] = []
    for mark in sorted(marks, key=lambda m: m.time):
        if groups and mark.time - groups[-1][0] < within:
            groups[-1][1].append(mark.message)
        else:
            groups.append((mark.time, [mark.message]))
    return [(at, " · ".join(texts)) for at, texts in groups]


def plot(hops: Sequence[Hop], marks: Sequence[Mark], path: Path, title: str) -> None:
    """Write the timeline to ``path`` (.png or .svg)."""
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"--plot {path}: the file must end in .png or .svg")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            f"--plot needs matplotlib: pip install 'moodstream[{EXTRA}]' (the {EXTRA} extra)"
        ) from None
    if not hops:
        raise ValueError("nothing to plot: no hops in that range")
    times = [datetime.fromtimestamp(h.time) for h in hops]
    labels: list[str] = []
    for hop in hops:
        labels += [k for k in hop.probabilities if k not in labels]
    fig, (bands, lines, level) = plt.subplots(
        3, 1, sharex=True, figsize=(10, 5.2), height_ratios=(1, 3, 1.4), constrained_layout=True
    )
    for start, width, color in _runs(
        hops, lambda t: float(mdates.date2num(datetime.fromtimestamp(t)))
    ):  # one bar per run of a colour: a day is 86400 hops
        bands.barh(0, width, left=start, height=1, color=color, linewidth=0)
    bands.set_yticks([])
    bands.set_ylabel("mood", rotation=0, ha="right", va="center")
    bands.set_title(title, loc="left", fontsize=11)
    for label in labels:
        values = [h.probabilities.get(label, float("nan")) for h in hops]
        lines.plot(times, values, color=label_color(label), linewidth=1.4, label=label)
    lines.set_ylim(0, 1)
    lines.set_ylabel("probability")
    lines.grid(alpha=0.25)
    level.plot(times, [h.rms_dbfs for h in hops], color="#555555", linewidth=1)
    level.set_ylabel("level dBFS")
    level.grid(alpha=0.25)
    locator = mdates.AutoDateLocator()
    level.xaxis.set_major_locator(locator)
    level.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    first, last = hops[0].time - hops[0].duration, hops[-1].time
    for at, text in _grouped(marks, (last - first) / 100):
        when = datetime.fromtimestamp(at)
        for axis in (bands, lines, level):
            axis.axvline(when, color="#222222", linewidth=1, linestyle="--")
        left = at < (first + last) / 2  # the label on the side with room
        lines.annotate(
            text,
            (mdates.date2num(when), 0.98),
            xytext=(3 if left else -3, 0),
            textcoords="offset points",
            fontsize=8,
            rotation=90,
            ha="left" if left else "right",
            va="top",
        )
    from matplotlib.patches import Patch

    legend = [Patch(color=label_color(k), label=k) for k in labels]
    legend += [Patch(color=GREY, label="uncertain"), Patch(color="#eeeeee", label="silence / warming up")]
    bands.legend(
        handles=legend, loc="lower left", bbox_to_anchor=(0, 1.25), ncols=len(legend), fontsize=8, frameon=False
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
