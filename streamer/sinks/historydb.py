"""The history database: its tables, the roll-ups written with every batch, and the spool.

Besides every hop (``hops``) and status event (``events``), each batch updates two roll-ups in the
same transaction, so that a question about a month reads tens of thousands of rows, not millions:

- ``minutes``: per minute and (state, label), the hops, their seconds and their summed level; the
  bins and the minutes per mood of a range come from it;
- ``stretches``: every unbroken stretch of one claimed mood (consecutive hops that claimed it, no
  gap in time), and whether its mood differs from the previous stretch's (a switch): label
  switches and the longest stretch of each mood come from it.

A database written before the roll-ups existed (``user_version`` 0) gets them built once, by the
writer, when it first opens the file. Rows that cannot be written at shutdown go to a spool file
beside the database (JSON lines, written atomically) and are written first at the next start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.util.atomic import write_atomic

log = logging.getLogger(__name__)

VERSION = 1  # PRAGMA user_version once the roll-ups exist
SCHEMA = """
CREATE TABLE IF NOT EXISTS hops (
    time REAL NOT NULL, seq INTEGER NOT NULL, duration REAL NOT NULL, state TEXT NOT NULL, label TEXT,
    confidence REAL NOT NULL, probabilities TEXT NOT NULL, rms_dbfs REAL NOT NULL, model TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS hops_time ON hops(time);
CREATE TABLE IF NOT EXISTS events (time REAL NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL,
    details TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
CREATE TABLE IF NOT EXISTS minutes (minute INTEGER NOT NULL, state TEXT NOT NULL, label TEXT NOT NULL,
    hops INTEGER NOT NULL, seconds REAL NOT NULL, level_sum REAL NOT NULL,
    PRIMARY KEY (minute, state, label)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stretches (start REAL NOT NULL, first REAL NOT NULL, end REAL NOT NULL,
    label TEXT NOT NULL, hops INTEGER NOT NULL, switch INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS stretches_end ON stretches(end);
CREATE INDEX IF NOT EXISTS stretches_label ON stretches(label, end);
"""
HOP_COLUMNS = ("time", "seq", "duration", "state", "label", "confidence", "probabilities", "rms_dbfs", "model")
NO_LABEL = ""  # the minutes table's label of a hop that claimed none (NULL cannot be in a primary key)
BACKFILL_CHUNK = 50_000  # hops read at once while building the stretches of an old database


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

    @property
    def claimed(self) -> bool:
        return self.state == "emotion" and self.label is not None


@dataclass(frozen=True)
class Mark:
    """A status event as stored; session marks are ``kind == "mark"``."""

    time: float
    kind: str
    message: str
    details: dict[str, Any]

    def row(self) -> tuple[Any, ...]:
        return (self.time, self.kind, self.message, json.dumps(self.details, separators=(",", ":"), default=str))


@dataclass(frozen=True)
class Stretch:
    """An unbroken stretch of one claimed mood: from its first hop's start to its last hop's time."""

    start: float
    first: float  # its first hop's time (which a range holds or not; start is a hop earlier)
    end: float
    label: str
    hops: int
    switch: bool  # its label differs from the previous stretch's
    rowid: int | None = None  # its row, once written


def contiguous(hop_time: float, duration: float, last_time: float | None) -> bool:
    """Whether a hop follows the previous one (at ``last_time``) with no gap of a hop or more."""
    return last_time is not None and hop_time - duration <= last_time + duration


@dataclass(frozen=True)
class Tip:
    """The writer's view of the newest stored hop: the stretch it may extend, its time, and the
    label of the newest stretch (a new one of another label is a switch)."""

    stretch: Stretch | None = None
    last_time: float | None = None
    previous_label: str | None = None


def extend(tip: Tip, hops: Iterable[tuple[float, float, str, str | None]]) -> tuple[Tip, list[Stretch]]:
    """Stretches that (time, duration, state, label) hops, in time order, close or open after
    ``tip``: the finished ones and, last, the open one (the new tip's)."""
    stretch, last_time, previous = tip.stretch, tip.last_time, tip.previous_label
    out: list[Stretch] = []
    for time, duration, state, label in hops:
        if state == "emotion" and label is not None:
            if stretch is not None and stretch.label == label and contiguous(time, duration, last_time):
                stretch = Stretch(
                    stretch.start, stretch.first, time, label, stretch.hops + 1, stretch.switch, stretch.rowid
                )
            else:
                if stretch is not None:
                    out.append(stretch)
                stretch = Stretch(time - duration, time, time, label, 1, previous is not None and label != previous)
                previous = label
        elif stretch is not None:
            out.append(stretch)
            stretch = None
        last_time = time
    if stretch is not None:
        out.append(stretch)
    return Tip(stretch, last_time, previous), out


def connect(path: str | Path, busy_timeout_s: float = 5.0) -> sqlite3.Connection:
    """The database, created when missing, in WAL mode (readers never block the writer), with its
    roll-ups (built now for a database written before they existed)."""
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across a crashed process
        with conn:
            conn.executescript(SCHEMA)
        if conn.execute("PRAGMA user_version").fetchone()[0] < VERSION:
            _backfill(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _backfill(conn: sqlite3.Connection) -> None:
    """Build both roll-ups from the stored hops, in one transaction."""
    count = conn.execute("SELECT count(*) FROM hops").fetchone()[0]
    if count:
        log.info("history: building the roll-ups of %d stored hops (once)", count)
    with conn:
        conn.execute("DELETE FROM minutes")
        conn.execute("DELETE FROM stretches")
        conn.execute(
            "INSERT INTO minutes SELECT CAST(time / 60 AS INTEGER), state, COALESCE(label, ?), count(*), "
            "sum(duration), sum(rms_dbfs) FROM hops GROUP BY 1, 2, 3",
            (NO_LABEL,),
        )
        tip = Tip()
        cursor = conn.execute("SELECT time, duration, state, label FROM hops ORDER BY time")
        while rows := cursor.fetchmany(BACKFILL_CHUNK):
            tip, stretches = extend(tip, rows)
            if tip.stretch is not None:
                stretches.pop()  # still open: the next chunk may extend it
            _insert_stretches(conn, stretches)
        if tip.stretch is not None:
            _insert_stretches(conn, [tip.stretch])
        conn.execute(f"PRAGMA user_version = {VERSION}")


def _insert_stretches(conn: sqlite3.Connection, stretches: Sequence[Stretch]) -> None:
    conn.executemany("INSERT INTO stretches VALUES (?, ?, ?, ?, ?, ?)", [_values(s) for s in stretches])


def _values(s: Stretch) -> tuple[float, float, float, str, int, bool]:
    return (s.start, s.first, s.end, s.label, s.hops, s.switch)


def open_tip(conn: sqlite3.Connection) -> Tip:
    """Where the stored hops end: the newest hop's time, and its stretch if it claimed a mood."""
    newest = conn.execute("SELECT time, state, label FROM hops ORDER BY time DESC LIMIT 1").fetchone()
    if newest is None:
        return Tip()
    time, state, label = newest
    row = conn.execute(
        "SELECT rowid, start, first, end, label, hops, switch FROM stretches ORDER BY end DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return Tip(None, time)
    rowid, start, first, end, stretch_label, hops, switch = row
    if state != "emotion" or end != time or stretch_label != label:
        return Tip(None, time, stretch_label)
    return Tip(Stretch(start, first, end, stretch_label, hops, bool(switch), rowid), time, stretch_label)


def write_batch(conn: sqlite3.Connection, tip: Tip, hops: Sequence[Hop], marks: Sequence[Mark]) -> Tip:
    """Insert the rows and update both roll-ups (inside the caller's transaction); the new tip."""
    conn.executemany(f"INSERT INTO hops VALUES ({', '.join('?' * len(HOP_COLUMNS))})", [h.row() for h in hops])
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [m.row() for m in marks])
    minutes: dict[tuple[int, str, str], list[float]] = {}
    for hop in hops:
        cell = minutes.setdefault((int(hop.time // 60), hop.state, hop.label or NO_LABEL), [0, 0.0, 0.0])
        cell[0] += 1
        cell[1] += hop.duration
        cell[2] += hop.rms_dbfs
    conn.executemany(
        "INSERT INTO minutes VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET hops = hops + excluded.hops, "
        "seconds = seconds + excluded.seconds, level_sum = level_sum + excluded.level_sum",
        [(*key, *cell) for key, cell in minutes.items()],
    )
    new_tip, stretches = extend(tip, ((h.time, h.duration, h.state, h.label) for h in hops))
    written: Stretch | None = None
    for stretch in stretches:
        if stretch.rowid is not None:
            conn.execute(
                "UPDATE stretches SET end = ?, hops = ? WHERE rowid = ?", (stretch.end, stretch.hops, stretch.rowid)
            )
            written = stretch
        else:
            cursor = conn.execute("INSERT INTO stretches VALUES (?, ?, ?, ?, ?, ?)", _values(stretch))
            written = dataclasses.replace(stretch, rowid=cursor.lastrowid)
    if new_tip.stretch is not None:  # the open stretch is the last one written
        assert written is not None
        new_tip = Tip(written, new_tip.last_time, new_tip.previous_label)
    return new_tip


def prune(conn: sqlite3.Connection, cutoff: float) -> None:
    """Delete what is older than ``cutoff`` (epoch seconds), roll-ups included."""
    conn.execute("DELETE FROM hops WHERE time < ?", (cutoff,))
    conn.execute("DELETE FROM events WHERE time < ?", (cutoff,))
    conn.execute("DELETE FROM minutes WHERE minute < ?", (int(cutoff // 60),))
    conn.execute("DELETE FROM stretches WHERE end < ?", (cutoff,))


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """An existing database for reading (``moodstream history``); FileNotFoundError when absent."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no history database at {path}")
    return sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)


def has_rollups(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("PRAGMA user_version").fetchone()[0] >= VERSION)


def read_hops(conn: sqlite3.Connection, start: float, end: float) -> Iterator[Hop]:
    """The hops of a range in time order, one at a time (a month is millions)."""
    cursor = conn.execute(
        f"SELECT {', '.join(HOP_COLUMNS)} FROM hops WHERE time >= ? AND time < ? ORDER BY time", (start, end)
    )
    for row in cursor:
        yield Hop.from_row(row)


def read_marks(
    conn: sqlite3.Connection, start: float = 0.0, end: float = float("inf"), kind: str = "mark", limit: int = -1
) -> list[Mark]:
    """The events of ``kind`` in a range, oldest first; with ``limit``, only the newest that many."""
    cursor = conn.execute(
        "SELECT time, kind, message, details FROM events WHERE kind = ? AND time >= ? AND time < ? "
        "ORDER BY time DESC LIMIT ?",
        (kind, start, end if end != float("inf") else 1e18, limit),
    )
    return [Mark(t, k, m, json.loads(d)) for t, k, m, d in reversed(cursor.fetchall())]


# the spool: rows the shutdown could not write


def spool_path(db: str | Path) -> Path:
    return Path(f"{db}.spool")


def write_spool(db: str | Path, rows: Sequence[Hop | Mark]) -> Path:
    """Replace the spool beside ``db`` with ``rows`` (atomically). The writer read the rows of an
    earlier spool at its start and holds them until they are written, so they are among ``rows``."""
    path = spool_path(db)
    lines = [json.dumps({"hop" if isinstance(r, Hop) else "event": r.row()}) for r in rows]
    write_atomic(path, "".join(line + "\n" for line in lines))
    return path


def read_spool(db: str | Path) -> list[Hop | Mark]:
    """The spooled rows (none when there is no spool); a damaged line is skipped and logged."""
    path = spool_path(db)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        log.error("history: cannot read the spool %s (%s); its rows stay there", path, exc)
        return []
    rows: list[Hop | Mark] = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            item = json.loads(line)
            if "hop" in item:
                values = item["hop"]
                rows.append(Hop.from_row(values))
            else:
                t, kind, message, details = item["event"]
                rows.append(Mark(t, kind, message, json.loads(details)))
        except (ValueError, TypeError, KeyError) as exc:
            log.error("history: skipping line %d of %s: %s", number, path, exc)
    return rows


def remove_spool(db: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(spool_path(db))
