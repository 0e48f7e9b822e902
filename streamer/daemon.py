"""`moodstream run`: source -> Pipeline -> EventBus -> sinks, one asyncio task per service.

The capture task owns the source and the pipeline and never gives up on a live input: a device
that stops delivering (no audio, or only digital silence, for ``liveness.stall_seconds``), raises,
or vanishes is closed and reopened with exponential backoff and found again by name, while the
bus and every other service keep running. SIGINT/SIGTERM close the stream, then the bus, and the
sinks drain what is pending before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from streamer import config as config_mod
from streamer import logs, protocol, server
from streamer.config import ConfigError, Settings
from streamer.events import EventBus, StatusEvent, to_dict
from streamer.metadata import ModelFileError
from streamer.notify import Notifier
from streamer.pipeline import Pipeline
from streamer.runner import ModelRunner, default_model_path
from streamer.sources import (
    DeviceNotFound,
    NoInputDevice,
    Source,
    SourceError,
    SourceLost,
    build_source,
    in_daemon_thread,
)

log = logging.getLogger(__name__)

JSONL_QUEUE = 100_000  # a file sink must never drop events of a fast file run
CLOSE_TIMEOUT_S = 5.0  # a stream whose server vanished may hang in close(); do not wait forever
# PortAudio through PulseAudio's ALSA plugin takes up to about 2 s to deliver the first block
FIRST_AUDIO_GRACE_S = 3.0
OVERFLOW_REPORT_S = 10.0


class OutputError(Exception):
    """An output that can no longer be written (a full disk): the run ends with the reason."""


class Daemon:
    """The running service; :meth:`describe` is its snapshot for the server and the dashboard."""

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
        self.source = source
        self.bus = bus or EventBus()
        self.notifier = notifier or Notifier()
        self.pipeline = Pipeline(runner, settings)
        self.source_state = "closed"  # connected | lost | reconnecting | ended | closed
        self.counters: Counter[str] = Counter()
        self.server: server.Server | None = None
        self.jsonl_written = 0
        self._overflows_reported = 0
        self._silent = False  # last hop was under the level gate
        self._overflow_reported_at = float("-inf")
        self._started = time.monotonic()

    def describe(self) -> dict[str, Any]:
        """Model, config (without secrets), last emotion, source health and counters."""
        config = self.settings.to_dict()
        config.get("server", {}).pop("token", None)
        last = self.bus.last_emotion
        counters = dict(self.counters)
        counters.update(
            uptime_s=round(time.monotonic() - self._started, 1),
            events_published=self.bus.published,
            subscribers=self.bus.subscriber_count,
            jsonl_written=self.jsonl_written,
        )
        if self.server is not None:
            counters.update(clients=self.server.client_count, dropped_clients=self.server.dropped_clients)
        return {
            "model": {
                "name": self.runner.name,
                "architecture": self.runner.metadata.architecture,
                "labels": list(self.runner.labels),
                "window_seconds": self.runner.metadata.window_seconds,
                "hop_seconds": self.settings.model.hop_seconds,
                "backend": self.runner.backend,
            },
            "config": config,
            "state": to_dict(last) if last is not None else None,
            "source": {
                "kind": self.source.kind,
                "name": self.source.name,
                "state": self.source_state,
                "overflows": self.source.overflows,
                "reconnects": self.counters["reconnects"],
            },
            "counters": counters,
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Open the source (errors propagate: nothing is running yet), then serve until ``stop``
        is set or a finite source (file, stdin) ends."""
        out = _open_jsonl(self.settings.output.jsonl)
        jsonl = self.bus.subscribe(JSONL_QUEUE) if out is not None else None
        try:
            await self.source.open()
        except BaseException:
            if jsonl is not None and out is not None:
                jsonl.close()
                _close_output(out)
            raise
        self._connected("source_connected", f"listening to {self.source.name}")
        services_stop = asyncio.Event()
        services = []
        if jsonl is not None and out is not None:
            services.append(asyncio.create_task(self._jsonl(jsonl, out, stop)))
        if self.settings.server.enabled:
            self.server = server.Server(self.settings.server, self.bus, self.describe)
            services.append(asyncio.create_task(self.server.run(services_stop)))
        if self.settings.output.dashboard:
            from streamer import dashboard

            services.append(asyncio.create_task(dashboard.run_local(self.bus, self.describe, services_stop)))
        self.notifier.ready()
        capture = asyncio.create_task(self._capture(stop))
        try:
            await _first_failure([capture, *services])
        finally:
            if not capture.done():
                capture.cancel()
            await asyncio.gather(capture, return_exceptions=True)
            await self._close_source()
            self.notifier.stopping()
            self.bus.publish(StatusEvent("stopped", "moodstream stopped", details=self.describe()["counters"]))
            self.bus.close()  # sinks drain what is queued, then see the end
            services_stop.set()
            failing = sys.exc_info()[1]  # already on its way to the caller: not logged twice
            for result in await asyncio.gather(*services, return_exceptions=True):
                if isinstance(result, Exception) and result is not failing:
                    log.error("a service failed during shutdown: %s", result)

    # capture and liveness

    async def _capture(self, stop: asyncio.Event) -> None:
        zero_since: float | None = None
        grace = FIRST_AUDIO_GRACE_S
        while not stop.is_set():
            try:
                chunk = await self._next_chunk(stop, grace)
                if chunk is None:
                    break
                grace = 0.0
                zero_since = self._check_digital_silence(chunk, zero_since)
            except SourceError as exc:
                if not self.source.live:
                    raise
                await self._recover(str(exc), stop)
                zero_since, grace = None, FIRST_AUDIO_GRACE_S
                continue
            if chunk.size >= self.pipeline.samples_to_next_hop:  # features + model: off the loop
                events = await asyncio.to_thread(self.pipeline.process, chunk)
            else:  # just buffering
                events = self.pipeline.process(chunk)
            for event in events:
                self.counters["hops"] += 1
                self.counters[f"hops_{event.state}"] += 1
                self._report_silence(event.state)
                self.bus.publish(event)
                self.notifier.watchdog()
            if events:
                self._report_overflows()
        if not stop.is_set():
            self.source_state = "ended"
            self.bus.publish(StatusEvent("source_ended", f"{self.source.name}: end of stream"))

    def _report_silence(self, state: str) -> None:
        """A status event when the input falls under the level gate and when sound returns."""
        if state == "warming_up" or (state == "silence") == self._silent:
            return
        self._silent = state == "silence"
        gate = self.settings.gate.silence_dbfs
        if self._silent:
            self._status("silence", f"input under the silence gate ({gate:g} dBFS): no emotion claimed")
        else:
            self._status("sound", f"sound above the silence gate ({gate:g} dBFS) again")

    def _report_overflows(self) -> None:
        """New input overflows (audio lost before we saw it): one status event per 10 s at most."""
        total = self.source.overflows
        now = time.monotonic()
        if total > self._overflows_reported and now - self._overflow_reported_at >= OVERFLOW_REPORT_S:
            log.warning("input %r overflowed (%d blocks lost so far)", self.source.name, total)
            self._status("overflow", f"input {self.source.name} lost audio blocks", overflows=total)
            self._overflows_reported, self._overflow_reported_at = total, now

    async def _next_chunk(self, stop: asyncio.Event, grace: float) -> np.ndarray | None:
        """Next chunk; None when stopping or at the end; SourceLost when a live input stalls
        (for ``stall_seconds``, plus ``grace`` for the first block after opening)."""
        stall = self.settings.liveness.stall_seconds
        timeout = stall + grace if self.source.live else None
        read = asyncio.ensure_future(self.source.read())
        stopping = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({read, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if read in done:
            return read.result()
        read.cancel()
        await asyncio.gather(read, return_exceptions=True)
        if stop.is_set():
            return None
        self.counters["stalls"] += 1
        raise SourceLost(f"no audio for {timeout:g} s")

    def _check_digital_silence(self, chunk: np.ndarray, since: float | None) -> float | None:
        live = self.settings.liveness
        if not (self.source.live and live.digital_silence_is_loss) or np.any(chunk):
            return None
        now = time.monotonic()
        if since is not None and now - since >= live.stall_seconds:
            self.counters["digital_silence"] += 1
            raise SourceLost(f"only digital silence for {live.stall_seconds:g} s")
        return now if since is None else since

    async def _recover(self, reason: str, stop: asyncio.Event) -> None:
        """Close the lost input and reopen it with backoff until it works or we are stopped."""
        live = self.settings.liveness
        lost_at = time.monotonic()
        self.source_state = "lost"
        self.counters["source_lost"] += 1
        log.warning("input %r lost: %s; reopening", self.source.name, reason)
        self._status("source_lost", f"input {self.source.name} lost: {reason}", reason=reason)
        await self._close_source()
        self.pipeline.reset()
        delay, attempt = live.backoff_initial_s, 0
        while not stop.is_set():
            self.source_state = "reconnecting"
            if await _wait_or_stop(stop, delay, self.notifier):
                return
            attempt += 1
            self.counters["reconnect_attempts"] += 1
            try:
                await self.source.open()
            except SourceError as exc:
                delay = min(2 * delay, live.backoff_max_s)
                log.warning(
                    "reopening %r failed (attempt %d): %s; next try in %.1f s", self.source.name, attempt, exc, delay
                )
                self._status(
                    "source_retry", f"reopening {self.source.name} failed: {exc}", attempt=attempt, retry_in_s=delay
                )
                continue
            self.counters["reconnects"] += 1
            downtime = round(time.monotonic() - lost_at, 2)
            self._connected(
                "source_recovered",
                f"input {self.source.name} is back after {downtime} s",
                attempts=attempt,
                downtime_s=downtime,
            )
            return

    def _connected(self, kind: str, message: str, **details: Any) -> None:
        self.source_state = "connected"
        log.info("%s", message)
        self._status(kind, message, **details)

    def _status(self, kind: str, message: str, **details: Any) -> None:
        details.update(source=self.source.name, source_kind=self.source.kind)
        self.bus.publish(StatusEvent(kind, message, details=details))
        self.notifier.status(message)

    async def _close_source(self) -> None:
        try:
            await asyncio.wait_for(in_daemon_thread(self.source.close), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("closing %r took over %.0f s; abandoned", self.source.name, CLOSE_TIMEOUT_S)
        if self.source_state == "connected":
            self.source_state = "closed"

    # sinks

    async def _jsonl(self, subscription: Any, out: TextIO, stop: asyncio.Event) -> None:
        """Every event as one JSON line; flushed per line so a pipe reader sees each hop. A reader
        that goes away (``| head``) ends the run, as it would for any command-line tool."""
        try:
            async for event in subscription:
                out.write(protocol.encode(to_dict(event)) + "\n")
                out.flush()
                self.jsonl_written += 1
        except BrokenPipeError:
            log.info("the reader of the JSON lines went away; stopping")
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())  # no flush error at exit
            stop.set()
        except OSError as exc:  # a full disk, a vanished mount: say so and end the run
            raise OutputError(f"cannot write the JSON lines to {out.name}: {exc.strerror or exc}") from None
        finally:
            subscription.close()
            _close_output(out)


def _open_jsonl(path: str) -> TextIO | None:
    """The JSONL output, opened before anything starts so a bad path is a start-up error."""
    if not path:
        return None
    if path == "-":
        return sys.stdout
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"output.jsonl: cannot write to {path}: {exc.strerror}") from None


def _close_output(out: TextIO) -> None:
    if out is not sys.stdout:
        try:
            out.close()
        except OSError:  # the buffered rest cannot be written either: already reported
            pass


async def _first_failure(tasks: list[asyncio.Task[Any]]) -> None:
    """Wait for the capture task (the first) to end; re-raise any service's failure at once."""
    pending = set(tasks)
    while tasks[0] in pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]


