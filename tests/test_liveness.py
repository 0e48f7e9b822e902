"""Self-healing audio. Every transition of :class:`Liveness` on a fake clock (milliseconds of real
time), and one end to end: an input that disappears and comes back (a test double of the
sounddevice stream), through the real daemon, pipeline and tiny model, in real time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.audio import liveness as liveness_mod
from streamer.audio.liveness import Liveness
from streamer.audio.sources import DeviceSource, Source, SourceError, SourceLost
from streamer.audio.synth import mood_audio
from streamer.config import LivenessSettings, ModelSettings, ServerSettings, Settings, SourceSettings
from streamer.core.events import EmotionEvent, Event, StatusEvent
from streamer.daemon import Daemon
from streamer.model.runner import ModelRunner
from tests.fakesd import FakeSoundDevice

SPEED = 4.0  # the double delivers audio 4x faster than real time


@pytest.fixture(scope="module")
def runner(tiny_model: Path) -> ModelRunner:
    return ModelRunner(tiny_model)


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liveness_mod, "FIRST_AUDIO_GRACE_S", 0.2)


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


# --- on a fake clock ---------------------------------------------------------------------------

BLOCK_S = 0.25
STALL_S = 1.0
GRACE_S = 2.0
KEEPALIVE_S = 0.25


class FakeClock:
    """Virtual time: ``sleep`` waits for it, and :meth:`drive` jumps it to the next deadline
    whenever every task is idle, so a scenario of minutes runs in milliseconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + seconds, next(self._order), future))
        await future

    async def drive(self) -> None:
        while True:
            await asyncio.sleep(0.0005)  # real time for a source closed in a thread
            for _ in range(20):  # let every ready task run until all wait for the clock
                await asyncio.sleep(0)
            while self._timers and self._timers[0][2].done():  # cancelled sleeps
                heapq.heappop(self._timers)
            if self._timers:
                deadline, _, future = heapq.heappop(self._timers)
                self.now = max(self.now, deadline)
                future.set_result(None)


class ScriptedSource(Source):
    """A source whose behaviour follows a timeline of (from_time, mode) on the fake clock:
    play (a block of sound per BLOCK_S), zeros, stall (read never returns), raise (the stream
    stopped), gone (reads raise and so does opening), hang (reads raise and opening never returns:
    a frozen sound server), end (a finite source ran out)."""

    kind = "scripted"

    def __init__(self, clock: FakeClock, timeline: list[tuple[float, str]], live: bool = True) -> None:
        super().__init__("Scripted Mic")
        self.clock = clock
        self.timeline = timeline
        self.live = live
        self.opens = self.closes = self.opens_cancelled = 0
        self.overflow_per_read = 0

    def mode(self) -> str:
        return [mode for start, mode in self.timeline if start <= self.clock.now][-1]

    async def open(self) -> None:
        if self.mode() == "gone":
            raise SourceError("Device unavailable")
        if self.mode() == "hang":
            try:
                await asyncio.get_running_loop().create_future()  # never
            except asyncio.CancelledError:
                self.opens_cancelled += 1
                raise
        self.opens += 1

    async def read(self) -> np.ndarray | None:
        await self.clock.sleep(BLOCK_S)
        mode = self.mode()
        self.overflows += self.overflow_per_read
        if mode == "stall":
            await asyncio.get_running_loop().create_future()  # never
        if mode in ("raise", "gone", "hang"):
            raise SourceLost("the stream stopped")
        if mode == "end":
            return None
        return np.zeros(4000, np.float32) if mode == "zeros" else np.full(4000, 0.1, np.float32)

    def close(self) -> None:
        self.closes += 1


@dataclass
class Run:
    """What a scenario produced: status events and chunks, each with its fake time."""

    statuses: list[tuple[float, str, str, dict[str, Any]]]
    chunks: list[float]
    pings: list[float]
    liveness: Liveness
    source: ScriptedSource
    ended_at: float

    def kinds(self) -> list[str]:
        return [kind for _, kind, _, _ in self.statuses]

    def first(self, kind: str) -> tuple[float, str, dict[str, Any]]:
        return next((t, m, d) for t, k, m, d in self.statuses if k == kind)


def scenario(
    timeline: list[tuple[float, str]], until: float, live: bool = True, overflow_per_read: int = 0, **settings: Any
) -> Run:
    """Run a Liveness over a ScriptedSource until fake time ``until`` (or the source ends)."""

    async def main() -> Run:
        clock = FakeClock()
        source = ScriptedSource(clock, timeline, live)
        source.overflow_per_read = overflow_per_read
        statuses: list[tuple[float, str, str, dict[str, Any]]] = []
        pings: list[float] = []
        live_settings = dict(stall_seconds=STALL_S, backoff_initial_s=0.5, backoff_max_s=4.0) | settings
        liveness = Liveness(
            source,
            LivenessSettings(**live_settings),
            lambda kind, message, details: statuses.append((clock.now, kind, message, details)),
            clock=clock,
            sleep=clock.sleep,
            keepalive=lambda: pings.append(clock.now),
            keepalive_s=KEEPALIVE_S,
            grace_s=GRACE_S,
        )
        await liveness.open()
        stop = asyncio.Event()

        async def stopper() -> None:
            await clock.sleep(until)
            stop.set()

        helpers = [asyncio.create_task(clock.drive()), asyncio.create_task(stopper())]
        chunks = []
        try:
            async with asyncio.timeout(20):  # real seconds: a scenario that hangs fails
                async for _ in liveness.chunks(stop):
                    chunks.append(clock.now)
        finally:
            for task in helpers:
                task.cancel()
        return Run(statuses, chunks, pings, liveness, source, clock.now)

    return asyncio.run(main())


