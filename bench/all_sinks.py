"""The whole daemon with every sink on and 10 clients (issue 27): `moodstream run --realtime` on a
file, with the history (SQLite), JSON lines to a file, MQTT to a local Mosquitto (Home Assistant
discovery), the dashboard (no terminal: plain lines, at the warning level none), systemd notify,
and 10 WebSocket clients reading every event from a process of their own. CPU of the daemon alone,
steady state, as bench/daemon_cost.py measures the daemon without them (interleaved here with such
a plain run, so that the two see the same load).

    python -m bench --only sinks        # about 2 minutes
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Section, Skipped, fmt, target
from bench.daemon_cost import _file, start
from bench.models import shipped_default
from bench.mqtt_load import Skip, start_broker
from streamer.util.timing import stats

CLIENTS = 10
TARGET = 0.5  # % of one core, the same as the daemon alone (issue 27)
CLIENT = """
import asyncio, sys
from websockets.asyncio.client import connect

async def one(url, opened):
    async with connect(url) as ws:
        opened.append(ws)
        if len(opened) == int(sys.argv[2]):
            print("connected", flush=True)
        async for _ in ws:
            pass

async def main(url, n):
    opened = []
    await asyncio.gather(*(one(url, opened) for _ in range(n)))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def _port_of(d: Any, timeout: float = 30.0) -> int:
    """The daemon's WebSocket port, from /proc (it listens on --port 0)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if f"pid={d.proc.pid}," in line:
                return int(line.split()[3].rsplit(":", 1)[1])
        time.sleep(0.1)
    raise RuntimeError("the daemon's port was not found")


def _steady(args: list[str], paced_s: float, settle_s: float, clients: bool) -> float:
    with start(args) as d:
        d.wait_ready()
        readers = None
        if clients:
            port = _port_of(d)
            url = f"ws://127.0.0.1:{port}/"
            readers = subprocess.Popen([sys.executable, "-c", CLIENT, url, str(CLIENTS)], stdout=subprocess.PIPE)
            assert readers.stdout is not None
            if readers.stdout.readline().strip() != b"connected":  # every client in, or no figure
                raise RuntimeError(f"the {CLIENTS} clients did not all connect")
        try:
            ready_at = time.monotonic()
            time.sleep(settle_s)
            t0, c0 = time.monotonic(), d.cpu_seconds()
            time.sleep(max(0.0, ready_at + paced_s - 2.0 - time.monotonic()))
            t1, c1 = time.monotonic(), d.cpu_seconds()
            status, _ = d.finish(timeout=paced_s + 60)
        finally:
            if readers is not None:
                readers.kill()
                readers.wait()
        if status != 0:
            raise RuntimeError(f"moodstream run exited with {status}: {d.stderr_tail()}")
    return 100 * (c1 - c0) / (t1 - t0)


def run(quick: bool = False) -> Section:
    model = shipped_default()
    paced_s, settle_s, rounds = (8.0, 3.0, 1) if quick else (40.0, 12.0, 3)
    paced = _file(paced_s, "sinks-paced.wav")
    base = ["--model", str(model.path), "--port", "0", "--log-level", "warning", "--source", f"file:{paced}"]
    base += ["--realtime", "--max-clients-per-address", str(CLIENTS)]  # the clients share one address
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            broker, port = start_broker(folder)
        except Skip as exc:
            raise Skipped(str(exc)) from None
        try:
            plain, every = [], []
            for k in range(rounds):
                sinks = ["--history", str(folder / f"h{k}.sqlite"), "--jsonl", str(folder / f"e{k}.jsonl")]
                sinks += ["--mqtt", f"mqtt://127.0.0.1:{port}", "--mqtt-client-id", f"bench{k}", "--dashboard"]
                plain.append(_steady(base, paced_s, settle_s, clients=False))
                every.append(_steady([*base, *sinks], paced_s, settle_s, clients=True))
        finally:
            broker.terminate()
            broker.wait()
    data: dict[str, Any] = {"model": model.path.name, "rounds": rounds, "audio_seconds": paced_s}
    data["alone"] = stats(plain)
    data["every_sink_10_clients"] = stats(every)
    md = (
        f"`moodstream run --realtime` on {paced_s:g} s of a file with the default model ({model.path.name}), "
        f"{rounds} rounds, each a run with every sink on (history in SQLite, JSON lines to a file, MQTT to a "
        f"local Mosquitto with discovery, the dashboard without a terminal, systemd notify) and {CLIENTS} "
        "WebSocket clients reading every event (in a process of their own), interleaved with a run of the "
        f"daemon alone (its server on, no client). CPU of the daemon's process, steady state ({settle_s:g} s "
        "after ready to 2 s before the end), from /proc (ticks of 10 ms).\n\n"
        f"- every sink and {CLIENTS} clients: median **{fmt(data['every_sink_10_clients']['median'])}% of one "
        f"core** (range {fmt(data['every_sink_10_clients']['min'])}-{fmt(data['every_sink_10_clients']['max'])})\n"
        f"- the daemon alone, the same rounds: median {fmt(data['alone']['median'])}% "
        f"(range {fmt(data['alone']['min'])}-{fmt(data['alone']['max'])})"
    )
    targets = [
        target(
            f"the whole daemon with every sink and {CLIENTS} clients, paced, steady state",
            data["every_sink_10_clients"]["median"],
            TARGET,
            "% of one core",
        )
    ]
    return Section("sinks", f"Every sink on and {CLIENTS} clients (issue 27)", data, md, targets)
