"""The one shape of every consumer of the event bus (WebSocket server, JSONL, dashboard, notify,
MQTT, history): the daemon starts each as a task and knows nothing else about it."""

from __future__ import annotations

import asyncio
from typing import Protocol

from streamer.core.events import EventBus


class Sink(Protocol):
    """Subscribes itself with a bounded queue in ``run``, before its first ``await`` (the daemon starts
    every sink, yields once, then publishes), and consumes until the bus closes or ``stop`` is set (the
    daemon sets it only after closing the bus, so a sink may drain what is queued). A slow or failing
    sink loses its own events (counted in ``stats``), never a hop. Examples: streamer.sinks.jsonl.JsonlSink,
    streamer.sinks.notify.NotifySink, streamer.sinks.dashboard.LocalDashboard, streamer.sinks.server.Server."""

    name: str

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None: ...

    def stats(self) -> dict[str, int]:
        """Its counters, reported once in the daemon's snapshot."""
        ...
