"""A month of history under requests (issue 27): a real `moodstream run --history` on a generated
database of 30 days of 1 s hops (2.59 M rows, what a month of running writes), asked for 1, 7 and
30 days (`get_history`, 2000 bins) by one client, then for 30 days by 4 clients at once, while a
bystander client records when each hop arrives.

Per case: the reply's time (the slowest client's), the daemon's peak RSS above its RSS just before
(VmRSS polled every 20 ms), and the bystander's largest gap between hops (1 s apart when nothing
delays them). ``--checkout DIR`` measures another checkout's daemon (the code before issue 27:
`python -m bench.history_load --checkout ../main`); its figures go to stdout only.

    python -m bench --only history      # about 2 minutes, most of it making the database
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from bench.common import CACHE, ROOT, Section, Skipped, table, target
from streamer.sinks import historydb

DAYS = 30
HOP_S = 1.0
CASES = ((1, 1), (7, 1), (30, 1), (30, 4))  # (days asked for, clients asking at once)
BINS = 2000
REPLY_TARGET_S = 1.0
MEMORY_TARGET_MIB = 20.0
GAP_TARGET_S = 1.2
LABELS = ("angry", "happy", "sad")


def make_database(path: Path, days: float = DAYS, hop_s: float = HOP_S, end: float | None = None) -> int:
    """``days`` of hops ending at ``end`` (now): songs of 2.5 to 5 minutes, each of one mood with
    uncertain spells, and 8 silent hours a night; the roll-ups built as an upgraded database gets
    them (historydb.connect). Returns the number of hops."""
    rng = random.Random(27)
    end = time.time() if end is None else end
    t = end - days * 86400.0
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(historydb.SCHEMA)
    rows: list[tuple[Any, ...]] = []
    count = 0
    while t < end:
        song_end, label = t + rng.uniform(150, 300), rng.choice(LABELS)
        night = (t % 86400) < 8 * 3600
        while t < min(song_end, end):
            t += hop_s
            state = "silence" if night else ("uncertain" if rng.random() < 0.08 else "emotion")
            probs = {k: (0.7 if k == label else 0.15) for k in LABELS} if state != "silence" else {}
            claimed = label if state == "emotion" else None
            level = -60.0 if night else rng.uniform(-35, -12)
            rows.append((t, count, hop_s, state, claimed, 0.7 if claimed else 0.0, json.dumps(probs), level, "bench"))
            count += 1
        if len(rows) > 100_000:
            conn.executemany("INSERT INTO hops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            rows.clear()
    conn.executemany("INSERT INTO hops VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    historydb.connect(path).close()
    return count


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


class Peak:
    """The highest RSS of ``pid`` while it runs, polled every 20 ms on a thread of its own."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, rss_mib(pid), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mib(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_mib(self.pid))  # a reply faster than one poll


async def _ask(port: int, days: float) -> tuple[float, dict[str, Any]]:
    async with connect(f"ws://127.0.0.1:{port}/", max_size=2**24, open_timeout=10) as ws:
        now = time.time()
        t0 = time.monotonic()
        request = {"type": "get_history", "from": now - days * 86400, "to": now, "bins": BINS, "id": 1}
        await ws.send(json.dumps(request))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 600))
            if reply.get("id") == 1:
                return time.monotonic() - t0, reply


async def _case(port: int, pid: int, days: float, clients: int) -> dict[str, Any]:
    arrivals: list[float] = []

    async def bystander(stop: asyncio.Event) -> None:
        async with connect(f"ws://127.0.0.1:{port}/", max_size=2**24) as ws:
            while not stop.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if message["type"] == "emotion":
                    arrivals.append(time.monotonic())

    stop = asyncio.Event()
    watching = asyncio.create_task(bystander(stop))
    await asyncio.sleep(3.0)
    before = rss_mib(pid)
    peak = Peak(pid)
    results = await asyncio.gather(*(_ask(port, days) for _ in range(clients)))
    top = peak.stop()
    await asyncio.sleep(2.0)
    stop.set()
    await watching
    replies = [reply for _, reply in results]
    return {
        "days": days,
        "clients": clients,
        "reply_s": round(max(seconds for seconds, _ in results), 3),
        "reply_type": replies[0]["type"],
        "bins": len(replies[0].get("bins", [])),
        "hops": replies[0].get("summary", {}).get("hops"),
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(top, 1),
        "rss_growth_mib": round(top - before, 1),
        "max_gap_s": round(max((b - a for a, b in itertools.pairwise(arrivals)), default=math.inf), 3),
    }


