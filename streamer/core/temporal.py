"""The temporal model: the mood of the music playing now, from one patch of evidence per hop.

The music is a sequence of songs, and a song has one mood (or drifts slowly). A change detector
(streamer.core.changepoint) follows the sound's timbre and level and keeps, for every possible time
since the current song began, how probable it is. For each of those run lengths the filter
accumulates the model's evidence over that run alone: each hop's calibrated probabilities (the model
file's ``temperature``) raised to ``evidence_weight`` (a hop's 3 s patch overlaps its neighbours'
and is not an independent look at the music), leaking with a time constant of ``mood_seconds`` so
that a song whose mood changes is followed. The belief is the mixture of those per-run beliefs,
weighted by how probable each run is. So the evidence accumulates within a song, and when the music
changes the short runs take over and the old song's evidence drops out, within a few hops; where it
was a false alarm, the long run keeps most of the weight. A pause (a silent hop) resets everything.

The label shown follows the belief through a Schmitt trigger: a mood is taken up once believed
``switch_confidence`` and then held until another is believed that much (or, with
``min_confidence`` above 0, until its own belief falls under it: "uncertain"). So the lamp changes
once per change of music, not back and forth while the belief moves from one mood to the next; for
those few hops the mood shown is the one before, with its ``confidence`` falling, and the event's
``probabilities`` carry the whole belief. Before any mood is taken up (after a start or a pause) the
state is "uncertain"."""

from __future__ import annotations

import math

import numpy as np

from streamer.config import SmoothingSettings
from streamer.core.changepoint import ChangeDetector

FLOOR = 1e-3  # int8 outputs reach exact 0 (steps of 1/256): a floor keeps one hop from vetoing a mood


class MoodFilter:
    """Feed every audible hop's summary (and the model's probabilities when it ran); read the belief,
    the label shown (None: uncertain) and how probable it is that new music started at this hop."""

    def __init__(self, settings: SmoothingSettings, hop_seconds: float, n_labels: int, temperature: float = 1.0):
        self.settings = settings
        self.n = n_labels
        self.keep = math.exp(-hop_seconds / settings.mood_seconds)
        self.power = settings.evidence_weight / temperature
        self.changes = ChangeDetector(hop_seconds, settings.song_seconds)
        self.reset()

    def reset(self) -> None:
        """Forget the music so far (a pause, a lost input): even odds, no label shown."""
        self.changes.reset()
        self._log_mood = np.zeros((0, self.n))  # per run length: the accumulated log evidence
        self.belief = np.full(self.n, 1.0 / self.n)
        self.label: int | None = None

    def update(self, summary: np.ndarray, raw: np.ndarray | None) -> tuple[np.ndarray, int | None, float]:
        """One audible hop: the belief over the moods, the label index shown and the novelty (the
        probability that new music started here). ``raw`` is None while the model's window fills."""
        return self.follow(self.changes.update(summary), raw)

    def follow(self, runs: np.ndarray, raw: np.ndarray | None) -> tuple[np.ndarray, int | None, float]:
        """:meth:`update` given the change detector's answer for this hop (P(run length))."""
        evidence = np.zeros(self.n) if raw is None else self.power * np.log(np.maximum(raw, FLOOR))
        grown = self.keep * self._log_mood[: runs.size - 1] + evidence
        self._log_mood = np.vstack([evidence[None], grown])
        per_run = np.exp(self._log_mood - self._log_mood.max(axis=1, keepdims=True))
        per_run /= per_run.sum(axis=1, keepdims=True)
        belief = runs @ per_run
        self.belief = belief / belief.sum()
        self.label = self._shown(self.belief)
        return self.belief.copy(), self.label, float(runs[0])

    def _shown(self, belief: np.ndarray) -> int | None:
        """A Schmitt trigger on the belief: a mood is taken up once believed ``switch_confidence``, and
        held while believed at least ``min_confidence``; in between, nothing new is claimed."""
        top = int(np.argmax(belief))
        if belief[top] >= self.settings.switch_confidence:
            return top
        held = self.label
        return held if held is not None and belief[held] >= self.settings.min_confidence else None
