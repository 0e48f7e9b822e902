"""Faults as systemd sees them, over a real NOTIFY_SOCKET: READY only once the source is up,
watchdog pings that stop when the pipeline stalls (so systemd restarts it) but go on while a lost
device is awaited, STATUS lines on source changes; and the real daemon surviving a PulseAudio
restart mid-run. Device faults themselves (stall, unplug, start failures, silence) are covered on
the sounddevice double in test_liveness.py; these tests reuse its harness."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from streamer.audio import liveness as liveness_mod
from streamer.audio.sources import SourceError
from streamer.audio.synth import mood_audio
from streamer.model.runner import ModelRunner
from tests.fakesd import FakeSoundDevice
from tests.test_liveness import SPEED, Harness

pytestmark = pytest.mark.slow  # real time passes while things fail

REPO = Path(__file__).resolve().parent.parent
WATCHDOG_USEC = 200_000  # pings due every 0.1 s


class NotifyListener:
    """The systemd end of sd_notify: a datagram socket that records what arrives, with times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def lines(self, prefix: str = "", since: float = 0.0) -> list[str]:
        return [m for t, m in list(self.messages) if m.startswith(prefix) and t >= since]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}; got {self.lines()[-20:]}"
            time.sleep(0.02)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    n = NotifyListener(tmp_path / "notify.sock")
    yield n
    n.close()


