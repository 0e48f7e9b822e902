"""systemd notifications (sd_notify) in a few lines, so the unit can be Type=notify with a watchdog.

The protocol is one datagram of ``KEY=VALUE`` lines to the unix socket named by ``$NOTIFY_SOCKET``
(a leading ``@`` means the abstract namespace). Outside systemd the variable is unset and every
call is a no-op, so the daemon calls these unconditionally. A failed send is logged and dropped:
notifications must never take the daemon down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

from streamer.core.events import EmotionEvent, EventBus

log = logging.getLogger(__name__)


class Notifier:
    """Sends READY/WATCHDOG/STATUS/STOPPING to systemd when it asked for them (via the environment)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._failed = False
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self) -> bool:
        """Start-up is done (source and model up): systemd moves the unit to 'active'."""
        return self._send("READY=1")

    def watchdog(self) -> bool:
        """Proof of life from the processing loop; callers ping at least every ``watchdog_interval``."""
        return self.watchdog_interval is not None and self._send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """One line for ``systemctl status``."""
        return self._send("STATUS=" + " ".join(text.split()))

    def stopping(self) -> bool:
        return self._send("STOPPING=1")

    def _send(self, message: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            if not self._failed:  # once: a vanished socket would otherwise log every hop
                log.warning("sd_notify to %s failed: %s", os.fsdecode(self.address), exc)
            self._failed = True
            return False
        self._failed = False
        self.sent += 1
        return True


class NotifySink:
    """systemd's view of the bus: READY when it starts (the source is open by then), a watchdog ping
    per hop (so a wedged pipeline stops the pings), STATUS per status event, STOPPING at the end."""

    name = "notify"

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def stats(self) -> dict[str, int]:
        return {"notifications_sent": self.notifier.sent}

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None:
        """Until the bus closes; ``stop`` alone does not end it, so the last STATUS goes out."""
        subscription = bus.subscribe(256)
        self.notifier.ready()
        try:
            async for event in subscription:
                if isinstance(event, EmotionEvent):
                    self.notifier.watchdog()
                else:
                    self.notifier.status(event.message)
        finally:
            subscription.close()
            self.notifier.stopping()


def _address(value: str) -> bytes | None:
    if not value or value[0] not in "/@":  # "vsock:..." and relative paths: not for us
        return None
    raw = os.fsencode(value)
    return b"\0" + raw[1:] if raw.startswith(b"@") else raw


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half the watchdog timeout, as sd_watchdog_enabled(3) advises; None when not for this process."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2e6
