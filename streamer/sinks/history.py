"""The mood history: every hop, status event and session mark in SQLite, and the last hour in memory.

Sparing the SD card: hops are buffered in memory and written in one transaction every
``flush_seconds`` (and at once for a session mark, and at shutdown), by one worker thread that owns
the database, so neither the pipeline nor the event loop ever waits for a disk. WAL mode: a
``kill -9`` loses at most the batch not yet written, never the file. A write that fails (a full
disk, a read-only file, a missing folder) is one log line and one ``history_error`` status event;
the rows are kept for the next try (up to ``MAX_PENDING_ROWS``) and the daemon runs on.

Without a path the sink keeps only the last hour in memory, which the web page's strip reads
(the ``get_history`` request); with one, ranges come from the database plus what is not yet written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import re
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.config import HistorySettings
from streamer.core.events import EmotionEvent, Event, EventBus, StatusEvent, Subscription

log = logging.getLogger(__name__)

MEMORY_SECONDS = 3600.0  # the last hour stays in memory for the page's strip, history or not
QUEUE_EVENTS = 4096  # events the sink may lag behind the bus (it only appends to lists)
MAX_PENDING_ROWS = 200_000  # rows kept for a retry while the disk is full (about two days of hops)
PRUNE_EVERY_S = 3600.0
STATS = ("rows_written", "batches", "write_errors", "rows_lost")  # counters, reported as history_*
MAX_BINS = 2000
SESSION_WORDS = ("start", "begin", "end", "stop")  # "session 12 start" and "session 12 end": one session

SCHEMA = """
CREATE TABLE IF NOT EXISTS hops (
    time REAL NOT NULL, seq INTEGER NOT NULL, duration REAL NOT NULL, state TEXT NOT NULL, label TEXT,
    confidence REAL NOT NULL, probabilities TEXT NOT NULL, rms_dbfs REAL NOT NULL, model TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS hops_time ON hops(time);
CREATE TABLE IF NOT EXISTS events (time REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
    details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
"""
HOP_COLUMNS = ("time", "seq", "duration", "state", "label", "confidence", "probabilities", "rms_dbfs", "model")


@dataclass(frozen=True)
class Hop:
    """One stored hop (``probabilities`` smoothed, empty unless the model ran)."""

    time: float
    seq: int
    duration: float
    state: str
    label: str | None
    confidence: float
    probabilities: dict[str, float]
    rms_dbfs: float
    model: str

    def row(self) -> tuple[Any, ...]:
        return (
            self.time,
            self.seq,
            self.duration,
            self.state,
            self.label,
            self.confidence,
            json.dumps({k: round(v, 4) for k, v in self.probabilities.items()}, separators=(",", ":")),
            self.rms_dbfs,
            self.model,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Hop:
        values = dict(zip(HOP_COLUMNS, row, strict=True))
        values["probabilities"] = json.loads(values["probabilities"])
        return cls(**values)


@dataclass(frozen=True)
class Mark:
    """A status event as stored; session marks are ``kind == "mark"``."""

    time: float
    kind: str
    message: str
    details: dict[str, Any]

    def row(self) -> tuple[Any, ...]:
        return (self.time, self.kind, self.message, json.dumps(self.details, separators=(",", ":"), default=str))


def hop_of(event: EmotionEvent, duration: float) -> Hop:
    return Hop(
        time=event.timestamp,
        seq=event.seq,
        duration=duration,
        state=event.state,
        label=event.label,
        confidence=event.confidence,
        probabilities=dict(event.probabilities),
        rms_dbfs=event.level.rms_dbfs,
        model=event.model,
    )


def mark_of(event: StatusEvent) -> Mark:
    return Mark(event.timestamp, event.kind, event.message, dict(event.details))


def connect(path: str | Path) -> sqlite3.Connection:
    """The database, created when missing, in WAL mode (readers never block the writer)."""
    conn = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a crashed process
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """An existing database for reading (``moodstream history``); FileNotFoundError when absent."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no history database at {path}")
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)


