"""Demo music the project synthesises itself, so `make run` shows something on any machine.

No recordings are bundled: a small additive synthesiser plays one bar at a time, and the mood
changes every ``mood_seconds`` (bright major pop, a slow quiet minor ballad, loud distorted rock)
so the dashboard has changes to show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)


@dataclass(frozen=True)
class Mood:
    name: str
    bpm: float
    root_hz: float
    scale: tuple[int, ...]
    progression: tuple[int, ...]  # scale degrees (0-based), one chord per bar
    loudness: float  # peak-ish amplitude of the mix
    drive: float  # tanh distortion of the chords; 0 = clean
    drums: float  # drum level; 0 = none
    arpeggio: int  # notes per beat of the melody line


MOODS = (
    Mood("happy", 124, 261.63, MAJOR, (0, 4, 5, 3), 0.45, 0.0, 0.6, 2),
    Mood("sad", 62, 110.0, MINOR, (0, 5, 2, 6), 0.12, 0.0, 0.0, 1),
    Mood("angry", 152, 82.41, MINOR, (0, 0, 1, 6), 0.8, 6.0, 1.0, 4),
)


class DemoMusic:
    """An endless stream of generated music; :meth:`read` returns the next ``n`` samples."""

    def __init__(self, sample_rate: int = 16000, mood_seconds: float = 20.0, seed: int = 0) -> None:
        self.sample_rate = sample_rate
        self.mood_seconds = mood_seconds
        self._rng = np.random.default_rng(seed)
        self._buffer = np.zeros(0, dtype=np.float32)
        self._made = 0  # samples synthesised so far
        self._bar = 0
        self.mood = MOODS[0]

    def read(self, n: int) -> np.ndarray:
        while self._buffer.size < n:
            self._buffer = np.concatenate([self._buffer, self._next_bar()])
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _next_bar(self) -> np.ndarray:
        mood = MOODS[int(self._made / self.sample_rate // self.mood_seconds) % len(MOODS)]
        if mood is not self.mood:
            self.mood, self._bar = mood, 0
        sr = self.sample_rate
        beat = 60.0 / mood.bpm
        n = round(4 * beat * sr)
        t = np.arange(n) / sr
        degree = mood.progression[self._bar % len(mood.progression)]
        chord = [_note(mood, degree + k) for k in (0, 2, 4)]
        out = _pad(t, chord, mood) + 0.5 * _bass(t, chord[0] / 2, beat, mood)
        out += 0.35 * _arpeggio(t, chord, beat, mood)
        if mood.drums:
            out += mood.drums * _drums(t, beat, sr, self._rng, mood)
        self._bar += 1
        self._made += n
        return (mood.loudness * out / max(1e-9, float(np.max(np.abs(out))))).astype(np.float32)


def _note(mood: Mood, degree: int) -> float:
    octave, step = divmod(degree, len(mood.scale))
    return mood.root_hz * 2 ** (octave + mood.scale[step] / 12)


def _tone(t: np.ndarray, hz: float, harmonics: int = 4) -> np.ndarray:
    return sum(np.sin(2 * np.pi * hz * h * t) / h**1.5 for h in range(1, harmonics + 1))


def _pad(t: np.ndarray, chord: list[float], mood: Mood) -> np.ndarray:
    """Sustained chord with a soft attack and release (distorted into power chords when angry)."""
    env = np.minimum(1.0, t / 0.08) * np.minimum(1.0, (t[-1] - t) / 0.15 + 0.05)
    out = env * sum(_tone(t, hz) for hz in chord) / 3
    if mood.drive:
        out = np.tanh(mood.drive * out)
    return out


def _bass(t: np.ndarray, hz: float, beat: float, mood: Mood) -> np.ndarray:
    phase = (t % beat) / beat if mood.drums else t / t[-1]
    return np.exp(-3.0 * phase) * np.sin(2 * np.pi * hz * t)


def _arpeggio(t: np.ndarray, chord: list[float], beat: float, mood: Mood) -> np.ndarray:
    step = beat / mood.arpeggio
    index = (t // step).astype(int)
    hz = np.asarray([2 * chord[i % 3] for i in range(int(index[-1]) + 1)])[index]
    env = np.exp(-(t % step) * (4.0 / step))
    return env * np.sin(2 * np.pi * np.cumsum(hz) / (1.0 / (t[1] - t[0])))


def _drums(t: np.ndarray, beat: float, sr: int, rng: np.random.Generator, mood: Mood) -> np.ndarray:
    """Kick on every beat, snare on 2 and 4, hi-hats on eighths (sixteenths when angry)."""
    out = np.zeros(t.size)
    k = np.arange(int(0.2 * sr)) / sr
    kick = np.sin(2 * np.pi * (50 + 60 * np.exp(-30 * k)) * k) * np.exp(-12 * k)
    snare = rng.normal(0, 0.5, k.size) * np.exp(-18 * k)
    hat = rng.normal(0, 0.15, k.size) * np.exp(-90 * k)
    subdivision = 4 if mood.drive else 2
    for i in range(4 * subdivision):
        start = int(i * beat / subdivision * sr)
        hits = [hat]
        if i % subdivision == 0:
            hits.append(kick if (i // subdivision) % 2 == 0 else snare)
        for sound in hits:
            end = min(t.size, start + sound.size)
            out[start:end] += sound[: end - start]
    return out
