"""Every sink keeps the one contract of streamer.sinks.base.Sink: it subscribes before its first await
(unless, like the mDNS advertisement, it reads no events), consumes the bus until it closes (and
``stop`` is set), and reports integer counters. Every sink the daemon can build is here:
test_every_sink_the_daemon_builds_is_in_the_contract_test checks that none is missing."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from streamer.config import HistorySettings, MqttSettings, ServerSettings
from streamer.core.events import EventBus
from streamer.sinks.base import Sink
from streamer.sinks.dashboard import LocalDashboard
from streamer.sinks.history import HistorySink
from streamer.sinks.jsonl import JsonlSink
from streamer.sinks.mdns import Advertiser
from streamer.sinks.mqtt import MqttSink
from streamer.sinks.notify import Notifier, NotifySink
from streamer.sinks.server import Server
from tests.broker import Broker, needs_mosquitto
from tests.wire import describe_for, emotion, status

SINKS = ("jsonl", "notify", "dashboard", "server", "history", "mqtt", "mdns")
READS_NO_EVENTS = {"mdns"}  # the advertisement only needs the server to listen


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(1)
        yield path, sock


class _NeverListening:
    """A server that never gets to listen (so the advertisement never touches the network)."""

    port: int | None = None

    def __init__(self) -> None:
        self.listening = asyncio.Event()


@pytest.fixture
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker | None]:
    """A private Mosquitto for the MQTT sink's case only."""
    if request.node.callspec.params["kind"] != "mqtt":
        yield None
        return
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


def _sinks(tmp_path: Path, notify_path: str, broker: Broker | None) -> dict[str, Callable[[EventBus], Sink]]:
    return {
        "jsonl": lambda bus: JsonlSink(str(tmp_path / "events.jsonl"), lambda: None),
        "notify": lambda bus: NotifySink(Notifier({"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "1000000"})),
        "dashboard": lambda bus: LocalDashboard(describe_for(bus), Console(file=io.StringIO())),
        "server": lambda bus: Server(ServerSettings(port=0), describe_for(bus)),
        "history": lambda bus: HistorySink(HistorySettings(path=str(tmp_path / "h.db"), flush_seconds=0.1), 1.0),
        "mqtt": lambda bus: MqttSink(MqttSettings(url=broker.url if broker else "", client_id="contract"), "t", -50.0),
        "mdns": lambda bus: Advertiser(ServerSettings(host="0.0.0.0"), _NeverListening(), {}),  # type: ignore[arg-type]
    }


@pytest.mark.parametrize("kind", [pytest.param(k, marks=needs_mosquitto) if k == "mqtt" else k for k in SINKS])
def test_each_sink_subscribes_at_once_drains_and_counts(
    kind: str, tmp_path: Path, notify_socket: tuple[str, socket.socket], broker: Broker | None
) -> None:
    async def main() -> dict[str, int]:
        bus = EventBus()
        sink = _sinks(tmp_path, notify_socket[0], broker)[kind](bus)
        assert sink.name == kind
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(bus, stop))
        await asyncio.sleep(0)  # what the daemon gives its sinks before the first event
        assert bus.subscriber_count == (0 if kind in READS_NO_EVENTS else 1)
        bus.publish(status("source_connected"))
        bus.publish(emotion(0))
        await asyncio.sleep(0.05)
        bus.close()
        stop.set()
        await asyncio.wait_for(task, 10)
        assert bus.subscriber_count == 0
        return sink.stats()

    stats = asyncio.run(main())
    assert stats and all(isinstance(k, str) and type(v) is int for k, v in stats.items())
    if kind == "jsonl":
        assert stats["jsonl_written"] == 2 and len((tmp_path / "events.jsonl").read_text().splitlines()) == 2
    if kind == "notify":  # READY, the status line, a watchdog ping for the hop, STOPPING
        received = [notify_socket[1].recv(4096).decode() for _ in range(4)]
        assert received == ["READY=1", "STATUS=test source_connected", "WATCHDOG=1", "STOPPING=1"]
        assert stats["notifications_sent"] == 4
    if kind == "history":  # the hop and the status row reach the database by the final flush
        assert stats["history_rows_written"] == 2
    if kind == "mqtt":
        assert stats["mqtt_published"] >= 1
    if kind == "mdns":
        assert stats == {"mdns_registered": 0, "mdns_failures": 0}


def test_every_sink_the_daemon_builds_is_in_the_contract_test() -> None:
    """A class in streamer/sinks/ with a ``name`` and an async ``run(bus, stop)`` is a sink."""
    import ast

    found = set()
    for file in (Path(__file__).resolve().parent.parent / "streamer" / "sinks").glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            names = [
                s.value.value
                for s in node.body
                if isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant) and s.targets[0].id == "name"  # type: ignore[attr-defined]
            ]
            runs = any(isinstance(s, ast.AsyncFunctionDef) and s.name == "run" for s in node.body)
            if names and runs:
                found.add(names[0])
    assert found == set(SINKS)
