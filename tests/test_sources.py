"""Sources: files (as fast as possible or paced), raw s16le on stdin at any rate, the demo music,
and sounddevice inputs found by name and resampled to 16 kHz (through a sounddevice test double)."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from streamer.audio import sources
from streamer.audio.decode import load_audio
from streamer.audio.demo import MOODS, DemoMusic
from streamer.audio.sources import (
    DemoSource,
    DeviceNotFound,
    DeviceSource,
    FileSource,
    NoInputDevice,
    SourceError,
    StdinSource,
    build_source,
    resolve_device,
)
from streamer.audio.synth import music
from streamer.commands import devices
from streamer.config import ConfigError, SourceSettings, parse_source_spec
from tests.fakesd import FakeSoundDevice


async def read_all(source: sources.Source, limit: int = 10_000) -> list[np.ndarray]:
    await source.open()
    chunks = []
    try:
        while len(chunks) < limit and (chunk := await source.read()) is not None:
            chunks.append(chunk)
    finally:
        source.close()
    return chunks


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("device", {"kind": "device"}),
        ("demo", {"kind": "demo"}),
        ("auto", {"kind": "auto"}),
        ("stdin", {"kind": "stdin"}),
        ("file:/tmp/a b.wav", {"kind": "file", "path": "/tmp/a b.wav"}),
        ("file:C:/x.flac", {"kind": "file", "path": "C:/x.flac"}),
    ],
)
def test_source_specs(spec: str, expected: dict[str, str]) -> None:
    assert parse_source_spec(spec) == expected


@pytest.mark.parametrize("spec", ["file:", "mic", "demo:x", ""])
def test_bad_source_specs_say_what_is_expected(spec: str) -> None:
    with pytest.raises(ConfigError, match="--source"):
        parse_source_spec(spec)


def test_file_source_delivers_the_whole_file_in_blocks(tmp_path: Path) -> None:
    audio = music(2.05).astype(np.float32)
    sf.write(tmp_path / "a.wav", audio, 16000, subtype="FLOAT")
    chunks = asyncio.run(read_all(FileSource(str(tmp_path / "a.wav"), 0.1, realtime=False)))
    assert [c.size for c in chunks] == [1600] * 20 + [800]
    np.testing.assert_array_equal(np.concatenate(chunks), audio)


@pytest.mark.parametrize("block_seconds", [0.25, 0.037])
def test_file_source_hears_a_file_exactly_as_the_trainer_does(tmp_path: Path, block_seconds: float) -> None:
    """Block by block (mixing, then soxr as a stream), yet bit for bit what load_audio decodes."""
    left = (0.5 * music(5.0, sr=44100)).astype(np.float32)
    sf.write(tmp_path / "a.flac", np.stack([left, 0.3 * left], axis=1), 44100)
    chunks = asyncio.run(read_all(FileSource(str(tmp_path / "a.flac"), block_seconds, realtime=False)))
    np.testing.assert_array_equal(np.concatenate(chunks), load_audio(tmp_path / "a.flac"))


def test_file_source_memory_stays_flat_however_long_the_file(tmp_path: Path) -> None:
    seconds = 60.0
    stereo = np.zeros((round(seconds * 44100), 2), np.float32)
    stereo[::100] = 0.5
    sf.write(tmp_path / "long.wav", stereo, 44100, subtype="PCM_16")
    decoded_bytes = stereo.nbytes  # what decoding it whole would hold (21 MB)
    del stereo

    async def count() -> int:
        source = FileSource(str(tmp_path / "long.wav"), 0.25, realtime=False)
        await source.open()
        total = 0
        while (chunk := await source.read()) is not None:
            total += chunk.size
        return total

    tracemalloc.start()
    try:
        total = asyncio.run(count())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == round(seconds * 16000)
    assert peak < decoded_bytes / 10, f"peak {peak} bytes while reading"


class FakeClock:
    """A clock that moves only when the pacer sleeps on it (or the test moves it): pacing is then
    checked by what the pacer asks for, not by timing a run on a busy machine."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(sources, "_Paced", functools.partial(sources._Paced, clock=fake, sleep=fake.sleep))
    return fake


def test_realtime_file_source_is_paced_like_a_live_input(tmp_path: Path, clock: FakeClock) -> None:
    sf.write(tmp_path / "a.wav", music(1.0), 16000)
    asyncio.run(read_all(FileSource(str(tmp_path / "a.wav"), 0.1, realtime=True)))
    # each block waits for its own duration; the read that finds the end waits for nothing
    assert clock.slept == pytest.approx([0.1] * 10 + [0.0])
    clock.slept.clear()
    asyncio.run(read_all(FileSource(str(tmp_path / "a.wav"), 0.1, realtime=False)))
    assert clock.slept == []