async def _wait_or_stop(stop: asyncio.Event, seconds: float, notifier: Notifier) -> bool:
    """Sleep ``seconds`` (sending watchdog pings: waiting for a device is not a stall); True if stopped."""
    deadline = time.monotonic() + seconds
    step = min(1.0, notifier.watchdog_interval or 1.0)  # however short WatchdogSec is
    while (left := deadline - time.monotonic()) > 0:
        notifier.watchdog()
        try:
            await asyncio.wait_for(stop.wait(), min(left, step))
            return True
        except TimeoutError:
            pass
    return stop.is_set()


# the command


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--config", type=Path, help=f"TOML settings (default: {config_mod.SYSTEM_CONFIG} if it exists)")
    a("--source", help="device | file:PATH | stdin | demo | auto (default: device)")
    a("--device", help="input device: index or part of its name (see `moodstream devices`)")
    a("--realtime", action="store_true", default=None, help="pace a file source like a live input")
    a("--rate", type=int, help="sample rate of raw s16le on stdin (16000)")
    a("--channels", type=int, help="channels of raw s16le on stdin (1)")
    a("--channel", type=int, help="input channel to use; -1 = mean of all, of a device's first two (default)")
    a(
        "--model",
        help="model file (.tflite with moodstream metadata) or a shipped model's short name: "
        "3class, 4class, 3class-musicnn, 4class-musicnn (default: 3class)",
    )
    a("--hop", type=float, help="seconds between classifications (1.0)")
    a("--time-constant", type=float, help="EMA time constant of probabilities in s (3.0; 0 = off)")
    a("--switch-margin", type=float, help="lead a new label needs before it switches (0.10)")
    a("--switch-hops", type=int, help="consecutive hops of that lead before switching (2)")
    a("--silence-dbfs", type=float, help="hop RMS below this is silence: no emotion claimed (-50)")
    a("--stall-seconds", type=float, help="a live input silent this long is reopened (5)")
    a("--jsonl", help="write every event as a JSON line to PATH, or - for stdout")
    a("--dashboard", action="store_true", default=None, help="show the live dashboard in the terminal")
    a("--log-level", choices=("debug", "info", "warning", "error"))
    server.add_arguments(parser)


