"""streamer.util.backoff: doubling up to the ceiling, reset after success, bad bounds refused."""

import pytest

from streamer.util.backoff import Backoff


def test_doubles_up_to_the_ceiling_and_resets():
    b = Backoff(0.5, 3.0)
    assert b.delay == 0.5
    assert [b.failed() for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert b.attempts == 4
    b.reset()
    assert (b.delay, b.attempts) == (0.5, 0)


@pytest.mark.parametrize("initial,ceiling", [(0, 1), (-1, 1), (2, 1)])
def test_bad_bounds_are_refused(initial, ceiling):
    with pytest.raises(ValueError, match="backoff"):
        Backoff(initial, ceiling)
