"""Latency from hop boundary to event at loopback WebSocket clients (issue 7.2), 1 and 100 clients.

The real daemon (`moodstream run --source stdin`, WebSocket server on) is fed s16le audio through
its stdin in 100 ms blocks, paced in real time. The hop boundary is the moment the block holding
the hop's last sample is handed to the pipe; a client's latency for that hop is the moment
its WebSocket delivered the event (``stream_time`` identifies the hop). The clients run in two
processes of their own (``python -m bench.latency URL N SECONDS``); all use ``time.monotonic``,
one clock system-wide. The first window is written at 5x real
time so that measuring starts soon with "emotion" events (model inference included); a final
``get_state`` checks that the daemon lost no block (a lost block would shift every hop).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import numpy as np
from websockets.asyncio.client import connect

from bench.common import ROOT, Section, fmt, table, target
from bench.daemon_cost import free_port, start
from bench.models import shipped_default
from streamer.audio.synth import music
from streamer.util.timing import percentile

RATE = 16000
BLOCK = 1600  # 100 ms, the daemon's default block
HOP_S = 1.0
CLIENT_PROCESSES = 2  # clients live in their own processes, as remote clients would not share the daemon's
WARM_SPEED = 5.0  # x real time while the window fills (unbounded speed overflows the input queue)


async def _clients(url: str, n: int, seconds: float) -> list[tuple[float, float, str]]:
    """n clients; (receipt time, stream_time, state) of every emotion event within ``seconds``."""
    received: list[tuple[float, str]] = []

    async def one(ws) -> None:
        async for text in ws:
            received.append((time.monotonic(), text))

    sockets = [await connect(url, max_queue=None) for _ in range(n)]
    gc.freeze()  # the connections' objects: not rescanned by every collection while measuring
    print("ready", flush=True)
    tasks = [asyncio.create_task(one(ws)) for ws in sockets]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ws in sockets:
        await ws.close()
    out = []
    for t, text in received:
        msg = json.loads(text)
        if msg.get("type") == "emotion":
            out.append((t, round(msg["stream_time"], 3), msg["state"]))
    return out


def _spawn_clients(url: str, n: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.latency", url, str(n), str(seconds)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


async def _feed(stdin, window_s: float, hops: int) -> dict[float, float]:
    """Write the audio; the boundary time of each measured hop, keyed by its stream_time."""
    warm_s = window_s + HOP_S
    audio = (np.clip(music(warm_s + hops * HOP_S, seed=21), -1, 1) * 32767).astype("<i2")
    blocks = [audio[i : i + BLOCK] for i in range(0, audio.size, BLOCK)]
    warm_blocks = round(warm_s * RATE / BLOCK)
    hop_blocks = round(HOP_S * RATE / BLOCK)
    boundary: dict[float, float] = {}
    start = time.monotonic()
    for i, block in enumerate(blocks):
        if i < warm_blocks:
            due = start + i * BLOCK / RATE / WARM_SPEED
        else:
            due = start + warm_blocks * BLOCK / RATE / WARM_SPEED + 0.5 + (i - warm_blocks) * BLOCK / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        handed = time.monotonic()  # before the write: a fast daemon can answer before the writer is scheduled again
        stdin.write(block.tobytes())
        stdin.flush()
        if i >= warm_blocks and (i + 1) % hop_blocks == 0:
            boundary[round((i + 1) * BLOCK / RATE, 3)] = handed
    return boundary


async def _overflows(url: str) -> int:
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "get_state"}))
        while (state := json.loads(await ws.recv()))["type"] != "state":
            pass
    return int(state["source"]["overflows"])


def measure(model_path, clients: int, hops: int, window_s: float) -> dict:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/"
    listen_s = window_s / WARM_SPEED + 0.5 + (hops + 1) * HOP_S + 2.0
    shares = [clients // CLIENT_PROCESSES + (i < clients % CLIENT_PROCESSES) for i in range(CLIENT_PROCESSES)]
    with start(
        [
            "--source",
            "stdin",
            "--model",
            str(model_path),
            "--port",
            str(port),
            "--hop",
            str(HOP_S),
            "--max-clients",
            str(clients + 8),
            "--max-clients-per-address",  # every client is on 127.0.0.1
            str(clients + 8),
            "--log-level",
            "warning",
        ],
        stdin=subprocess.PIPE,
    ) as d:
        d.wait_ready()
        for _ in range(200):  # the server starts just after READY=1
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        workers = [_spawn_clients(url, n, listen_s) for n in shares if n]
        try:
            for w in workers:
                assert w.stdout is not None  # stdout=PIPE
                if w.stdout.readline().strip() != "ready":
                    raise RuntimeError("a client process could not connect")
            load = os.getloadavg()[0]
            boundary = asyncio.run(_feed(d.proc.stdin, window_s, hops))
            received = [tuple(r) for w in workers for r in json.loads(w.communicate(timeout=listen_s + 30)[0])]
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait()
        overflows = asyncio.run(_overflows(url))
        assert d.proc.stdin is not None  # stdin=PIPE
        d.proc.stdin.close()
        status, _ = d.finish()
        if status != 0:
            raise RuntimeError(f"moodstream run --source stdin exited with {status}: {d.stderr_tail()}")
    if overflows:
        raise RuntimeError(f"the daemon lost {overflows} input blocks; hops would not line up")
    measured = [(t, key, state) for t, key, state in received if key in boundary]
    latencies = [1000 * (t - boundary[key]) for t, key, _ in measured]
    expected = clients * len(boundary)
    if len(latencies) != expected:
        raise RuntimeError(f"{len(latencies)} events reached the clients, expected {expected}")
    by_hop: dict[float, list[float]] = {}
    for t, key, _ in measured:
        by_hop.setdefault(key, []).append(1000 * (t - boundary[key]))
    return {
        "clients": clients,
        "client_processes": len(workers),
        "hops": len(boundary),
        "slowest_client_per_hop_ms": [max(by_hop[k]) for k in sorted(by_hop)],
        "fastest_client_per_hop_ms": [min(by_hop[k]) for k in sorted(by_hop)],
        "samples": len(latencies),
        "states": sorted({state for _, _, state in measured}),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "min_ms": min(latencies),
        "load_average_1min": load,
    }


def run(quick: bool = False) -> Section:
    model = shipped_default()
    hops = 3 if quick else 30
    window_s = model.metadata.window_seconds
    results = [measure(model.path, n, hops, window_s) for n in ((1, 5) if quick else (1, 100))]
    rows = [
        [
            r["clients"],
            r["hops"],
            r["samples"],
            fmt(r["p50_ms"]),
            fmt(r["p99_ms"]),
            fmt(r["max_ms"]),
            fmt(statistics.median(r["fastest_client_per_hop_ms"])),
            fmt(statistics.median(r["slowest_client_per_hop_ms"])),
            fmt(r["load_average_1min"], 2),
        ]
        for r in results
    ]
    md = (
        f"`moodstream run --source stdin --model {model.path.name} --hop {HOP_S:g}` with its WebSocket server on "
        f"loopback; s16le audio written to its stdin in 100 ms blocks paced in real time, {hops} hops per "
        'run after the window filled (every measured event is a classified hop, "emotion" or "uncertain": '
        "features, inference, "
        "smoothing, bus, server fan-out, WebSocket, client). Latency = client receipt minus the moment the "
        "hop's last block was written; the clients run in 2 processes of their own (one clock, "
        "`time.monotonic`), each of which freezes its garbage collector's view of the connections once "
        "they are open (`gc.freeze()`): one process stands in for many independent clients, and "
        "without it a single collection pause of up to 50 ms landed on every client of that process at "
        "once. Nearest-rank percentiles. Per hop, the first client to get the event measures the "
        "daemon's own path (stdin, features, model, bus, first write) and the last one adds the fan-out "
        "to every other client. The load average (1 min) when each run started is shown: on this "
        "shared 2-core machine it is mostly other work, and latency tails follow it.\n\n"
        + table(
            [
                "clients",
                "hops",
                "samples",
                "p50 ms",
                "p99 ms",
                "max ms",
                "first client, median of hops ms",
                "last client, median of hops ms",
                "load avg",
            ],
            rows,
        )
    )
    worst = results[-1]
    targets = [target(f"p99 latency with {worst['clients']} clients", worst["p99_ms"], 20.0, "ms")]
    return Section(
        "latency", "Latency to WebSocket clients (issue 7.2)", {"model": model.path.name, "runs": results}, md, targets
    )


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_clients(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))), flush=True)