def test_a_steady_input_is_connected_once_and_read_block_by_block() -> None:
    run = scenario([(0, "play")], until=10.0)
    assert run.kinds() == ["source_connected"]
    assert run.chunks == pytest.approx([BLOCK_S * i for i in range(1, 40)])
    assert run.liveness.state == "connected" and not run.liveness.counters


def test_a_stall_is_a_loss_after_stall_seconds_since_the_last_block() -> None:
    run = scenario([(0, "play"), (3.0, "stall"), (3.5, "play")], until=10.0)
    t, message, details = run.first("source_lost")
    # the read started at 2.75 and delivered nothing within stall_seconds
    assert t == pytest.approx(2.75 + STALL_S) and message.endswith("no audio for 1 s")
    assert details == {"reason": "no audio for 1 s"}
    assert run.liveness.counters["stalls"] == 1 and run.source.closes == 1
    t_back, message, details = run.first("source_recovered")
    assert t_back == pytest.approx(t + 0.5) and details == {"attempts": 1, "downtime_s": 0.5}
    assert run.kinds() == ["source_connected", "source_lost", "source_recovered"]
    assert run.chunks[-1] == pytest.approx(9.75) and run.liveness.state == "connected"


def test_the_first_block_after_opening_gets_the_grace() -> None:
    run = scenario([(0, "stall")], until=10.0)
    t, message, _ = run.first("source_lost")
    assert t == pytest.approx(STALL_S + GRACE_S) and "no audio for 3 s" in message
    # reopened at 3.5, and the first block after that gets the grace again: lost at 6.5
    assert [t for t, k, _, _ in run.statuses if k == "source_lost"] == pytest.approx([3.0, 6.5])


def test_a_raising_input_is_lost_at_once_and_reopened_with_capped_backoff() -> None:
    run = scenario([(0, "play"), (1.0, "gone"), (20.0, "play")], until=30.0)
    lost_at, message, _ = run.first("source_lost")
    assert lost_at == pytest.approx(1.0) and "the stream stopped" in message
    retries = [(t, d) for t, k, _, d in run.statuses if k == "source_retry"]
    assert [d["retry_in_s"] for _, d in retries] == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert [d["attempt"] for _, d in retries] == [1, 2, 3, 4, 5, 6]
    # tried 0.5 s after the loss, then 1, 2, 4, 4, 4 s after each failure
    assert [t for t, _ in retries] == pytest.approx([1.5, 2.5, 4.5, 8.5, 12.5, 16.5])
    t_back, message, details = run.first("source_recovered")
    assert t_back == pytest.approx(20.5) and details == {"attempts": 7, "downtime_s": 19.5}
    assert "is back after 19.5 s" in message
    counters = run.liveness.counters
    assert counters["reconnect_attempts"] == 7 and counters["reconnects"] == 1 and counters["source_lost"] == 1
    assert run.source.opens == 2  # the first and the one that worked


def test_backoff_starts_short_again_after_a_recovery() -> None:
    timeline = [(0, "play"), (1.0, "gone"), (3.0, "play"), (5.0, "gone"), (8.0, "play")]
    run = scenario(timeline, until=12.0)
    retries = [d["retry_in_s"] for _, k, _, d in run.statuses if k == "source_retry"]
    assert retries == [1.0, 2.0, 1.0, 2.0]


def test_waiting_to_reopen_keeps_the_watchdog_fed() -> None:
    run = scenario([(0, "play"), (1.0, "gone")], until=20.0)
    gaps = np.diff([p for p in run.pings if p >= 1.25])
    assert len(gaps) > 50 and gaps.max() <= KEEPALIVE_S + 1e-9


def test_stopping_during_a_backoff_wait_ends_at_once() -> None:
    run = scenario([(0, "play"), (1.0, "gone")], until=5.0, backoff_initial_s=30.0, backoff_max_s=30.0)
    assert run.ended_at == pytest.approx(5.0) and run.liveness.state == "reconnecting"
    assert "source_retry" not in run.kinds()


