"""`moodstream evaluate DATA_DIR --stream`: what a lamp sees. Labelled clips are played back to back
as one stream (a seeded shuffle: mood changes and same-mood song changes both occur), optionally each
through a simulated capture chain, into the daemon itself: a file source, the pipeline, the temporal
model and the event bus of `moodstream run` (:class:`~streamer.daemon.Daemon`), nothing re-implemented.
Every hop's shown state is then scored against the song playing when it ended (streamer.evaluation.lamp)."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile

from streamer.audio.chain import apply_chain, clip_seed
from streamer.audio.decode import AudioError, load_audio
from streamer.audio.sources import FileSource
from streamer.config import Settings, block_seconds_for
from streamer.core.events import EmotionEvent
from streamer.core.pipeline import Pipeline
from streamer.daemon import Daemon
from streamer.evaluation.labelled import audio_files, label_folders
from streamer.evaluation.lamp import SETTLE_S, Hop, Song, intervals, song_records, summarise
from streamer.model.runner import ModelRunner

T = TypeVar("T")


def playlist(files: Sequence[T], seed: int) -> list[T]:
    """A seeded shuffle: as a shuffled playlist, it changes mood at most song changes and keeps it
    at some."""
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in order]


def prepare(
    files: Sequence[tuple[Path, str]], rate: int, folder: Path, chain: str | None = None, chain_seed: int = 0
) -> list[tuple[Path, str, str]]:
    """Each clip decoded once at ``rate`` (and through its own draw of ``chain``: the seed `moodstream
    evaluate --chain` gives that clip) into a 16-bit WAV in ``folder``, so that several streams of the
    same clips pay for decoding and the chain once: (WAV, label, the clip's path). A file that cannot
    be decoded is left out."""
    prepared = []
    for n, (path, label) in enumerate(files):
        try:
            audio = load_audio(path, rate)
        except AudioError:
            continue
        if chain is not None:
            audio = apply_chain(chain, audio, rate, clip_seed(chain_seed, path.name))
        wav = folder / f"{n:05d}.wav"
        soundfile.write(wav, np.clip(audio, -1.0, 32767 / 32768), rate, subtype="PCM_16")
        prepared.append((wav, label, str(path)))
    return prepared


def render(songs: Sequence[tuple[Path, str, str]], rate: int, out: Path, gap_s: float = 0.0) -> list[Song]:
    """Write prepared songs back to back (``gap_s`` of digital silence between them) as one 16-bit WAV
    at ``rate``; returns where each song lies."""
    placed: list[Song] = []
    gap = np.zeros(round(gap_s * rate), dtype=np.int16)
    t = 0
    with soundfile.SoundFile(out, "w", samplerate=rate, channels=1, subtype="PCM_16") as wav:
        for path, label, name in songs:
            audio = soundfile.read(path, dtype="int16")[0]
            if placed and gap.size:
                wav.write(gap)
                t += gap.size
            wav.write(audio)
            placed.append(Song(name, label, t / rate, (t + audio.size) / rate))
            t += audio.size
    return placed


async def _daemon_events(wav: Path, runner: Any, settings: Settings) -> list[EmotionEvent]:
    """`moodstream run --source file:WAV` without its server: every emotion event it publishes."""
    source = FileSource(str(wav), block_seconds_for(settings), realtime=False)
    daemon = Daemon(settings, runner, source)
    events = daemon.bus.subscribe(maxsize=10**7)  # the whole run: nothing may be dropped
    await daemon.run(asyncio.Event())
    return [e async for e in events if isinstance(e, EmotionEvent)]


def _hop(e: EmotionEvent, summary: tuple[float, ...] = ()) -> Hop:
    label = e.label if e.state == "emotion" else None
    return Hop(e.stream_time, label or e.state, label, tuple(e.raw.values()), e.level.rms_dbfs, e.novelty, summary)


def daemon_hops(wav: Path, runner: Any, settings: Settings) -> list[Hop]:
    quiet = dataclasses.replace(settings, server=dataclasses.replace(settings.server, enabled=False))
    return [_hop(e) for e in asyncio.run(_daemon_events(wav, runner, quiet))]


def pipeline_hops(wav: Path, runner: Any, settings: Settings) -> list[Hop]:
    """The hops of the daemon's pipeline on a file, each with the summary its change detector heard:
    what a study needs to replay other settings of the mood filter (a test holds these hops equal to
    :func:`daemon_hops`)."""
    pipeline = Pipeline(runner, settings)
    audio = load_audio(wav, runner.metadata.feature_config.sample_rate)
    hops = []
    for start in range(0, audio.size, pipeline.hop_samples):
        for e in pipeline.process(audio[start : start + pipeline.hop_samples]):
            summary = pipeline.summary
            hops.append(_hop(e, () if summary is None else tuple(map(float, summary))))
    return hops


def labelled_files(data_dir: Path, labels: Sequence[str]) -> list[tuple[Path, str]]:
    """Every audio file of the labels the model knows (other label folders are not played)."""
    return [
        (path, label) for label in label_folders(data_dir) if label in labels for path in audio_files(data_dir / label)
    ]


def evaluate_stream(
    data_dir: Path,
    runner: ModelRunner,
    settings: Settings,
    chain: str | None = None,
    chain_seed: int = 0,
    streams: int = 1,
    gap_s: float = 0.0,
    settle_s: float = SETTLE_S,
    keep_hops: bool = False,
    player: Callable[[Path, Any, Settings], list[Hop]] = daemon_hops,
) -> dict[str, Any]:
    """``streams`` seeded shuffles of the folder, each through the daemon (or ``player``: a study
    plays them through :func:`pipeline_hops` to keep what the change detector heard); figures over
    all songs."""
    files = labelled_files(data_dir, runner.labels)
    records: list[dict[str, Any]] = []
    kept = []
    rate = runner.metadata.feature_config.sample_rate
    with tempfile.TemporaryDirectory(prefix="moodstream-stream-") as tmp:
        clips = prepare(files, rate, Path(tmp), chain, chain_seed)
        for seed in range(streams if clips else 0):
            wav = Path(tmp) / f"stream-{seed}.wav"
            songs = render(playlist(clips, seed), rate, wav, gap_s)
            hops = player(wav, runner, settings)
            wav.unlink()
            records += song_records(songs, hops, settle_s)
            if keep_hops:
                kept.append({"seed": seed, "songs": [dataclasses.asdict(s) for s in songs], "hops": hops_json(hops)})
    return {
        "labels": list(runner.labels),
        "model": {"name": runner.name, "path": str(runner.path), "window_seconds": runner.metadata.window_seconds},
        "data_dir": str(data_dir),
        "chain": {"name": chain or "none", "seed": chain_seed if chain else None},
        "hop_seconds": settings.model.hop_seconds,
        "streams": streams,
        "songs": len(records),
        "gap_s": gap_s,
        "settle_s": settle_s,
        "smoothing": dataclasses.asdict(settings.smoothing),
        **summarise(records),
        "intervals": intervals(records),
        "records": records,
        **({"hops": kept} if keep_hops else {}),
    }


def hops_from_json(data: dict[str, list[Any]]) -> list[Hop]:
    """Inverse of :func:`hops_json`."""
    states = ("uncertain", "silence", "warming_up")
    columns = zip(
        data["time_s"], data["shown"], data["raw"], data["rms_dbfs"], data["novelty"], data["summary"], strict=True
    )
    return [
        Hop(t, shown, None if shown in states else shown, tuple(raw), rms, n, tuple(x))
        for t, shown, raw, rms, n, x in columns
    ]


def hops_json(hops: Sequence[Hop]) -> dict[str, list[Any]]:
    """Hops column by column (compact in JSON): what a study replays its temporal models on."""
    return {
        "time_s": [h.time_s for h in hops],
        "shown": [h.shown for h in hops],
        "raw": [list(h.raw) for h in hops],
        "rms_dbfs": [h.rms_dbfs for h in hops],
        "novelty": [h.novelty for h in hops],
        "summary": [list(h.summary) for h in hops],
    }
