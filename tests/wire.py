"""Helpers for the WebSocket tests: real events, a describe() like the daemon's, the schema."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import jsonschema

from streamer.config import ServerSettings
from streamer.core.events import EmotionEvent, EventBus, Level, StatusEvent, to_dict
from streamer.sinks.server import Server

LABELS = ("angry", "happy", "sad")
_SCHEMA = json.loads(resources.files("streamer.sinks").joinpath("schema/protocol.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(_SCHEMA)
VALIDATOR = jsonschema.Draft202012Validator(_SCHEMA)


def valid(message: dict[str, Any]) -> dict[str, Any]:
    """The message, after checking it against the protocol's JSON Schema."""
    VALIDATOR.validate(message)
    return message


def emotion(seq: int, label: str = "happy", state: str = "emotion") -> EmotionEvent:
    probs = {name: (0.8 if name == label else 0.1) for name in LABELS}
    if state == "uncertain":  # near-uniform: no label leads by the margin
        probs = {"angry": 0.32, "happy": 0.38, "sad": 0.30}
    return EmotionEvent(
        seq=seq,
        timestamp=time.time(),
        stream_time=seq * 1.0,
        state=state,  # type: ignore[arg-type]  # any state string, to test how the wire carries it
        label=label if state == "emotion" else None,
        confidence=0.8 if state == "emotion" else 0.0,
        probabilities=probs,
        raw=probs,
        level=Level(rms_dbfs=-20.0, peak_dbfs=-3.0, clipped=False),
        processing_ms=1.5,
        model="tiny",
    )


def status(kind: str = "source_lost") -> StatusEvent:
    return StatusEvent(kind=kind, message=f"test {kind}", details={"device": "x"})


def describe_for(bus: EventBus) -> Callable[[], dict[str, Any]]:
    """The shape of the daemon's describe() (see docs/protocol.md)."""

    def describe() -> dict[str, Any]:
        last = bus.last_emotion
        return {
            "model": {
                "name": "tiny",
                "architecture": "cnn",
                "labels": list(LABELS),
                "window_seconds": 2.0,
                "hop_seconds": 0.5,
                "backend": "ai-edge-litert",
            },
            "config": {"server": {"host": "127.0.0.1", "port": 0}},
            "state": to_dict(last) if last else None,
            "source": {"kind": "file", "name": "x.wav", "state": "connected", "overflows": 0, "reconnects": 0},
            "counters": {"hops": bus.published},
        }

    return describe


@asynccontextmanager
async def serving(bus: EventBus, **settings: Any) -> AsyncIterator[Server]:
    """A real Server on a free loopback port, stopped on exit."""
    server = Server(ServerSettings(**{"port": 0, **settings}), describe_for(bus))
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(bus, stop))
    waiter = asyncio.create_task(server.listening.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield server
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def url(server: Server, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/{query}"