def test_pacing_catches_up_after_a_slow_consumer(clock: FakeClock) -> None:
    """Paced on the stream's start, not block by block: time lost elsewhere is not added on top."""
    pace = sources._Paced()

    async def run() -> None:
        await pace.wait(1600)  # 0.1 s
        clock.now += 0.35  # the consumer spent 0.35 s on something else
        for _ in range(4):
            await pace.wait(1600)

    asyncio.run(run())
    assert clock.slept == pytest.approx([0.1, 0.0, 0.0, 0.0, 0.05])
    assert clock.now == pytest.approx(1000.5)  # 0.5 s of audio took 0.5 s


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("missing.wav", None, "no such file"),
        ("text.wav", b"this is not audio", "not a readable audio file"),
        ("empty.wav", "empty", "contains no samples"),
    ],
)
def test_file_source_errors_are_clear(tmp_path: Path, name: str, content: bytes | str | None, reason: str) -> None:
    if content == "empty":
        sf.write(tmp_path / name, np.zeros(0), 16000)
    elif content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(SourceError, match=reason):
        asyncio.run(read_all(FileSource(str(tmp_path / name), 0.1, realtime=False)))


def test_a_channel_the_file_lacks_is_an_error_at_open(tmp_path: Path) -> None:
    sf.write(tmp_path / "mono.wav", music(0.5), 16000)
    with pytest.raises(SourceError, match="channel 1 requested but the file has 1"):
        asyncio.run(read_all(FileSource(str(tmp_path / "mono.wav"), 0.25, realtime=False, channel=1)))


def test_stdin_s16le_at_44k_stereo_is_resampled_to_16k_mono() -> None:
    """Bytes arrive in pieces that split frames; the stream resampler leaves no seams."""
    reference = (0.5 * music(3.0, sr=44100)).astype(np.float32)
    stereo = np.stack([reference, reference], axis=1)
    pcm = (stereo * 32767).astype("<i2").tobytes()
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        with os.fdopen(write_fd, "wb") as out:
            for start in range(0, len(pcm), 7777):  # odd sizes: frames split across writes
                out.write(pcm[start : start + 7777])

    threading.Thread(target=writer, daemon=True).start()
    settings = SourceSettings(kind="stdin", rate=44100, channels=2, block_seconds=0.05)
    with os.fdopen(read_fd, "rb") as stream:
        got = np.concatenate(asyncio.run(read_all(StdinSource(settings, stream))))
    expected = soxr.resample(reference, 44100, 16000, quality="HQ")
    assert abs(got.size - expected.size) <= 2
    n = min(got.size, expected.size)
    assert np.max(np.abs(got[:n] - expected[:n])) < 2e-3  # int16 quantisation, nothing more


def test_stdin_with_a_chosen_channel(tmp_path: Path) -> None:
    left = np.full(1600, 0.25, np.float32)
    frames = np.stack([left, -left], axis=1)
    path = tmp_path / "raw"
    path.write_bytes((frames * 32768).astype("<i2").tobytes())
    settings = SourceSettings(kind="stdin", rate=16000, channels=2, channel=1)
    with path.open("rb") as stream:
        got = np.concatenate(asyncio.run(read_all(StdinSource(settings, stream))))
    np.testing.assert_allclose(got, -0.25)


def test_demo_music_changes_mood_every_20_seconds() -> None:
    demo = DemoMusic(16000, mood_seconds=20.0)
    moods, levels = [], []
    for _ in range(3):
        part = np.concatenate([demo.read(16000) for _ in range(20)])
        moods.append(demo.mood.name)
        levels.append(20 * np.log10(np.sqrt(np.mean(part[16000:] ** 2))))
        assert np.max(np.abs(part)) <= 1.0
    assert moods == [m.name for m in MOODS]
    assert max(levels) - min(levels) > 10  # quiet ballad vs loud rock: the dashboard sees changes
    again = DemoMusic(16000, mood_seconds=20.0)
    np.testing.assert_array_equal(again.read(5000), DemoMusic(16000, mood_seconds=20.0).read(5000))


def test_demo_source_is_paced(clock: FakeClock) -> None:
    async def run() -> int:
        source = DemoSource(0.1)
        await source.open()
        return sum([(await source.read()).size for _ in range(5)])

    assert asyncio.run(run()) == 8000
    assert clock.slept == pytest.approx([0.1] * 5)


