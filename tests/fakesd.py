"""A test double of the sounddevice module: devices that can vanish and come back, and input
streams that deliver audio from a thread (as PortAudio does), stall, or stop by themselves."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np


class FakePortAudioError(RuntimeError):
    pass


class FakeStream:
    def __init__(
        self,
        backend: FakeSoundDevice,
        device: int,
        samplerate: int,
        channels: int,
        blocksize: int,
        callback: Callable[..., None],
        finished_callback: Callable[[], None],
        **_: Any,
    ) -> None:
        self.backend = backend
        self.rate = samplerate
        self.channels = channels
        self.blocksize = blocksize
        self.callback = callback
        self.finished_callback = finished_callback
        self.closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self.backend.fail_start:
            raise FakePortAudioError("Error starting stream: Device unavailable")
        self._thread.start()

    def _run(self) -> None:
        period = self.blocksize / self.rate / self.backend.speed
        while not self._stop.wait(period):
            mode = self.backend.mode
            if mode == "stall":
                continue
            if mode == "finish":  # PortAudio ended the stream on its own (device error)
                self.finished_callback()
                return
            block = self.backend.make_block(self.blocksize, self.rate, self.channels)
            overflow = self.backend.overflow_every and self.backend.blocks % self.backend.overflow_every == 0
            self.backend.blocks += 1
            self.callback(block, self.blocksize, None, SimpleNamespace(input_overflow=bool(overflow)))

    def abort(self, ignore_errors: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(2)

    def close(self, ignore_errors: bool = True) -> None:
        self.abort()
        self.closed = True


class FakeSoundDevice:
    """Stands in for the ``sounddevice`` module (only what streamer.audio.sources uses)."""

    def __init__(
        self, devices: list[dict[str, Any]] | None = None, rates: tuple[int, ...] = (44100, 48000), speed: float = 1.0
    ) -> None:
        self.devices = (
            devices
            if devices is not None
            else [
                {"name": "Built-in Output", "max_input_channels": 0, "default_samplerate": 48000.0},
                {"name": "USB Mic, USB Audio (hw:1,0)", "max_input_channels": 2, "default_samplerate": 48000.0},
            ]
        )
        self.rates = rates
        self.speed = speed  # > 1 delivers audio faster than real time
        self.present = True  # False: the devices are unplugged (PortAudio lists none)
        self.fail_start = False
        self.fail_initialize = False
        self.mode = "play"  # play | stall | finish
        self.overflow_every = 0
        self.blocks = 0
        self.streams: list[FakeStream] = []
        self.initialisations = 0
        self.default = SimpleNamespace(device=[1, 0])
        self._phase = 0
        self.signal: Callable[[np.ndarray], np.ndarray] = lambda t: 0.3 * np.sin(2 * np.pi * 440 * t)
        self.silent = False  # deliver exact zeros (a dead device that keeps its clock)

    def make_block(self, n: int, rate: int, channels: int) -> np.ndarray:
        t = (self._phase + np.arange(n)) / rate
        self._phase += n
        mono = np.zeros(n) if self.silent else self.signal(t)
        return np.repeat(mono[:, None], channels, axis=1).astype(np.float32)

    def query_devices(self) -> list[dict[str, Any]]:
        return list(self.devices) if self.present else []

    def check_input_settings(self, device: int, samplerate: int, channels: int, dtype: str) -> None:
        if samplerate not in self.rates:
            raise FakePortAudioError("Invalid sample rate")

    def InputStream(self, **kwargs: Any) -> FakeStream:
        if not self.present:
            raise FakePortAudioError("Error opening InputStream: Invalid device")
        stream = FakeStream(self, **kwargs)
        self.streams.append(stream)
        return stream

    def _terminate(self) -> None:
        pass

    def _initialize(self) -> None:
        if self.fail_initialize:
            raise FakePortAudioError("Error initializing PortAudio: Unanticipated host error")
        self.initialisations += 1
