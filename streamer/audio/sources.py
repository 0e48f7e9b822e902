"""Where audio comes from: a sounddevice input, a file, raw s16le on stdin, or the demo music.

Every source yields float32 mono chunks at the feature rate (16 kHz) from an async ``read()``;
``None`` means the stream ended (a file or stdin ran out). Live inputs (``live = True``) can be lost
and reopened; the daemon's liveness loop does that, sources only report it (:class:`SourceLost`).

Audio threads (the PortAudio callback, the stdin reader) only copy data into the event loop's
queue; mono mixing and resampling happen in ``read()`` on the loop, never in the callback. A
device cannot wait, so its blocks are dropped (and counted) when the loop falls behind; stdin
can, so its reader waits instead (``cat long.raw | moodstream run --source stdin`` loses nothing).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from types import ModuleType
from typing import Any, BinaryIO, TypeVar

import numpy as np
import soundfile
import soxr

from streamer.audio.decode import AudioError, open_audio, read_block, to_mono
from streamer.audio.demo import DemoMusic
from streamer.config import SourceSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

RATE = 16000  # what the features (and so every model) expect
PROBE_RATES = (16000, 48000, 44100, 32000, 22050, 8000)
MAX_STDIN_BLOCK_BYTES = 4 * 2**20  # one stdin read at most (an absurd --rate asks for more)
QUEUE_BLOCKS = 32  # blocks between the audio thread and the loop: 32 s of audio at the default 1 s block
# PortAudio blocks while its sound server is frozen (SIGSTOP, a hung PulseAudio); every call into it
# runs in a daemon thread and is abandoned after this long (opening lists and probes devices: slow)
PORTAUDIO_OPEN_TIMEOUT_S = 10.0
PORTAUDIO_WEDGED_S = 60.0  # a call stuck this long will not return: only a fresh process helps


class SourceError(RuntimeError):
    """A source that cannot be opened or used; the message says why and what to do."""


class NoInputDevice(SourceError):
    """PortAudio is missing or lists no input device at all."""


class DeviceNotFound(SourceError):
    """A device name or index that matches no input device (the message lists those there are)."""


class SourceLost(SourceError):
    """A live input stopped delivering (unplugged, server gone); the daemon reopens it."""


class PortAudioWedged(RuntimeError):
    """A call into PortAudio has not returned for PORTAUDIO_WEDGED_S: this process cannot use
    PortAudio again, so the daemon exits 1 and systemd (Restart=on-failure) starts a fresh one."""


class Source:
    """Base of all sources: ``open()``, ``await read()``, ``close()``."""

    kind = ""
    live = False  # True: may be lost and must then be reopened (liveness applies)

    def __init__(self, name: str) -> None:
        self.name = name
        self.overflows = 0  # blocks the audio thread reported lost (input overflow or full queue)

    async def open(self) -> None:
        """Acquire the input; raises SourceError with a clear reason."""

    async def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the input; safe to call twice or after a failed open."""


async def in_daemon_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a call that may hang (PortAudio while its server is gone) off the loop, in a daemon
    thread: unlike the default executor, an abandoned call can never hold up the process's exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]  # no error: result is fn's T

    def work() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting task, not lost in the thread
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=getattr(fn, "__name__", "call"), daemon=True).start()
    return await future


_in_flight: dict[object, tuple[str, float]] = {}  # PortAudio calls not yet returned: what, since
_in_flight_lock = threading.Lock()


@contextlib.contextmanager
def _portaudio(what: str) -> Iterator[None]:
    """Mark a call into PortAudio as in flight, so that no other starts while it has not returned
    (PortAudio is not re-entrant: terminating it while an abandoned close still runs hangs)."""
    key = object()
    with _in_flight_lock:
        _in_flight[key] = (what, time.monotonic())
    try:
        yield
    finally:
        with _in_flight_lock:
            _in_flight.pop(key, None)


