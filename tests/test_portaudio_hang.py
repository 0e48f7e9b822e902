"""A call into PortAudio that hangs (its sound server frozen): abandoned after a timeout, never
overlapped by another call, retried while it hangs, and PortAudioWedged (exit, for a fresh
process) once it has hung for PORTAUDIO_WEDGED_S. The fake backend's re-initialisation hangs
until released, as sounddevice's ``_terminate`` did in issue 17."""

from __future__ import annotations

import asyncio
import threading
import time
from types import ModuleType
from typing import cast

import pytest

from streamer.audio import sources
from streamer.audio.sources import DeviceSource, PortAudioWedged, SourceError
from streamer.config import SourceSettings
from tests.fakesd import FakeSoundDevice


class HangingSoundDevice(FakeSoundDevice):
    def __init__(self) -> None:
        super().__init__(speed=20.0)
        self.hang = threading.Event()
        self.release = threading.Event()

    def _terminate(self) -> None:
        if self.hang.is_set():
            self.hang.clear()
            self.release.wait(30)


def test_a_hung_portaudio_call_is_abandoned_retried_and_then_wedged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "PORTAUDIO_OPEN_TIMEOUT_S", 0.3)
    monkeypatch.setattr(sources, "PORTAUDIO_WEDGED_S", 1.0)
    fake = HangingSoundDevice()
    source = DeviceSource(SourceSettings(device="USB"), cast(ModuleType, fake))

    async def scenario() -> None:
        await source.open()
        source.close()
        fake.hang.set()  # the next open re-initialises PortAudio: that call hangs
        t0 = time.monotonic()
        with pytest.raises(SourceError, match=r"took over 0\.3 s"):
            await source.open()
        assert time.monotonic() - t0 < 2.0
        streams = len(fake.streams)
        with pytest.raises(SourceError, match="has not returned from opening the input"):
            await source.open()  # refused at once: no second call into a PortAudio that hangs
        assert len(fake.streams) == streams
        await asyncio.sleep(1.0)
        with pytest.raises(PortAudioWedged, match="fresh process"):
            await source.open()
        fake.release.set()  # the server is back: the abandoned call returns...
        deadline = time.monotonic() + 5
        while sources.portaudio_stuck() is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert sources.portaudio_stuck() is None
        await source.open()  # ...and the input opens again
        assert all(s.closed for s in fake.streams[:-1])  # the late stream was closed by its own call
        assert not fake.streams[-1].closed
        source.close()

    asyncio.run(scenario())