def main(args: argparse.Namespace) -> int:
    try:
        settings = config_mod.load(args.config, config_mod.overrides_from_args(args))
    except ConfigError as exc:
        print(f"moodstream: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.output.log_level)
    try:
        runner = ModelRunner(settings.model.path or default_model_path())
        block = config_mod.block_seconds_for(settings)
        source = build_source(dataclasses.replace(settings.source, block_seconds=block))
        daemon = Daemon(settings, runner, source)
    except (ModelFileError, SourceError, ValueError) as exc:
        print(f"moodstream: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(daemon))
    except ConfigError as exc:
        print(f"moodstream: configuration error: {exc}", file=sys.stderr)
        return 2
    except DeviceNotFound as exc:
        # 1, not 2: the named microphone may be plugged in later, and systemd retries exit 1
        # (the unit's RestartPreventExitStatus=2 is for mistakes that restarting cannot fix)
        print(f"moodstream: {exc}", file=sys.stderr)
        return 1
    except NoInputDevice as exc:
        print(f"moodstream: {exc}; try --source demo, file:PATH or stdin", file=sys.stderr)
        return 1
    except (SourceError, server.ServerError, OutputError) as exc:
        print(f"moodstream: {exc}", file=sys.stderr)
        return 1


async def _serve(daemon: Daemon) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await daemon.run(stop)
    log.info("stopped after %d hops", daemon.counters["hops"])
    return 0
