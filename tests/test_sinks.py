"""Every sink keeps the one contract of streamer.sinks.base.Sink: it subscribes before its first await,
consumes the bus until it closes (and ``stop`` is set), and reports integer counters."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from streamer.config import ServerSettings
from streamer.core.events import EventBus
from streamer.sinks.base import Sink
from streamer.sinks.dashboard import LocalDashboard
from streamer.sinks.jsonl import JsonlSink
from streamer.sinks.notify import Notifier, NotifySink
from streamer.sinks.server import Server
from tests.wire import describe_for, emotion, status


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(1)
        yield path, sock


def _sinks(tmp_path: Path, notify_path: str) -> dict[str, Callable[[EventBus], Sink]]:
    return {
        "jsonl": lambda bus: JsonlSink(str(tmp_path / "events.jsonl"), lambda: None),
        "notify": lambda bus: NotifySink(Notifier({"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "1000000"})),
        "dashboard": lambda bus: LocalDashboard(describe_for(bus), Console(file=io.StringIO())),
        "server": lambda bus: Server(ServerSettings(port=0), describe_for(bus)),
    }


@pytest.mark.parametrize("kind", ["jsonl", "notify", "dashboard", "server"])
def test_each_sink_subscribes_at_once_drains_and_counts(
    kind: str, tmp_path: Path, notify_socket: tuple[str, socket.socket]
) -> None:
    async def main() -> dict[str, int]:
        bus = EventBus()
        sink = _sinks(tmp_path, notify_socket[0])[kind](bus)
        assert sink.name == kind
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(bus, stop))
        await asyncio.sleep(0)  # what the daemon gives its sinks before the first event
        assert bus.subscriber_count == 1
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