def measure(checkout: Path, db: Path, cases: tuple[tuple[int, int], ...] = CASES) -> list[dict[str, Any]]:
    """Every case against `moodstream run --history db` run from ``checkout``."""
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "streamer.cli", "run", "--source", "demo", "--history", str(db)]
    command += ["--port", str(port), "--hop", str(HOP_S), "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(proc, port)
        return [asyncio.run(_case(port, proc.pid, days, clients)) for days, clients in cases]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(proc: subprocess.Popen, port: int) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            time.sleep(3.0)  # past the model's warm-up
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the daemon did not listen within 60 s")


def run(quick: bool = False) -> Section:
    if quick:
        raise Skipped("makes a month of history (2.6 M rows) and runs a daemon on it: not in --quick")
    db = CACHE / "history-30d.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rows = make_database(db)
    made_s = time.monotonic() - t0
    results = measure(ROOT, db)
    size_mb = db.stat().st_size / 1e6
    db.unlink(missing_ok=True)
    historydb.spool_path(db).unlink(missing_ok=True)
    return section(results, rows, size_mb, made_s)


BEFORE = (  # `python -m bench.history_load --checkout ../main --cases 1:1,7:1,30:1`, this machine
    "Before (the code before issue 27, measured on 2026-12-06 with `python -m bench.history_load --checkout "
    "../main` on this machine, load average about 7 from other work): 1 day 1.58 s, peak RSS +74 MiB; "
    "7 days 16.2 s, +487 MiB, a bystander's largest gap 3.2 s; 30 days 52.6 s, +2,089 MiB, gap 7.1 s "
    "(issue 27's own probe: 39.9 s, 2.77 GB, gap 6.0 s; by 4 clients at once 166 s, 10.7 GB, gap 24.2 s)."
)


def section(results: list[dict[str, Any]], rows: int, size_mb: float, made_s: float) -> Section:
    rows_out = [
        [
            f"{r['days']} day{'s' if r['days'] > 1 else ''}",
            str(r["clients"]),
            f"{r['reply_type']}, {r['bins']} bins, {r['hops']:,} hops"
            if r["reply_type"] == "history"
            else r["reply_type"],
            f"{r['reply_s']:.2f} s",
            f"{r['rss_before_mib']:.1f} / {r['rss_peak_mib']:.1f} (+{r['rss_growth_mib']:.1f})",
            f"{r['max_gap_s']:.2f} s",
        ]
        for r in results
    ]
    month = [r for r in results if r["days"] == DAYS]
    targets = []
    for r in month:
        who = f"30-day get_history, {r['clients']} client{'s' if r['clients'] > 1 else ''}"
        if r["clients"] == 1:  # the target is one request's; four at once share the two readers
            targets.append(target(f"{who}: reply", r["reply_s"], REPLY_TARGET_S, "s"))
        targets.append(target(f"{who}: peak RSS above baseline", r["rss_growth_mib"], MEMORY_TARGET_MIB, "MiB"))
        targets.append(target(f"{who}: a bystander's largest gap between hops", r["max_gap_s"], GAP_TARGET_S, "s"))
    markdown = "\n".join(
        [
            f"`bench/history_load.py`: a generated database of {DAYS} days of {HOP_S:g} s hops ({rows:,} rows, "
            f"{size_mb:.0f} MB, made in {made_s:.0f} s: songs of one mood with uncertain spells, silent nights), "
            "served by `moodstream run --source demo --history DB`; each client asks `get_history` for the last N "
            f"days in {BINS} bins. Reply = the slowest client's; RSS of the daemon just before and its peak "
            "(polled every 20 ms) in MiB; gap = a bystander's largest time between two hops (1 s apart when "
            "nothing delays them).",
            "",
            table(
                ["range", "clients", "reply", "reply time", "RSS before / peak MiB", "bystander's largest gap"],
                rows_out,
            ),
            "",
            BEFORE,
        ]
    )
    return Section(
        "history", "A month of history under requests (issue 27)", {"cases": results, "rows": rows}, markdown, targets
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_load", description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the checkout whose daemon is measured")
    parser.add_argument("--cases", default="", help="days:clients,... (default: 1:1,7:1,30:1,30:4)")
    args = parser.parse_args(argv)
    cases = tuple(tuple(int(x) for x in c.split(":")) for c in args.cases.split(",") if c) or CASES
    db = CACHE / "history-30d-checkout.sqlite"
    db.parent.mkdir(parents=True, exist_ok=True)
    make_database(db)
    try:
        for result in measure(args.checkout.resolve(), db, cases):  # type: ignore[arg-type]
            print(json.dumps(result), flush=True)
    finally:
        db.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
