"""bench/ws_load.py at a small size: the load script itself works and counts what it should."""

from __future__ import annotations

import pytest

from bench import ws_load

pytestmark = pytest.mark.slow


def test_load_script_measures_latency_and_misses_nothing_at_small_size() -> None:
    result = ws_load.measure(clients=20, hops=5, hop=0.1, workers=1)
    assert result["connected"] == 20 and result["connect_failures"] == 0
    assert result["messages"] == 100 and result["missed_hops"] == 0
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"] < 5000


def test_load_script_is_bounded() -> None:
    with pytest.raises(ValueError, match="clients must be"):
        ws_load.measure(clients=ws_load.MAX_CLIENTS + 1)
    with pytest.raises(ValueError):
        ws_load.measure(hops=0)
