"""Exponential backoff for every reconnect loop (a lost input, a daemon being watched, a broker).

One helper so that every long-lived connection retries the same way: start short, double after each
failure up to a ceiling, and start short again after a success.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Backoff:
    """The delay before the next attempt; ``failed()`` doubles it (capped), ``reset()`` restores it."""

    initial_s: float
    max_s: float
    delay: float = field(init=False)
    attempts: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < initial ({self.initial_s}) <= max ({self.max_s})")
        self.delay = self.initial_s

    def failed(self) -> float:
        """Count a failed attempt and return the delay before the next one."""
        self.attempts += 1
        self.delay = min(2 * self.delay, self.max_s)
        return self.delay

    def reset(self) -> None:
        self.delay, self.attempts = self.initial_s, 0
