"""`moodstream run`: source -> Pipeline -> EventBus -> sinks, one asyncio task per service.

The capture task reads the source through :class:`~streamer.audio.liveness.Liveness`, which never gives up
on a live input, feeds the pipeline and publishes its events; every sink (JSONL, history, WebSocket
server, dashboard, MQTT, systemd notify) is a task reading the bus (:class:`~streamer.sinks.base.Sink`);
the mDNS advertisement runs as one too, as long, though it needs no events. SIGINT/SIGTERM
close the stream, then the bus, and the sinks drain what is pending before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from streamer import version
from streamer.audio import liveness
from streamer.audio.sources import Source
from streamer.config import Settings
from streamer.core.events import EventBus, StatusEvent, StatusKind, to_dict
from streamer.core.pipeline import Pipeline
from streamer.sinks import mdns, server
from streamer.sinks.base import Sink
from streamer.sinks.history import HistorySink
from streamer.sinks.jsonl import JsonlSink
from streamer.sinks.notify import Notifier, NotifySink

log = logging.getLogger(__name__)


class Daemon:
    """The running service: wiring and supervision; :meth:`describe` is its snapshot."""

    def __init__(
        self,
        settings: Settings,
        runner: Any,
        source: Source,
        bus: EventBus | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.bus = bus or EventBus()
        self.notifier = notifier or Notifier()
        self.pipeline = Pipeline(runner, settings)
        keepalive_s = min(liveness.KEEPALIVE_S, self.notifier.watchdog_interval or liveness.KEEPALIVE_S)
        self.liveness = liveness.Liveness(
            source, settings.liveness, self._status, keepalive=self.notifier.watchdog, keepalive_s=keepalive_s
        )
        self.counters: Counter[str] = Counter()
        self.sinks: list[Sink] = []
        self._silent = False  # last hop was under the level gate
        self._started = time.monotonic()

    @property
    def source(self) -> Source:
        return self.liveness.source

    def describe(self) -> dict[str, Any]:
        """Model, config (without secrets), last emotion, source health; every counter once: the
        daemon's and its sinks' in ``counters``, the WebSocket server's in ``server``."""
        config = self.settings.to_dict()
        config.get("server", {}).pop("token", None)
        config.get("mqtt", {}).pop("password", None)
        last = self.bus.last_emotion
        counters: dict[str, Any] = {**self.counters, **self.liveness.counters}
        counters.update(
            uptime_s=round(time.monotonic() - self._started, 1),
            events_published=self.bus.published,
            subscribers=self.bus.subscriber_count,
        )
        info: dict[str, Any] = {
            "model": _model_info(self.runner, self.settings.model.hop_seconds),
            "config": config,
            "state": to_dict(last) if last is not None else None,
            "source": {
                "kind": self.source.kind,
                "name": self.source.name,
                "state": self.liveness.state,
                "overflows": self.source.overflows,
                "reconnects": self.liveness.counters["reconnects"],
            },
            "counters": counters,
        }
        for sink in self.sinks:
            if sink.name == "server":
                info["server"] = sink.stats()
            else:
                counters.update(sink.stats())
        return info

    async def run(self, stop: asyncio.Event) -> None:
        """Open the source (errors propagate: nothing is running yet), then serve until ``stop``
        is set or a finite source (file, stdin) ends."""
        sinks = build_sinks(self.settings, self.runner, self.describe, self.notifier, stop)
        opened = False
        try:
            opened = await self.liveness.open(stop)  # False: stopped first (SIGTERM while a device hangs)
        finally:
            if not opened:
                for sink in sinks:
                    if isinstance(sink, JsonlSink):
                        sink.close()
        if not opened:
            return
        self.sinks = sinks
        sinks_stop = asyncio.Event()  # set once the bus is closed and its last events queued
        services = [asyncio.create_task(sink.run(self.bus, sinks_stop), name=sink.name) for sink in sinks]
        await asyncio.sleep(0)  # each sink subscribes before the first event
        capture = asyncio.create_task(self._capture(stop))
        try:
            await _first_failure([capture, *services])
        finally:
            if not capture.done():
                capture.cancel()
            await asyncio.gather(capture, return_exceptions=True)
            await self.liveness.close()
            info = self.describe()
            final = {**info["counters"], **info.get("server", {})}
            self.bus.publish(StatusEvent("stopped", "moodstream stopped", details=final))
            self.bus.close()  # sinks drain what is queued, then see the end
            sinks_stop.set()
            failing = sys.exc_info()[1]  # already on its way to the caller: not logged twice
            for result in await asyncio.gather(*services, return_exceptions=True):
                if isinstance(result, Exception) and result is not failing:
                    log.error("a service failed during shutdown: %s", result)

    async def _capture(self, stop: asyncio.Event) -> None:
        async for chunk in self.liveness.chunks(stop):
            # Features and model on the loop: a hop's work (about 2 ms here) costs less than handing it
            # to a thread and back (measured: the whole daemon 0.25% of a core inline, 0.32% with
            # asyncio.to_thread, in one interleaved run), and the GIL serialised them anyway.
            for event in self.pipeline.process(chunk):
                self.counters["hops"] += 1
                self.counters[f"hops_{event.state}"] += 1
                self._report_silence(event.state)
                self.bus.publish(event)

    def _report_silence(self, state: str) -> None:
        """A status event when the input falls under the level gate and when sound returns."""
        if state == "warming_up" or (state == "silence") == self._silent:
            return
        self._silent = state == "silence"
        gate = self.settings.gate.silence_dbfs
        if self._silent:
            self._status("silence", f"input under the silence gate ({gate:g} dBFS): no emotion claimed", {})
        else:
            self._status("sound", f"sound above the silence gate ({gate:g} dBFS) again", {})

    def _status(self, kind: StatusKind, message: str, details: dict[str, Any]) -> None:
        if kind == "source_lost":  # the audio before the gap must not blend into what comes after
            self.pipeline.reset()
        details.update(source=self.source.name, source_kind=self.source.kind)
        self.bus.publish(StatusEvent(kind, message, details=details))


