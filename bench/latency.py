"""Latency from hop boundary to event at loopback WebSocket clients (issue 7.2), 1 and 100 clients.

The real daemon (`moodstream run --source stdin`, WebSocket server on) is fed s16le audio through
its stdin in 100 ms blocks, paced in real time. The hop boundary is the moment the block holding
the hop's last sample has been written to the pipe; a client's latency for that hop is the moment
its WebSocket delivered the event (``stream_time`` identifies the hop). Writer and clients share
this process and ``time.monotonic`` (one clock for both). The first window is written at 5x real
time so that measuring starts soon with "emotion" events (model inference included); a final
``get_state`` checks that the daemon lost no block (a lost block would shift every hop).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import numpy as np
from websockets.asyncio.client import connect

from bench.common import Section, fmt, percentile, table, target
from bench.daemon_cost import free_port, start
from bench.models import default_model, models_under_test
from tests.audio import music

RATE = 16000
BLOCK = 1600  # 100 ms, the daemon's default block
HOP_S = 1.0
WARM_SPEED = 5.0  # x real time while the window fills (unbounded speed overflows the input queue)


async def _client(url: str, received: list[tuple[float, str]], ready: asyncio.Event, n_ready: list[int], n: int) -> None:
    async with connect(url, max_queue=None) as ws:
        n_ready[0] += 1
        if n_ready[0] == n:
            ready.set()
        async for text in ws:
            received.append((time.monotonic(), text))


async def _session(port: int, stdin, clients: int, window_s: float, hops: int) -> tuple[dict[float, float], list[list]]:
    url = f"ws://127.0.0.1:{port}/"
    for _ in range(200):  # the server starts just after READY=1
        try:
            async with connect(url):
                break
        except OSError:
            await asyncio.sleep(0.05)
    received: list[list[tuple[float, str]]] = [[] for _ in range(clients)]
    ready, n_ready = asyncio.Event(), [0]
    tasks = [asyncio.create_task(_client(url, received[i], ready, n_ready, clients)) for i in range(clients)]
    await asyncio.wait_for(ready.wait(), 30)
    warm_s = window_s + HOP_S
    audio = (np.clip(music(warm_s + hops * HOP_S, seed=21), -1, 1) * 32767).astype("<i2")
    blocks = [audio[i:i + BLOCK] for i in range(0, audio.size, BLOCK)]
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
        stdin.write(block.tobytes())
        stdin.flush()
        if i >= warm_blocks and (i + 1) % hop_blocks == 0:
            boundary[round((i + 1) * BLOCK / RATE, 3)] = time.monotonic()
    await asyncio.sleep(0.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "get_state"}))
        while (state := json.loads(await ws.recv()))["type"] != "state":
            pass
    if state["source"]["overflows"]:
        raise RuntimeError(f"the daemon lost {state['source']['overflows']} input blocks; hops would not line up")
    return boundary, received


def measure(model_path, clients: int, hops: int, window_s: float) -> dict:
    port = free_port()
    d = start(["--source", "stdin", "--model", str(model_path), "--port", str(port), "--hop", str(HOP_S),
               "--max-clients", str(clients + 8), "--log-level", "warning"], stdin=subprocess.PIPE)
    d.wait_ready()
    boundary, received = asyncio.run(_session(port, d.proc.stdin, clients, window_s, hops))
    d.proc.stdin.close()
    status, _ = d.finish()
    if status != 0:
        raise RuntimeError(f"moodstream run --source stdin exited with {status}: {d.stderr_tail()}")
    latencies, states = [], set()
    for per_client in received:
        for t, text in per_client:
            msg = json.loads(text)
            if msg.get("type") != "emotion":
                continue
            key = round(msg["stream_time"], 3)
            if key in boundary:
                states.add(msg["state"])
                latencies.append(1000 * (t - boundary[key]))
    expected = clients * len(boundary)
    if len(latencies) != expected:
        raise RuntimeError(f"{len(latencies)} events reached the clients, expected {expected}")
    return {"clients": clients, "hops": len(boundary), "samples": len(latencies), "states": sorted(states),
            "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies), "min_ms": min(latencies)}


def run(quick: bool = False) -> Section:
    model = default_model(models_under_test())
    hops = 3 if quick else 30
    window_s = model.metadata.window_seconds
    results = [measure(model.path, n, hops, window_s) for n in ((1, 5) if quick else (1, 100))]
    rows = [[r["clients"], r["hops"], r["samples"], fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["max_ms"])]
            for r in results]
    md = (
        f"`moodstream run --source stdin --model {model.path.name} --hop {HOP_S:g}` with its WebSocket server on "
        f"loopback; s16le audio written to its stdin in 100 ms blocks paced in real time, {hops} hops per "
        "run after the window filled (every measured event is an \"emotion\" event: features, inference, "
        "smoothing, bus, server fan-out, WebSocket, client). Latency = client receipt minus the moment the "
        "hop's last block was written; writer and clients in one benchmark process (same clock); "
        "nearest-rank percentiles.\n\n"
        + table(["clients", "hops", "samples", "p50 ms", "p99 ms", "max ms"], rows)
    )
    worst = results[-1]
    targets = [target(f"p99 latency with {worst['clients']} clients", worst["p99_ms"], 20.0, "ms")]
    return Section("latency", "Latency to WebSocket clients (issue 7.2)", {"model": model.path.name,
                   "runs": results}, md, targets)
