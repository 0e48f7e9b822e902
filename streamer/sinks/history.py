"""The mood history sink: every hop, status event and session mark in SQLite, the last hour in memory.

Sparing the SD card: hops are buffered in memory and written in one transaction every
``flush_seconds`` (and at once for a session mark, and at shutdown), by one worker thread that owns
the database, so neither the pipeline nor the event loop ever waits for a disk. WAL mode: a
``kill -9`` loses at most the batch not yet written, never the file. A write that fails (a full
disk, a read-only file, a missing folder, another process holding the lock) is one log line and one
``history_error`` status event; the rows are kept for the next try (up to ``MAX_PENDING_ROWS``)
and the daemon runs on. At shutdown the last write has ``FINAL_WRITE_S``; what it cannot write goes
to a spool file beside the database (streamer/sinks/historydb.py), written first at the next start.

Without a path the sink keeps only the last hour in memory, which the web page's strip reads
(the ``get_history`` request); with one, ranges come from the database plus what is not yet
written. Reads run on ``READERS`` threads of their own with a deadline of ``READ_DEADLINE_S``
(SQLite is interrupted then), and cost what the answer needs (streamer/sinks/historyread.py): no
request can delay a hop or hold much memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamer.config import HistorySettings
from streamer.core.events import EmotionEvent, Event, EventBus, StatusEvent, Subscription
from streamer.sinks import historydb, historyread
from streamer.sinks.historydb import Hop, Mark, Tip
from streamer.sinks.protocol import ProtocolError

log = logging.getLogger(__name__)

QUEUE_EVENTS = 4096  # events the sink may lag behind the bus (it only appends to lists)
MAX_PENDING_ROWS = 200_000  # rows kept for a retry while the disk is full (about two days of hops)
PRUNE_EVERY_S = 3600.0
STATS = ("rows_written", "batches", "write_errors", "rows_spooled", "rows_lost")  # reported as history_*
WRITE_BUSY_S = 2.0  # how long one write waits for another process's lock before it is retried later
FINAL_WRITE_S = 3.0  # the shutdown's last write, lock waits included (the unit's TimeoutStopSec is 15 s)
READERS = 2  # history reads at once, whoever asks (two cores); more wait, within their deadline
READ_DEADLINE_S = 2.0  # a read not answered by then is interrupted: error "timed_out"
MAX_MARKS = 1000  # the newest marks read for a reply's marks and sessions


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


class ReadTimeout(ProtocolError):
    """A history read past its deadline (the reply is an error ``timed_out``)."""

    def __init__(self) -> None:
        super().__init__("timed_out", f"the history read took over {READ_DEADLINE_S:g} s; ask for a shorter range")


class HistorySink:
    """The sink (streamer/sinks/base.py shape): buffers hops and events, a worker thread writes them."""

    name = "history"

    def __init__(self, settings: HistorySettings, hop_seconds: float) -> None:
        self.settings = settings
        self.hop_seconds = hop_seconds
        self.recent: deque[Hop] = deque(maxlen=max(1, round(historyread.MEMORY_SECONDS / hop_seconds)))
        self.marks: deque[Mark] = deque(maxlen=MAX_MARKS)  # recent session marks, for the page
        self._pending: list[Hop | Mark] = []
        self._batches: queue.Queue[list[Hop | Mark] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bus: EventBus | None = None
        self._conn: sqlite3.Connection | None = None  # the worker's; readers open their own
        self._tip = Tip()
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
            if self._readers is not None:
                self._readers.shutdown(wait=False, cancel_futures=True)
            if self._worker is not None:
                await self._stop_writer(self._worker)

    async def _stop_writer(self, worker: threading.Thread) -> None:
        """Hand over the last rows and wait for the writer: it writes them within FINAL_WRITE_S or
        spools them. A writer stuck in the disk itself is left behind, its rows counted and logged."""
        unwritten = len(self._pending)
        self._flush()
        self._batches.put(None)
        await asyncio.to_thread(worker.join, FINAL_WRITE_S + WRITE_BUSY_S + 2.0)
        if worker.is_alive():
            self.counters["rows_lost"] += unwritten
            log.error(
                "history: the writer of %s did not finish in time (a hung disk?); the last %d rows are lost",
                self.settings.path,
                unwritten,
            )

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
        waiting: list[Hop | Mark] = historydb.read_spool(self.settings.path)
        spooled = bool(waiting)
        if spooled:
            log.info("history: writing %d rows spooled at the last shutdown", len(waiting))
        stopping = False
        while not stopping:
            batches = [self._batches.get()]
            with contextlib.suppress(queue.Empty):  # everything queued meanwhile: one write, not one each
                while True:
                    batches.append(self._batches.get_nowait())
            stopping = None in batches
            for batch in batches:
                waiting.extend(batch or ())
            deadline = time.monotonic() + FINAL_WRITE_S if stopping else None
            if waiting and self._write(waiting, deadline):
                waiting = []
                if spooled:
                    historydb.remove_spool(self.settings.path)
                    spooled = False
            elif len(waiting) > MAX_PENDING_ROWS:
                lost = len(waiting) - MAX_PENDING_ROWS
                self.counters["rows_lost"] += lost
                del waiting[:lost]
        if self._conn is not None:
            self._conn.close()
        if waiting:
            self._spool(waiting)

    def _spool(self, rows: list[Hop | Mark]) -> None:
        try:
            path = historydb.write_spool(self.settings.path, rows)
        except OSError as exc:
            self.counters["rows_lost"] += len(rows)
            log.error("history: %d rows could not be written nor spooled (%s) and are lost", len(rows), exc)
            return
        self.counters["rows_spooled"] += len(rows)
        log.warning(
            "history: %d rows not written to %s are kept in %s for the next start", len(rows), self.settings.path, path
        )

    def _write(self, rows: list[Hop | Mark], deadline: float | None = None) -> bool:
        """One transaction; False (reported once per failing spell) when the disk refuses it.
        ``deadline`` (monotonic) bounds the wait for another process's lock (the final write's)."""
        busy = WRITE_BUSY_S if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            if self._conn is None:
                self._conn = historydb.connect(self.settings.path, busy)
                self._tip = historydb.open_tip(self._conn)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy * 1000)}")
            hops = [r for r in rows if isinstance(r, Hop)]
            marks = [r for r in rows if isinstance(r, Mark)]
            with self._conn:
                tip = historydb.write_batch(self._conn, self._tip, hops, marks)
                self._prune()
            self._tip = tip
        except (sqlite3.Error, OSError) as exc:
            self._failed(exc)
            return False
        self.counters["rows_written"] += len(rows)
        self.counters["batches"] += 1
        if self._failing:
            self._failing = False
            log.info("history: writing to %s again", self.settings.path)
            self._publish(StatusEvent("history_ok", f"history: writing to {self.settings.path} again"))
        return True

    def _failed(self, exc: BaseException) -> None:
        self.counters["write_errors"] += 1
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if not self._failing:
            self._failing = True
            message = f"history: cannot write to {self.settings.path}: {exc}; keeping the rows and retrying"
            log.error("%s", message)
            self._publish(StatusEvent("history_error", message, details={"path": self.settings.path}))

    def _prune(self) -> None:
        now = time.time()
        if self.settings.retention_days <= 0 or now - self._last_prune < PRUNE_EVERY_S:
            return
        assert self._conn is not None
        historydb.prune(self._conn, now - self.settings.retention_days * 86400.0)
        self._last_prune = now

    def _publish(self, event: StatusEvent) -> None:
        if self._loop is not None and self._bus is not None:
            with contextlib.suppress(RuntimeError):  # a closed loop: the log line is what remains
                self._loop.call_soon_threadsafe(self._bus.publish, event)

    # reading, for the get_history request

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The ``history`` reply to a ``get_history`` request (ValueError: a bad range)."""
        start, end, count = historyread.parse_range(request, time.time())
        return {"type": "history", "enabled": self.enabled, **await self.query(start, end, count)}

    async def query(self, start: float, end: float, count: int) -> dict[str, Any]:
        """Bins, a summary, the marks of a range and every session known, read on a reader
        thread within READ_DEADLINE_S (ReadTimeout beyond)."""
        deadline = time.monotonic() + READ_DEADLINE_S
        recent = [h for h in self.recent if start <= h.time < end]
        from_db = self.enabled and (not self.recent or start < self.recent[0].time)
        if self._readers is None:
            self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="history-read")
        loop, marks = asyncio.get_running_loop(), list(self.marks)
        if from_db:
            future = loop.run_in_executor(self._readers, self._read, start, end, count, recent, marks, deadline)
        else:
            future = loop.run_in_executor(self._readers, self._from_memory, start, end, count, recent, marks)
        try:
            result = await asyncio.wait_for(future, READ_DEADLINE_S + 1.0)  # the reader stops itself before
        except TimeoutError:
            raise ReadTimeout() from None
        return {"from": start, "to": end, "bin_seconds": (end - start) / count, **result}

    def _from_memory(
        self, start: float, end: float, count: int, recent: list[Hop], marks: list[Mark]
    ) -> dict[str, Any]:
        bins = historyread.Bins(start, end, count).feed(recent).result()
        summary = historyread.summarise(recent)
        return {
            "source": "memory",
            "bins": bins,
            "summary": summary,
            **historyread.marks_and_sessions(marks, start, end, time.time()),
        }

    def _read(
        self, start: float, end: float, count: int, recent: list[Hop], memory_marks: list[Mark], deadline: float
    ) -> dict[str, Any]:
        """On a reader thread: the database's part of the range and ``recent``'s unwritten hops."""
        if time.monotonic() > deadline:  # waited for a reader that long
            raise ReadTimeout()
        try:
            conn = historydb.open_readonly(self.settings.path)
        except (FileNotFoundError, sqlite3.Error):  # nothing written yet
            return self._from_memory(start, end, count, recent, memory_marks)
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        try:
            newest = conn.execute("SELECT max(time) FROM hops").fetchone()[0]
            unwritten = [h for h in recent if newest is None or h.time > newest]
            bins, summary = historyread.query(conn, start, end, count, unwritten)
            marks = historydb.read_marks(conn, limit=MAX_MARKS)
        except sqlite3.Error as exc:
            if time.monotonic() > deadline:
                raise ReadTimeout() from None
            log.warning("history: cannot read %s: %s", self.settings.path, exc)
            return self._from_memory(start, end, count, recent, memory_marks)
        finally:
            conn.close()
        newest_mark = marks[-1].time if marks else float("-inf")
        marks += [m for m in memory_marks if m.time > newest_mark]
        return {
            "source": "database",
            "bins": bins,
            "summary": summary,
            **historyread.marks_and_sessions(marks, start, end, time.time()),
        }
