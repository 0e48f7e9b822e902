"""Samples in, one EmotionEvent per hop out: the single path from audio to a claim.

The daemon feeds it live audio and `moodstream evaluate` feeds it files, so the two cannot
disagree. Synchronous and free of I/O: the caller decides where audio comes from and where events
go. Features (the front-end the model's metadata names: MFCC + contrast, or musicnn's log-mel) are
computed incrementally through the extractor's ``push``, once per hop on the
audio that the hop brought (only the new frames, never the whole window again; one push per hop
rather than per capture block, because each push has a fixed cost), and the model runs once per hop
on the newest ``window_frames`` feature frames.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from streamer.config import Settings
from streamer.core.events import EmotionEvent, Level, State
from streamer.core.ring import feature_ring, sample_ring
from streamer.core.temporal import MoodFilter
from streamer.features.frontend import AnyConfig, extractor_for, front_end

FLOOR_DBFS = -120.0  # reported for digital silence (log of 0 has no JSON form)
CLIP_LEVEL = 32767 / 32768  # a sample at int16 full scale or beyond counts as clipped


class _Metadata(Protocol):
    @property
    def feature_config(self) -> AnyConfig: ...
    @property
    def temperature(self) -> float: ...


class Runner(Protocol):
    """What the pipeline needs from streamer.model.runner.ModelRunner (read-only)."""

    @property
    def metadata(self) -> _Metadata: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def name(self) -> str: ...
    @property
    def window_frames(self) -> int: ...

    def predict(self, window: np.ndarray) -> np.ndarray: ...


def level_of(samples: np.ndarray) -> Level:
    """RMS and peak in dBFS (full-scale sine peak = 0 dBFS) and clipping over one hop."""
    x = np.asarray(samples, dtype=np.float64)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
    return Level(rms_dbfs=_dbfs(rms), peak_dbfs=_dbfs(peak), clipped=peak >= CLIP_LEVEL)


def _dbfs(value: float) -> float:
    return max(FLOOR_DBFS, 20.0 * math.log10(value)) if value > 0 else FLOOR_DBFS


class Pipeline:
    """Streaming state of one audio stream: rings, feature extractor, smoother, sequence."""

    def __init__(self, runner: Runner, settings: Settings) -> None:
        feature_config = runner.metadata.feature_config
        self.runner = runner
        self.settings = settings
        self.config = feature_config
        self.labels = tuple(runner.labels)
        self.hop_samples = round(settings.model.hop_seconds * feature_config.sample_rate)
        self.samples = sample_ring(feature_config.sample_rate)
        self.features = feature_ring(feature_config.frames_per_second, feature_config.n_features)
        if runner.window_frames > self.features.capacity:
            raise ValueError(
                f"the model's window ({runner.window_frames} frames) is longer than the "
                f"{self.features.capacity}-frame feature ring"
            )
        self._extractor = extractor_for(feature_config)  # the front-end the model's metadata names
        self._timbre = front_end(feature_config).timbre
        self._filter = MoodFilter(
            settings.smoothing, settings.model.hop_seconds, len(self.labels), runner.metadata.temperature
        )
        self.summary: np.ndarray | None = None  # the last hop's timbre and level, None when silent (studies replay it)
        self._shown: str | None = None  # what the last hop showed: a label, or its state
        self._shown_since = 0.0  # stream time when that began
        self.seq = 0
        self.consumed = 0  # samples since the stream started (across resets: stream time goes on)
        self._hop_fill = 0  # samples of the current hop seen so far
        self._hop_audio: list[np.ndarray] = []  # those samples, features not yet computed
        self._hop_cpu = 0.0  # seconds spent on the current hop so far

    def reset(self) -> None:
        """A gap in the audio (the device was lost): start the window and smoothing afresh."""
        self.samples.clear()
        self.features.clear()
        self._extractor.reset()
        self._filter.reset()
        self._hop_fill = 0
        self._hop_audio.clear()
        self._hop_cpu = 0.0

    @property
    def samples_to_next_hop(self) -> int:
        """How many more samples complete the current hop (the caller may run that call off the
        event loop, since only hop-completing calls do feature and model work)."""
        return self.hop_samples - self._hop_fill

    def process(self, samples: np.ndarray) -> list[EmotionEvent]:
        """Consume 16 kHz mono float samples; one event per completed hop."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        events = []
        while x.size:
            take = min(x.size, self.hop_samples - self._hop_fill)
            self._ingest(x[:take])
            x = x[take:]
            if self._hop_fill == self.hop_samples:
                events.append(self._finish_hop())
        return events

    def _ingest(self, chunk: np.ndarray) -> None:
        t0 = time.perf_counter()
        self.samples.push(chunk)
        self._hop_audio.append(chunk.copy())
        self._hop_fill += chunk.size
        self.consumed += chunk.size
        self._hop_cpu += time.perf_counter() - t0

    def _finish_hop(self) -> EmotionEvent:
        t0 = time.perf_counter()
        frames = self._extractor.push(np.concatenate(self._hop_audio))
        self.features.push(frames)
        self._hop_audio.clear()
        level = level_of(self.samples.latest(self.hop_samples))
        verdict = self._judge(frames, level)
        stream_time = self.consumed / self.config.sample_rate
        shown = verdict.label or verdict.state
        changed = self._shown is not None and shown != self._shown
        if shown != self._shown:
            self._shown, self._shown_since = shown, stream_time - self.settings.model.hop_seconds
        cpu = self._hop_cpu + time.perf_counter() - t0
        event = EmotionEvent(
            seq=self.seq,
            timestamp=time.time(),
            stream_time=stream_time,
            state=verdict.state,
            label=verdict.label,
            confidence=verdict.confidence,
            probabilities=verdict.belief,
            raw=verdict.raw,
            level=level,
            processing_ms=round(cpu * 1000.0, 3),
            model=self.runner.name,
            changed=changed,
            held_s=round(stream_time - self._shown_since, 3),
            novelty=round(verdict.novelty, 4),
        )
        self.seq += 1
        self._hop_fill = 0
        self._hop_cpu = 0.0
        return event

    def _judge(self, frames: np.ndarray, level: Level) -> _Verdict:
        """The model on the window (once it is full and the hop is not silent), and the temporal
        model on what it said and on the hop's timbre and level (a silent hop resets it: a pause)."""
        window_frames = self.runner.window_frames
        warm = len(self.features) >= window_frames
        silent = level.rms_dbfs < self.settings.gate.silence_dbfs
        probs = self.runner.predict(self.features.latest(window_frames)) if warm and not silent else None
        self.summary = None if silent else np.append(self._timbre(frames), level.rms_dbfs)
        if self.summary is None:
            self._filter.reset()
            return _Verdict("warming_up" if not warm else "silence", None, 0.0, {}, {}, 0.0)
        believed, index, novelty = self._filter.update(self.summary, probs)
        if probs is None:
            return _Verdict("warming_up", None, 0.0, {}, {}, novelty)
        raw, belief = _as_dict(self.labels, probs), _as_dict(self.labels, believed)
        if index is None:
            return _Verdict("uncertain", None, 0.0, raw, belief, novelty)
        return _Verdict("emotion", self.labels[index], float(believed[index]), raw, belief, novelty)


class _Verdict(NamedTuple):
    """What one hop shows (the event's fields that the model and the temporal model decide)."""

    state: State
    label: str | None
    confidence: float
    raw: dict[str, float]  # empty unless the model ran
    belief: dict[str, float]
    novelty: float


def _as_dict(labels: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {label: float(v) for label, v in zip(labels, values, strict=True)}


def clip_decision(events: Sequence[EmotionEvent]) -> np.ndarray | None:
    """A clip's verdict: mean raw probabilities over its classified hops, labelled or uncertain
    (None when there is none)."""
    rows = [list(e.raw.values()) for e in events if e.raw]
    if not rows:
        return None
    return np.asarray(rows, dtype=np.float64).mean(axis=0)
