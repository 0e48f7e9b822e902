"""The demo a first run plays (`make run` without a microphone): the shipped students hear each of its
moods as that mood, through the daemon itself (source, liveness, pipeline, bus, the demo's guide),
on a clock that does not wait, and the guide's log says what played and what the model showed."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from streamer import config
from streamer.audio import sources
from streamer.audio.demo import MOODS, DemoMusic, moods_for
from streamer.audio.sources import DemoSource
from streamer.core.events import EmotionEvent
from streamer.daemon import Daemon
from streamer.model import shipped
from streamer.model.runner import ModelRunner

SECONDS = 120  # what the issue asks: three moods within two minutes


async def _no_wait(seconds: float) -> None:
    await asyncio.sleep(0)


def hear_the_demo(model: str, seconds: float) -> tuple[list[EmotionEvent], DemoMusic]:
    """Run the daemon (no server, history in memory) on the demo for ``seconds`` of its music."""
    settings = config.from_dict({"server": {"enabled": False}, "model": {"path": model}}).validate()
    runner = ModelRunner(shipped.resolve(model))
    source = sources.build_source(config.SourceSettings(kind="demo"), labels=runner.labels)
    assert isinstance(source, DemoSource)
    daemon = Daemon(settings, runner, source)
    events: list[EmotionEvent] = []

    async def main() -> None:
        stop = asyncio.Event()
        subscription = daemon.bus.subscribe(10_000)

        async def collect() -> None:
            async for event in subscription:
                if isinstance(event, EmotionEvent):
                    events.append(event)
                    if event.stream_time >= seconds:
                        stop.set()

        collector = asyncio.create_task(collect())
        await daemon.run(stop)
        await collector

    asyncio.run(main())
    return events, source.music


@pytest.fixture
def instant_pacing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo is paced like a live input; here its clock does not wait (the audio is the same)."""
    pacer: Callable[..., Awaitable[None]] = _no_wait
    monkeypatch.setattr(sources, "_Paced", functools.partial(sources._Paced, sleep=pacer))


@pytest.mark.usefixtures("instant_pacing")
def test_the_default_model_shows_every_demo_mood_in_two_minutes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="streamer.sinks.demo_guide")
    events, music = hear_the_demo("", SECONDS)
    assert shipped.index()["default"] == "3class-musicnn-student"
    shown = Counter(e.label for e in events if e.state == "emotion")
    assert {"happy", "sad", "angry"} <= set(shown), shown
    # each mood is what the model shows for most of its 20 s, once the window holds only it
    for segment in range(SECONDS // 20):
        inside = [e for e in events if segment * 20 + 6 <= e.stream_time <= (segment + 1) * 20]
        playing = music.mood_at(segment * 20 + 10).name
        top, count = Counter(e.label or e.state for e in inside).most_common(1)[0]
        heard = Counter(e.label for e in inside)
        assert (top, count >= 0.8 * len(inside)) == (playing, True), (segment, playing, heard)
    lines = [r.getMessage() for r in caplog.records if r.name == "streamer.sinks.demo_guide"]
    assert len(lines) == 4, lines  # the first round only
    intro = "demo: moodstream plays its own synthesised music, one mood every 20 s (happy, sad, angry)"
    assert lines[0].startswith(intro)
    assert 'now playing "happy" (bright major pop' in lines[0]
    assert lines[1].startswith('demo: during "happy" the model showed happy ') and 'now playing "sad"' in lines[1]
    assert "the moods now repeat" in lines[3] and "--source file:song.flac --realtime" in lines[3]


@pytest.mark.usefixtures("instant_pacing")
def test_the_four_class_student_hears_all_four_demo_moods() -> None:
    events, music = hear_the_demo("4class-musicnn-student", 80)
    assert [m.name for m in music.moods] == ["happy", "sad", "angry", "calm"]
    for segment in range(4):
        inside = [e for e in events if segment * 20 + 6 <= e.stream_time <= (segment + 1) * 20]
        top, _ = Counter(e.label or e.state for e in inside).most_common(1)[0]
        assert top == music.moods[segment].name, (segment, Counter(e.label for e in inside))


def test_the_demo_plays_the_moods_the_model_knows() -> None:
    assert [m.name for m in moods_for(("angry", "happy", "sad"))] == ["happy", "sad", "angry"]
    assert [m.name for m in moods_for(("happy", "calm", "x"))] == ["happy", "calm"]
    assert moods_for(("tense", "happy")) == MOODS  # fewer than two it knows: all of them
    assert [m.name for m in DemoMusic().moods] == ["happy", "sad", "angry"]


def test_moods_change_on_time_whatever_the_bar_length() -> None:
    demo = DemoMusic(16000, mood_seconds=2.5)  # shorter than the sad ballad's 3.6 s bar
    x = demo.read(16000 * 10)
    assert x.dtype == np.float32 and np.max(np.abs(x)) <= 1.0
    assert [demo.mood_at(t).name for t in (0, 2.4, 2.5, 5.0, 7.5)] == ["happy", "happy", "sad", "angry", "happy"]
    again = DemoMusic(16000, mood_seconds=2.5)
    parts = [again.read(n) for n in (1, 39_999, 40_000, 80_000)]  # any read sizes: the same music
    np.testing.assert_array_equal(np.concatenate(parts), x[:160_000])


def test_the_demo_costs_little_cpu() -> None:
    """One second of demo music (all moods) takes well under 50 ms here (measured: about 8 ms)."""
    import time

    demo = DemoMusic(16000, mood_seconds=5.0)
    start = time.process_time()
    demo.read(16000 * 15)
    assert (time.process_time() - start) / 15 < 0.05
