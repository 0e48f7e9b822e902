"""The one shape of every consumer of the event bus (WebSocket server, JSONL, dashboard, notify,
MQTT, history): the daemon starts each as a task and knows nothing else about it."""

from __future__ import annotations

import asyncio
from typing import Protocol

from streamer.events import EventBus


class Sink(Protocol):
    """Subscribes itself with a bounded queue in ``run`` and consumes until the bus closes or ``stop``
    is set; a slow or failing sink loses its own events (counted), never a hop."""

    name: str

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None: ...

    def stats(self) -> dict[str, int]:
        """Its counters, reported once in the daemon's snapshot."""
        ...