@pytest.mark.parametrize("is_loss", [True, False])
def test_digital_silence_is_a_loss_only_when_configured(is_loss: bool) -> None:
    run = scenario([(0, "play"), (2.0, "zeros")], until=6.0, digital_silence_is_loss=is_loss)
    if is_loss:  # the first block of zeros came at 2.0; the one at 3.0 is stall_seconds later
        t, message, _ = run.first("source_lost")
        assert t == pytest.approx(3.0) and "only digital silence for 1 s" in message
        assert run.liveness.counters["digital_silence"] >= 1
    else:
        assert run.kinds() == ["source_connected"] and run.chunks[-1] == pytest.approx(5.75)


def test_zeros_shorter_than_stall_seconds_are_not_a_loss() -> None:
    timeline = [(0, "play"), (2.0, "zeros"), (2.9, "play"), (3.1, "zeros"), (4.0, "play")]
    run = scenario(timeline, until=6.0, digital_silence_is_loss=True)
    assert run.kinds() == ["source_connected"]


def test_overflows_are_reported_at_most_every_ten_seconds() -> None:
    run = scenario([(0, "play")], until=25.0, overflow_per_read=1)
    reports = [(t, d["overflows"]) for t, k, _, d in run.statuses if k == "overflow"]
    assert reports == [(0.25, 1), (10.25, 41), (20.25, 81)]


def test_a_finite_source_ends_and_says_so() -> None:
    run = scenario([(0, "play"), (1.0, "end")], until=10.0, live=False)
    assert run.kinds() == ["source_connected", "source_ended"]
    assert run.liveness.state == "ended" and run.ended_at == pytest.approx(1.0)


def test_a_finite_source_is_never_timed_out_and_its_errors_propagate() -> None:
    run = scenario([(0, "play"), (1.0, "stall")], until=60.0, live=False)
    assert run.kinds() == ["source_connected"] and run.ended_at == pytest.approx(60.0)
    with pytest.raises(SourceLost, match="the stream stopped"):
        scenario([(0, "play"), (1.0, "raise")], until=10.0, live=False)


def test_a_source_that_cannot_open_at_first_is_an_error_not_a_retry() -> None:
    with pytest.raises(SourceError, match="Device unavailable"):
        scenario([(0, "gone")], until=10.0)


def test_a_failing_finite_source_ends_with_its_reason() -> None:
    """A stdin whose reader failed (a reset socket): source_ended says why, then the error goes on."""

    async def main() -> tuple[list[tuple[str, str, dict[str, Any]]], Liveness]:
        clock = FakeClock()
        statuses: list[tuple[str, str, dict[str, Any]]] = []
        source = ScriptedSource(clock, [(0, "play"), (1.0, "raise")], live=False)
        liveness = Liveness(
            source, LivenessSettings(), lambda *status: statuses.append(status), clock=clock, sleep=clock.sleep
        )
        await liveness.open()
        driver = asyncio.create_task(clock.drive())
        try:
            async with asyncio.timeout(20):
                with pytest.raises(SourceLost, match="the stream stopped"):
                    async for _ in liveness.chunks(asyncio.Event()):
                        pass
        finally:
            driver.cancel()
        return statuses, liveness

    statuses, liveness = asyncio.run(main())
    assert [kind for kind, _, _ in statuses] == ["source_connected", "source_ended"]
    _, message, details = statuses[-1]
    assert message == "Scripted Mic: the stream stopped" and details == {"reason": "the stream stopped"}
    assert liveness.state == "ended"


def test_stopping_during_a_hanging_first_open_cancels_it() -> None:
    """SIGTERM while the first open hangs (PortAudio and a frozen sound server): open() gives up."""

    async def main() -> tuple[bool, float, ScriptedSource, Liveness]:
        clock = FakeClock()
        source = ScriptedSource(clock, [(0, "hang")])
        liveness = Liveness(source, LivenessSettings(), lambda *_: None, clock=clock, sleep=clock.sleep)
        stop = asyncio.Event()

        async def stopper() -> None:
            await clock.sleep(7.0)
            stop.set()

        helpers = [asyncio.create_task(clock.drive()), asyncio.create_task(stopper())]
        try:
            async with asyncio.timeout(20):
                opened = await liveness.open(stop)
        finally:
            for task in helpers:
                task.cancel()
        return opened, clock.now, source, liveness

    opened, stopped_at, source, liveness = asyncio.run(main())
    assert opened is False and stopped_at == pytest.approx(7.0)
    assert source.opens_cancelled == 1 and source.opens == 0 and liveness.state == "closed"


def test_stopping_during_a_hanging_reopen_ends_at_once() -> None:
    run = scenario([(0, "play"), (1.0, "hang")], until=5.0)
    # lost at 1.0, the reopen at 1.5 hangs; the stop at 5.0 cancels it
    assert run.kinds() == ["source_connected", "source_lost"] and run.ended_at == pytest.approx(5.0)
    assert run.source.opens_cancelled == 1 and run.liveness.state == "reconnecting"


# --- end to end, in real time --------------------------------------------------------------------


@pytest.mark.slow  # real time passes while the input fails and comes back
@pytest.mark.usefixtures("short_grace")
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
