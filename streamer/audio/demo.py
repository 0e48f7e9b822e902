"""Demo music the project synthesises itself, so `make run` shows something on any machine.

No recordings are bundled: a small band (drums, bass, chords, a lead line, a distorted guitar, a
room's reverberation) plays one bar at a time, and the mood changes every ``mood_seconds``: bright
major pop at 124 bpm, a slow quiet minor ballad, fast distorted rock in sixteenths, and (for models
that know it) a calm major ballad. Each mood's mix was chosen by measuring what the default model
hears (tests/test_demo.py asserts it through the daemon's pipeline; README, "The demo"): the first
synthesiser's thin sine tones were "sad" to it whatever they played, while drums, a bass and
off-beat chord stabs read as happy and a fast, noisy, distorted band as angry. It is a
demonstration, not a test of the model: real music judges the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
TABLE = 4096  # samples in one period of an oscillator's wavetable


@dataclass(frozen=True)
class Mood:
    name: str
    description: str  # what a listener hears, for the log
    bpm: float
    root_hz: float
    scale: tuple[int, ...]
    progression: tuple[int, ...]  # scale degrees (0-based), one chord per bar
    loudness: float  # peak amplitude of each bar
    kick: float = 0.0  # levels of each part; 0 = absent
    snare: float = 0.0
    hats: float = 0.0
    hat_steps: int = 2  # hi-hats per beat
    bass: float = 0.0
    chords: float = 0.0
    tilt: float = 1.5  # harmonic n of the chords at 1/n**tilt: low = bright
    stabs: bool = False  # off-beat chord stabs instead of held chords
    lead: float = 0.0
    lead_steps: int = 2  # lead notes per beat
    guitar: float = 0.0
    drive: float = 0.0  # tanh distortion of the guitar
    reverb: float = 0.0  # wet level of the room
    reverb_s: float = 1.0  # its decay time (-60 dB)


MOODS = (
    Mood(
        "happy", "bright major pop, 134 bpm", 134, 261.63, MAJOR, (0, 4, 5, 3), 0.5,
        kick=1.2, snare=0.95, hats=0.5, hat_steps=4, bass=0.58, chords=0.34, tilt=0.83, stabs=True, lead=0.24,
        reverb=0.33, reverb_s=1.2,
    ),
    Mood(
        "sad", "a slow, quiet minor ballad, 67 bpm", 67, 110.0, MINOR, (0, 5, 2, 6), 0.12,
        kick=0.95, snare=0.45, hats=0.5, bass=0.3, chords=0.6, tilt=2.8, lead=0.35, lead_steps=1,
        guitar=0.5, drive=4.7, reverb=0.75, reverb_s=1.1,
    ),
    Mood(
        "angry", "fast distorted rock, 190 bpm", 190, 82.41, MINOR, (0, 0, 1, 6), 0.8,
        kick=1.15, snare=2.3, hats=2.0, hat_steps=4, bass=0.5, guitar=0.9, drive=35.0,
        reverb=0.06, reverb_s=0.5,
    ),
    Mood(
        "calm", "a gentle major ballad, 72 bpm", 72, 196.0, MAJOR, (0, 3, 4, 0), 0.25,
        bass=0.25, chords=0.5, tilt=2.2, lead=0.2, lead_steps=1, reverb=0.5, reverb_s=2.5,
    ),
)  # fmt: skip


def moods_for(labels: Sequence[str]) -> tuple[Mood, ...]:
    """The demo's moods that a model with ``labels`` knows (all of them when it knows fewer than two)."""
    known = tuple(m for m in MOODS if m.name in labels)
    return known if len(known) >= 2 else MOODS


