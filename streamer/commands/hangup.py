"""SIGHUP for `moodstream run`: reload the configuration, and never die of it.

SIGHUP's default action ends the process, and asyncio restores that default when its loop closes,
so a second SIGHUP during a reload (between the loop's end and the exec, or while the exec'd
process starts) used to kill the service, and systemd left it down. Here the signal has a handler
from the start of `run` until the exec, and is blocked across the exec (a blocked signal waits,
pending, and a new process inherits the block): the new process takes it once its own handler is
in place. SIGHUPs that come while a reload is being checked or carried out count as one.

A reload first checks what start-up would refuse with exit 2 (the settings, the model file); a
configuration that fails is reported (log and a ``reload_failed`` status event) and the daemon
runs on with the one it has. Only then is the daemon stopped and the process started again (exec).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType

from streamer.config import ConfigError
from streamer.core.events import EventBus, StatusEvent
from streamer.model.metadata import ModelFileError

log = logging.getLogger(__name__)

HUP = {signal.SIGHUP}


class Hangups:
    """The SIGHUP handler of one process: a reload callback while a loop serves, else remembered."""

    def __init__(self) -> None:
        self.pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callback: Callable[[], None] | None = None

    def install(self) -> None:
        """Handle SIGHUP from now on; one that waited (blocked across an exec) arrives now."""
        signal.signal(signal.SIGHUP, self._signalled)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HUP)

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        if self._loop is not None and self._callback is not None:
            self._loop.call_soon_threadsafe(self._callback)
        else:
            self.pending = True

    def attach(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop, self._callback = loop, callback
        if self.pending:
            self.pending = False
            loop.call_soon(callback)

    def detach(self) -> None:
        self._loop = self._callback = None

    @staticmethod
    def block() -> None:
        """Hold further SIGHUPs (pending) until the next process installs its handler."""
        signal.pthread_sigmask(signal.SIG_BLOCK, HUP)


class Reloader:
    """Checks a fresh configuration on SIGHUP; ``stop`` is set (with ``accepted``) once one passes."""

    def __init__(self, check: Callable[[], None], bus: EventBus, stop: asyncio.Event) -> None:
        self._check = check
        self._bus = bus
        self._stop = stop
        self.accepted = False
        self._checking: asyncio.Task[None] | None = None
        self._again = False

    def hangup(self) -> None:
        if self.accepted:
            return  # stopping for a reload already: the next process reads the file afresh anyway
        if self._checking is not None:
            self._again = True  # one more check after this one, however many came
            return
        self._checking = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                if await self._passes():
                    self.accepted = True
                    self._stop.set()
                    return
                if not self._again:
                    return
        finally:
            self._checking = None

    async def _passes(self) -> bool:
        try:
            await asyncio.to_thread(self._check)
        except (ConfigError, ModelFileError, ValueError, OSError) as exc:
            message = f"reload refused, still running the previous configuration: {exc}"
            log.error("%s", message)
            self._bus.publish(StatusEvent("reload_failed", message, details={"error": str(exc)}))
            return False
        log.info("SIGHUP: the configuration read afresh is valid; restarting with it")
        return True
