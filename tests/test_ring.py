"""The rings keep exactly the newest 30 s, whatever sizes the chunks come in."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.ring import Ring, feature_ring, sample_ring
from streamer.features.mfcc import FeatureConfig


def test_sample_ring_holds_exactly_30_seconds() -> None:
    ring = sample_ring(16000)
    assert ring.capacity == 30 * 16000
    signal = np.arange(45 * 16000, dtype=np.float32)
    for chunk in np.array_split(signal, 37):
        ring.push(chunk)
    assert len(ring) == 30 * 16000
    assert ring.total == signal.size
    np.testing.assert_array_equal(ring.latest(), signal[-30 * 16000 :])


def test_feature_ring_holds_30_seconds_of_frames() -> None:
    config = FeatureConfig()
    ring = feature_ring(config.frames_per_second, config.n_features)
    assert ring.capacity == 3000  # 100 frames per second
    rows = np.random.default_rng(0).normal(size=(3500, config.n_features)).astype(np.float32)
    ring.push(rows[:10])
    ring.push(rows[10:])
    assert len(ring) == 3000
    np.testing.assert_array_equal(ring.latest(200), rows[-200:])


def test_asking_for_more_than_held_is_an_error() -> None:
    ring = Ring(10)
    ring.push(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="holds 4"):
        ring.latest(5)


def test_clear_forgets_everything() -> None:
    ring = Ring(8)
    ring.push(np.ones(20, np.float32))
    ring.clear()
    assert len(ring) == 0 and ring.total == 0
    ring.push(np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(ring.latest(), [0, 1, 2])


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 50),
    sizes=st.lists(st.integers(0, 120), min_size=1, max_size=30),
    want=st.integers(0, 50),
)
def test_latest_matches_the_tail_of_everything_pushed(capacity: int, sizes: list[int], want: int) -> None:
    ring = Ring(capacity)
    pushed: list[float] = []
    for size in sizes:
        chunk = np.arange(len(pushed), len(pushed) + size, dtype=np.float32)
        ring.push(chunk)
        pushed.extend(chunk.tolist())
        n = min(want, len(ring))
        assert len(ring) == min(capacity, len(pushed))
        np.testing.assert_array_equal(ring.latest(n), np.asarray(pushed[len(pushed) - n :], np.float32))
