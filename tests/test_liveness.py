"""Self-healing audio: an input that stalls, stops, raises, disappears and comes back (a test
double of the sounddevice stream), through the real daemon, pipeline and tiny model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer import daemon as daemon_mod
from streamer.config import LivenessSettings, ModelSettings, ServerSettings, Settings, SourceSettings
from streamer.daemon import Daemon
from streamer.events import EmotionEvent, Event, StatusEvent
from streamer.runner import ModelRunner
from streamer.sources import DeviceSource
from tests.conftest import mood_audio
from tests.fakesd import FakeSoundDevice

pytestmark = pytest.mark.slow  # real time passes while inputs fail and come back

SPEED = 4.0  # the double delivers audio 4x faster than real time


@pytest.fixture(scope="module")
def runner(tiny_model: Path) -> ModelRunner:
    return ModelRunner(tiny_model)


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon_mod, "FIRST_AUDIO_GRACE_S", 0.2)


class Harness:
    """A daemon on a fake device, and what it published."""

    def __init__(self, runner: ModelRunner, fake: FakeSoundDevice, **liveness: Any) -> None:
        live = dict(stall_seconds=0.5, backoff_initial_s=0.05, backoff_max_s=0.4) | liveness
        settings = Settings(
            source=SourceSettings(kind="device", device="USB Mic"),
            model=ModelSettings(hop_seconds=0.5),
            liveness=LivenessSettings(**live),
            server=ServerSettings(enabled=False),
        )
        happy = mood_audio("happy", 30.0)
        fake.signal = lambda t: np.interp(t % 30.0, np.arange(happy.size) / 16000, happy)
        self.fake = fake
        self.daemon = Daemon(settings, runner, DeviceSource(settings.source, fake))
        self.events: list[Event] = []
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Harness:
        subscription = self.daemon.bus.subscribe(100_000)
        self.task = asyncio.create_task(self.daemon.run(self.stop))
        self.collector = asyncio.create_task(self._collect(subscription))
        return self

    async def _collect(self, subscription: Any) -> None:
        async for event in subscription:
            self.events.append(event)

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)
        await asyncio.wait_for(self.collector, 10)

    def statuses(self, kind: str | None = None) -> list[StatusEvent]:
        return [e for e in self.events if isinstance(e, StatusEvent) and kind in (None, e.kind)]

    def emotions(self) -> list[EmotionEvent]:
        return [e for e in self.events if isinstance(e, EmotionEvent) and e.state == "emotion"]

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert not self.task.done(), "the daemon exited"
            assert time.monotonic() < deadline, (
                f"timed out; events: {[getattr(e, 'kind', e.state) for e in self.events][-30:]}"
            )
            await asyncio.sleep(0.02)


def test_a_stalled_input_is_reopened_and_events_resume(runner: ModelRunner) -> None:
    fake = FakeSoundDevice(speed=SPEED)

    async def scenario() -> None:
        async with Harness(runner, fake) as h:
            await h.until(lambda: len(h.emotions()) >= 2)
            fake.mode = "stall"
            await h.until(lambda: h.statuses("source_lost"))
            assert "no audio for" in h.statuses("source_lost")[0].message
            fake.mode = "play"
            await h.until(lambda: h.statuses("source_recovered"))
            before = len(h.emotions())
            await h.until(lambda: len(h.emotions()) >= before + 2)
            info = h.daemon.describe()
            assert info["source"]["state"] == "connected"
            assert info["source"]["reconnects"] >= 1
            assert info["counters"]["source_lost"] >= 1 and info["counters"]["stalls"] >= 1
            assert h.emotions()[-1].label == "happy"
            assert fake.streams[0].closed and len(fake.streams) >= 2

    asyncio.run(scenario())


def test_an_unplugged_device_is_found_again_by_name_at_a_new_index(runner: ModelRunner) -> None:
    fake = FakeSoundDevice(speed=SPEED)

    async def scenario() -> None:
        async with Harness(runner, fake, backoff_max_s=0.2) as h:
            await h.until(lambda: len(h.emotions()) >= 1)
            fake.present = False
            fake.mode = "finish"  # PortAudio ends the stream: the device is gone
            await h.until(lambda: len(h.statuses("source_retry")) >= 4)
            lost = h.statuses("source_lost")
            assert len(lost) == 1 and "stopped" in lost[0].message
            delays = [e.details["retry_in_s"] for e in h.statuses("source_retry")]
            assert delays[:4] == [0.1, 0.2, 0.2, 0.2]  # exponential backoff, capped
            assert not h.task.done()  # a lost device never ends the daemon
            # plugged into another port: the same name now sits at another index
            fake.devices.insert(0, {"name": "HDMI", "max_input_channels": 2, "default_samplerate": 48000.0})
            fake.mode, fake.present = "play", True
            await h.until(lambda: h.statuses("source_recovered"))
            assert fake.initialisations >= 1  # PortAudio re-scanned its devices
            before = len(h.emotions())
            await h.until(lambda: len(h.emotions()) >= before + 1)
            recovered = h.statuses("source_recovered")[0]
            assert recovered.details["attempts"] >= 4 and recovered.details["downtime_s"] > 0
            assert h.daemon.source.name == "USB Mic, USB Audio (hw:1,0)"
            assert h.daemon.describe()["counters"]["reconnect_attempts"] >= 5

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("fail_start", "Device unavailable"),
        ("fail_initialize", "Error initializing PortAudio"),
    ],
)
def test_an_input_that_raises_when_reopened_is_retried(runner: ModelRunner, failure: str, message: str) -> None:
    fake = FakeSoundDevice(speed=SPEED)

    async def scenario() -> None:
        async with Harness(runner, fake) as h:
            await h.until(lambda: len(h.emotions()) >= 1)
            setattr(fake, failure, True)
            fake.mode = "finish"
            await h.until(lambda: len(h.statuses("source_retry")) >= 2)
            assert message in h.statuses("source_retry")[0].message
            setattr(fake, failure, False)
            fake.mode = "play"
            await h.until(lambda: h.statuses("source_recovered"))
            # every failed stream was closed again: nothing leaks while retrying
            if failure == "fail_start":  # the first, at least two that failed to start, the working one
                assert len(fake.streams) >= 4
            else:  # PortAudio failed before any stream was made
                assert len(fake.streams) == 2
            assert all(s.closed for s in fake.streams[:-1]) and not fake.streams[-1].closed

    asyncio.run(scenario())


def test_digital_silence_counts_as_lost_only_when_configured(runner: ModelRunner) -> None:
    async def scenario(is_loss: bool) -> Harness:
        fake = FakeSoundDevice(speed=SPEED)
        async with Harness(runner, fake, digital_silence_is_loss=is_loss) as h:
            await h.until(lambda: len(h.emotions()) >= 1)
            fake.silent = True
            await asyncio.sleep(1.5)
            heard = len(h.emotions())
            fake.silent = False
            await h.until(lambda: len(h.emotions()) > heard)
        return h

    strict = asyncio.run(scenario(True))
    assert strict.statuses("source_lost")
    assert "digital silence" in strict.statuses("source_lost")[0].message
    assert strict.daemon.describe()["counters"]["digital_silence"] >= 1
    lenient = asyncio.run(scenario(False))
    assert not lenient.statuses("source_lost")
    assert any(isinstance(e, EmotionEvent) and e.state == "silence" for e in lenient.events)


def test_stopping_while_the_device_is_gone_is_prompt_and_clean(runner: ModelRunner) -> None:
    fake = FakeSoundDevice(speed=SPEED)

    async def scenario() -> float:
        async with Harness(runner, fake, backoff_initial_s=30.0, backoff_max_s=30.0) as h:
            await h.until(lambda: len(h.emotions()) >= 1)
            fake.present, fake.mode = False, "finish"
            await h.until(lambda: h.daemon.source_state == "reconnecting")
            t0 = time.monotonic()
        assert h.events[-1].kind == "stopped"  # type: ignore[union-attr]
        return time.monotonic() - t0

    assert asyncio.run(scenario()) < 10.0  # far from the 30 s wait: stopping cuts the backoff short


def test_overflows_are_counted_in_describe(runner: ModelRunner) -> None:
    fake = FakeSoundDevice(speed=SPEED)
    fake.overflow_every = 4

    async def scenario() -> dict[str, Any]:
        async with Harness(runner, fake) as h:
            await h.until(lambda: h.daemon.source.overflows >= 3)
            return h.daemon.describe()

    info = asyncio.run(scenario())
    assert info["source"]["overflows"] >= 3 and info["source"]["kind"] == "device"


def test_overflows_are_reported_without_flooding(runner: ModelRunner) -> None:
    fake = FakeSoundDevice(speed=SPEED)
    fake.overflow_every = 2

    async def scenario() -> list[StatusEvent]:
        async with Harness(runner, fake) as h:
            await h.until(lambda: len(h.emotions()) >= 6)
            return h.statuses("overflow")

    reports = asyncio.run(scenario())
    assert len(reports) == 1  # many overflows in those hops, one report per 10 s
    assert reports[0].details["overflows"] >= 1
