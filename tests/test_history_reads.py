"""History reads that cost what the answer needs (issue 27, defect 1): the roll-ups give the same
summary and bins as reading every hop; an old database gets them built; a read runs on a reader
thread, is cut at its deadline, and a client cannot ask for more than a month or hold more
than one read at a time."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from streamer.config import HistorySettings
from streamer.core.events import EventBus
from streamer.sinks import history, historydb, historyread
from streamer.sinks.history import HistorySink
from streamer.sinks.historydb import Hop, Tip
from tests.wire import serving, url, valid

T0 = 1_795_000_000.0 + 17.3  # not on a minute: the edges are partial minutes


def music(n: int, seed: int = 0, start: float = T0, hop_s: float = 1.0) -> list[Hop]:
    """``n`` hops of moods that hold for a while, with uncertain and silent spells and gaps."""
    rng = random.Random(seed)
    out: list[Hop] = []
    t, state, label = start, "emotion", "happy"
    for k in range(n):
        if rng.random() < 0.03:
            state = rng.choice(["emotion", "emotion", "uncertain", "silence"])
            label = rng.choice(["happy", "sad", "angry"])
        if rng.random() < 0.002:
            t += rng.uniform(5, 300)  # the daemon was stopped a while
        t += hop_s
        claimed = label if state == "emotion" else None
        out.append(Hop(t, k, hop_s, state, claimed, 0.7, {"happy": 0.7}, rng.uniform(-40, -10), "m"))
    return out


def stored(path: Path, hops: list[Hop], batch: int = 997) -> None:
    """Written as the sink writes them: batches, each with its roll-ups."""
    conn = historydb.connect(path)
    tip = historydb.open_tip(conn)
    for i in range(0, len(hops), batch):
        with conn:
            tip = historydb.write_batch(conn, tip, hops[i : i + batch], [])
    conn.close()


def raw_bins(hops: list[Hop], start: float, end: float, count: int) -> list[dict[str, Any]]:
    return historyread.Bins(start, end, count).feed(h for h in hops if start <= h.time < end).result()


def expected(hops: list[Hop], start: float, end: float) -> dict[str, Any]:
    return historyread.summarise(h for h in hops if start <= h.time < end)


RANGES = [(0.0, 1e9), (100.5, 5000.2), (61.0, 62.5), (3000.0, 3000.5), (777.7, 9000.0)]


@pytest.mark.parametrize("a, b", RANGES)
def test_rollups_summarise_a_range_as_reading_every_hop_does(tmp_path: Path, a: float, b: float) -> None:
    hops = music(12_000)
    db = tmp_path / "h.sqlite"
    stored(db, hops)
    start, end = T0 + a, min(T0 + b, hops[-1].time + 1)
    conn = historydb.open_readonly(db)
    _, summary = historyread.query(conn, start, end, 50)
    assert summary == expected(hops, start, end)
    # the hops not yet written continue the stored ones
    split = len([h for h in hops if h.time < start + (end - start) / 2])
    partial = tmp_path / "p.sqlite"
    stored(partial, hops[:split])
    tail = [h for h in hops[split:] if start <= h.time < end]  # the sink passes the range's
    _, summary = historyread.query(historydb.open_readonly(partial), start, end, 50, tail)
    assert summary == expected(hops, start, end)


def test_bins_finer_than_a_minute_are_counted_from_the_hops(tmp_path: Path) -> None:
    hops = music(5000, seed=3)
    db = tmp_path / "h.sqlite"
    stored(db, hops)
    start, end = T0 + 200.0, T0 + 3800.0
    bins, _ = historyread.query(historydb.open_readonly(db), start, end, 600)
    assert bins == raw_bins(hops, start, end, 600)


def test_bins_of_whole_minutes_come_from_the_rollup(tmp_path: Path) -> None:
    hops = music(20_000, seed=4)
    db = tmp_path / "h.sqlite"
    stored(db, hops)
    start = (T0 // 60 + 2) * 60  # on a minute, and bins of 5 minutes: no minute straddles a bin
    end = start + 300 * 50
    bins, _ = historyread.query(historydb.open_readonly(db), start, end, 50)
    assert bins == raw_bins(hops, start, end, 50)


def test_a_database_from_before_the_rollups_gets_them_built_once(tmp_path: Path) -> None:
    hops = music(8000, seed=5)
    db = tmp_path / "old.sqlite"
    old = sqlite3.connect(db)
    old.executescript(historydb.SCHEMA.split("CREATE TABLE IF NOT EXISTS minutes")[0])
    old.executemany(f"INSERT INTO hops VALUES ({', '.join('?' * 9)})", [h.row() for h in hops])
    old.commit()
    old.close()
    start, end = T0 + 50.5, T0 + 7000.0
    # before: readers still answer, from the hops
    _, before = historyread.query(historydb.open_readonly(db), start, end, 10)
    assert before == expected(hops, start, end)
    historydb.connect(db).close()  # the writer opens it
    conn = historydb.open_readonly(db)
    assert historydb.has_rollups(conn)
    _, after = historyread.query(conn, start, end, 10)
    assert after == expected(hops, start, end)
    fresh = tmp_path / "fresh.sqlite"
    stored(fresh, hops)
    rows = "SELECT * FROM stretches ORDER BY start"
    assert conn.execute(rows).fetchall() == sqlite3.connect(fresh).execute(rows).fetchall()


def test_a_stretch_open_across_batches_is_one_row(tmp_path: Path) -> None:
    hops = [Hop(T0 + k, k, 1.0, "emotion", "sad", 0.8, {}, -20.0, "m") for k in range(10)]
    db = tmp_path / "h.sqlite"
    stored(db, hops, batch=3)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT start, first, end, label, hops, switch FROM stretches").fetchall() == [
        (T0 - 1, T0, T0 + 9, "sad", 10, 0)
    ]
    expected = historydb.Stretch(T0 - 1, T0, T0 + 9, "sad", 10, False, 1)
    assert historydb.open_tip(conn) == Tip(expected, T0 + 9, "sad")


# through the server, as a page asks


async def _ask(ws: Any, request: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(request))
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if reply.get("id") == request.get("id") and reply["type"] in ("history", "error"):
            return valid(reply)


def _sink(db: Path) -> HistorySink:
    return HistorySink(HistorySettings(path=str(db)), hop_seconds=1.0)


def test_a_range_longer_than_a_month_is_refused(tmp_path: Path) -> None:
    stored(tmp_path / "h.sqlite", music(100, start=time.time() - 200))

    async def main() -> None:
        sink = _sink(tmp_path / "h.sqlite")
        async with serving(EventBus()) as server:
            server.requests["get_history"] = sink.answer
            async with connect(url(server)) as ws:
                now = time.time()
                reply = await _ask(ws, {"type": "get_history", "from": now - 40 * 86400, "to": now, "id": 1})
                assert reply["code"] == "bad_request" and "31 days" in reply["message"]
                reply = await _ask(ws, {"type": "get_history", "from": now - 30 * 86400, "to": now, "id": 2})
                assert reply["type"] == "history" and reply["source"] == "database"

    asyncio.run(main())


def slow_query(*args: Any) -> Any:
    """A database that never finishes: a recursive count SQLite runs until it is interrupted."""
    conn = args[0]
    conn.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c").fetchone()
    raise AssertionError("the endless query ended")


def test_a_slow_read_is_cut_at_its_deadline_off_the_event_loop(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "h.sqlite"
    stored(db, music(100, start=time.time() - 200))
    monkeypatch.setattr(historyread, "query", slow_query)
    monkeypatch.setattr(history, "READ_DEADLINE_S", 1.0)
    readers: set[str] = set()
    original = history.HistorySink._read

    def spy(self: HistorySink, *args: Any) -> Any:
        readers.add(threading.current_thread().name)
        return original(self, *args)

    monkeypatch.setattr(history.HistorySink, "_read", spy)

    async def main() -> None:
        sink = _sink(db)
        async with serving(EventBus()) as server:
            server.requests["get_history"] = sink.answer
            async with connect(url(server)) as slow, connect(url(server)) as other:
                now = time.time()
                asking = asyncio.create_task(_ask(slow, {"type": "get_history", "from": now - 86400, "id": 1}))
                await asyncio.sleep(0.3)
                # the loop is free meanwhile: another client is answered while the read runs
                await other.send('{"type": "ping", "id": 2}')
                while json.loads(await asyncio.wait_for(other.recv(), 5))["type"] != "pong":
                    pass
                assert not asking.done()
                reply = await asking
                assert reply["type"] == "error" and reply["code"] == "timed_out", reply

    asyncio.run(main())
    assert readers and all(name.startswith("history-read") for name in readers)


def test_reads_are_one_at_a_time_per_client_and_bounded_in_all(tmp_path: Path, monkeypatch) -> None:
    db = tmp_path / "h.sqlite"
    stored(db, music(100, start=time.time() - 200))
    running: list[int] = []
    most = [0]
    lock = threading.Lock()
    real = historyread.query

    def counted(*args: Any) -> Any:
        with lock:
            running.append(1)
            most[0] = max(most[0], len(running))
        time.sleep(0.2)
        try:
            return real(*args)
        finally:
            with lock:
                running.pop()

    monkeypatch.setattr(historyread, "query", counted)

    async def one_client(server: Any, asks: int) -> list[str]:
        async with connect(url(server)) as ws:
            now = time.time()
            for k in range(asks):
                await ws.send(json.dumps({"type": "get_history", "from": now - 86400, "id": k}))
            replies = []
            while len(replies) < asks:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 20))
                if reply["type"] in ("history", "error"):
                    replies.append(reply["type"])
            return replies

    async def main() -> None:
        sink = _sink(db)
        async with serving(EventBus(), requests_per_second=100) as server:
            server.requests["get_history"] = sink.answer
            alone = await one_client(server, 4)
            assert alone == ["history"] * 4 and most[0] == 1  # one client: one read at a time
            most[0] = 0
            results = await asyncio.gather(*(one_client(server, 2) for _ in range(4)))
            assert all(r == ["history", "history"] for r in results)
            assert most[0] == history.READERS  # four clients: never more than READERS at once

    asyncio.run(main())


def test_a_stretch_that_begins_just_after_the_range_is_not_in_it(tmp_path: Path) -> None:
    """Hop stamps jitter: a stretch whose first hop comes 0.999 s after the range's last one starts
    (a hop's length earlier) inside the range, yet holds none of its hops."""
    stamps = [T0 + k - (0.001 if k == 6 else 0.0) for k in range(10)]
    labels = ["happy"] * 3 + [None] * 3 + ["sad"] * 4
    hops = [
        Hop(t, k, 1.0, "emotion" if label else "uncertain", label, 0.8, {}, -20.0, "m")
        for k, (t, label) in enumerate(zip(stamps, labels, strict=True))
    ]
    db = tmp_path / "h.sqlite"
    stored(db, hops)
    end = stamps[5] + 0.5  # the range ends between the uncertain hops and the sad stretch
    _, summary = historyread.query(historydb.open_readonly(db), T0 - 5, end, 10)
    assert summary == expected(hops, T0 - 5, end)
    assert summary["switches"] == 0 and set(summary["longest"]) == {"happy"}
