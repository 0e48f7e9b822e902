"""The calibration temperature the card writes into each model file (trainer.common.live): it is
the one that makes the song's mood most probable, it scales with the model's sharpness, and it
ignores the hops whose window still holds the song before. And the live card in models/ is the
one of the files and the default settings that ship."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from streamer.config import Settings
from streamer.evaluation.lamp import Hop, Song
from streamer.model.shipped import index
from trainer.common.live import Recording, fit_temperature
from trainer.common.paths import MODELS

LABELS = ("angry", "happy", "sad")


def recording(power: float, start_junk: bool = False, seed: int = 0) -> Recording:
    """Three streams of ten 30 s songs, a hop a second (at its window's end); each hop's output leans
    to the song's mood, noisily, raised to ``power`` (sharper above 1); with ``start_junk`` the hops
    of a song's first 2 s claim another mood (their 3 s window still holds the song before)."""
    rng = np.random.default_rng(seed)
    streams = []
    for _ in range(3):
        songs = [Song(f"s{i}.ogg", LABELS[rng.integers(3)], 30.0 * i, 30.0 * (i + 1)) for i in range(10)]
        hops = []
        for t in np.arange(1.0, 300.0, 1.0):
            song = songs[int((t - 0.5) // 30)]
            logits = rng.normal(0, 1.0, 3)
            logits[LABELS.index(song.label)] += 1.5
            if start_junk and t - song.start_s <= 2.0:
                logits = np.array([30.0 if label != song.label else -30.0 for label in LABELS])
            p = np.exp(power * logits)
            hops.append(Hop(float(t), "x", None, tuple(p / p.sum()), -20.0, 0.0))
        streams.append((songs, hops))
    return Recording(LABELS, 1.0, streams)


def nll(rec: Recording, t: float) -> float:
    losses = []
    for songs, hops in rec.streams:
        for h in hops:
            song = next((s for s in songs if s.start_s + 3.0 <= h.time_s <= s.end_s), None)
            if song is not None:
                z = np.log(np.maximum(h.raw, 1e-3)) / t
                losses.append(np.log(np.exp(z - z.max()).sum()) + z.max() - z[LABELS.index(song.label)])
    return float(np.mean(losses))


def test_the_temperature_is_the_best_one_and_follows_sharpness() -> None:
    base = fit_temperature([recording(1.0)], window_s=3.0)
    assert 0.3 < base < 3.0
    rec = recording(1.0)
    assert nll(rec, base) <= min(nll(rec, base * 0.8), nll(rec, base * 1.25))  # a minimum, not a bound
    # outputs twice as sharp (log-probabilities doubled) need twice the temperature
    assert fit_temperature([recording(2.0)], window_s=3.0) == pytest.approx(2 * base, rel=0.02)


def test_hops_whose_window_holds_the_song_before_are_not_fitted() -> None:
    clean = fit_temperature([recording(1.0)], window_s=3.0)
    assert fit_temperature([recording(1.0, start_junk=True)], window_s=3.0) == pytest.approx(clean, rel=1e-6)


def test_the_live_card_is_of_the_shipped_files_and_the_default_settings() -> None:
    """A file recalibrated, or a default changed, without `make models` (or `python -m trainer
    live-card`) rerun leaves figures of something that does not ship: this says so."""
    card = json.loads((MODELS / "live.json").read_text())
    assert set(card) == set(index()["models"])
    for short, conditions in card.items():
        data = (MODELS / f"moodstream-{short}.tflite").read_bytes()
        for condition, figures in conditions.items():
            stamp = figures["stamp"]
            assert stamp["model_sha256"] == hashlib.sha256(data).hexdigest(), (short, condition)
            assert stamp["smoothing"] == dataclasses.asdict(Settings().smoothing), (short, condition)
            assert stamp["hop_seconds"] == Settings().model.hop_seconds
