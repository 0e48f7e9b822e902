"""WebSocket broadcast under load: many clients on loopback, missed hops and latency.

    python -m bench.ws_load                       # 500 clients, 40 hops of 0.25 s
    python -m bench.ws_load --clients 100 --hops 20 --hop 0.5 --json cache/ws_load.json

A server process runs the real ``streamer.sinks.server.Server`` on a real EventBus and publishes one
synthetic EmotionEvent per hop, stamped with the wall clock at the hop boundary; worker processes
hold the clients (real websockets clients) and record, per message, receipt time minus that stamp
(same machine, same clock) and which sequence numbers never arrived. Only 127.0.0.1 is used, and
the run is bounded in clients, hops and time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import fake_emotion

HOST = "127.0.0.1"  # loopback only, by design: this opens hundreds of connections
MAX_CLIENTS = 1000
MAX_HOPS = 600
CONNECT_TIMEOUT_S = 60.0
LABELS = ("angry", "happy", "sad")


# server side (a subprocess, so that clients do not share its event loop)


async def serve(clients: int, hops: int, hop: float) -> dict[str, Any]:
    from streamer.config import ServerSettings
    from streamer.core.events import EventBus
    from streamer.sinks.server import Server

    bus = EventBus()

    def describe() -> dict[str, Any]:
        return {
            "model": {"name": "bench", "labels": list(LABELS), "window_seconds": 3.0, "hop_seconds": hop},
            "config": {},
            "state": None,
            "source": {},
            "counters": {},
        }

    server = Server(
        ServerSettings(host=HOST, port=0, max_clients=clients + 10, max_clients_per_address=clients + 10), describe
    )
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(bus, stop))
    await server.listening.wait()
    print(json.dumps({"port": server.port}), flush=True)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while server.client_count < clients and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    connected = server.client_count
    await asyncio.sleep(0.5)  # the last hellos go out
    start = time.monotonic()
    probs = {label: 1 / len(LABELS) for label in LABELS}
    for seq in range(hops):
        await asyncio.sleep(max(0.0, start + seq * hop - time.monotonic()))
        bus.publish(fake_emotion(seq, LABELS[seq % 3], probs, hop))
    await asyncio.sleep(min(2.0, 4 * hop))  # the last hop reaches everyone
    result = {"connected_at_start": connected, **server.stats()}
    stop.set()
    await task
    return result


# client side (worker processes)


def clients_worker(port: int, count: int, hops: int, seconds: float) -> dict[str, Any]:
    return asyncio.run(_clients(port, count, hops, seconds))


async def _clients(port: int, count: int, hops: int, seconds: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    missed = 0
    failed = 0
    closed_early = 0

    async def one() -> None:
        nonlocal missed, failed, closed_early
        try:
            ws = await connect(f"ws://{HOST}:{port}/", open_timeout=CONNECT_TIMEOUT_S, compression=None)
        except Exception:
            failed += 1
            missed += hops
            return
        gc.freeze()  # as in bench.latency: one process stands in for many clients, not one GC pause
        seen: set[int] = set()
        try:
            async with asyncio.timeout(seconds):
                async for text in ws:
                    now = time.time()
                    message = json.loads(text)
                    if message["type"] == "emotion":
                        latencies.append(now - message["timestamp"])
                        seen.add(message["seq"])
                        if len(seen) == hops:
                            break
        except TimeoutError:
            pass
        except Exception:
            closed_early += 1
        finally:
            await ws.close()
        missed += hops - len(seen)

    await asyncio.gather(*(one() for _ in range(count)))
    return {"latencies": latencies, "missed": missed, "failed": failed, "closed_early": closed_early}


# the run


def measure(clients: int = 500, hops: int = 40, hop: float = 0.25, workers: int = 2) -> dict[str, Any]:
    if not 1 <= clients <= MAX_CLIENTS or not 1 <= hops <= MAX_HOPS or hop <= 0:
        raise ValueError(f"clients must be 1..{MAX_CLIENTS}, hops 1..{MAX_HOPS}, hop > 0")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * clients + 256)), hard))
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.ws_load",
            "--serve",
            "--clients",
            str(clients),
            "--hops",
            str(hops),
            "--hop",
            str(hop),
        ],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None  # stdout=PIPE
    try:
        port = json.loads(server.stdout.readline())["port"]
        seconds = CONNECT_TIMEOUT_S + hops * hop + 10
        shares = [clients // workers + (i < clients % workers) for i in range(workers)]
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(clients_worker, [port] * workers, shares, [hops] * workers, [seconds] * workers))
        out, _ = server.communicate(timeout=seconds)
        stats = json.loads(out.strip().splitlines()[-1])
    finally:
        if server.poll() is None:
            server.kill()
    lat = np.array([x for p in parts for x in p["latencies"]]) * 1000
    return {
        "clients": clients,
        "hops": hops,
        "hop_seconds": hop,
        "client_processes": workers,
        "connected": stats["connected_at_start"],
        "connect_failures": sum(p["failed"] for p in parts),
        "closed_early": sum(p["closed_early"] for p in parts),
        "dropped_by_server": stats["dropped_clients"],
        "missed_events_server": stats["missed_events"],
        "messages": int(lat.size),
        "missed_hops": sum(p["missed"] for p in parts),
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)),
            "max": float(lat.max()),
        }
        if lat.size
        else None,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--hops", type=int, default=40)
    parser.add_argument("--hop", type=float, default=0.25, help="seconds between hops")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        print(json.dumps(asyncio.run(serve(args.clients, args.hops, args.hop))), flush=True)
        return 0
    result = measure(args.clients, args.hops, args.hop, args.workers)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(text + "\n")
        os.replace(tmp, args.json)
    ok = result["missed_hops"] == 0 and result["connect_failures"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
