"""Logging for a box on a shelf: stderr only (journald keeps it; no files wear the SD card), and a
message that repeats (an overflow every hop, a device that keeps failing to open) is rate-limited so
months of uptime do not flood the journal.

stdout is left alone: ``--jsonl -`` writes events there.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO

# syslog priorities for sd-daemon(3) "<N>" line prefixes, which journald turns into levels
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3}


class RateLimitFilter(logging.Filter):
    """Pass at most ``burst`` records per message template per ``period_s``; report what was dropped.

    Records are grouped by logger, level and the *unformatted* message, so "overflow (%d)" with a
    different count each time is still one message. The first record let through after a quiet
    spell says how many were suppressed.
    """

    def __init__(self, burst: int = 5, period_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.period_s = period_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}  # key -> [start, n, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        key = (record.name, record.levelno, str(record.msg))
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.period_s:
            dropped = int(entry[2]) if entry else 0
            self._forget_old(now)
            self._seen[key] = [now, 1, 0]
            if dropped:
                record.msg = f"{record.getMessage()} ({dropped} similar messages suppressed)"
                record.args = None
            return True
        entry[1] += 1
        if entry[1] <= self.burst:
            return True
        entry[2] += 1
        return False

    def _forget_old(self, now: float) -> None:
        """Keep the table small when messages are unique (formatted before logging)."""
        if len(self._seen) > 1000:
            for key in [k for k, e in self._seen.items() if now - e[0] >= self.period_s]:
                del self._seen[key]


def setup(
    level: str = "info", stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> logging.Handler:
    """Route every log record to stderr (or ``stream``), rate-limited; returns the handler."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    if _under_journald(stream, os.environ if environ is None else environ):
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_moodstream", False)]:
        root.removeHandler(old)
    handler._moodstream = True  # type: ignore[attr-defined]  # our mark, so a second setup() replaces it
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


class _JournalFormatter(logging.Formatter):
    """journald timestamps lines itself; it reads the level from a "<N>" prefix."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_PRIORITY.get(record.levelno, 2 if record.levelno > logging.ERROR else 6)}>"
        return prefix + super().format(record).replace("\n", "\n" + prefix)


def _under_journald(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM`` = dev:ino)."""
    try:
        dev, ino = (int(x) for x in environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)