def read_hops(conn: sqlite3.Connection, start: float, end: float) -> list[Hop]:
    cursor = conn.execute(
        f"SELECT {', '.join(HOP_COLUMNS)} FROM hops WHERE time >= ? AND time < ? ORDER BY time", (start, end)
    )
    return [Hop.from_row(row) for row in cursor]


def read_marks(
    conn: sqlite3.Connection, start: float = 0.0, end: float = float("inf"), kind: str = "mark"
) -> list[Mark]:
    cursor = conn.execute(
        "SELECT time, kind, message, details FROM events WHERE kind = ? AND time >= ? AND time < ? ORDER BY time",
        (kind, start, end if end != float("inf") else 1e18),
    )
    return [Mark(t, k, m, json.loads(d)) for t, k, m, d in cursor]


def session_name(text: str) -> str:
    """ "session 12 start" -> "session 12": a trailing start/begin/end/stop word is not the name."""
    words = text.split()
    if len(words) > 1 and words[-1].lower() in SESSION_WORDS:
        words = words[:-1]
    return " ".join(words)


def sessions(marks: Sequence[Mark], now: float) -> list[dict[str, Any]]:
    """Sessions bracketed by marks of one name: from its first mark to its last, or, for a single
    mark, to the next mark of another name (or now)."""
    by_name: dict[str, list[float]] = {}
    for mark in marks:
        by_name.setdefault(session_name(mark.message), []).append(mark.time)
    times = sorted(m.time for m in marks)
    out = []
    for name, stamps in by_name.items():
        start, end = min(stamps), max(stamps)
        if start == end:
            end = next((t for t in times if t > start), now)
        out.append({"name": name, "from": start, "to": end})
    return sorted(out, key=lambda s: s["from"])


def find_session(marks: Sequence[Mark], name: str, now: float) -> tuple[float, float] | None:
    """The range of the session called ``name`` (its latest one when the name recurs), or None."""
    found = [s for s in sessions(marks, now) if s["name"] == name.strip()]
    return (found[-1]["from"], found[-1]["to"]) if found else None


def summarise(hops: Sequence[Hop]) -> dict[str, Any]:
    """Minutes per mood (and per other state), label switches and the longest stretch of each mood.

    A switch is a claimed label that differs from the previous claimed one, whatever came between
    (uncertain, silence). A stretch is consecutive hops of one label with no gap in time."""
    minutes: dict[str, float] = {}
    states: dict[str, float] = {}
    longest: dict[str, dict[str, float]] = {}
    switches = 0
    previous_label: str | None = None
    run_label: str | None = None
    run_start = run_end = 0.0
    last_end: float | None = None

    def close_run() -> None:
        if run_label is not None:
            length = run_end - run_start
            if length > longest.get(run_label, {}).get("seconds", -1.0):
                longest[run_label] = {"seconds": round(length, 3), "from": run_start, "to": run_end}

    for hop in hops:
        contiguous = last_end is not None and hop.time - hop.duration <= last_end + hop.duration
        if hop.state == "emotion" and hop.label is not None:
            minutes[hop.label] = minutes.get(hop.label, 0.0) + hop.duration / 60.0
            if previous_label is not None and hop.label != previous_label:
                switches += 1
            previous_label = hop.label
            if hop.label == run_label and contiguous:
                run_end = hop.time
            else:
                close_run()
                run_label, run_start, run_end = hop.label, hop.time - hop.duration, hop.time
        else:
            states[hop.state] = states.get(hop.state, 0.0) + hop.duration / 60.0
            close_run()
            run_label = None
        last_end = hop.time
    close_run()
    return {
        "hops": len(hops),
        "from": hops[0].time - hops[0].duration if hops else None,
        "to": hops[-1].time if hops else None,
        "minutes": _by_size(minutes),
        "other_minutes": _by_size(states),
        "switches": switches,
        "longest": longest,
    }


def _by_size(minutes: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in sorted(minutes.items(), key=lambda kv: -kv[1])}


