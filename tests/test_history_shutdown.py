"""A bounded shutdown that loses no row (issue 27, defect 4): while another process holds the
history database locked, the sink's last write gives up at its deadline and spools the rows beside
the database; the next start writes them first. A spool that cannot be written either is counted."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from streamer.config import HistorySettings
from streamer.core.events import EventBus, StatusEvent
from streamer.sinks import history, historydb
from streamer.sinks.history import HistorySink
from tests.wire import emotion


def locked(db: Path) -> sqlite3.Connection:
    """Another process's connection holding the write lock (as `sqlite3 db 'BEGIN EXCLUSIVE'` would)."""
    historydb.connect(db).close()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


async def run_sink(db: Path, events: int) -> tuple[HistorySink, float]:
    """A sink fed ``events`` hops and a mark, then stopped; (the sink, seconds its stop took)."""
    sink = HistorySink(HistorySettings(path=str(db), flush_seconds=3600), hop_seconds=1.0)
    bus, stop = EventBus(), asyncio.Event()
    task = asyncio.create_task(sink.run(bus, stop))
    await asyncio.sleep(0)
    for seq in range(events):
        bus.publish(emotion(seq))
    bus.publish(StatusEvent("source_lost", "gone"))
    await asyncio.sleep(0.1)
    t0 = time.monotonic()
    bus.close()
    stop.set()
    await asyncio.wait_for(task, 30)
    return sink, time.monotonic() - t0


def test_a_locked_database_at_shutdown_spools_the_rows_and_the_next_start_writes_them(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(history, "FINAL_WRITE_S", 0.5)
    db = tmp_path / "h.sqlite"
    other = locked(db)
    try:
        sink, seconds = asyncio.run(run_sink(db, 25))
    finally:
        other.rollback()
        other.close()
    assert seconds < history.FINAL_WRITE_S + history.WRITE_BUSY_S + 2.0
    assert sink.stats()["history_rows_spooled"] == 26 and sink.stats()["history_rows_lost"] == 0
    assert historydb.spool_path(db).exists()
    spooled = historydb.read_spool(db)
    assert len(spooled) == 26
    # the next start writes the spooled rows before its own, and removes the spool
    sink, _ = asyncio.run(run_sink(db, 5))
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM hops").fetchone()[0] == 30
    assert conn.execute("SELECT count(*) FROM events WHERE kind = 'source_lost'").fetchone()[0] == 2
    assert conn.execute("SELECT sum(hops) FROM minutes").fetchone()[0] == 30  # rolled up like any batch
    assert not historydb.spool_path(db).exists()
    assert sink.stats()["history_rows_spooled"] == 0


def test_rows_that_can_be_neither_written_nor_spooled_are_counted_and_logged(
    tmp_path: Path, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(history, "FINAL_WRITE_S", 0.3)
    db = tmp_path / "h.sqlite"
    other = locked(db)

    def no_spool(db: object, rows: object) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(historydb, "write_spool", no_spool)
    try:
        sink, _ = asyncio.run(run_sink(db, 7))
    finally:
        other.rollback()
        other.close()
    assert sink.stats()["history_rows_lost"] == 8
    assert "8 rows could not be written nor spooled" in caplog.text


@pytest.mark.parametrize("garbage", ["not json\n", '{"hop": [1, 2]}\n'])
def test_a_damaged_spool_line_is_skipped_not_fatal(tmp_path: Path, garbage: str, caplog) -> None:
    db = tmp_path / "h.sqlite"
    historydb.write_spool(db, [historydb.Hop(1.0, 1, 1.0, "silence", None, 0.0, {}, -60.0, "m")])
    with historydb.spool_path(db).open("a") as f:
        f.write(garbage)
    assert len(historydb.read_spool(db)) == 1
    assert "skipping line 2" in caplog.text


def test_a_spool_not_written_again_is_spooled_once_not_twice(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(history, "FINAL_WRITE_S", 0.3)
    db = tmp_path / "h.sqlite"
    other = locked(db)
    try:
        asyncio.run(run_sink(db, 4))  # 5 rows spooled
        sink, _ = asyncio.run(run_sink(db, 2))  # still locked: the 5 and its own 3, once each
    finally:
        other.rollback()
        other.close()
    assert len(historydb.read_spool(db)) == 8 and sink.stats()["history_rows_spooled"] == 8
