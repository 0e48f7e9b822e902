"""`moodstream evaluate DATA_DIR --stream`: what a lamp sees. Labelled clips are played back to back
as one stream (a seeded shuffle: mood changes and same-mood song changes both occur), optionally each
through a simulated capture chain, into the daemon itself: a file source, the pipeline, the temporal
model and the event bus of `moodstream run` (:class:`~streamer.daemon.Daemon`), nothing re-implemented.
Every hop's shown state is then scored against the song playing when the hop ended:

- accuracy: hops whose shown label is the song's mood, over the hops after a song's first
  ``settle_s`` seconds (an "uncertain" hop counts as not right);
- uncertain: the share of those hops that claim no label;
- changes per 10 min: changes of what is shown (a label, or "uncertain") within songs beyond the
  one a new mood needs, as a lamp that follows every event would change; and of the claimed label
  alone (a lamp that keeps its colour while uncertain);
- latency: from a mood change to the first hop that shows the new mood (median and p90; a song that
  never shows it counts as missed);
- false changes: the share of same-mood song changes, after a correctly shown song, at which the
  shown label leaves that mood within the new song's first ``settle_s`` seconds.

Intervals resample the songs (95 %, percentile bootstrap)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import soundfile

from streamer.audio.chain import apply_chain, clip_seed
from streamer.audio.decode import AudioError, load_audio
from streamer.audio.sources import FileSource
from streamer.config import Settings, SmoothingSettings, block_seconds_for
from streamer.core.changepoint import ChangeDetector
from streamer.core.events import EmotionEvent
from streamer.core.pipeline import Pipeline
from streamer.core.temporal import MoodFilter
from streamer.daemon import Daemon
from streamer.evaluation.labelled import audio_files, label_folders
from streamer.model.runner import ModelRunner

T = TypeVar("T")
SETTLE_S = 12.0  # a song's first seconds, in which the shown mood may still be the previous song's
BOOTSTRAP = 1000


@dataclass(frozen=True)
class Song:
    """One clip's place in a stream (seconds of stream time)."""

    file: str
    label: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Hop:
    """What the daemon showed when a hop ended: a label, or "uncertain", "silence", "warming_up"."""

    time_s: float
    shown: str
    label: str | None
    raw: tuple[float, ...]
    rms_dbfs: float
    novelty: float  # the change detector's probability that a new song started at this hop
    summary: tuple[float, ...] = ()  # what the change detector heard, empty when silent (pipeline_hops keeps it)


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


def _extra_changes(before: str | None, shown: Sequence[str], mood: str) -> int:
    """Changes along ``before, *shown`` beyond the one that reaching ``mood`` needs."""
    seq = [x for x in (before, *shown) if x is not None]
    changes = sum(a != b for a, b in itertools.pairwise(seq))
    needed = int(bool(seq) and seq[0] != mood and mood in seq)
    return max(0, changes - needed)


def replay(
    hops: Sequence[Hop],
    labels: Sequence[str],
    smoothing: SmoothingSettings,
    hop_s: float,
    temperature: float = 1.0,
    runs: Sequence[np.ndarray | None] | None = None,
) -> list[Hop]:
    """The hops a daemon with other settings of the mood filter would have shown: the same model
    outputs and summaries (from :func:`pipeline_hops`) through :class:`~streamer.core.temporal.MoodFilter`
    as the pipeline drives it (a silent hop resets it). Studies compare settings this way without
    running the network again; a test holds it equal to the daemon (``temperature``: the model
    file's). ``runs``: the change detector's
    answers per hop (:func:`detect`), when a study replays many settings of the same song length."""
    mood = MoodFilter(smoothing, hop_s, len(labels), temperature)
    out = []
    for i, h in enumerate(hops):
        if not h.summary:  # silent: the pipeline reset the filter
            mood.reset()
            out.append(h)
            continue
        raw = np.asarray(h.raw) if h.raw else None
        if runs is None:
            _, index, novelty = mood.update(np.asarray(h.summary), raw)
        else:
            _, index, novelty = mood.follow(runs[i], raw)  # type: ignore[arg-type]
        label = labels[index] if index is not None and h.raw else None
        shown = "warming_up" if not h.raw else label or "uncertain"
        out.append(dataclasses.replace(h, shown=shown, label=label, novelty=round(novelty, 4)))
    return out


