"""A fleet of simulated daemons on one local Mosquitto: delivery latency and lost messages.

    python -m bench.mqtt_load --devices 500 --seconds 30      # one publisher process per core
    python -m bench.mqtt_load --devices 50 --json cache/fleet.json

Each simulated daemon is the real ``streamer.sinks.mqtt.MqttSink`` (its own client id, discovery, state,
attributes) on its own EventBus, fed one synthetic EmotionEvent per second (phases spread over the
second) and stamped with the wall clock when published on its bus. The devices are spread over one
process per core; one subscriber (this process) takes ``moodstream/+/attributes`` and records, per
message, receipt time minus that stamp (same machine, same clock) and which (device, seq) arrived.
Lost = hops published on the buses minus distinct hops received. Loopback only, bounded in devices
and time; the broker is a private Mosquitto on a free port with a config written here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import fake_emotion

ROOT = Path(__file__).resolve().parent.parent
MAX_DEVICES = 2000
MAX_SECONDS = 300
CONNECT_TIMEOUT_S = 120.0
LABELS = ("angry", "happy", "sad")


class Skip(Exception):
    """No Mosquitto here."""


# one publisher process: many simulated daemons


async def publish(first: int, count: int, port: int, seconds: float, start_at: float) -> dict[str, Any]:
    from streamer.config import MqttSettings
    from streamer.core.events import EventBus
    from streamer.sinks.mqtt import MqttSink

    devices = []
    for i in range(first, first + count):
        settings = MqttSettings(url=f"mqtt://127.0.0.1:{port}", client_id=f"bench-{i:04d}", queue=100)
        bus, stop = EventBus(), asyncio.Event()
        sink = MqttSink(settings, "bench", -50.0)
        devices.append((sink, bus, stop, asyncio.create_task(sink.run(bus, stop))))
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not all(d[0].connected.is_set() for d in devices) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    connected = sum(d[0].connected.is_set() for d in devices)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    published = 0
    t0 = time.monotonic()
    for tick in range(int(seconds)):
        for k, (_sink, bus, _stop, _task) in enumerate(devices):
            # spread the devices' hops over the second, as independent daemons would be
            await asyncio.sleep(max(0.0, t0 + tick + k / len(devices) - time.monotonic()))
            probs = {label: (0.8 if label == LABELS[tick % 3] else 0.1) for label in LABELS}
            bus.publish(fake_emotion(tick, LABELS[tick % 3], probs))
            published += 1
    await asyncio.sleep(2.0)  # let the outboxes drain before stopping
    for _sink, bus, stop, _task in devices:
        bus.close()
        stop.set()
    await asyncio.gather(*(d[3] for d in devices), return_exceptions=True)
    return {
        "devices": count,
        "connected": connected,
        "published_hops": published,
        "dropped_by_sinks": sum(d[0].stats()["mqtt_dropped"] for d in devices),
        "cpu_s": round(time.process_time(), 2),
    }


# the subscriber and the run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists():
        raise Skip("Debian's mosquitto is not installed (apt-get install mosquitto)")
    port = _free_port()
    lines = [f"listener {port} 127.0.0.1", "allow_anonymous true", "persistence false"]
    if os.geteuid() == 0:
        lines.append("user root")
    config = folder / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    with open(folder / "mosquitto.log", "ab") as log:
        proc = subprocess.Popen([mosquitto, "-c", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


async def subscribe_and_run(devices: int, seconds: float, processes: int, port: int) -> dict[str, Any]:
    import aiomqtt

    latencies: list[float] = []
    received: set[tuple[str, int]] = set()
    duplicates = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier="bench-subscriber") as sub:
        await sub.subscribe("moodstream/+/attributes")
        shares = [devices // processes + (1 if p < devices % processes else 0) for p in range(processes)]
        firsts = [sum(shares[:p]) for p in range(processes)]
        # the publishers start their hops together once all have connected (or CONNECT_TIMEOUT_S passed)
        start_at = time.time() + min(CONNECT_TIMEOUT_S, 5.0 + devices / 50)
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.mqtt_load",
                "--worker",
                f"{first},{share},{port},{seconds},{start_at}",
                stdout=asyncio.subprocess.PIPE,
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            for first, share in zip(firsts, shares, strict=True)
            if share
        ]
        outputs = asyncio.gather(*(w.communicate() for w in workers))

        async def receive() -> None:
            nonlocal duplicates
            async for message in sub.messages:
                now = time.time()
                payload = message.payload if isinstance(message.payload, bytes) else b""
                attributes = json.loads(payload)
                if attributes.get("model") != "bench" or attributes["timestamp"] < start_at - 1:
                    continue  # a retained message of an earlier run
                key = (str(message.topic), int(attributes["seq"]))
                if key in received:
                    duplicates += 1
                    continue
                received.add(key)
                latencies.append(1000.0 * (now - attributes["timestamp"]))

        receiver = asyncio.create_task(receive())
        try:
            done = await asyncio.wait_for(outputs, CONNECT_TIMEOUT_S + seconds + 60)
        finally:
            await asyncio.sleep(0.5)
            receiver.cancel()
            for w in workers:
                if w.returncode is None:
                    w.kill()
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in done]
    published = sum(r["published_hops"] for r in results)
    lat = np.asarray(latencies) if latencies else None
    return {
        "devices": devices,
        "seconds": seconds,
        "publisher_processes": len(workers),
        "connected": sum(r["connected"] for r in results),
        "published_hops": published,
        "received_hops": len(received),
        "lost": published - len(received),
        "duplicates": duplicates,
        "dropped_by_sinks": sum(r["dropped_by_sinks"] for r in results),
        "messages_per_s": round(2 * published / seconds, 1),  # state + attributes per hop
        "latency_ms": None
        if lat is None
        else {
            "p50": round(float(np.percentile(lat, 50)), 2),
            "p99": round(float(np.percentile(lat, 99)), 2),
            "max": round(float(lat.max()), 2),
        },
        "publisher_cpu_s": round(sum(r["cpu_s"] for r in results), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def measure(devices: int, seconds: float, processes: int | None = None) -> dict[str, Any]:
    """One bounded run: a private broker, ``devices`` simulated daemons for ``seconds`` at 1 Hz."""
    if not 1 <= devices <= MAX_DEVICES or not 1 <= seconds <= MAX_SECONDS:
        raise ValueError(f"devices must be 1..{MAX_DEVICES} and seconds 1..{MAX_SECONDS}")
    processes = processes or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="moodstream-fleet-") as folder:
        broker, port = start_broker(Path(folder))
        started = time.monotonic()
        broker_cpu_before = _cpu_s(broker.pid)
        try:
            result = asyncio.run(subscribe_and_run(devices, seconds, processes, port))
            result["broker_cpu_s"] = round(_cpu_s(broker.pid) - broker_cpu_before, 2)
            result["wall_s"] = round(time.monotonic() - started, 1)
            return result
        finally:
            broker.terminate()
            broker.wait(10)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt_load", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=None, help="publisher processes (default: one per core)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        first, count, port, seconds, start_at = args.worker.split(",")
        out = asyncio.run(publish(int(first), int(count), int(port), float(seconds), float(start_at)))
        print(json.dumps(out), flush=True)
        return 0
    try:
        result = measure(args.devices, args.seconds, args.processes)
    except Skip as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
