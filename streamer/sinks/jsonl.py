"""The JSONL sink: every event as one JSON line, to a file or stdout (``output.jsonl``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import TextIO

from streamer.config import ConfigError
from streamer.core.events import EventBus, to_dict
from streamer.sinks import protocol

log = logging.getLogger(__name__)

QUEUE = 100_000  # a file sink must never drop events of a fast file run


class OutputError(Exception):
    """An output that can no longer be written (a full disk): the run ends with the reason."""


class JsonlSink:
    """Opened at construction, so a bad path is a start-up error; ``end_run`` is called when the
    reader of stdout goes away (``| head``), which ends the run as it would any command-line tool."""

    name = "jsonl"

    def __init__(self, path: str, end_run: Callable[[], None]) -> None:
        self._end_run = end_run
        self.written = 0
        if path == "-":
            self._out: TextIO = sys.stdout
            return
        try:
            self._out = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed when run ends, or by close())
        except OSError as exc:
            raise ConfigError(f"output.jsonl: cannot write to {path}: {exc.strerror}") from None

    def stats(self) -> dict[str, int]:
        return {"jsonl_written": self.written}

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None:
        """Until the bus closes (``stop`` is not waited on: every queued event is written).
        Flushed per line so a pipe reader sees each hop."""
        subscription = bus.subscribe(QUEUE)
        try:
            async for event in subscription:
                self._out.write(protocol.encode(to_dict(event)) + "\n")
                self._out.flush()
                self.written += 1
        except BrokenPipeError:
            log.info("the reader of the JSON lines went away; stopping")
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._out.fileno())  # no flush error at exit
            self._end_run()
        except OSError as exc:  # a full disk, a vanished mount: say so and end the run
            raise OutputError(f"cannot write the JSON lines to {self._out.name}: {exc.strerror or exc}") from None
        finally:
            subscription.close()
            self.close()

    def close(self) -> None:
        if self._out is not sys.stdout:
            with contextlib.suppress(OSError):  # the buffered rest cannot be written either: already reported
                self._out.close()