def detect(hops: Sequence[Hop], hop_s: float, song_seconds: float) -> list[np.ndarray | None]:
    """The change detector's answer (P(run length)) at every audible hop, as the pipeline drives it."""
    changes = ChangeDetector(hop_s, song_seconds)
    runs: list[np.ndarray | None] = []
    for h in hops:
        if not h.summary:
            changes.reset()
            runs.append(None)
        else:
            runs.append(changes.update(np.asarray(h.summary)))
    return runs


def song_records(songs: Sequence[Song], hops: Sequence[Hop], settle_s: float = SETTLE_S) -> list[dict[str, Any]]:
    """Per song: settled hops, right ones, uncertain ones, changes of what is shown (and of the claimed
    label alone) beyond the one its mood needs, latency to its mood (at a mood change) and whether the
    shown label left it early (at a same-mood change)."""
    records = []
    shown_before: str | None = None  # what was shown last, carried over song changes
    claimed_before: str | None = None  # the label claimed last
    k = 0
    for i, song in enumerate(songs):
        while k < len(hops) and hops[k].time_s <= song.start_s:
            shown_before, claimed_before = hops[k].shown, hops[k].label or claimed_before
            k += 1
        mine = []
        while k < len(hops) and hops[k].time_s <= song.end_s:
            mine.append(hops[k])
            k += 1
        settled = [h for h in mine if h.time_s - song.start_s >= settle_s]
        previous = songs[i - 1].label if i else None
        claims = [h.label for h in mine if h.label]
        early = [h.label for h in mine if h.label and h.time_s - song.start_s < settle_s]
        records.append(
            {
                "file": song.file,
                "label": song.label,
                "seconds": song.end_s - song.start_s,
                "settled": len(settled),
                "right": sum(h.label == song.label for h in settled),
                "uncertain": sum(h.shown == "uncertain" for h in settled),
                "extra_changes": _extra_changes(shown_before, [h.shown for h in mine], song.label),
                "extra_label_changes": _extra_changes(claimed_before, claims, song.label),
                "mood_change": previous is not None and previous != song.label,
                "latency_s": next((h.time_s - song.start_s for h in mine if h.label == song.label), None),
                # a same-mood change after a song that ended showing its mood: did the label leave it?
                "same_mood": previous == song.label and claimed_before == song.label,
                "left_early": any(label != song.label for label in early),
            }
        )
        if mine:
            shown_before = mine[-1].shown
        claimed_before = claims[-1] if claims else claimed_before
    return records


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The stream's figures from per-song records (used as is and on bootstrap resamples)."""
    settled = sum(r["settled"] for r in records)
    seconds = sum(r["seconds"] for r in records)
    changes = [r for r in records if r["mood_change"]]
    latencies = [r["latency_s"] for r in changes if r["latency_s"] is not None]
    same = [r for r in records if r["same_mood"]]
    return {
        "accuracy": sum(r["right"] for r in records) / settled if settled else None,
        "uncertain": sum(r["uncertain"] for r in records) / settled if settled else None,
        "changes_per_10min": 600.0 * sum(r["extra_changes"] for r in records) / seconds if seconds else None,
        "label_changes_per_10min": 600.0 * sum(r["extra_label_changes"] for r in records) / seconds
        if seconds
        else None,
        "latency_median_s": float(np.median(latencies)) if latencies else None,
        "latency_p90_s": float(np.percentile(latencies, 90)) if latencies else None,
        "missed_mood_changes": (len(changes) - len(latencies)) / len(changes) if changes else None,
        "false_change_share": sum(r["left_early"] for r in same) / len(same) if same else None,
    }


def intervals(records: Sequence[dict[str, Any]], seed: int = 0, n: int = BOOTSTRAP) -> dict[str, list[float]]:
    """95 % percentile intervals of every figure, the songs resampled with replacement."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n if records else 0):
        sample = [records[i] for i in rng.integers(0, len(records), len(records))]
        for key, value in summarise(sample).items():
            if value is not None:
                draws.setdefault(key, []).append(value)
    return {key: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for key, v in draws.items()}


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
