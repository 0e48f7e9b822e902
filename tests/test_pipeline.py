"""The whole pipeline (file source -> rings -> features -> tiny model -> smoothing -> events) and
its level gate, with the real int8 model that the tests train."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from scipy import signal

from streamer.audio.sources import FileSource
from streamer.config import GateSettings, ModelSettings, Settings, SmoothingSettings
from streamer.core.events import EmotionEvent
from streamer.core.pipeline import FLOOR_DBFS, Pipeline, clip_decision, level_of
from streamer.model.runner import ModelRunner
from tests.conftest import TINY_LABELS

pytestmark = pytest.mark.slow  # the tiny model trains once per session


# the tests' own temporal settings, whatever the defaults (chosen on music, not on the tiny model)
SMOOTHING = SmoothingSettings(mood_seconds=120.0, evidence_weight=0.3, switch_confidence=0.7, min_confidence=0.0)


def settings_for(model: Path, hop: float = 1.0, **gate: float) -> Settings:
    model_settings = ModelSettings(path=str(model), hop_seconds=hop)
    return Settings(model=model_settings, gate=GateSettings(**gate), smoothing=SMOOTHING)


@pytest.fixture(scope="module")
def runner(tiny_model: Path) -> ModelRunner:
    return ModelRunner(tiny_model)


def file_events(path: Path, runner: ModelRunner, settings: Settings) -> list[EmotionEvent]:
    """Read a file through the daemon's file source into a fresh pipeline."""

    async def run() -> list[EmotionEvent]:
        source = FileSource(str(path), block_seconds=0.1, realtime=False)
        await source.open()
        pipeline = Pipeline(runner, settings)
        events: list[EmotionEvent] = []
        while (chunk := await source.read()) is not None:
            events += pipeline.process(chunk)
        return events

    return asyncio.run(run())


def test_one_event_per_hop_through_the_whole_pipeline(
    tmp_path: Path, runner: ModelRunner, tiny_model: Path, tiny_model_audio
) -> None:
    clip = np.concatenate([tiny_model_audio("happy", 6.0), tiny_model_audio("sad", 6.0, seed=1)])
    clip = np.concatenate([clip, tiny_model_audio("angry", 0.5)])  # 12.5 s: half a hop left over
    path = tmp_path / "clip.wav"
    sf.write(path, clip, 16000)
    events = file_events(path, runner, settings_for(tiny_model, hop=0.5))

    assert len(events) == 25  # 12.5 s / 0.5 s
    assert [e.seq for e in events] == list(range(25))
    assert [e.stream_time for e in events] == pytest.approx([0.5 * (i + 1) for i in range(25)])
    # the 2 s window fills after 4 hops of 0.5 s; the tiny model is sure of its moods, so the
    # first classified hop already claims one
    assert [e.state for e in events[:4]] == ["warming_up"] * 3 + ["emotion"]
    assert all(e.state in ("emotion", "uncertain") for e in events[3:])
    # the shown label changes once, from happy to sad, and nothing flickers in between
    claimed = [e.label for e in events if e.label]
    assert [k for i, k in enumerate(claimed) if i == 0 or k != claimed[i - 1]] == ["happy", "sad"]
    # changed marks every hop whose shown state differs from the last one's; held_s counts since then
    for before, e in itertools.pairwise(events):
        assert e.changed == ((e.label or e.state) != (before.label or before.state))
        assert e.held_s == pytest.approx(0.5 if e.changed else before.held_s + 0.5)
    assert all(e.label is None and e.raw == {} for e in events[:3])
    for e in events[3:]:
        assert list(e.raw) == list(TINY_LABELS) == list(e.probabilities)
        assert sum(e.raw.values()) == pytest.approx(1.0, abs=0.02)
        if e.state == "emotion":
            assert e.confidence == e.probabilities[e.label] == max(e.probabilities.values())
        else:
            assert e.label is None and e.confidence == 0.0
        assert e.model == "tiny-test" and e.processing_ms > 0
    assert events[8].label == "happy"  # 4.5 s: inside the happy part
    assert events[23].raw["sad"] > 0.5  # 12 s: the window is all sad
    assert events[-1].label == "sad"  # the temporal model has switched by then


def test_chunk_sizes_do_not_change_the_events(runner: ModelRunner, tiny_model: Path, tiny_model_audio) -> None:
    audio = tiny_model_audio("angry", 5.0)
    settings = settings_for(tiny_model, hop=0.25)
    whole = Pipeline(runner, settings).process(audio)
    pipeline = Pipeline(runner, settings)
    pieces: list[EmotionEvent] = []
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.integers(0, audio.size, 40))
    for chunk in np.split(audio, cuts):
        pieces += pipeline.process(chunk)
    assert len(whole) == len(pieces) == 20
    for a, b in zip(whole, pieces, strict=True):
        assert (a.seq, a.state, a.label, a.raw, a.level) == (b.seq, b.state, b.label, b.raw, b.level)


