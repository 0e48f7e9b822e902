"""Questions about a range of the history, answered at the cost of the answer, not of the range.

A month of 1 s hops is 2.6 million rows; reading them into Python took 40 s and 2.8 GB. Here the
database does the counting: the bins and the minutes per mood come from the per-minute roll-up
(whole minutes) plus the hops of the two partial minutes at the edges; label switches and the
longest stretches from the stretches table, clipped to the range. What comes back to Python is
at most a row per bin and (state, label), one per mood, and the few hops at the edges. Ranges
binned finer than a minute are counted by SQLite from the hops themselves (at most 2000 bins of
under a minute: a day and a half).

:class:`Tally` is the summary of hops in time order (`moodstream history`'s and the protocol's);
the database's part of a range seeds it, and the hops not yet written continue it.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.sinks.historydb import NO_LABEL, Hop, Mark, contiguous, has_rollups

MEMORY_SECONDS = 3600.0  # a get_history without a range: the last hour
MAX_BINS = 2000
MAX_RANGE_S = 31 * 86400.0  # a get_history spans at most this (a month of the default retention)
MINUTE = 60.0
SESSION_WORDS = ("start", "begin", "end", "stop")  # "session 12 start" and "session 12 end": one session

BinKey = tuple[int, str, str | None]  # (bin index, state, label)


@dataclass
class Tally:
    """Minutes per mood and per other state, label switches and the longest stretch of each mood.

    A switch is a claimed label that differs from the previous claimed one, whatever came between
    (uncertain, silence). A stretch is consecutive hops of one claimed label with no gap in time."""

    hops: int = 0
    first: float | None = None  # the first hop's start
    last: float | None = None  # the last hop's time
    minutes: dict[str, float] = field(default_factory=dict)  # seconds, until summary()
    states: dict[str, float] = field(default_factory=dict)
    switches: int = 0
    longest: dict[str, dict[str, float]] = field(default_factory=dict)
    previous_label: str | None = None
    run_label: str | None = None
    run_start: float = 0.0
    run_end: float = 0.0

    def feed(self, hops: Iterable[Hop]) -> Tally:
        for hop in hops:
            self.add(hop.time, hop.duration, hop.state, hop.label)
        return self

    def add(self, time: float, duration: float, state: str, label: str | None) -> None:
        """One hop, after every earlier one."""
        follows = contiguous(time, duration, self.last)
        self.hops += 1
        if self.first is None:
            self.first = time - duration
        if state == "emotion" and label is not None:
            self.minutes[label] = self.minutes.get(label, 0.0) + duration
            if self.previous_label is not None and label != self.previous_label:
                self.switches += 1
            self.previous_label = label
            if label == self.run_label and follows:
                self.run_end = time
            else:
                self.close_run()
                self.run_label, self.run_start, self.run_end = label, time - duration, time
        else:
            self.states[state] = self.states.get(state, 0.0) + duration
            self.close_run()
        self.last = time

    def close_run(self) -> None:
        if self.run_label is not None:
            self.stretch(self.run_label, self.run_start, self.run_end)
        self.run_label = None

    def stretch(self, label: str, start: float, end: float) -> None:
        """A finished stretch: the longest of its label so far (the first of equals) is kept."""
        length = end - start
        if length > self.longest.get(label, {}).get("seconds", -1.0):
            self.longest[label] = {"seconds": round(length, 3), "from": start, "to": end}

    def summary(self) -> dict[str, Any]:
        self.close_run()
        return {
            "hops": self.hops,
            "from": self.first,
            "to": self.last,
            "minutes": _by_size(self.minutes),
            "other_minutes": _by_size(self.states),
            "switches": self.switches,
            "longest": self.longest,
        }


def summarise(hops: Iterable[Hop]) -> dict[str, Any]:
    """The summary of hops in time order (see :class:`Tally`)."""
    return Tally().feed(hops).summary()


def _by_size(seconds: dict[str, float]) -> dict[str, float]:
    return {k: round(v / 60.0, 2) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}


class Bins:
    """Hop counts per (bin, state, label) and summed levels per bin, from any mix of sources."""

    def __init__(self, start: float, end: float, count: int) -> None:
        self.start, self.count = start, count
        self.width = (end - start) / count
        self.cells: dict[BinKey, int] = {}
        self.levels: dict[int, list[float]] = {}

    def index(self, time: float) -> int:
        return min(int((time - self.start) // self.width), self.count - 1)

    def add(self, index: int, state: str, label: str | None, hops: int, level_sum: float) -> None:
        if not 0 <= index < self.count or hops <= 0:
            return
        key = (index, state, label or None)
        self.cells[key] = self.cells.get(key, 0) + hops
        level = self.levels.setdefault(index, [0.0, 0.0])
        level[0] += hops
        level[1] += level_sum

    def feed(self, hops: Iterable[Hop]) -> Bins:
        for hop in hops:
            self.add(self.index(hop.time), hop.state, hop.label, 1, hop.rms_dbfs)
        return self

    def result(self) -> list[dict[str, Any]]:
        """Each non-empty bin: its most common (state, label) and its mean level."""
        best: dict[int, tuple[int, str, str | None]] = {}
        ranked = sorted(self.cells.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1], kv[0][2] or ""))
        for (index, state, label), hops in ranked:  # equal counts: by name, whatever the source's order
            best.setdefault(index, (hops, state, label))
        out = []
        for index in sorted(best):
            _, state, label = best[index]
            members, level_sum = self.levels[index]
            out.append(
                {
                    "time": self.start + index * self.width,
                    "state": state,
                    "label": label,
                    "level": round(level_sum / members, 1),
                }
            )
        return out


def query(
    conn: sqlite3.Connection, start: float, end: float, count: int, tail: Sequence[Hop] = ()
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(bins, summary) of the stored hops of a range plus ``tail``: hops in it not yet written
    (newer than every stored one)."""
    bins = Bins(start, end, count)
    if not has_rollups(conn):  # an old database no daemon of this version has opened yet
        hops = list(_stored_hops(conn, start, end))
        return bins.feed(hops).feed(tail).result(), Tally().feed(hops).feed(tail).summary()
    lo, hi = math.ceil(start / MINUTE), math.floor(end / MINUTE)  # whole minutes inside the range
    if lo >= hi:
        lo = hi = math.ceil(start / MINUTE)
    edges = ((start, lo * MINUTE), (hi * MINUTE, end)) if lo < hi else ((start, end),)
    if bins.width < MINUTE:
        _raw_bins(conn, bins, start, end)
    else:
        _minute_bins(conn, bins, lo, hi)
        for a, b in edges:
            _raw_bins(conn, bins, a, b)
    tally = _stored_tally(conn, start, end, lo, hi, edges)
    return bins.feed(tail).result(), tally.feed(tail).summary()


