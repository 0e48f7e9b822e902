"""Smoothing of per-hop probabilities: an EMA with a time constant, then an honest label.

Music moves slowly compared with a 1 s hop; without this the label flickers between close
classes. The EMA sets how fast probabilities follow the music. A label is claimed only while it
leads *clearly*: it is the most probable, by at least ``switch_margin`` over the next one, and its
smoothed probability is at least ``min_confidence``. A new label must lead clearly for
``switch_hops`` consecutive hops before it is claimed. Otherwise the answer is None ("uncertain"):
a label that is not the most probable one is never claimed.
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
    """Feed raw probabilities once per hop; get the smoothed ones and the claimed label index
    (None: uncertain)."""

    def __init__(self, settings: SmoothingSettings, hop_seconds: float) -> None:
        self.settings = settings
        self.alpha = ema_alpha(settings.time_constant_s, hop_seconds)
        self.reset()

    def reset(self) -> None:
        """Forget the past (a new stream after a gap starts from its own first hop)."""
        self.smoothed: np.ndarray | None = None
        self.label: int | None = None
        self._candidate: int | None = None
        self._streak = 0

    def update(self, raw: np.ndarray) -> tuple[np.ndarray, int | None]:
        raw = np.asarray(raw, dtype=np.float64)
        if self.smoothed is None:
            self.smoothed = raw.copy()
        else:
            self.smoothed = self.alpha * raw + (1.0 - self.alpha) * self.smoothed
        self.label = self._decide(self.smoothed)
        return self.smoothed.copy(), self.label

    def _decide(self, p: np.ndarray) -> int | None:
        leader = int(np.argmax(p))
        runner_up = float(np.partition(p, -2)[-2]) if p.size > 1 else 0.0
        s = self.settings
        if p[leader] < s.min_confidence or p[leader] - runner_up < s.switch_margin:
            self._candidate, self._streak = None, 0
            return None
        if leader == self.label:
            return leader
        if leader != self._candidate:
            self._candidate, self._streak = leader, 0
        self._streak += 1
        return leader if self._streak >= s.switch_hops else None