def portaudio_stuck() -> tuple[str, float] | None:
    """The oldest PortAudio call still in flight and its age in seconds, or None."""
    with _in_flight_lock:
        calls = sorted(_in_flight.values(), key=lambda call: call[1])
    if not calls:
        return None
    what, since = calls[0]
    return what, time.monotonic() - since


class _Paced:
    """Sleeps so that ``n`` samples take ``n / RATE`` seconds of wall time, like a live input
    (``clock`` and ``sleep`` are parameters so that tests can run it on a clock of their own)."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None
        self._sent = 0

    async def wait(self, n: int) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now
        self._sent += n
        await self._sleep(max(0.0, self._start + self._sent / RATE - now))


class FileSource(Source):
    """Any audio file soundfile reads, decoded block by block (memory stays flat however long the
    file) into 16 kHz mono by the same mixing and soxr resampling as streamer.audio.decode, so a file
    sounds as it does to the trainer."""

    kind = "file"

    def __init__(self, path: str, block_seconds: float, realtime: bool, channel: int = -1) -> None:
        super().__init__(path)
        self.block_seconds = block_seconds
        self.realtime = realtime
        self.channel = channel
        self._audio: soundfile.SoundFile | None = None
        self._mixer: _Mixer | None = None
        self._frames = 0  # input frames per block, at the file's own rate
        self._pace = _Paced()

    async def open(self) -> None:
        self.close()
        try:
            audio = await asyncio.to_thread(open_audio, self.name)
        except AudioError as exc:
            raise SourceError(str(exc)) from None
        if self.channel >= audio.channels:
            audio.close()
            raise SourceError(f"{self.name}: channel {self.channel} requested but the file has {audio.channels}")
        self._audio, self._mixer = audio, _Mixer(audio.samplerate, self.channel)
        self._frames = max(1, round(self.block_seconds * audio.samplerate))

    async def read(self) -> np.ndarray | None:
        if self._audio is None or self._mixer is None:
            return None
        try:
            block = read_block(self._audio, self._frames)
        except AudioError as exc:
            raise SourceError(str(exc)) from None
        last = block.shape[0] < self._frames
        chunk = self._mixer(block, last=last)
        if last:
            self.close()
        if not np.all(np.isfinite(chunk)):
            raise SourceError(f"{self.name}: decoded to NaN or infinite samples")
        if self.realtime:
            await self._pace.wait(chunk.size)
        else:
            await asyncio.sleep(0)  # let sinks drain between blocks of a fast run
        return chunk if chunk.size or not last else None

    def close(self) -> None:
        if self._audio is not None:
            self._audio.close()
            self._audio = None


class DemoSource(Source):
    """The project's own generated music, paced in real time."""

    kind = "demo"

    def __init__(self, block_seconds: float) -> None:
        super().__init__("built-in demo music")
        self.block = max(1, round(block_seconds * RATE))
        self.music = DemoMusic(RATE)
        self._pace = _Paced()

    async def read(self) -> np.ndarray | None:
        chunk = self.music.read(self.block)
        await self._pace.wait(chunk.size)
        return chunk


class _Mixer:
    """Interleaved blocks at any rate and channel count -> 16 kHz mono, streaming (no seams)."""

    def __init__(self, rate: int, channel: int) -> None:
        self.channel = channel
        self._resampler = None if rate == RATE else soxr.ResampleStream(rate, RATE, 1, "float32")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        try:
            mono = np.ascontiguousarray(to_mono(block, self.channel), dtype=np.float32)
        except AudioError as exc:
            raise SourceError(str(exc)) from None
        if self._resampler is None:
            return mono
        return self._resampler.resample_chunk(mono, last=last)