def bins(hops: Sequence[Hop], start: float, end: float, count: int) -> list[dict[str, Any]]:
    """The range cut into ``count`` equal bins; each non-empty one says its most common state and
    label (a mood only when most of its hops claimed one) and its mean level."""
    width = (end - start) / count
    grouped: dict[int, list[Hop]] = {}
    for hop in hops:
        index = min(int((hop.time - start) / width), count - 1)
        if index >= 0:
            grouped.setdefault(index, []).append(hop)
    out = []
    for index in sorted(grouped):
        members = grouped[index]
        (state, label), _ = Counter((h.state, h.label) for h in members).most_common(1)[0]
        level = sum(h.rms_dbfs for h in members) / len(members)
        out.append({"time": start + index * width, "state": state, "label": label, "level": round(level, 1)})
    return out


class HistorySink:
    """The sink (streamer/sinks/base.py shape): buffers hops and events, a worker thread writes them."""

    name = "history"

    def __init__(self, settings: HistorySettings, hop_seconds: float) -> None:
        self.settings = settings
        self.hop_seconds = hop_seconds
        self.recent: deque[Hop] = deque(maxlen=max(1, round(MEMORY_SECONDS / hop_seconds)))
        self.marks: deque[Mark] = deque(maxlen=1000)  # recent session marks, for the page
        self._pending: list[Hop | Mark] = []
        self._batches: queue.Queue[list[Hop | Mark] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bus: EventBus | None = None
        self._conn: sqlite3.Connection | None = None  # the worker's; readers open their own
        self._failing = False
        self._last_prune = float("-inf")
        self.counters: Counter[str] = Counter()
        self._subscription: Subscription | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.path)

    def stats(self) -> dict[str, int]:
        dropped = self._subscription.dropped if self._subscription is not None else 0
        return {f"history_{key}": self.counters[key] for key in STATS} | {"history_events_dropped": dropped}

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None:
        subscription = self._subscription = bus.subscribe(QUEUE_EVENTS)
        self._loop, self._bus = asyncio.get_running_loop(), bus
        if self.enabled:
            self._worker = threading.Thread(target=self._write_loop, name="history-writer", daemon=True)
            self._worker.start()
        flusher = asyncio.create_task(self._flush_every(stop)) if self.enabled else None
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                getting = asyncio.create_task(subscription.get())
                done, _ = await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if getting not in done:
                    getting.cancel()
                    break
                event = getting.result()
                if event is None:
                    break
                self._take(event)
        finally:
            subscription.close()
            stopping.cancel()
            if flusher is not None:
                flusher.cancel()
            if self._worker is not None:
                self._flush()
                self._batches.put(None)
                await asyncio.to_thread(self._worker.join)

    def _take(self, event: Event) -> None:
        if isinstance(event, EmotionEvent):
            hop = hop_of(event, self.hop_seconds)
            self.recent.append(hop)
            if self.enabled:
                self._pending.append(hop)
        elif event.kind != "history_error":  # our own complaint is logged, not stored
            mark = mark_of(event)
            if mark.kind == "mark":
                self.marks.append(mark)
            if self.enabled:
                self._pending.append(mark)
                if mark.kind == "mark":  # a therapist's bracket is worth a write of its own
                    self._flush()

    async def _flush_every(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.settings.flush_seconds)
            self._flush()

    def _flush(self) -> None:
        """Hand the buffered rows to the writer (never waits)."""
        if self._pending:
            self._batches.put(self._pending)
            self._pending = []

    # the worker thread

    def _write_loop(self) -> None:
        waiting: list[Hop | Mark] = []
        while True:
            batch = self._batches.get()
            if batch is None:
                break
            waiting.extend(batch)
            if self._write(waiting):
                waiting = []
            elif len(waiting) > MAX_PENDING_ROWS:
                lost = len(waiting) - MAX_PENDING_ROWS
                self.counters["rows_lost"] += lost
                del waiting[:lost]
        if self._conn is not None:
            self._conn.close()
        if waiting:
            self.counters["rows_lost"] += len(waiting)
            log.error("history: %d rows could not be written to %s and are lost", len(waiting), self.settings.path)

    def _write(self, rows: list[Hop | Mark]) -> bool:
        """One transaction; False (reported once per failing spell) when the disk refuses it."""
        try:
            if self._conn is None:
                self._conn = connect(self.settings.path)
            hops = [r.row() for r in rows if isinstance(r, Hop)]
            events = [r.row() for r in rows if isinstance(r, Mark)]
            with self._conn:
                self._conn.executemany(f"INSERT INTO hops VALUES ({', '.join('?' * len(HOP_COLUMNS))})", hops)
                self._conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", events)
                self._prune()
        except (sqlite3.Error, OSError) as exc:
            self.counters["write_errors"] += 1
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if not self._failing:
                self._failing = True
                message = f"history: cannot write to {self.settings.path}: {exc}; keeping the rows and retrying"
                log.error("%s", message)
                self._publish(StatusEvent("history_error", message, details={"path": self.settings.path}))
            return False
        self.counters["rows_written"] += len(rows)
        self.counters["batches"] += 1
        if self._failing:
            self._failing = False
            log.info("history: writing to %s again", self.settings.path)
            self._publish(StatusEvent("history_ok", f"history: writing to {self.settings.path} again"))
        return True

    def _prune(self) -> None:
        now = time.time()
        if self.settings.retention_days <= 0 or now - self._last_prune < PRUNE_EVERY_S:
            return
        assert self._conn is not None
        cutoff = now - self.settings.retention_days * 86400.0
        self._conn.execute("DELETE FROM hops WHERE time < ?", (cutoff,))
        self._conn.execute("DELETE FROM events WHERE time < ?", (cutoff,))
        self._last_prune = now

    def _publish(self, event: StatusEvent) -> None:
        if self._loop is not None and self._bus is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the log line is what remains
                self._loop.call_soon_threadsafe(self._bus.publish, event)

    # reading, for the get_history request

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The ``history`` reply to a ``get_history`` request (ValueError: a bad range)."""
        start, end, count = parse_range(request, time.time())
        return {"type": "history", "enabled": self.enabled, **await self.query(start, end, count)}

    async def query(self, start: float, end: float, count: int) -> dict[str, Any]:
        """Hops of a range, binned, with a summary, the marks in it and every session known."""
        now = time.time()
        memory = [h for h in self.recent if start <= h.time < end]
        if self.enabled and (not self.recent or start < self.recent[0].time):
            stored, marks = await asyncio.to_thread(self._read, start, end)
            newest = stored[-1].time if stored else float("-inf")
            hops = stored + [h for h in memory if h.time > newest]
            source = "database"
        else:
            hops, marks, source = memory, list(self.marks), "memory"
        in_range = [m for m in marks if start <= m.time < end]
        return {
            "from": start,
            "to": end,
            "source": source,
            "bin_seconds": (end - start) / count,
            "bins": bins(hops, start, end, count),
            "summary": summarise(hops),
            "marks": [{"time": m.time, "text": m.message} for m in in_range],
            "sessions": sessions(marks, now),
        }

    def _read(self, start: float, end: float) -> tuple[list[Hop], list[Mark]]:
        try:
            conn = open_readonly(self.settings.path)
        except (FileNotFoundError, sqlite3.Error):
            return [], list(self.marks)
        try:
            return read_hops(conn, start, end), read_marks(conn)
        except sqlite3.Error:
            return [], list(self.marks)
        finally:
            conn.close()


def parse_range(request: dict[str, Any], now: float) -> tuple[float, float, int]:
    """``from``/``to`` (epoch seconds; default the last hour) and ``bins`` of a get_history request."""
    end = request.get("to", now)
    start = request.get("from", end - MEMORY_SECONDS)
    count = request.get("bins", 600)
    numbers: Iterable[Any] = (start, end, count)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        raise ValueError("from, to and bins must be numbers")
    if not start < end or not 1 <= count <= MAX_BINS or int(count) != count:
        raise ValueError(f"need from < to and 1 <= bins <= {MAX_BINS} (an integer)")
    return float(start), float(end), int(count)


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d``, ``1w`` (a bare number is seconds)."""
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (try 90s, 30m, 2h, 1d)")
    return float(match.group(1)) * UNITS[match.group(2)]
