"""Smoothing of per-hop probabilities: an EMA with a time constant, then a hysteretic label.

Music moves slowly compared with a 1 s hop; without this the label flickers between close
classes. The EMA sets how fast probabilities follow the music; the hysteresis decides when the
*label* may change: only after a challenger leads the current label by ``switch_margin`` for
``switch_hops`` consecutive hops.
"""

from __future__ import annotations

import math

import numpy as np

from streamer.config import SmoothingSettings


def ema_alpha(time_constant_s: float, hop_seconds: float) -> float:
    """Weight of the newest hop for an EMA with this time constant (1 = no smoothing)."""
    if time_constant_s <= 0:
        return 1.0
    return 1.0 - math.exp(-hop_seconds / time_constant_s)


class Smoother:
    """Feed raw probabilities once per hop; get the smoothed ones and the current label index."""

    def __init__(self, settings: SmoothingSettings, hop_seconds: float) -> None:
        self.settings = settings
        self.alpha = ema_alpha(settings.time_constant_s, hop_seconds)
        self.reset()

    def reset(self) -> None:
        """Forget the past (a new stream after a gap starts from its own first hop)."""
        self.smoothed: np.ndarray | None = None
        self.label: int | None = None
        self._challenger: int | None = None
        self._streak = 0

    def update(self, raw: np.ndarray) -> tuple[np.ndarray, int]:
        raw = np.asarray(raw, dtype=np.float64)
        if self.smoothed is None:
            self.smoothed = raw.copy()
        else:
            self.smoothed = self.alpha * raw + (1.0 - self.alpha) * self.smoothed
        self.label = self._decide(self.smoothed)
        return self.smoothed.copy(), self.label

    def _decide(self, p: np.ndarray) -> int:
        leader = int(np.argmax(p))
        if self.label is None:
            return leader
        if leader == self.label or p[leader] - p[self.label] < self.settings.switch_margin:
            self._challenger, self._streak = None, 0
            return self.label
        if leader != self._challenger:
            self._challenger, self._streak = leader, 0
        self._streak += 1
        if self._streak >= self.settings.switch_hops:
            self._challenger, self._streak = None, 0
            return leader
        return self.label
