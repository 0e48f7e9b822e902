"""The temporal model on fake streams: the model's outputs hop by hop, and a summary of the sound
(timbre and level) that stays put within a song and jumps at a song change. Evidence accumulates
within a song, a new song (or a jump in level) takes over within a few hops, a pause starts afresh,
and stretches of weak or ambiguous evidence neither flip the label nor claim one not believed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from streamer.config import SmoothingSettings
from streamer.core.changepoint import ChangeDetector
from streamer.core.temporal import MoodFilter

A, B, C = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.8, 0.1]), np.array([0.1, 0.1, 0.8])
EVEN = np.array([1 / 3, 1 / 3, 1 / 3])
RNG = np.random.default_rng(0)


def song(centre: float, hops: int, spread: float = 1.0) -> list[np.ndarray]:
    """Summaries of one song: 16 band values and a level scattered around the song's own."""
    base = np.full(17, centre) + np.linspace(-3, 3, 17) * (centre / 10)
    return [base + RNG.normal(0, spread, 17) for _ in range(hops)]


def run(mood: MoodFilter, summaries: list[np.ndarray], outputs: list[np.ndarray]) -> list[int | None]:
    return [mood.update(x, p)[1] for x, p in zip(summaries, outputs, strict=True)]


def settings(**kw: float) -> SmoothingSettings:
    """The tests' own settings, whatever the defaults (chosen on music, not on these fake streams)."""
    base = {"mood_seconds": 300.0, "evidence_weight": 0.3, "switch_confidence": 0.7, "min_confidence": 0.5}
    return SmoothingSettings(**{**base, **kw})


def test_the_detector_finds_a_song_change_and_little_else() -> None:
    detector = ChangeDetector(1.0, 180.0)
    novelty = [detector.update(x)[0] for x in song(-20.0, 60) + song(-5.0, 30)]
    assert novelty[0] == 1.0  # the first hop after a reset starts a song
    assert novelty[60] > 0.5  # the jump, found at once
    assert max(novelty[5:60]) < 0.2 and max(novelty[61:]) < 0.2  # no false alarm within the songs
    runs = detector.update(song(-5.0, 1)[0])
    assert runs.sum() == pytest.approx(1.0) and np.argmax(runs) in range(28, 34)  # the song began ~31 hops ago


def test_evidence_accumulates_and_the_belief_saturates() -> None:
    mood = MoodFilter(settings(), 1.0, 3)
    beliefs = [mood.update(x, A)[0][0] for x in song(-20.0, 30)]
    assert beliefs[-1] > 0.95 and mood.label == 0
    assert np.mean([b2 >= b1 - 0.02 for b1, b2 in itertools.pairwise(beliefs)]) > 0.9  # rising, bar noise
    # within the same song, one hop of counter-evidence cannot flip a settled belief
    assert run(mood, song(-20.0, 1), [B]) == [0]


def test_a_new_song_takes_over_within_a_few_hops_without_passing_through_another() -> None:
    mood = MoodFilter(settings(), 1.0, 3)
    run(mood, song(-20.0, 60), [A] * 60)
    after = run(mood, song(-5.0, 15), [B] * 15)
    first = after.index(1)
    assert first <= 4  # the change detector hands the belief to the new song's evidence
    assert set(after) <= {0, None, 1} and after[first:] == [1] * (15 - first)


def test_within_one_song_a_change_of_mood_needs_much_more_evidence() -> None:
    """The same outputs as above, but the sound stays the same song: the belief holds longer."""
    mood = MoodFilter(settings(), 1.0, 3)
    run(mood, song(-20.0, 60), [A] * 60)
    after = run(mood, song(-20.0, 120), [B] * 120)
    assert after.index(1) > 15
    # and a shorter mood_seconds follows a song that changes its mood sooner
    quick = MoodFilter(settings(mood_seconds=10.0), 1.0, 3)
    run(quick, song(-20.0, 60), [A] * 60)
    assert run(quick, song(-20.0, 120), [B] * 120).index(1) < after.index(1) // 2


def test_the_calibration_temperature_and_the_evidence_weight_scale_each_hop() -> None:
    x = song(-20.0, 1)[0]
    sharp, soft = MoodFilter(settings(), 1.0, 3), MoodFilter(settings(), 1.0, 3, temperature=3.0)
    heavy = MoodFilter(settings(evidence_weight=1.0), 1.0, 3)
    assert heavy.update(x, A)[0][0] > sharp.update(x, A)[0][0] > soft.update(x, A)[0][0] > 1 / 3


def test_a_reset_forgets_the_song() -> None:
    """The pipeline resets the filter on a silent hop (a pause) and when the input was lost."""
    mood = MoodFilter(settings(), 1.0, 3)
    run(mood, song(-20.0, 30), [A] * 30)
    mood.reset()
    np.testing.assert_allclose(mood.belief, EVEN)
    assert mood.label is None
    assert run(mood, song(-20.0, 3), [C] * 3)[-1] == 2  # even the same sound is heard afresh


def test_while_the_window_fills_the_detector_listens_and_nothing_is_claimed() -> None:
    mood = MoodFilter(settings(), 1.0, 3)
    beliefs = [mood.update(x, None)[0] for x in song(-20.0, 3)]
    np.testing.assert_allclose(beliefs[-1], EVEN)
    assert mood.label is None


def test_a_stretch_of_no_evidence_fades_to_uncertain_and_claims_nothing_unbelieved() -> None:
    mood = MoodFilter(settings(mood_seconds=10.0), 1.0, 3)
    run(mood, song(-20.0, 20), [A] * 20)
    faded = run(mood, song(-20.0, 60), [EVEN] * 60)
    assert faded[0] == 0 and faded[-1] is None  # the belief leaks to even odds: uncertain, not B or C
    assert set(faded) <= {0, None}


def test_ambiguous_evidence_does_not_flip_the_label_back_and_forth() -> None:
    mood = MoodFilter(settings(), 1.0, 3)
    run(mood, song(-20.0, 30), [A] * 30)
    near = [np.array([0.45, 0.5, 0.05]), np.array([0.5, 0.45, 0.05])] * 30  # B and A in turn, barely
    shown = run(mood, song(-20.0, 60), near)
    assert sum(a != b for a, b in itertools.pairwise(shown)) <= 1


def test_a_zero_probability_does_not_veto_a_mood_for_ever() -> None:
    """int8 outputs reach exact 0: one such hop must not make a mood impossible."""
    mood = MoodFilter(settings(), 1.0, 3)
    run(mood, song(-20.0, 1), [np.array([0.0, 1.0, 0.0])])
    assert run(mood, song(-20.0, 20), [A] * 20)[-1] == 0


def test_a_jump_in_level_alone_is_heard_as_new_music() -> None:
    """The same timbre 20 dB louder (a new song at another loudness, a volume knob): the level is one of
    the summary's dimensions, so the detector hands the belief to what follows."""
    detector = ChangeDetector(1.0, 180.0)
    quiet = song(-20.0, 60)
    loud = [np.append(x[:-1], x[-1] + 20.0) for x in song(-20.0, 10)]
    novelty = [detector.update(x)[0] for x in quiet + loud]
    assert novelty[60] > 0.3 and max(novelty[5:60]) < 0.2  # one dimension of 17 moved: less sure
    mood = MoodFilter(settings(), 1.0, 3)
    run(mood, quiet, [A] * 60)
    assert run(mood, loud, [B] * 10).index(1) <= 4  # as quickly as at a change of timbre