def _stored_hops(conn: sqlite3.Connection, start: float, end: float) -> Iterable[Hop]:
    cursor = conn.execute(
        "SELECT time, duration, state, label, rms_dbfs FROM hops WHERE time >= ? AND time < ? ORDER BY time",
        (start, end),
    )
    for time, duration, state, label, rms in cursor:
        yield Hop(time, 0, duration, state, label, 0.0, {}, rms, "")


def _raw_bins(conn: sqlite3.Connection, bins: Bins, start: float, end: float) -> None:
    cursor = conn.execute(
        "SELECT min(CAST((time - :origin) / :width AS INTEGER), :last), state, label, count(*), sum(rms_dbfs) "
        "FROM hops WHERE time >= :start AND time < :end GROUP BY 1, 2, 3",
        {"origin": bins.start, "width": bins.width, "last": bins.count - 1, "start": start, "end": end},
    )
    for index, state, label, hops, level_sum in cursor:
        bins.add(index, state, label, hops, level_sum)


def _minute_bins(conn: sqlite3.Connection, bins: Bins, lo: int, hi: int) -> None:
    """Whole minutes into bins by their start (a minute across a bin's edge counts in the earlier bin)."""
    cursor = conn.execute(
        "SELECT min(CAST((minute * 60.0 - :origin) / :width AS INTEGER), :last), state, label, sum(hops), "
        "sum(level_sum) FROM minutes WHERE minute >= :lo AND minute < :hi GROUP BY 1, 2, 3",
        {"origin": bins.start, "width": bins.width, "last": bins.count - 1, "lo": lo, "hi": hi},
    )
    for index, state, label, hops, level_sum in cursor:
        bins.add(index, state, label if label != NO_LABEL else None, hops, level_sum)


def _stored_tally(
    conn: sqlite3.Connection, start: float, end: float, lo: int, hi: int, edges: Sequence[tuple[float, float]]
) -> Tally:
    """The Tally of the stored hops of a range, as if it had read them one by one."""
    tally = Tally()
    first = conn.execute(
        "SELECT time, duration FROM hops WHERE time >= ? AND time < ? ORDER BY time LIMIT 1", (start, end)
    ).fetchone()
    if first is None:
        return tally
    last = conn.execute(
        "SELECT time, state, label FROM hops WHERE time >= ? AND time < ? ORDER BY time DESC LIMIT 1", (start, end)
    ).fetchone()
    tally.first, tally.last = first[0] - first[1], last[0]
    totals = [] if lo >= hi else conn.execute(
        "SELECT state, label, sum(hops), sum(seconds) FROM minutes WHERE minute >= ? AND minute < ? GROUP BY 1, 2",
        (lo, hi),
    ).fetchall()  # fmt: skip
    for a, b in edges:
        totals += conn.execute(
            "SELECT state, COALESCE(label, ?), count(*), sum(duration) FROM hops WHERE time >= ? AND time < ? "
            "GROUP BY 1, 2",
            (NO_LABEL, a, b),
        ).fetchall()
    for state, label, hops, seconds in totals:
        tally.hops += hops
        if state == "emotion" and label != NO_LABEL:
            tally.minutes[label] = tally.minutes.get(label, 0.0) + seconds
        else:
            tally.states[state] = tally.states.get(state, 0.0) + seconds
    _stretches(conn, tally, start, end, last)
    return tally