class _Handoff:
    """Blocks from a foreign thread into an asyncio queue: a real-time thread never waits (when
    the loop falls behind, the oldest block is dropped and counted); a reader of a pipe waits."""

    def __init__(self, source: Source, loop: asyncio.AbstractEventLoop) -> None:
        self._source = source
        self._loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_BLOCKS)

    def put_threadsafe(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are shutting down
            self._loop.call_soon_threadsafe(self._put, item)

    def put_waiting(self, item: Any) -> None:
        """Backpressure: block the calling thread until the queue has room."""
        with contextlib.suppress(RuntimeError, concurrent.futures.CancelledError):  # the loop is gone
            asyncio.run_coroutine_threadsafe(self.queue.put(item), self._loop).result()

    def _put(self, item: Any) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self._source.overflows += 1
        self.queue.put_nowait(item)


_END = object()  # the thread saw the end of its input
_STOPPED = object()  # PortAudio finished the stream without being asked to


class _Failed:
    """A reader thread's exception, handed to ``read()`` so that it is reported, not lost."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class StdinSource(Source):
    """Raw signed 16-bit little-endian PCM on stdin (``arecord -f S16_LE ... | moodstream run``)."""

    kind = "stdin"

    def __init__(self, settings: SourceSettings, stream: BinaryIO | None = None) -> None:
        super().__init__(f"stdin (s16le, {settings.rate} Hz, {settings.channels} ch)")
        self.settings = settings
        # Unbuffered: a thread blocked in a buffered read holds its lock, and at exit Python then
        # aborts ("could not acquire lock for <stdin> at interpreter shutdown").
        if stream is None:  # kept open for the source's life, as stdin itself is (closefd=False)
            stream = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)  # noqa: SIM115 (see above)
        self._stream = stream
        self._frame = 2 * settings.channels
        frames = max(1, round(settings.block_seconds * settings.rate))
        self._block = min(frames, max(1, MAX_STDIN_BLOCK_BYTES // self._frame)) * self._frame
        self._handoff: _Handoff | None = None
        self._mixer = _Mixer(settings.rate, settings.channel)
        self._ended = False

    async def read(self) -> np.ndarray | None:
        if self._ended:
            return None
        if self._handoff is None:
            self._handoff = _Handoff(self, asyncio.get_running_loop())
            # a daemon thread: a blocked read() on a pipe must never hold up the exit
            threading.Thread(target=self._reader, name="stdin-reader", daemon=True).start()
        item = await self._handoff.queue.get()
        if isinstance(item, _Failed):
            self._ended = True
            raise SourceError(f"{self.name}: reading failed: {item.error or type(item.error).__name__}")
        if item is _END:
            self._ended = True
            return self._mixer(np.zeros((0, self.settings.channels), np.float32), last=True)
        return self._mixer(item)

    def _reader(self) -> None:
        """The thread: any exception (a reset socket, a block too large to allocate) ends the
        stream with its reason, never the thread alone."""
        assert self._handoff is not None
        try:
            self._read_all()
        except BaseException as exc:  # reported through read(), see above
            self._handoff.put_waiting(_Failed(exc))

    def _read_all(self) -> None:
        assert self._handoff is not None
        rest = b""
        while True:
            data = self._read_block()
            if not data:
                self._handoff.put_waiting(_END)
                return
            data = rest + data
            usable = len(data) - len(data) % self._frame
            rest = data[usable:]
            pcm = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, self.settings.channels)
            self._handoff.put_waiting(pcm.astype(np.float32) / 32768.0)

    def _read_block(self) -> bytes:
        """One block, or what is left at the end: an unbuffered read returns what the pipe holds."""
        chunks, size = [], 0
        while size < self._block:
            data = self._stream.read(self._block - size)
            if not data:
                break
            chunks.append(data)
            size += len(data)
        return b"".join(chunks)


def sounddevice_module() -> ModuleType:
    """The sounddevice module; NoInputDevice when PortAudio itself is missing."""
    try:
        import sounddevice
    except OSError as exc:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise NoInputDevice(f"PortAudio is not available ({exc}); install libportaudio2") from None
    # its exit handler terminates PortAudio, which hangs for good while the sound server is frozen:
    # the process's exit releases the device anyway
    atexit.unregister(sounddevice._exit_handler)
    return sounddevice


def input_devices(backend: ModuleType) -> list[tuple[int, dict[str, Any]]]:
    return [(i, dict(d)) for i, d in enumerate(backend.query_devices()) if d["max_input_channels"] > 0]


def describe_inputs(devices: list[tuple[int, dict[str, Any]]]) -> str:
    return "; ".join(
        f"{i}: {d['name']!r} ({d['max_input_channels']} ch, {d['default_samplerate']:.0f} Hz)" for i, d in devices
    )


def resolve_device(backend: ModuleType, spec: str) -> tuple[int, dict[str, Any]]:
    """A device spec ("" = default input, an index, or a case-insensitive part of the name)."""
    devices = input_devices(backend)
    if not devices:
        raise NoInputDevice("PortAudio lists no audio input device")
    if spec == "":
        default = backend.default.device[0]
        for index, info in devices:
            if index == default:
                return index, info
        return devices[0]
    if spec.isdigit():
        matches = [(i, d) for i, d in devices if i == int(spec)]
    else:
        exact = [(i, d) for i, d in devices if d["name"] == spec]
        matches = exact or [(i, d) for i, d in devices if spec.lower() in d["name"].lower()]
    if not matches:
        raise DeviceNotFound(f"no input device matches {spec!r}; the input devices are: {describe_inputs(devices)}")
    return matches[0]


def supported_rates(backend: ModuleType, index: int, channels: int) -> list[int]:
    rates = []
    for rate in PROBE_RATES:
        try:
            backend.check_input_settings(device=index, samplerate=rate, channels=channels, dtype="float32")
        except Exception:  # PortAudioError or ValueError: this rate is not offered
            continue
        rates.append(rate)
    return rates


class DeviceSource(Source):
    """A sounddevice (PortAudio) input opened at a rate it supports and resampled to 16 kHz."""

    kind = "device"
    live = True

    def __init__(self, settings: SourceSettings, backend: ModuleType | None = None) -> None:
        super().__init__(settings.device or "default input")
        self.settings = settings
        self._backend = backend
        self._stream: Any = None
        self._handoff: _Handoff | None = None
        self._mixer: _Mixer | None = None
        self._found_name: str | None = None  # the device's full name once found: reopen by it
        self._opened_before = False
        self._closing = False
        self._attempt = 0  # which open() a late-returning, abandoned _open belongs to
        self.rate = 0
        self.channels = 0

    async def open(self) -> None:
        """Find and start the device off the loop, in a daemon thread abandoned after
        PORTAUDIO_OPEN_TIMEOUT_S (PortAudio blocks while its server is frozen); SourceError, and so
        another try later, while an earlier call into PortAudio has still not returned, and
        PortAudioWedged once that call is PORTAUDIO_WEDGED_S old."""
        stuck = portaudio_stuck()
        if stuck is not None:
            what, age = stuck
            if age >= PORTAUDIO_WEDGED_S:
                raise PortAudioWedged(
                    f"PortAudio has not returned from {what} for {age:.0f} s; "
                    "exiting so that a fresh process can open the input"
                )
            raise SourceError(f"PortAudio has not returned from {what} for {age:.0f} s: is the sound server frozen?")
        self._attempt += 1
        try:
            await asyncio.wait_for(
                in_daemon_thread(self._open, asyncio.get_running_loop(), self._attempt), PORTAUDIO_OPEN_TIMEOUT_S
            )
        except asyncio.CancelledError:  # stopping: the abandoned call closes what it opens
            self._attempt += 1
            raise
        except TimeoutError:
            self._attempt += 1  # the abandoned call closes what it opens, if it ever returns
            raise SourceError(
                f"opening input {self.name!r} took over {PORTAUDIO_OPEN_TIMEOUT_S:g} s: is the sound server frozen?"
            ) from None
        except SourceError:
            raise
        except Exception as exc:  # PortAudio itself failing (re-initialising, listing): retry later
            self.close()
            raise SourceError(f"cannot open input {self.name!r}: {exc}") from None

    def _open(self, loop: asyncio.AbstractEventLoop, attempt: int) -> None:
        with _portaudio("opening the input"):
            self._open_device(loop)
            if attempt != self._attempt:  # open() gave up on this call: release what it opened
                log.warning("input %r opened after open() gave up on it; closing it", self.name)
                self.close()

    def _open_device(self, loop: asyncio.AbstractEventLoop) -> None:
        backend = self._backend if self._backend is not None else sounddevice_module()
        # PortAudio lists devices once per initialisation, so look again by re-initialising it:
        # the way sounddevice's maintainer gives (spatialaudio/python-sounddevice#125; PortAudio
        # has no hot-plug API yet). Safe here: this source's stream is already closed.
        if self._opened_before:
            backend._terminate()
            backend._initialize()
        try:
            index, info = resolve_device(backend, self._found_name or self.settings.device)
        except DeviceNotFound:
            if not self._found_name:
                raise
            index, info = resolve_device(backend, self.settings.device)
        channel = self.settings.channel
        available = int(info["max_input_channels"])
        if channel >= available:
            raise SourceError(f"channel {channel} requested but {info['name']!r} has {available}")
        self.channels = channel + 1 if channel >= 0 else min(available, 2)
        rates = supported_rates(backend, index, self.channels)
        self.rate = rates[0] if rates else int(info["default_samplerate"])
        self._handoff = _Handoff(self, loop)
        self._mixer = _Mixer(self.rate, channel)
        self._closing = False
        try:
            self._stream = backend.InputStream(
                device=index,
                samplerate=self.rate,
                channels=self.channels,
                dtype="float32",
                blocksize=max(1, round(self.settings.block_seconds * self.rate)),
                callback=self._callback,
                finished_callback=self._finished,
            )
            self._stream.start()
        except Exception as exc:  # PortAudioError, or the device vanished between list and open
            self.close()
            raise SourceError(f"cannot open input {info['name']!r}: {exc}") from None
        self._opened_before = True
        self._found_name = info["name"]
        self.name = info["name"]
        log.info("input %r opened at %d Hz, %d channel(s)", self.name, self.rate, self.channels)

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's thread: copy and hand over, nothing else."""
        if status.input_overflow:
            self.overflows += 1
        assert self._handoff is not None
        self._handoff.put_threadsafe(indata.copy())

    def _finished(self) -> None:
        if not self._closing and self._handoff is not None:
            self._handoff.put_threadsafe(_STOPPED)

    async def read(self) -> np.ndarray | None:
        if self._handoff is None or self._mixer is None:
            raise SourceLost("the input is not open")
        item = await self._handoff.queue.get()
        if item is _STOPPED:
            raise SourceLost(f"the input stream of {self.name!r} stopped")
        return self._mixer(item)

    def close(self) -> None:
        self._closing = True
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                with _portaudio("closing the input"):
                    stream.abort(ignore_errors=True)
                    stream.close(ignore_errors=True)
            except Exception as exc:  # the device is gone already; nothing left to release
                log.debug("closing %r: %s", self.name, exc)


def build_source(settings: SourceSettings, backend: ModuleType | None = None) -> Source:
    """The source the settings ask for; ``auto`` = the default input, else the demo music."""
    if settings.kind == "file":
        return FileSource(settings.path, settings.block_seconds, settings.realtime, settings.channel)
    if settings.kind == "stdin":
        return StdinSource(settings)
    if settings.kind == "demo":
        return DemoSource(settings.block_seconds)
    if settings.kind == "auto":
        try:
            resolve_device(backend if backend is not None else sounddevice_module(), settings.device)
        except SourceError as exc:
            log.warning(
                "no usable audio input (%s): playing the built-in demo music instead. "
                "Connect a microphone, or choose --source device|file:PATH|stdin.",
                exc,
            )
            return DemoSource(settings.block_seconds)
    return DeviceSource(settings, backend)
