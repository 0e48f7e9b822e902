"""The live-input supervisor: a source that stops delivering is closed and reopened, never given up on.

:class:`Liveness` wraps a :class:`~streamer.audio.sources.Source` and yields its chunks. A live input (a
device) counts as lost when it raises, ends, delivers nothing for ``stall_seconds`` (plus a grace
for the first block after opening: PortAudio through PulseAudio takes up to about 2 s), or, when
configured, only exact zeros for as long. It is then closed and reopened with exponential backoff
(:class:`~streamer.util.backoff.Backoff`) until it is back or the run is stopped. Finite sources (a
file, stdin) simply end, or fail with their reason (a reset socket). Every change goes out through
the ``on_status`` callback. A stop is never held up by the source: an open that hangs (PortAudio
while its sound server is frozen) is cancelled, and a close is abandoned after CLOSE_TIMEOUT_S.

The clock and the sleep are injected, so every transition is tested on a fake clock in
milliseconds (tests/test_liveness.py); the daemon passes the real ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import numpy as np

from streamer.audio.sources import Source, SourceError, SourceLost, in_daemon_thread
from streamer.config import LivenessSettings
from streamer.core.events import StatusKind
from streamer.util.backoff import Backoff

log = logging.getLogger(__name__)

FIRST_AUDIO_GRACE_S = 3.0  # extra patience for the first block after (re)opening
OVERFLOW_REPORT_S = 10.0  # one overflow report per this many seconds at most
CLOSE_TIMEOUT_S = 1.0  # a stream whose server froze may hang in close(): abandoned (SIGTERM exits in 2 s)
KEEPALIVE_S = 1.0  # while waiting to reopen, ``keepalive`` runs at least this often

SourceState = Literal["closed", "connected", "lost", "reconnecting", "ended"]
OnStatus = Callable[[StatusKind, str, dict[str, Any]], None]


class Liveness:
    """Reads a source for the daemon; ``state`` and ``counters`` are its part of the snapshot."""

    def __init__(
        self,
        source: Source,
        settings: LivenessSettings,
        on_status: OnStatus,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        keepalive: Callable[[], object] = lambda: None,
        keepalive_s: float = KEEPALIVE_S,
        grace_s: float | None = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.state: SourceState = "closed"
        self.counters: Counter[str] = Counter()
        self._on_status = on_status
        self._clock = clock
        self._sleep = sleep
        self._keepalive = keepalive  # a wait for a device is not a stall (systemd's watchdog)
        self._keepalive_s = keepalive_s
        self._grace_s = FIRST_AUDIO_GRACE_S if grace_s is None else grace_s
        self._grace = self._grace_s
        self._backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        self._zeros_since: float | None = None
        self._overflows_reported = 0
        self._overflow_reported_at = float("-inf")

    async def open(self, stop: asyncio.Event | None = None) -> bool:
        """The first opening: its errors propagate (nothing runs yet, and a restart may help).
        False when ``stop`` is set first: the open is cancelled (SIGTERM while a device hangs)."""
        stopping = (
            asyncio.ensure_future(stop.wait()) if stop is not None else asyncio.get_running_loop().create_future()
        )
        try:
            if not await _unless_stopped(self.source.open(), stopping):
                return False
        finally:
            stopping.cancel()
        self.state = "connected"
        return True

    async def chunks(self, stop: asyncio.Event) -> AsyncIterator[np.ndarray]:
        """The source's chunks, from the opened source, until ``stop`` is set or a finite one ends."""
        self._connected("source_connected", f"listening to {self.source.name}")
        stopping = asyncio.ensure_future(stop.wait())  # one waiter for the whole run, not one per read
        try:
            while not stop.is_set():
                try:
                    chunk = await self._next(stopping)
                    if chunk is not None:
                        self._check_zeros(chunk)
                except SourceError as exc:
                    if not self.source.live:  # a reader that failed (stdin reset): ended, and why
                        self.state = "ended"
                        self._on_status("source_ended", f"{self.source.name}: {exc}", {"reason": str(exc)})
                        raise
                    await self._recover(str(exc), stopping)
                    continue
                if chunk is None:
                    break
                self._report_overflows()
                yield chunk
            if not stop.is_set():
                self.state = "ended"
                self._on_status("source_ended", f"{self.source.name}: end of stream", {})
        finally:
            stopping.cancel()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(in_daemon_thread(self.source.close), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("closing %r took over %.0f s; abandoned", self.source.name, CLOSE_TIMEOUT_S)
        if self.state == "connected":
            self.state = "closed"

    async def _next(self, stopping: asyncio.Future[Any]) -> np.ndarray | None:
        """Next chunk; None when stopping or at the end; SourceLost when a live input stalls."""
        read = asyncio.ensure_future(self.source.read())
        waits: set[asyncio.Future[Any]] = {read, stopping}
        timeout = self.settings.stall_seconds + self._grace
        timer = asyncio.ensure_future(self._sleep(timeout)) if self.source.live else None
        if timer is not None:
            waits.add(timer)
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if timer is not None:
            timer.cancel()
        if read in done:
            self._grace = 0.0
            return read.result()
        read.cancel()
        await asyncio.gather(read, return_exceptions=True)
        if stopping.done():
            return None
        self.counters["stalls"] += 1
        raise SourceLost(f"no audio for {timeout:g} s")

    def _check_zeros(self, chunk: np.ndarray) -> None:
        """Digital silence (exact zeros) for ``stall_seconds`` is a loss when so configured."""
        if not (self.source.live and self.settings.digital_silence_is_loss) or np.any(chunk):
            self._zeros_since = None
            return
        now = self._clock()
        if self._zeros_since is None:
            self._zeros_since = now
        elif now - self._zeros_since >= self.settings.stall_seconds:
            self.counters["digital_silence"] += 1
            raise SourceLost(f"only digital silence for {self.settings.stall_seconds:g} s")

    def _report_overflows(self) -> None:
        """New input overflows (audio lost before we saw it): one status per OVERFLOW_REPORT_S at most."""
        total = self.source.overflows
        if total <= self._overflows_reported:
            return
        now = self._clock()
        if now - self._overflow_reported_at >= OVERFLOW_REPORT_S:
            log.warning("input %r overflowed (%d blocks lost so far)", self.source.name, total)
            self._on_status("overflow", f"input {self.source.name} lost audio blocks", {"overflows": total})
            self._overflows_reported, self._overflow_reported_at = total, now

    async def _recover(self, reason: str, stopping: asyncio.Future[Any]) -> None:
        """Close the lost input and reopen it with backoff until it works or we are stopped."""
        lost_at = self._clock()
        self.state = "lost"
        self.counters["source_lost"] += 1
        log.warning("input %r lost: %s; reopening", self.source.name, reason)
        self._on_status("source_lost", f"input {self.source.name} lost: {reason}", {"reason": reason})
        await self.close()
        backoff = self._backoff
        backoff.reset()
        while not stopping.done():
            self.state = "reconnecting"
            if await self._wait(backoff.delay, stopping):
                return
            self.counters["reconnect_attempts"] += 1
            try:
                if not await _unless_stopped(self.source.open(), stopping):
                    return
            except SourceError as exc:
                delay = backoff.failed()
                log.warning(
                    "reopening %r failed (attempt %d): %s; next try in %.1f s",
                    *(self.source.name, backoff.attempts, exc, delay),
                )
                details = {"attempt": backoff.attempts, "retry_in_s": delay}
                self._on_status("source_retry", f"reopening {self.source.name} failed: {exc}", details)
                continue
            self.counters["reconnects"] += 1
            self._grace, self._zeros_since = self._grace_s, None
            downtime = round(self._clock() - lost_at, 2)
            details = {"attempts": backoff.attempts + 1, "downtime_s": downtime}
            self._connected("source_recovered", f"input {self.source.name} is back after {downtime} s", details)
            return

    async def _wait(self, seconds: float, stopping: asyncio.Future[Any]) -> bool:
        """Sleep ``seconds``, calling ``keepalive`` every ``keepalive_s``; True if stopped meanwhile."""
        deadline = self._clock() + seconds
        while (left := deadline - self._clock()) > 0 and not stopping.done():
            self._keepalive()
            timer = asyncio.ensure_future(self._sleep(min(left, self._keepalive_s)))
            await asyncio.wait({timer, stopping}, return_when=asyncio.FIRST_COMPLETED)
            timer.cancel()
        return stopping.done()

    def _connected(self, kind: StatusKind, message: str, details: dict[str, Any] | None = None) -> None:
        self.state = "connected"
        log.info("%s", message)
        self._on_status(kind, message, details or {})


async def _unless_stopped(opening: Awaitable[None], stopping: asyncio.Future[Any]) -> bool:
    """Await ``opening`` unless ``stopping`` completes first: then it is cancelled (False)."""
    task = asyncio.ensure_future(opening)
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        return False
    task.result()
    return True
