"""EMA and hysteresis on scripted probability sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamer.config import SmoothingSettings
from streamer.core.smoothing import Smoother, ema_alpha

A, B, C = np.eye(3)  # certain of label 0, 1, 2


def run(smoother: Smoother, rows: list[np.ndarray]) -> list[int]:
    return [smoother.update(row)[1] for row in rows]


def test_alpha_follows_the_time_constant() -> None:
    assert ema_alpha(0.0, 1.0) == 1.0
    assert ema_alpha(3.0, 1.0) == pytest.approx(1 - math.exp(-1 / 3))
    # the same time constant gives the same decay per second at any hop
    assert (1 - ema_alpha(3.0, 0.5)) ** 2 == pytest.approx(1 - ema_alpha(3.0, 1.0))


def test_ema_of_a_step_reaches_63_percent_after_one_time_constant() -> None:
    smoother = Smoother(SmoothingSettings(time_constant_s=4.0), hop_seconds=0.5)
    smoother.update(A)
    for _ in range(8):  # 8 hops of 0.5 s = one time constant
        smoothed, _ = smoother.update(B)
    assert smoothed[1] == pytest.approx(1 - math.exp(-1), abs=1e-9)
    assert smoothed.sum() == pytest.approx(1.0)


def test_no_smoothing_passes_raw_probabilities_through() -> None:
    smoother = Smoother(SmoothingSettings(time_constant_s=0.0, switch_hops=1, switch_margin=0.0), 1.0)
    row = np.array([0.2, 0.5, 0.3])
    smoothed, label = smoother.update(row)
    np.testing.assert_allclose(smoothed, row)
    assert label == 1


def test_one_hop_blip_is_uncertain_and_never_the_old_label() -> None:
    # a label that is not the most probable one is never claimed: during B's blip the state is
    # uncertain (None), and B is not claimed before leading for switch_hops hops
    smoother = Smoother(SmoothingSettings(time_constant_s=0.0, switch_margin=0.1, switch_hops=3), 1.0)
    assert run(smoother, [A, A, A, B, A, A, A]) == [None, None, 0, None, None, None, 0]


def test_a_new_label_is_claimed_after_n_consecutive_clear_hops() -> None:
    smoother = Smoother(SmoothingSettings(time_constant_s=0.0, switch_margin=0.1, switch_hops=3), 1.0)
    assert run(smoother, [A, A, A, B, B, B, B]) == [None, None, 0, None, None, 1, 1]


def test_a_lead_below_the_margin_is_uncertain() -> None:
    smoother = Smoother(SmoothingSettings(time_constant_s=0.0, switch_margin=0.2, switch_hops=1), 1.0)
    close = np.array([0.45, 0.55, 0.0])
    clear = np.array([0.3, 0.7, 0.0])
    assert run(smoother, [A, close, close, clear]) == [0, None, None, 1]


def test_near_uniform_probabilities_claim_nothing_even_after_a_clear_label() -> None:
    # the case: angry 0.32, happy 0.38, sad 0.30 after a long "sad" showed "sad"
    smoother = Smoother(SmoothingSettings(time_constant_s=0.0, switch_margin=0.1, switch_hops=2), 1.0)
    flat = np.array([0.32, 0.38, 0.30])
    assert run(smoother, [C, C, C, flat, flat, flat]) == [None, 2, 2, None, None, None]


def test_below_min_confidence_is_uncertain_even_with_a_clear_lead() -> None:
    settings = SmoothingSettings(time_constant_s=0.0, switch_margin=0.1, switch_hops=1, min_confidence=0.5)
    smoother = Smoother(settings, 1.0)
    spread = np.array([0.45, 0.25, 0.2, 0.1])  # leads by 0.2 but is below 0.5
    sure = np.array([0.6, 0.2, 0.1, 0.1])
    assert run(smoother, [sure, spread, sure]) == [0, None, 0]


def test_the_claimed_label_is_always_the_most_probable() -> None:
    rng = np.random.default_rng(0)
    settings = SmoothingSettings(time_constant_s=3.0, switch_margin=0.1, switch_hops=2, min_confidence=0.4)
    smoother = Smoother(settings, 1.0)
    claimed = 0
    for _ in range(2000):
        smoothed, label = smoother.update(rng.dirichlet(np.full(4, 0.3)))
        if label is not None:
            claimed += 1
            assert label == int(np.argmax(smoothed))
            assert smoothed[label] >= 0.4
            assert smoothed[label] - np.sort(smoothed)[-2] >= 0.1
    assert 0 < claimed < 2000  # both claims and uncertainty happened


def test_a_changing_challenger_restarts_the_count() -> None:
    smoother = Smoother(SmoothingSettings(time_constant_s=0.0, switch_margin=0.1, switch_hops=2), 1.0)
    assert run(smoother, [A, A, B, C, B, C, C]) == [None, 0, None, None, None, None, 2]


def test_smoothing_delays_the_switch_and_raw_still_jumps() -> None:
    smoother = Smoother(SmoothingSettings(time_constant_s=3.0, switch_margin=0.1, switch_hops=2), 1.0)
    labels = run(smoother, [A] * 5 + [B] * 8)
    first_b = labels.index(1)
    # alpha = 0.28: smoothed B is 0.28, 0.49, 0.63 after 1, 2, 3 hops of B, so it first leads by
    # the margin on the 3rd B hop; two consecutive leading hops -> the claim on the 4th (index 8);
    # before that, from the hop where A no longer leads clearly, nothing is claimed
    assert first_b == 5 + 3
    assert labels[first_b:] == [1] * (len(labels) - first_b)
    assert labels[5] == 0 and labels[6:first_b] == [None] * (first_b - 6)


def test_reset_forgets_the_label() -> None:
    smoother = Smoother(SmoothingSettings(time_constant_s=10.0, switch_hops=1), 1.0)
    run(smoother, [A, A, A])
    smoother.reset()
    smoothed, label = smoother.update(C)
    assert label == 2
    np.testing.assert_allclose(smoothed, C)
