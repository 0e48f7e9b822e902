"""The mood history: batches in SQLite, a kill -9 that loses at most the last batch, a disk that
refuses writes, session marks, and `moodstream history` (summary, CSV, plot)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from streamer import cli
from streamer.audio.synth import mood_audio
from streamer.config import HistorySettings
from streamer.core.events import EventBus, StatusEvent
from streamer.sinks.history import HistorySink, Hop, Mark, find_session, sessions, summarise
from tests.wire import emotion, valid

ROOT = Path(__file__).resolve().parent.parent


def hop(t: float, state: str = "emotion", label: str | None = "happy", duration: float = 1.0) -> Hop:
    probs = {"angry": 0.1, "happy": 0.1, "sad": 0.1}
    if label:
        probs[label] = 0.8
    return Hop(t, int(t), duration, state, label if state == "emotion" else None, 0.8, probs, -20.0, "tiny")


def count(db: Path, table: str = "hops") -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # created, tables not yet
        return 0
    finally:
        conn.close()


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_summary_counts_minutes_switches_and_longest_stretches() -> None:
    hops = [hop(t, label="happy") for t in range(1, 61)]  # 60 s happy
    hops += [hop(t, state="uncertain", label=None) for t in range(61, 71)]  # 10 s uncertain
    hops += [hop(t, label="sad") for t in range(71, 191)]  # 120 s sad
    hops += [hop(t, label="happy") for t in range(191, 221)]  # 30 s happy
    hops += [hop(t, label="happy") for t in range(500, 590)]  # 90 s happy after a gap: a stretch of its own
    s = summarise(hops)
    assert s["minutes"] == {"happy": 3.0, "sad": 2.0}
    assert s["other_minutes"] == {"uncertain": pytest.approx(10 / 60, abs=0.01)}
    assert s["switches"] == 2  # happy -> sad (across the uncertain part) -> happy; the gap is no switch
    assert s["longest"]["sad"]["seconds"] == 120.0
    assert s["longest"]["happy"]["seconds"] == 90.0 and s["longest"]["happy"]["from"] == 499.0


def test_sessions_are_bracketed_by_marks_of_one_name() -> None:
    marks = [
        Mark(100.0, "mark", "session 1 start", {}),
        Mark(200.0, "mark", "session 12 start", {}),
        Mark(900.0, "mark", "session 12 end", {}),
        Mark(1000.0, "mark", "tea break", {}),
    ]
    found = sessions(marks, now=2000.0)
    assert [(s["name"], s["from"], s["to"]) for s in found] == [
        ("session 1", 100.0, 200.0),  # a single mark lasts until the next mark
        ("session 12", 200.0, 900.0),
        ("tea break", 1000.0, 2000.0),  # ... or until now
    ]
    assert find_session(marks, "session 12", 2000.0) == (200.0, 900.0)
    assert find_session(marks, "session 2", 2000.0) is None


def test_hops_are_written_in_batches_and_the_rest_at_shutdown(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"

    async def main() -> None:
        bus, stop = EventBus(), asyncio.Event()
        sink = HistorySink(HistorySettings(path=str(db), flush_seconds=1.0), hop_seconds=1.0)
        task = asyncio.create_task(sink.run(bus, stop))
        await asyncio.sleep(0.1)
        for seq in range(5):
            bus.publish(emotion(seq, "sad"))
        await asyncio.sleep(0.3)
        assert count(db) == 0  # buffered, not one write per hop
        await until(lambda: count(db) == 5)  # the batch, at the flush
        bus.publish(emotion(5, state="uncertain"))
        bus.publish(StatusEvent("source_lost", "gone"))
        bus.close()  # shutdown: what is buffered is written before run returns
        await asyncio.wait_for(task, 15)
        assert count(db) == 6 and count(db, "events") == 1
        assert sink.stats()["history_batches"] == 2 and sink.stats()["history_rows_written"] == 7
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            row = conn.execute("SELECT state, label, probabilities FROM hops ORDER BY seq DESC").fetchone()
        assert row[0] == "uncertain" and row[1] is None and json.loads(row[2])["happy"] == 0.38

    asyncio.run(main())


def test_an_unwritable_path_is_one_status_event_and_the_sink_runs_on(tmp_path: Path, caplog) -> None:
    folder = tmp_path / "not-yet"
    db = folder / "h.sqlite"

    async def main() -> None:
        bus, stop = EventBus(), asyncio.Event()
        seen = bus.subscribe(100)
        sink = HistorySink(HistorySettings(path=str(db), flush_seconds=0.2), hop_seconds=1.0)
        task = asyncio.create_task(sink.run(bus, stop))
        await asyncio.sleep(0.1)
        for seq in range(6):
            bus.publish(emotion(seq))
            await asyncio.sleep(0.25)  # several flushes, all failing
        statuses = []
        while seen.pending():
            event = await seen.get()
            if isinstance(event, StatusEvent):
                statuses.append(event)
        assert [s.kind for s in statuses] == ["history_error"]  # once, not per flush
        assert "cannot write to" in statuses[0].message and str(db) in statuses[0].message
        assert sink.stats()["history_write_errors"] >= 2 and not task.done()
        folder.mkdir()  # the disk is back: the kept rows are written, and that is said too
        bus.publish(emotion(6))
        await until(lambda: count(db) == 7)
        await until(lambda: any(isinstance(e, StatusEvent) and e.kind == "history_ok" for e in _drain(seen)))
        stop.set()
        await asyncio.wait_for(task, 15)

    asyncio.run(main())
    errors = [r for r in caplog.records if "cannot write to" in r.getMessage()]
    assert len(errors) == 1


def _drain(sub: Any) -> list[Any]:
    out = []
    while sub.pending():
        out.append(sub._queue.get_nowait())
    return out


# the daemon as a process


def _daemon(
    tmp_path: Path, tiny_model: Path, *args: str, seconds: float = 40.0, server: bool = False, **kwargs: Any
) -> subprocess.Popen:
    clip = tmp_path / "music.wav"
    sf.write(clip, mood_audio("happy", seconds), 16000)
    config = tmp_path / "config.toml"
    config.write_text(f"[history]\nflush_seconds = {1.0 if server else 2.0}\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    command = ["run", "--config", str(config), "--source", f"file:{clip}", "--realtime", "--model", str(tiny_model)]
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", *command, *(() if server else ("--jsonl", "-", "--no-server")), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_kill_9_loses_at_most_the_last_batch(tmp_path: Path, tiny_model: Path) -> None:
    db = tmp_path / "h.sqlite"
    proc = _daemon(tmp_path, tiny_model, "--history", str(db))
    produced: list[dict[str, Any]] = []
    assert proc.stdout is not None
    try:
        while len(produced) < 9:  # 9 hops: at least three 2 s flushes have happened
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            event = json.loads(line)
            if event["type"] == "emotion":
                produced.append(event)
        killed_at = time.time()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        rest, _ = proc.communicate(timeout=30)
    produced += [e for e in map(json.loads, rest.splitlines()) if e["type"] == "emotion"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = [row[0] for row in conn.execute("SELECT seq FROM hops ORDER BY time")]
    assert stored, "nothing was written before the kill"
    # what is stored is every hop from the first on, with no hole; what is lost is the newest hops
    assert stored == list(range(len(stored)))
    lost = [e for e in produced if e["seq"] >= len(stored)]
    # ...and all of those came within one flush interval (2 s) of the kill, plus scheduling slack
    assert all(e["timestamp"] > killed_at - 2.0 - 1.5 for e in lost), (killed_at, [e["timestamp"] for e in lost])


@pytest.mark.slow
def test_a_full_disk_is_one_log_line_and_status_event_and_the_daemon_runs_on(tmp_path: Path, tiny_model: Path) -> None:
    db = tmp_path / "h.sqlite"

    def small_files() -> None:  # a real "File too large" from the kernel once the database grows
        resource.setrlimit(resource.RLIMIT_FSIZE, (12 * 1024, 12 * 1024))

    proc = _daemon(tmp_path, tiny_model, "--history", str(db), seconds=14.0, preexec_fn=small_files)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    errors = [e for e in events if e["type"] == "status" and e["kind"] == "history_error"]
    assert len(errors) == 1 and str(db) in errors[0]["message"]
    assert err.count("history: cannot write to") == 1
    hops = [e for e in events if e["type"] == "emotion"]
    assert len(hops) == 14 and hops[-1]["seq"] == 13  # every hop still came out
    assert any(e["type"] == "status" and e["kind"] == "stopped" for e in events)


def test_history_command_prints_the_summary_and_exports_csv(tmp_path: Path, capsys) -> None:
    db = tmp_path / "h.sqlite"
    now = time.time()
    rows = [hop(now - 300 + t, label="happy") for t in range(120)] + [
        hop(now - 180 + t, label="sad") for t in range(60)
    ]
    _store(db, rows, [Mark(now - 300, "mark", "session 3 start", {}), Mark(now - 200, "mark", "session 3 end", {})])
    assert cli.main(["history", "--db", str(db), "--since", "1h"]) == 0
    out = capsys.readouterr().out
    assert "180 hops" in out and "happy" in out and "2.0 min" in out and "switches   1" in out
    assert "longest 2 min 00 s" in out
    assert cli.main(["history", "--db", str(db), "--session", "session 3"]) == 0
    assert "101 hops" in capsys.readouterr().out  # from the start mark to the end mark, inclusive
    assert cli.main(["history", "--db", str(db), "--since", "1h", "--csv", "-"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(table) == 180 and table[0]["label"] == "happy" and float(table[0]["happy"]) == 0.8
    assert set(table[0]) >= {"time", "iso_time", "state", "angry", "happy", "sad", "rms_dbfs"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "soon"], "not a duration"),
        (["--since", "1h", "--from", "14:00"], "not both"),
        (["--session", "session 9"], "no session 'session 9'"),
        (["--from", "yesterday-ish"], "not a time"),
    ],
)
def test_history_command_refuses_bad_ranges_in_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    db = tmp_path / "h.sqlite"
    _store(db, [hop(time.time() - 10)], [])
    assert cli.main(["history", "--db", str(db), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_history_command_without_a_database_says_so(tmp_path: Path, capsys) -> None:
    assert cli.main(["history", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no history database at" in capsys.readouterr().err


def test_history_plot_draws_a_png_and_an_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    db = tmp_path / "h.sqlite"
    now = time.time()
    rows = [hop(now - 200 + t, label="happy" if t < 100 else "angry") for t in range(200)]
    _store(db, rows, [Mark(now - 150, "mark", "session 1 start", {})])
    for name in ("timeline.png", "timeline.svg"):
        assert cli.main(["history", "--db", str(db), "--since", "1h", "--plot", str(tmp_path / name)]) == 0
    png = (tmp_path / "timeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    svg = (tmp_path / "timeline.svg").read_text()
    assert "<svg" in svg and "session 1 start" in svg


def test_history_plot_without_matplotlib_names_the_extra(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    _store(db, [hop(time.time() - 10)], [])
    code = "import sys; sys.modules['matplotlib'] = None; from streamer import cli; sys.exit(cli.main(sys.argv[1:]))"
    run = subprocess.run(
        [sys.executable, "-c", code, "history", "--db", str(db), "--plot", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "moodstream history: --plot needs matplotlib: pip install 'moodstream[plot]' (the plot extra)"
    )


def _store(db: Path, hops: list[Hop], marks: list[Mark]) -> None:
    """Rows as the sink writes them (through a real sink, flushed at shutdown)."""

    async def main() -> None:
        sink = HistorySink(HistorySettings(path=str(db)), hop_seconds=1.0)
        sink._pending = [*hops, *marks]
        bus = EventBus()
        task = asyncio.create_task(sink.run(bus, asyncio.Event()))
        await asyncio.sleep(0.05)
        bus.close()
        await asyncio.wait_for(task, 15)

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mark(port: int, text: str, token: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("MOODSTREAM_TOKEN", None)
    if token:
        env["MOODSTREAM_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "mark", text, "--url", f"127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_marks_and_history_ranges_through_the_running_daemon(tmp_path: Path, tiny_model: Path) -> None:
    db = tmp_path / "h.sqlite"
    port = _free_port()
    proc = _daemon(
        tmp_path, tiny_model, "--history", str(db), "--port", str(port), "--token", "pw", seconds=60.0, server=True
    )

    async def main() -> None:
        async with asyncio.timeout(60):
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                try:
                    ws = await connect(f"ws://127.0.0.1:{port}/?token=pw", max_size=2**22)
                    break
                except OSError:
                    await asyncio.sleep(0.2)
        async with ws:
            hello = json.loads(await ws.recv())
            assert hello["config"]["history"]["path"] == str(db)
            marked = await asyncio.to_thread(_mark, port, "session 1 start", "pw")
            assert marked.returncode == 0 and marked.stdout.strip() == "marked: session 1 start", marked.stderr
            refused = await asyncio.to_thread(_mark, port, "no token", None)
            assert refused.returncode == 2 and "HTTP 401" in refused.stderr
            await asyncio.sleep(4)  # a few hops, and a flush (1 s in the config)
            now = time.time()
            await ws.send(json.dumps({"type": "get_history", "from": now - 1199, "to": now + 1, "bins": 1200, "id": 1}))
            async with asyncio.timeout(15):
                while (reply := valid(json.loads(await ws.recv())))["type"] != "history":
                    pass
        assert reply["id"] == 1 and reply["enabled"] and reply["source"] == "database"
        assert len(reply["bins"]) >= 3 and reply["summary"]["hops"] >= 3
        assert [m["text"] for m in reply["marks"]] == ["session 1 start"]
        assert [s["name"] for s in reply["sessions"]] == ["session 1"]

    try:
        asyncio.run(main())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    conn = sqlite3.connect(db)
    marks = conn.execute("SELECT message FROM events WHERE kind = 'mark'").fetchall()
    stopped = conn.execute("SELECT details FROM events WHERE kind = 'stopped'").fetchall()
    # the sinks subscribe before the source opens its stream: the history has its first status too
    first = conn.execute("SELECT kind FROM events ORDER BY time LIMIT 1").fetchone()[0]
    conn.close()
    assert marks == [("session 1 start",)] and len(stopped) == 1  # the shutdown batch made it
    assert first == "source_connected"
    final = json.loads(stopped[0][0])  # the final counters: the history's once, under its own names
    assert final["history_rows_written"] > 0 and final["history_write_errors"] == 0 and "rows_written" not in final
    gone = _mark(port, "too late", "pw")
    assert gone.returncode == 1 and "no daemon at" in gone.stderr
