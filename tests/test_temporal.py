"""The temporal model on fake streams of model outputs: evidence accumulates within a song, a real
change of mood takes over within a few hops, a pause or a jump in level starts afresh, and stretches
of weak or ambiguous evidence neither flip the label nor claim one that is not believed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamer.config import SmoothingSettings
from streamer.core.temporal import MoodFilter, switch_probability

A, B, C = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.8, 0.1]), np.array([0.1, 0.1, 0.8])
EVEN = np.array([1 / 3, 1 / 3, 1 / 3])
LEVEL = -20.0


def run(mood: MoodFilter, outputs: list[np.ndarray], level: float = LEVEL) -> list[int | None]:
    return [mood.update(p, level)[1] for p in outputs]


def settings(**kw: float) -> SmoothingSettings:
    return SmoothingSettings(**{"mood_seconds": 60.0, "evidence_weight": 0.3, "min_confidence": 0.5, **kw})


def test_the_switch_probability_follows_the_mean_duration_of_a_mood() -> None:
    assert switch_probability(60.0, 1.0) == pytest.approx(1 / 60, rel=0.01)
    assert switch_probability(1e9, 1.0) == pytest.approx(0.0, abs=1e-8)


def test_evidence_accumulates_and_the_belief_saturates() -> None:
    mood = MoodFilter(settings(), 1.0, 3)
    beliefs = [mood.update(A, LEVEL)[0][0] for _ in range(30)]
    assert all(b2 >= b1 for b1, b2 in itertools.pairwise(beliefs))  # monotone
    assert beliefs[-1] > 0.95 and mood.label == 0
    # the stay probability caps it: one hop of counter-evidence cannot flip a settled belief
    assert run(mood, [B]) == [0]


def test_a_change_of_mood_takes_over_within_a_few_hops_without_passing_through_another() -> None:
    mood = MoodFilter(settings(), 1.0, 3)
    run(mood, [A] * 60)
    after = run(mood, [B] * 15)
    first = after.index(1)
    assert 1 <= first <= 8  # log(1/eps) of evidence: a few hops of clear music
    assert set(after) <= {0, None, 1} and after[first:] == [1] * (15 - first)


def test_stronger_evidence_or_shorter_moods_change_faster() -> None:
    def hops_to_change(**kw: float) -> int:
        mood = MoodFilter(settings(**kw), 1.0, 3)
        run(mood, [A] * 60)
        return run(mood, [B] * 60).index(1)

    base = hops_to_change()
    assert hops_to_change(evidence_weight=0.8) < base
    assert hops_to_change(mood_seconds=10.0) < base
    assert hops_to_change(mood_seconds=600.0) > base


def test_the_calibration_temperature_softens_the_evidence() -> None:
    sharp, soft = MoodFilter(settings(), 1.0, 3), MoodFilter(settings(), 1.0, 3, temperature=3.0)
    assert sharp.update(A, LEVEL)[0][0] > soft.update(A, LEVEL)[0][0] > 1 / 3


def test_a_reset_forgets_the_song() -> None:
    """The pipeline resets the filter on a silent hop (a pause) and when the input was lost."""
    mood = MoodFilter(settings(), 1.0, 3)
    run(mood, [A] * 30)
    mood.reset()
    np.testing.assert_allclose(mood.belief, EVEN)
    assert mood.label is None
    assert run(mood, [C] * 4)[-1] == 2  # the next song is heard afresh, quickly


def test_a_jump_in_level_lets_the_belief_go_back_to_even_odds() -> None:
    mood = MoodFilter(settings(jump_db=12.0), 1.0, 3)
    run(mood, [A] * 60)
    belief, _ = mood.update(B, LEVEL + 20.0)  # a new song, louder
    assert belief[1] > belief[0]
    assert run(mood, [B], LEVEL + 20.0) == [1]  # its mood is shown at the next hop
    # small changes of level within a song do not
    steady = MoodFilter(settings(jump_db=12.0), 1.0, 3)
    run(steady, [A] * 60)
    assert steady.update(B, LEVEL + 6.0)[1] == 0
    # and jump_db 200 means never
    never = MoodFilter(settings(jump_db=200.0), 1.0, 3)
    run(never, [A] * 60)
    assert never.update(B, LEVEL + 60.0)[1] == 0


def test_a_stretch_of_no_evidence_fades_to_uncertain_and_claims_nothing_unbelieved() -> None:
    mood = MoodFilter(settings(mood_seconds=10.0), 1.0, 3)
    run(mood, [A] * 20)
    faded = run(mood, [EVEN] * 60)
    assert faded[0] == 0 and faded[-1] is None  # the belief decays to even odds: uncertain, not B or C
    assert set(faded) <= {0, None}


def test_ambiguous_evidence_does_not_flip_the_label_back_and_forth() -> None:
    mood = MoodFilter(settings(), 1.0, 3)
    run(mood, [A] * 30)
    near = [np.array([0.45, 0.5, 0.05]), np.array([0.5, 0.45, 0.05])] * 30  # B and A in turn, barely
    shown = run(mood, near)
    assert sum(a != b for a, b in itertools.pairwise(shown)) <= 1


def test_a_zero_probability_does_not_veto_a_mood_for_ever() -> None:
    """int8 outputs reach exact 0: one such hop must not make a mood impossible."""
    mood = MoodFilter(settings(), 1.0, 3)
    mood.update(np.array([0.0, 1.0, 0.0]), LEVEL)
    assert run(mood, [A] * 20)[-1] == 0