def test_silence_gate_claims_no_emotion(runner: ModelRunner, tiny_model: Path, tiny_model_audio) -> None:
    music = tiny_model_audio("happy", 3.0)
    quiet = np.random.default_rng(0).normal(0, 10 ** (-60 / 20), 2 * 16000).astype(np.float32)
    audio = np.concatenate([music, np.zeros(2 * 16000, np.float32), quiet, music])
    events = Pipeline(runner, settings_for(tiny_model, silence_dbfs=-50.0)).process(audio)
    # a pause: the music after it is heard afresh, its belief built from its own hops alone (the
    # first, on a window half made of the quiet noise, does not yet believe a mood enough to claim it)
    states = ["warming_up", "emotion", "emotion"] + ["silence"] * 4 + ["uncertain", "emotion", "emotion"]
    assert [e.state for e in events] == states
    assert [e.changed for e in events] == [False, True, False, True, False, False, False, True, True, False]
    assert events[7].probabilities["happy"] < events[2].probabilities["happy"]
    for e in events[3:7]:
        assert e.label is None and e.confidence == 0.0 and e.raw == {} and e.probabilities == {}
    assert events[3].level.rms_dbfs == events[3].level.peak_dbfs == FLOOR_DBFS
    assert events[5].level.rms_dbfs == pytest.approx(-60.0, abs=0.5)
    # a lower threshold lets the same quiet noise through to the model
    lenient = Pipeline(runner, settings_for(tiny_model, silence_dbfs=-70.0)).process(audio)
    assert [e.state != "silence" and bool(e.raw) for e in lenient[5:7]] == [True, True]


def test_levels_in_dbfs_and_clipping() -> None:
    t = np.arange(16000) / 16000
    sine = np.sin(2 * np.pi * 1000 * t)
    level = level_of(0.5 * sine)
    assert level.peak_dbfs == pytest.approx(-6.02, abs=0.01)
    assert level.rms_dbfs == pytest.approx(-9.03, abs=0.01)
    assert not level.clipped
    assert level_of(np.clip(1.2 * sine, -1, 1)).clipped
    assert level_of(np.zeros(100)).rms_dbfs == FLOOR_DBFS


def test_a_44k_stereo_file_gives_the_events_of_its_16k_mono_version(
    tmp_path: Path, runner: ModelRunner, tiny_model: Path, tiny_model_audio
) -> None:
    mono = np.concatenate([tiny_model_audio("sad", 4.0), tiny_model_audio("angry", 4.0)])
    # content above 7 kHz cannot survive any 44.1 -> 16 kHz anti-alias filter: leave it out of both
    mono = signal.sosfiltfilt(signal.butter(10, 7000, fs=16000, output="sos"), mono).astype(np.float32)
    sf.write(tmp_path / "mono16k.wav", mono, 16000, subtype="FLOAT")
    up = soxr.resample(mono, 16000, 44100, quality="VHQ")
    stereo = np.stack([up * 1.1, up * 0.9], axis=1)  # the mean is the original
    sf.write(tmp_path / "stereo44k.wav", stereo, 44100, subtype="FLOAT")
    settings = settings_for(tiny_model, hop=0.5)
    ref = file_events(tmp_path / "mono16k.wav", runner, settings)
    got = file_events(tmp_path / "stereo44k.wav", runner, settings)
    assert len(ref) == len(got) == 16
    assert [e.state for e in got] == [e.state for e in ref]
    assert [e.label for e in got] == [e.label for e in ref]
    for a, b in zip(ref, got, strict=True):
        assert a.level.rms_dbfs == pytest.approx(b.level.rms_dbfs, abs=0.1)
        for label in a.raw:
            assert a.raw[label] == pytest.approx(b.raw[label], abs=0.1)


def test_clip_decision_is_the_mean_of_raw_probabilities_of_classified_hops(
    runner: ModelRunner, tiny_model: Path, tiny_model_audio
) -> None:
    audio = np.concatenate([tiny_model_audio("happy", 4.0), np.zeros(16000, np.float32)])
    events = Pipeline(runner, settings_for(tiny_model)).process(audio)
    emotion = [e for e in events if e.state in ("emotion", "uncertain")]  # classified, claimed or not
    assert len(emotion) == 3 and events[-1].state == "silence"
    expected = np.mean([[e.raw[k] for k in TINY_LABELS] for e in emotion], axis=0)
    np.testing.assert_allclose(clip_decision(events), expected)
    assert TINY_LABELS[int(np.argmax(clip_decision(events)))] == "happy"
    assert clip_decision(events[:1]) is None


def test_reset_after_a_gap_warms_up_again_and_keeps_counting(
    runner: ModelRunner, tiny_model: Path, tiny_model_audio
) -> None:
    pipeline = Pipeline(runner, settings_for(tiny_model))
    first = pipeline.process(tiny_model_audio("happy", 3.5))
    pipeline.reset()
    second = pipeline.process(tiny_model_audio("sad", 3.0))
    assert [e.label or e.state for e in first] == ["warming_up", "happy", "happy"]
    # after the gap nothing of the happy music is left: the first hop already shows sad
    assert [e.label or e.state for e in second] == ["warming_up", "sad", "sad"]
    assert [e.seq for e in first + second] == list(range(6))
    assert second[0].stream_time == pytest.approx(4.5)  # the dropped half hop still counts


def test_a_window_longer_than_the_ring_is_refused(runner: ModelRunner, tiny_model: Path) -> None:
    @dataclasses.dataclass
    class Huge:
        metadata = runner.metadata
        labels = runner.labels
        name = "huge"
        window_frames = 3001

    with pytest.raises(ValueError, match="longer than the 3000-frame feature ring"):
        Pipeline(Huge(), settings_for(tiny_model))  # type: ignore[arg-type]  # a partial runner on purpose
