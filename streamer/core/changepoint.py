"""Did the music just change? Bayesian online change-point detection (Adams & MacKay, 2007) over one
short summary of the sound per hop: its timbre (the front-end's coarse spectral shape, level
removed) and its level.

The stream is a sequence of songs; within one, the summaries scatter around the song's own mean
(within-song spread); the means of songs scatter around the room's overall mean (between-song
spread). For every possible run length (hops since the last change, up to ``MAX_RUN_S``) the
detector keeps how probable it is and the song mean it implies; each hop's summary updates them
(a new song starts with probability ``1 - exp(-hop / song_seconds)`` per hop). What it reports is
that distribution over run lengths: its first entry, the probability that a new song started at
this hop, is close to 0 within a song and close to 1 when the sound jumps to something its current
song would not produce. Both spreads are learnt from the stream itself (the within-song one from
hop-to-hop differences), so the detector adapts to the front-end, the microphone and the room.

The summary: the front-end's timbre (streamer.features.frontend) and the hop's level in dBFS. Its
dimensions move together more than independent ones would, so each counts for ``TEMPER`` of the
evidence: chosen on the validation streams with the temporal model's settings (`python -m trainer
live`): at 0.5, two hops after a song change 95 % of the probability lies within two hops of it,
at the price of a false change every minute or so within songs; 0.3 finds songs a little later and
leaves the shown mood steadier (12.9 against 14.7 changes per 10 minutes, the mean of the 3-class
validation streams clean and in a room, before the hysteresis of temporal.py; the accuracy the same)."""

from __future__ import annotations

import math

import numpy as np

MAX_RUN_S = 600.0  # run lengths beyond this are merged: a ten-minute song is as good as a longer one
LEARN_HOPS = 120  # the spreads are averages over about this many hops
FLOOR_VAR = 0.25  # dB^2: no dimension is trusted to be steadier than half a dB
TEMPER = 0.3  # the summary's dimensions are not independent: each counts for this much evidence


class ChangeDetector:
    """Feed one summary vector per audible hop; get P(run length) after it (entry 0: the music
    changed at this hop)."""

    def __init__(self, hop_seconds: float, song_seconds: float) -> None:
        self.log_hazard = math.log(1.0 - math.exp(-hop_seconds / song_seconds))
        self.log_stay = math.log(math.exp(-hop_seconds / song_seconds))
        self.max_run = max(2, round(MAX_RUN_S / hop_seconds))
        self._rate = 1.0 / LEARN_HOPS
        self._mean: np.ndarray | None = None  # the room's overall mean summary
        self._noise: np.ndarray | None = None  # within-song variance per dimension
        self._total: np.ndarray | None = None  # overall variance per dimension
        self.reset()

    def reset(self) -> None:
        """A gap (silence, a lost input): the next hop starts a song. The spreads are kept: they
        describe the microphone and the room, not the song."""
        self._log_runs = np.zeros(0)  # log P(run length r | summaries so far), r = 0..
        self._sums: np.ndarray | None = None  # per run length: sum of its summaries
        self._counts = np.zeros(0)
        self._previous: np.ndarray | None = None

    def update(self, summary: np.ndarray) -> np.ndarray:
        """P(the current song began r hops ago | every summary since the last reset), r = 0, 1, ..."""
        x = np.asarray(summary, dtype=np.float64)
        self._learn(x)
        assert self._mean is not None and self._noise is not None and self._total is not None
        between = np.maximum(self._total - self._noise, self._noise)
        if self._sums is None:  # the first hop after a reset starts a song for certain
            self._start(x)
            return np.ones(1)
        # the predictive of each run length: the song mean given its hops, then one more hop
        precision = 1.0 / between + self._counts[:, None] / self._noise
        mean = (self._mean / between + self._sums / self._noise) / precision
        var = self._noise + 1.0 / precision
        log_pred = TEMPER * -0.5 * np.sum(np.log(2 * np.pi * var) + (x - mean) ** 2 / var, axis=1)
        prior_var = self._noise + between
        log_new = TEMPER * -0.5 * float(np.sum(np.log(2 * np.pi * prior_var) + (x - self._mean) ** 2 / prior_var))
        grown = self._log_runs + log_pred + self.log_stay
        changed = np.logaddexp.reduce(self._log_runs + self.log_hazard) + log_new
        log_runs = np.concatenate([[changed], grown])
        sums = np.vstack([x[None], self._sums + x])
        counts = np.concatenate([[1.0], self._counts + 1.0])
        if log_runs.size > self.max_run:  # the longest runs merge into the last kept one
            tail = np.logaddexp.reduce(log_runs[self.max_run - 1 :])
            log_runs = np.concatenate([log_runs[: self.max_run - 1], [tail]])
            sums, counts = sums[: self.max_run], counts[: self.max_run]
        self._log_runs = log_runs - np.logaddexp.reduce(log_runs)
        self._sums, self._counts = sums, counts
        return np.exp(self._log_runs)

    def _start(self, x: np.ndarray) -> None:
        self._log_runs = np.zeros(1)
        self._sums = x[None].copy()
        self._counts = np.ones(1)

    def _learn(self, x: np.ndarray) -> None:
        """Running estimates of the overall mean and spread, and of the hop-to-hop (within-song) one."""
        if self._mean is None:
            self._mean = x.copy()
            self._noise = np.full_like(x, 4.0)
            self._total = np.full_like(x, 16.0)
        assert self._noise is not None and self._total is not None
        if self._previous is not None:
            step = 0.5 * (x - self._previous) ** 2
            self._noise = np.maximum(FLOOR_VAR, self._noise + self._rate * (step - self._noise))
        self._total = self._total + self._rate * ((x - self._mean) ** 2 - self._total)
        self._mean = self._mean + self._rate * (x - self._mean)
        self._previous = x
