"""The temporal model: the mood of the music playing now, from one patch of evidence per hop.

A sticky hidden-Markov forward filter. The hidden state is the mood of what is playing; from one hop
to the next it stays with probability ``1 - eps`` (``eps = 1 - exp(-hop / mood_seconds)``: a mood lasts
``mood_seconds`` on average) and otherwise moves to another mood. Each hop's model output is evidence:
its calibrated probabilities (the model file's ``temperature``) raised to ``evidence_weight``, since
a hop's patch overlaps its neighbours' and is not an independent look at the music. So the belief
accumulates within a song, steadier the longer the song agrees with itself, and a new mood takes
over once the evidence against the old one outweighs ``log(1/eps)``: a few hops of clear music.

The music can also change abruptly: a pause (a silent hop: the pipeline resets the filter) or a jump
in level of more than ``jump_db`` from the level of the hops before (a new song at another loudness,
a door, a volume knob); such a hop lets the belief go back towards even odds at once. The label
shown is the most probable mood while its belief is at least ``min_confidence``; otherwise
"uncertain"."""

from __future__ import annotations

import math

import numpy as np

from streamer.config import SmoothingSettings

FLOOR = 1e-3  # int8 outputs reach exact 0 (steps of 1/256): a floor keeps one hop from vetoing a mood
LEVEL_TIME_S = 5.0  # the level a jump is measured against: an average over about this long


def switch_probability(mood_seconds: float, hop_seconds: float) -> float:
    """Chance per hop that the mood changes, for moods lasting ``mood_seconds`` on average."""
    return 1.0 - math.exp(-hop_seconds / mood_seconds)


class MoodFilter:
    """Feed one hop's model probabilities (and its level) at a time; read the belief and the label
    shown (None: uncertain)."""

    def __init__(self, settings: SmoothingSettings, hop_seconds: float, n_labels: int, temperature: float = 1.0):
        self.settings = settings
        self.n = n_labels
        self.eps = switch_probability(settings.mood_seconds, hop_seconds)
        self.power = settings.evidence_weight / temperature
        self._level_alpha = 1.0 - math.exp(-hop_seconds / LEVEL_TIME_S)
        self.reset()

    def reset(self) -> None:
        """Forget the music so far (a pause, a lost input): even odds, no label shown."""
        self.belief = np.full(self.n, 1.0 / self.n)
        self.label: int | None = None
        self._level: float | None = None

    def update(self, raw: np.ndarray, rms_dbfs: float) -> tuple[np.ndarray, int | None]:
        """One hop: the belief over the moods and the label index shown (None: uncertain)."""
        eps = self._jump_eps(rms_dbfs)
        b = self.belief
        if self.n > 1:
            b = (1.0 - eps) * b + eps * (1.0 - b) / (self.n - 1)  # stay, or move to another mood
        evidence = np.power(np.maximum(np.asarray(raw, dtype=np.float64), FLOOR), self.power)
        b = b * evidence
        self.belief = b / b.sum()
        top = int(np.argmax(self.belief))
        self.label = top if self.belief[top] >= self.settings.min_confidence else None
        return self.belief.copy(), self.label

    def _jump_eps(self, rms_dbfs: float) -> float:
        """The switch probability of this hop: the usual one, or even odds after a jump in level."""
        jumped = self._level is not None and abs(rms_dbfs - self._level) > self.settings.jump_db
        if self._level is None or jumped:
            self._level = rms_dbfs
        else:
            self._level += self._level_alpha * (rms_dbfs - self._level)
        return (1.0 - 1.0 / self.n) if jumped else self.eps
