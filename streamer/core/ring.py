"""Fixed-capacity rings: the last 30 s of samples and of feature frames.

Memory stays constant however long the daemon runs; a window is always the newest rows.
"""

from __future__ import annotations

import numpy as np

from streamer.config import RING_SECONDS


class Ring:
    """The newest ``capacity`` rows of a stream of rows (samples or feature frames).

    Stored twice over (a doubled buffer) so that :meth:`latest` is always one contiguous slice.
    """

    def __init__(self, capacity: int, row_shape: tuple[int, ...] = (), dtype: type = np.float32):
        if capacity <= 0:
            raise ValueError(f"ring capacity must be > 0, got {capacity}")
        self.capacity = capacity
        self._buf: np.ndarray = np.zeros((2 * capacity, *row_shape), dtype=dtype)
        self.clear()

    def clear(self) -> None:
        self._end = 0  # write position in [0, capacity)
        self._size = 0
        self.total = 0  # rows ever pushed

    def __len__(self) -> int:
        return self._size

    def push(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=self._buf.dtype)
        n = rows.shape[0]
        self.total += n
        if n >= self.capacity:
            rows, n = rows[-self.capacity :], self.capacity
        first = min(n, self.capacity - self._end)
        for offset in (0, self.capacity):
            start = self._end + offset
            self._buf[start : start + first] = rows[:first]
            self._buf[offset : offset + n - first] = rows[first:]
        self._end = (self._end + n) % self.capacity
        self._size = min(self.capacity, self._size + n)

    def latest(self, n: int | None = None) -> np.ndarray:
        """A copy of the newest ``n`` rows (all of them by default), oldest first."""
        n = self._size if n is None else n
        if not 0 <= n <= self._size:
            raise ValueError(f"asked for {n} rows, the ring holds {self._size}")
        stop = self._end + self.capacity
        return self._buf[stop - n : stop].copy()


def sample_ring(sample_rate: int, seconds: float = RING_SECONDS) -> Ring:
    """Exactly ``seconds`` of mono samples."""
    return Ring(round(seconds * sample_rate))


def feature_ring(frames_per_second: float, n_features: int, seconds: float = RING_SECONDS) -> Ring:
    """Exactly ``seconds`` worth of feature frames (one frame per feature hop)."""
    return Ring(round(seconds * frames_per_second), (n_features,))