def build_sinks(
    settings: Settings, runner: Any, describe: Callable[[], dict[str, Any]], notifier: Notifier, stop: asyncio.Event
) -> list[Sink]:
    """Every consumer of the bus the settings ask for (JSONL first: a bad path is a start-up error)."""
    out = settings.output
    sinks: list[Sink] = [JsonlSink(out.jsonl, stop.set)] if out.jsonl else []
    history = HistorySink(settings.history, settings.model.hop_seconds)
    sinks.append(history)  # without a path it keeps only the last hour in memory, for the page's strip
    if settings.server.enabled:
        web = server.Server(settings.server, describe)
        web.requests["get_history"] = history.answer
        sinks.append(web)
        if mdns.wanted(settings.server):  # beyond loopback: found on the network by its name
            model = _model_info(runner, settings.model.hop_seconds)
            sinks.append(mdns.Advertiser(settings.server, web, mdns.txt_properties(settings.server, model, version())))
    if out.dashboard:
        from streamer.sinks.dashboard import LocalDashboard  # rich's live display: only when asked for

        sinks.append(LocalDashboard(describe))
    if settings.mqtt.url:
        from streamer.sinks.mqtt import MqttSink  # aiomqtt: a daemon without [mqtt] never loads it

        sinks.append(MqttSink(settings.mqtt, runner.name, settings.gate.silence_dbfs))
    if notifier.enabled:
        sinks.append(NotifySink(notifier))
    return sinks


def _model_info(runner: Any, hop_seconds: float) -> dict[str, Any]:
    return {
        "name": runner.name,
        "architecture": runner.metadata.architecture,
        "labels": list(runner.labels),
        "window_seconds": runner.metadata.window_seconds,
        "hop_seconds": hop_seconds,
        "backend": runner.backend,
    }


async def _first_failure(tasks: list[asyncio.Task[Any]]) -> None:
    """Wait for the capture task (the first) to end; re-raise any service's failure at once."""
    pending = set(tasks)
    while tasks[0] in pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if (error := task.exception()) is not None:
                raise error
