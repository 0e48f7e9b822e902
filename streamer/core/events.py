"""Typed events and the in-process bus that every sink (WebSocket, dashboard, JSONL, notify) reads.

The processing loop publishes without ever waiting: each subscriber has a bounded queue, and a
subscriber that falls behind loses its oldest events (counted), never the producer's time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["warming_up", "silence", "uncertain", "emotion"]

# What a status event reports; the schema's and docs/protocol.md's lists are checked against it.
# Clients must ignore kinds they do not know: the set may grow.
StatusKind = Literal[
    "source_connected",  # the input opened (at start)
    "source_lost",  # a live input stalled, raised, vanished or sent only digital silence
    "source_retry",  # reopening it failed; the next try is after ``retry_in_s``
    "source_recovered",  # it is back
    "source_ended",  # a file or stdin ran out
    "overflow",  # the input lost audio blocks before we read them
    "silence",  # the input fell under the level gate
    "sound",  # it rose above the gate again
    "mark",  # a session mark from a client (details.text: its text)
    "history_error",  # the history database refused a write (once per failing spell; rows kept)
    "history_ok",  # it writes again
    "stopped",  # the last event before the daemon closes; details are the final counters
    "mqtt_connected",  # the MQTT sink reached its broker (details.broker: its URL), or again
    "mqtt_lost",  # it lost the broker; it reconnects with backoff
    "mqtt_unreachable",  # an attempt to connect failed
    "mqtt_auth_failed",  # the broker refused the credentials
    "mqtt_tls_failed",  # TLS with the broker failed (certificate, host name)
]


@dataclass(frozen=True)
class Level:
    """Input level over one hop."""

    rms_dbfs: float
    peak_dbfs: float
    clipped: bool  # at least one sample at or beyond full scale


@dataclass(frozen=True)
class EmotionEvent:
    """One per hop: what the music feels like now, and the evidence."""

    seq: int
    timestamp: float  # wall clock, seconds since the epoch
    stream_time: float  # seconds of audio consumed since the source started
    state: State
    label: str | None  # None unless state == "emotion" ("uncertain": no label leads clearly)
    confidence: float  # smoothed probability of ``label`` (0 when no label)
    probabilities: dict[str, float]  # smoothed (empty unless the model ran: emotion or uncertain)
    raw: dict[str, float]  # this hop's model output
    level: Level
    processing_ms: float
    model: str
    type: Literal["emotion"] = "emotion"


@dataclass(frozen=True)
class StatusEvent:
    """Something happened to the source or the service (connected, lost, overflow...)."""

    kind: StatusKind
    message: str
    timestamp: float = field(default_factory=time.time)
    details: dict[str, Any] = field(default_factory=dict)
    type: Literal["status"] = "status"


Event = EmotionEvent | StatusEvent


def to_dict(event: Event) -> dict[str, Any]:
    """Plain JSON-ready dict of an event (the wire and JSONL form)."""
    return dataclasses.asdict(event)


class Subscription:
    """A bounded queue of events for one consumer; iterate it with ``async for``."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.dropped = 0

    def _offer(self, event: Event | None) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self.dropped += 1

    async def get(self) -> Event | None:
        """Next event, or None once the bus is closed."""
        return await self._queue.get()

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._bus._subscribers.discard(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while (event := await self.get()) is not None:
            yield event


class EventBus:
    """Fan-out of events to subscribers; ``publish`` never blocks."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self.last_emotion: EmotionEvent | None = None
        self.published = 0

    def subscribe(self, maxsize: int = 256) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def publish(self, event: Event) -> None:
        if isinstance(event, EmotionEvent):
            self.last_emotion = event
        self.published += 1
        for sub in list(self._subscribers):
            sub._offer(event)

    def close(self) -> None:
        """Tell every subscriber that no more events will come (they see None / stop iterating)."""
        for sub in list(self._subscribers):
            sub._offer(None)
        self._subscribers.clear()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)