@pytest.fixture
def systemd_env(monkeypatch: pytest.MonkeyPatch, listener: NotifyListener) -> None:
    """What systemd puts in the environment of a Type=notify service with WatchdogSec."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", str(WATCHDOG_USEC))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.setattr(liveness_mod, "FIRST_AUDIO_GRACE_S", 0.2)


@pytest.fixture(scope="module")
def runner(tiny_model: Path) -> ModelRunner:
    return ModelRunner(tiny_model)


class StallableRunner:
    """Wraps the real ModelRunner so a test can make its inference hang (as a wedged model would)."""

    def __init__(self, runner: ModelRunner) -> None:
        self._runner = runner
        self.running = threading.Event()
        self.running.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)

    def predict(self, window: np.ndarray) -> np.ndarray:
        self.running.wait()
        return self._runner.predict(window)


def test_watchdog_pings_stop_while_the_pipeline_stalls_and_resume(
    runner: ModelRunner, systemd_env: None, listener: NotifyListener
) -> None:
    fake = FakeSoundDevice(speed=SPEED)

    async def scenario() -> None:
        h = Harness(runner, fake)
        stall = StallableRunner(runner)
        h.daemon.pipeline.runner = stall  # type: ignore[assignment]  # a wrapper that can hang
        async with h:
            await h.until(lambda: len(h.emotions()) >= 2)
            lines = listener.lines()
            assert lines.index("READY=1") < lines.index("WATCHDOG=1")  # watchdog runs after READY
            assert len(listener.lines("WATCHDOG=1")) >= 2
            window: dict[str, float] = {}

            def watch() -> None:  # on a thread: the model runs on the loop, so the loop hangs with it
                time.sleep(0.5)  # a hop already past the gate may still ping once
                window["from"] = time.monotonic()
                time.sleep(1.5)  # 15 watchdog intervals
                window["to"] = time.monotonic()
                stall.running.set()

            stall.running.clear()
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            await h.until(lambda: "to" in window)
            watcher.join(5)
            pings = [t for t, m in listener.messages[:] if m == "WATCHDOG=1" and window["from"] <= t <= window["to"]]
            assert pings == []
            assert not h.task.done()  # hung, not dead: exactly what the watchdog is for
            await h.until(lambda: len(listener.lines("WATCHDOG=1", since=window["to"])) >= 3)
        listener.wait_for(lambda: "STOPPING=1" in listener.lines(), 5, "STOPPING=1")
        assert listener.lines()[-1] == "STOPPING=1"  # and nothing after it

    asyncio.run(scenario())


def test_waiting_for_a_lost_device_is_not_a_stall(
    runner: ModelRunner, systemd_env: None, listener: NotifyListener
) -> None:
    fake = FakeSoundDevice(speed=SPEED)
    timeout = WATCHDOG_USEC / 1e6

    async def scenario() -> None:
        async with Harness(runner, fake, backoff_initial_s=0.3, backoff_max_s=1.0) as h:
            await h.until(lambda: len(h.emotions()) >= 1)
            fake.present, fake.mode = False, "finish"  # unplugged
            await h.until(lambda: h.daemon.liveness.state == "reconnecting")
            gone = time.monotonic()
            await asyncio.sleep(2.5)  # several backoff waits and failed reopenings
            ended = time.monotonic()
            pings = [t for t, m in listener.messages[:] if m == "WATCHDOG=1" and gone <= t]
            # systemd kills a service silent for WATCHDOG_USEC; allow for a loaded test machine
            gaps = np.diff([gone, *pings, ended])
            assert gaps.max() < 2 * timeout, gaps
            fake.present, fake.mode = True, "play"
            await h.until(lambda: h.statuses("source_recovered"))
        status = listener.lines("STATUS=")
        assert status[0].startswith("STATUS=listening to USB Mic")
        assert any("lost" in s for s in status)
        assert any("is back after" in s for s in status)

    asyncio.run(scenario())


def test_ready_is_not_sent_when_the_source_cannot_start(
    runner: ModelRunner, systemd_env: None, listener: NotifyListener
) -> None:
    fake = FakeSoundDevice(speed=SPEED)
    fake.present = False

    async def scenario() -> Harness:
        h = Harness(runner, fake)
        with pytest.raises(SourceError):
            await h.daemon.run(asyncio.Event())
        return h

    h = asyncio.run(scenario())
    time.sleep(0.2)
    assert "READY=1" not in listener.lines()  # systemd sees the start fail, not a ready service
    # and not for want of a channel: the daemon's notifier reaches this very listener
    assert h.daemon.notifier.status("probe")
    time.sleep(0.2)
    assert listener.lines() == ["STATUS=probe"]


# PulseAudio: the real daemon, the real capture path, the sound server restarted under it


def _jsonl_reader(proc: subprocess.Popen[str], events: list[dict[str, Any]]) -> threading.Thread:
    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            events.append(json.loads(line))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def _wait(predicate: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({proc.returncode}) waiting for {what}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_events_resume_after_pulseaudio_restarts_mid_run(
    pulse: Any,
    tiny_model: Path,
    tmp_path: Path,
    listener: NotifyListener,
) -> None:
    wav = tmp_path / "happy.wav"
    sf.write(wav, mood_audio("happy", 60.0), 16000)
    err_path = tmp_path / "stderr.log"
    err_file = err_path.open("w")
    env = dict(pulse.env, NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="3000000")
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "run",
            "--source",
            "device",
            "--device",
            "pulse",
            "--model",
            str(tiny_model),
            "--hop",
            "0.5",
            "--stall-seconds",
            "1",
            "--jsonl",
            "-",
            "--no-server",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=err_file,
        text=True,
    )
    events: list[dict[str, Any]] = []
    reader = _jsonl_reader(proc, events)
    player = None

    def emotions(since: int = 0) -> list[dict[str, Any]]:
        return [e for e in events[since:] if e["type"] == "emotion" and e["state"] == "emotion"]

    def kinds() -> list[str]:
        return [e["kind"] for e in events if e["type"] == "status"]

    try:
        listener.wait_for(lambda: "READY=1" in listener.lines(), 60, "READY=1")
        player = pulse.play(wav)
        _wait(lambda: len(emotions()) >= 2, 30, "emotion events", proc)
        player.kill()
        pulse.restart(pause_s=1.0)  # the sound server goes away under the open stream
        _wait(lambda: "source_recovered" in kinds(), 60, "recovery", proc)
        mark = len(events)
        player = pulse.play(wav)  # the new server starts empty; play into it again
        _wait(lambda: len(emotions(mark)) >= 2, 30, "events after the restart", proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(10)
    finally:
        if player is not None:
            player.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err_file.close()
    err = err_path.read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "source_lost" in kinds() and kinds()[-1] == "stopped"
    assert events[-1]["details"]["reconnects"] >= 1
    assert emotions(mark)[-1]["label"] == "happy"
    status = listener.lines("STATUS=")
    assert any("lost" in s for s in status) and any("is back" in s for s in status)
    listener.wait_for(lambda: "STOPPING=1" in listener.lines(), 5, "STOPPING=1")
    assert listener.lines("WATCHDOG=1") and listener.lines()[-1] == "STOPPING=1"


def test_a_watchdog_kill_leaves_every_threads_stack_in_the_journal(
    tiny_model: Path, tmp_path: Path, listener: NotifyListener
) -> None:
    """systemd ends a stalled service with SIGABRT; the unit's PYTHONFAULTHANDLER=1 makes that
    print where each thread was stuck, which is what one needs to read in the journal."""
    unit = (REPO / "systemd/moodstream.service").read_text()
    assert "PYTHONFAULTHANDLER=1" in unit
    env = dict(os.environ, NOTIFY_SOCKET=str(listener.path), WATCHDOG_USEC="30000000", PYTHONFAULTHANDLER="1")
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "run",
            "--source",
            "demo",
            "--model",
            str(tiny_model),
            "--hop",
            "0.5",
            "--no-server",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        listener.wait_for(lambda: len(listener.lines("WATCHDOG=1")) >= 2, 60, "watchdog pings")
        assert "READY=1" in listener.lines()
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGABRT  # systemd sees the kill; Restart=on-failure applies
    assert "Fatal Python error: Aborted" in err
    assert "streamer/commands/run.py" in err  # the main thread's stack, down in the run command