class DemoMusic:
    """An endless stream of generated music; :meth:`read` returns the next ``n`` samples."""

    def __init__(
        self, sample_rate: int = 16000, mood_seconds: float = 20.0, seed: int = 0, labels: Sequence[str] = ()
    ) -> None:
        self.sample_rate = sample_rate
        self.mood_seconds = mood_seconds
        self.moods = moods_for(labels) if labels else MOODS[:3]
        self._seed = seed
        self._buffer = np.zeros(0, dtype=np.float32)
        self._made = 0  # samples synthesised so far
        self._segment = mood_seconds * sample_rate  # samples per mood
        self.mood = self.moods[0]
        self._band = _Band(self.mood, sample_rate, seed)

    def mood_at(self, seconds: float) -> Mood:
        """The mood playing ``seconds`` into the stream."""
        return self.moods[int(seconds // self.mood_seconds) % len(self.moods)]

    def read(self, n: int) -> np.ndarray:
        while self._buffer.size < n:
            self._buffer = np.concatenate([self._buffer, self._next_bar()])
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out

    def _next_bar(self) -> np.ndarray:
        mood = self.mood_at(self._made / self.sample_rate)
        if mood is not self.mood:
            self.mood, self._band = mood, _Band(mood, self.sample_rate, self._seed)
        bar = self._band.next_bar()
        change = round((self._made // self._segment + 1) * self._segment)  # the next mood starts here
        bar = bar[: change - self._made]  # on time, whatever the bar's length
        self._made += bar.size
        return (mood.loudness * bar / max(1e-9, float(np.max(np.abs(bar))))).astype(np.float32)


class _Band:
    """One mood's players. Everything but the lead repeats per chord, so a bar of the backing is
    made once per chord and reused; the lead's notes are drawn anew each bar."""

    def __init__(self, mood: Mood, sr: int, seed: int) -> None:
        self.mood, self.sr = mood, sr
        self._rng = np.random.default_rng(seed)
        self._bar = 0
        self._backing: dict[int, np.ndarray] = {}
        self._drums = _drum_kit(sr, self._rng)
        self._room = _room(mood.reverb_s, sr, self._rng) if mood.reverb else None
        self._tail: np.ndarray = np.zeros(0, dtype=np.float32)
        self._spectrum: tuple[int, np.ndarray] | None = None

    def next_bar(self) -> np.ndarray:
        m = self.mood
        degree = m.progression[self._bar % len(m.progression)]
        if degree not in self._backing:  # float32: a ballad's four bars are 0.9 MB so, not 1.8
            self._backing[degree] = self._backing_bar(degree).astype(np.float32)
        out = self._backing[degree].copy()
        if m.lead:
            out += m.lead * self._lead(degree, out.size)
        if self._room is not None:
            out += m.reverb * self._reverberate(out)
        self._bar += 1
        return out

    @property
    def _beat(self) -> float:
        return 60.0 / self.mood.bpm * self.sr  # samples per beat

    def _backing_bar(self, degree: int) -> np.ndarray:
        m, sr, beat = self.mood, self.sr, self._beat
        n = round(4 * beat)
        t = np.arange(n) / sr
        chord = [_note(m, degree + k) for k in (0, 2, 4)]
        kick, snare, hat = self._drums
        kicks = [i * beat for i in range(4)] + ([3.5 * beat] if m.bpm > 100 else [])
        out = m.kick * _hits(n, kicks, kick) + m.snare * _hits(n, [beat, 3 * beat], snare)
        out += m.hats * _hits(n, [i * beat / m.hat_steps for i in range(4 * m.hat_steps)], hat)
        if m.bass:  # the root an octave down, plucked on eighths
            out += m.bass * np.exp(-2.5 * ((t * sr) % (beat / 2)) / (beat / 2)) * _osc(t, chord[0] / 2, 1.0, 6)
        if m.chords:
            if m.stabs:  # on the off-beats
                phase = (t * sr) % beat
                env = np.where(phase >= beat / 2, np.exp(-12.0 * (phase - beat / 2).clip(0) / sr), 0.0)
            else:
                env = np.minimum(1.0, t / 0.1) * np.minimum(1.0, (t[-1] - t) / 0.2 + 0.05)
            voices = sum(_osc(t, hz * detune, m.tilt, 8) for hz in chord for detune in (1.0, 1.004))  # one at a time
            out += m.chords * env * voices / 6
        if m.guitar:  # power chords (root, fifth, octave) on eighths, distorted
            pick = 0.4 + 0.6 * np.exp(-8.0 * ((t * sr) % (beat / 2)) / sr)
            strings = sum(_osc(t, hz, 0.8, 10) for hz in (chord[0] / 2, chord[0] * 0.75, chord[0]))
            out += m.guitar * 0.5 * np.tanh(m.drive * strings * pick)
        return out

    def _lead(self, degree: int, n: int) -> np.ndarray:
        """A melody over the chord an octave up, with vibrato: one note per step, made note by note
        (a ballad's bar is 3.6 s: whole-bar arrays would cost megabytes a bar)."""
        m, sr = self.mood, self.sr
        step = round(self._beat / m.lead_steps)  # samples per note
        out = np.zeros(n, dtype=np.float32)
        table, phase = _table(1.2, 5), 0.0
        for start in range(0, n, step):
            k = np.arange(min(step, n - start))
            hz = _note(m, degree + 7 + int(self._rng.integers(0, 5)))
            cycles = phase + np.cumsum(hz * (1.0 + 0.004 * np.sin(2 * np.pi * 5.5 * (start + k) / sr))) / sr
            phase = float(cycles[-1]) % 1.0
            out[start : start + k.size] = np.exp(-2.0 * k / step) * table[(cycles * TABLE).astype(np.int64) % TABLE]
        return out

    def _room_spectrum(self, size: int) -> np.ndarray:
        """The room's response in the frequency domain, made once per FFT size."""
        assert self._room is not None
        if self._spectrum is None or self._spectrum[0] != size:
            self._spectrum = (size, np.fft.rfft(self._room.astype(np.float32), size))
        return self._spectrum[1]

    def _reverberate(self, dry: np.ndarray) -> np.ndarray:
        """The room's response to this bar plus the tail of the bars before (FFT convolution)."""
        assert self._room is not None
        size = 1 << (dry.size + self._room.size - 1).bit_length()
        spectrum = np.fft.rfft(dry.astype(np.float32), size) * self._room_spectrum(size)
        wet = np.fft.irfft(spectrum, size)[: dry.size + self._room.size]
        wet[: self._tail.size] += self._tail
        self._tail = wet[dry.size :].copy()  # not a view that would keep the whole bar alive
        return wet[: dry.size]


def _note(mood: Mood, degree: int) -> float:
    octave, step = divmod(degree, len(mood.scale))
    return mood.root_hz * 2 ** (octave + mood.scale[step] / 12)


_TABLES: dict[tuple[float, int], np.ndarray] = {}


def _table(tilt: float, harmonics: int) -> np.ndarray:
    """One period of a tone whose harmonic h has amplitude 1 / h**tilt."""
    if (tilt, harmonics) not in _TABLES:
        x = np.arange(TABLE) / TABLE
        _TABLES[tilt, harmonics] = sum(np.sin(2 * np.pi * h * x) / h**tilt for h in range(1, harmonics + 1))
    return _TABLES[tilt, harmonics]


def _osc(t: np.ndarray, hz: float, tilt: float, harmonics: int) -> np.ndarray:
    return _table(tilt, harmonics)[(t * hz * TABLE).astype(np.int64) % TABLE]


def _drum_kit(sr: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kick (a falling sine), snare (noise and a 190 Hz body), closed hi-hat (high-passed noise)."""
    k = np.arange(int(0.35 * sr)) / sr
    kick = np.sin(2 * np.pi * (45 * k + 90 / 25 * (1 - np.exp(-25 * k)))) * np.exp(-9 * k)
    noise = rng.normal(0, 1, k.size)
    snare = 0.6 * noise * np.exp(-20 * k) + 0.5 * np.sin(2 * np.pi * 190 * k) * np.exp(-30 * k)
    short = int(0.06 * sr)
    hat = 0.5 * np.diff(noise, n=2, prepend=(0, 0))[:short] * np.exp(-70 * k[:short])
    return kick, snare, hat


def _room(decay_s: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A room's impulse response: exponentially decaying noise, silent for the first 10 ms."""
    t = np.arange(int(decay_s * sr)) / sr
    response = rng.normal(0, 1, t.size) * np.exp(-6.9 * t / decay_s)
    response[: int(0.01 * sr)] = 0.0
    return response / np.sqrt(np.sum(response**2))


def _hits(n: int, starts: Sequence[float], sound: np.ndarray) -> np.ndarray:
    out = np.zeros(n)
    for start in (int(s) for s in starts):
        end = min(n, start + sound.size)
        out[start:end] += sound[: end - start]
    return out