def _stretches(conn: sqlite3.Connection, tally: Tally, start: float, end: float, last: Sequence[Any]) -> None:
    """Switches and longest stretches of the range, the last stretch left open for the tail."""
    assert tally.first is not None and tally.last is not None
    within = "FROM stretches WHERE end >= :start AND first < :end"  # a hop of it is in the range
    bounds = {"start": start, "end": end, "first": tally.first, "last": tally.last}
    # a stretch's switch is against the one before it: the range's first stretch has none within
    total, first = conn.execute(
        f"SELECT sum(switch), (SELECT switch {within} ORDER BY end LIMIT 1) {within}", bounds
    ).fetchone()
    tally.switches = (total or 0) - (first or 0)
    clipped = "max(start, :first), min(end, :last)"
    for label, begin, finish in conn.execute(
        f"SELECT label, {clipped} FROM (SELECT label, start, end, max(min(end, :last) - max(start, :first)) "
        f"{within} GROUP BY label ORDER BY label)",
        bounds,
    ):
        tally.stretch(label, begin, finish)
    newest = conn.execute(f"SELECT label, {clipped} {within} ORDER BY end DESC LIMIT 1", bounds).fetchone()
    if newest is not None:
        tally.previous_label = newest[0]
        _, state, label = last
        if state == "emotion" and label == newest[0] and newest[2] == tally.last:  # the last hop is in it
            tally.run_label, tally.run_start, tally.run_end = newest


def marks_and_sessions(marks: Sequence[Mark], start: float, end: float, now: float) -> dict[str, Any]:
    """The marks in the range, each with the session it brackets (None: a plain mark), and every session."""
    in_range = [
        {"time": m.time, "text": m.message, "session": session_name(m.message) if is_session_mark(m.message) else None}
        for m in marks
        if start <= m.time < end
    ]
    return {"marks": in_range, "sessions": sessions(marks, now)}


def session_name(text: str) -> str:
    """ "session 12 start" -> "session 12": a trailing start/begin/end/stop word is not the name."""
    words = text.split()
    if len(words) > 1 and words[-1].lower() in SESSION_WORDS:
        words = words[:-1]
    return " ".join(words)


def is_session_mark(text: str) -> bool:
    """A mark that opens or closes a session ("session 12 start"), not a plain one ("tea break")."""
    return session_name(text) != " ".join(text.split())


def sessions(marks: Sequence[Mark], now: float) -> list[dict[str, Any]]:
    """Sessions bracketed by marks of one name that say start, begin, end or stop (a plain mark,
    "tea break", is a moment, not a session): from its first such mark to its last, or, for a single
    one, to the next session mark of another name, else now (then it is ``open``)."""
    bracketing = [m for m in marks if is_session_mark(m.message)]
    by_name: dict[str, list[float]] = {}
    for mark in bracketing:
        by_name.setdefault(session_name(mark.message), []).append(mark.time)
    times = sorted(m.time for m in bracketing)
    out = []
    for name, stamps in by_name.items():
        begin, finish = min(stamps), max(stamps)
        following = finish if begin != finish else next((t for t in times if t > begin), None)
        out.append(
            {"name": name, "from": begin, "to": now if following is None else following, "open": following is None}
        )
    return sorted(out, key=lambda s: s["from"])


def find_session(marks: Sequence[Mark], name: str, now: float) -> tuple[float, float] | None:
    """The range of the session called ``name`` (its latest one when the name recurs), or None."""
    found = [s for s in sessions(marks, now) if s["name"] == name.strip()]
    return (found[-1]["from"], found[-1]["to"]) if found else None


def parse_range(request: dict[str, Any], now: float) -> tuple[float, float, int]:
    """``from``/``to`` (epoch seconds; default the last hour) and ``bins`` of a get_history request
    whose types its schema has checked; ValueError for a range the daemon does not answer."""
    end = float(request.get("to", now))
    start = float(request.get("from", end - MEMORY_SECONDS))
    count = int(request.get("bins", 600))
    if not start < end:
        raise ValueError("need from < to")
    if end - start > MAX_RANGE_S:
        raise ValueError(f"a range of at most {MAX_RANGE_S / 86400:g} days")
    return start, end, count


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1w`` (a bare number is seconds)."""
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (try 90s, 30m, 2h, 1d)")
    return float(match.group(1)) * UNITS[match.group(2)]