def test_devices_are_found_by_default_index_or_part_of_the_name() -> None:
    fake = FakeSoundDevice()
    assert resolve_device(fake, "")[0] == 1
    assert resolve_device(fake, "1")[0] == 1
    assert resolve_device(fake, "usb mic")[1]["name"].startswith("USB Mic")


def test_a_device_that_matches_nothing_lists_the_inputs_there_are() -> None:
    fake = FakeSoundDevice()
    with pytest.raises(DeviceNotFound) as info:
        resolve_device(fake, "Blue Yeti")
    message = str(info.value)
    assert "'Blue Yeti'" in message and "USB Mic, USB Audio (hw:1,0)" in message and "48000 Hz" in message
    assert "Built-in Output" not in message  # not an input
    with pytest.raises(DeviceNotFound):
        resolve_device(fake, "0")  # an output-only device is no input
    fake.present = False
    with pytest.raises(NoInputDevice, match="no audio input device"):
        resolve_device(fake, "")


def test_device_source_opens_at_a_supported_rate_and_resamples() -> None:
    fake = FakeSoundDevice(rates=(44100, 48000), speed=10.0)
    fake.overflow_every = 5

    async def run() -> tuple[DeviceSource, list[np.ndarray]]:
        source = DeviceSource(SourceSettings(device="USB Mic", block_seconds=0.1), fake)
        return source, await read_all(source, limit=20)

    source, chunks = asyncio.run(run())
    assert (source.rate, source.channels) == (48000, 2)  # 16 kHz not offered: 48 kHz, resampled
    audio = np.concatenate(chunks)
    assert abs(audio.size - 20 * 1600) < 200  # 20 blocks of 0.1 s (minus the resampler's delay)
    spectrum = np.abs(np.fft.rfft(audio[2000:18000]))
    assert np.fft.rfftfreq(16000, 1 / 16000)[np.argmax(spectrum)] == pytest.approx(440, abs=2)
    assert source.overflows >= 3  # counted from the callback's status flags
    assert fake.streams[0].closed


def test_auto_uses_the_device_when_there_is_one_else_the_demo(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeSoundDevice()
    assert isinstance(build_source(SourceSettings(kind="auto"), fake), DeviceSource)
    fake.present = False
    with caplog.at_level("WARNING"):
        source = build_source(SourceSettings(kind="auto"), fake)
    assert isinstance(source, DemoSource)
    assert "playing the built-in demo music instead" in caplog.text


def test_devices_command_lists_inputs_with_rates(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sources, "sounddevice_module", lambda: FakeSoundDevice(rates=(16000, 48000)))
    assert devices.main(None) == 0  # type: ignore[arg-type]  # `devices` takes no arguments
    out = capsys.readouterr().out
    assert "USB Mic" in out and "16000, 48000" in out and "Built-in Output" not in out


def test_a_hung_blocking_call_is_abandoned_without_holding_up_exit() -> None:
    release = threading.Event()

    async def run() -> int:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sources.in_daemon_thread(release.wait), 0.1)
        with pytest.raises(ValueError):
            await sources.in_daemon_thread(int, "not a number")
        return await sources.in_daemon_thread(sum, [1, 2])

    # asyncio.run would wait for a default-executor thread forever: run it where a hang shows
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(asyncio.run(run())), daemon=True)
    runner.start()
    runner.join(timeout=30)
    hung = runner.is_alive()
    release.set()
    assert not hung and result == [3]


def test_stdin_waits_for_a_slow_consumer_instead_of_dropping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "QUEUE_BLOCKS", 2)
    pcm = (np.arange(16000 * 3) % 1000).astype("<i2").tobytes()
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        with os.fdopen(write_fd, "wb") as out:
            out.write(pcm)  # all at once, far faster than the consumer

    threading.Thread(target=writer, daemon=True).start()

    async def slow() -> tuple[np.ndarray, int]:
        source = StdinSource(SourceSettings(kind="stdin"), os.fdopen(read_fd, "rb"))
        chunks = []
        while (chunk := await source.read()) is not None:
            chunks.append(chunk)
            await asyncio.sleep(0.005)
        return np.concatenate(chunks), source.overflows

    audio, overflows = asyncio.run(slow())
    assert overflows == 0
    np.testing.assert_array_equal(audio, (np.arange(16000 * 3) % 1000) / 32768.0)
