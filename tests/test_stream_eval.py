"""`moodstream evaluate --stream`: the scoring on hand-made hops whose truth is known, and the whole
path on made audio through the daemon itself (its file source, pipeline, temporal model and bus)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer import cli
from streamer.audio.synth import mood_audio
from streamer.config import Settings, SmoothingSettings
from streamer.daemon import Daemon
from streamer.evaluation import lamp, stream
from streamer.evaluation.lamp import Hop, Song, song_records, summarise
from streamer.evaluation.replay import detect, replay
from streamer.model.runner import ModelRunner


def hops(shown: list[str], start: float = 1.0) -> list[Hop]:
    states = ("uncertain", "silence", "warming_up")
    return [Hop(start + i, s, None if s in states else s, (0.5, 0.5), -20.0, 0.0) for i, s in enumerate(shown)]


def test_a_perfect_stream_scores_perfectly() -> None:
    songs = [Song("a", "angry", 0.0, 20.0), Song("b", "happy", 20.0, 40.0), Song("c", "happy", 40.0, 60.0)]
    shown = ["angry"] * 20 + ["happy"] * 40
    figures = summarise(song_records(songs, hops(shown), settle_s=5.0))
    assert figures["accuracy"] == 1.0 and figures["uncertain"] == 0.0
    assert figures["changes_per_10min"] == 0.0 and figures["label_changes_per_10min"] == 0.0
    assert figures["latency_median_s"] == 1.0  # the first hop of the new song already shows it
    assert figures["missed_mood_changes"] == 0.0 and figures["false_change_share"] == 0.0


def test_the_scoring_counts_what_a_lamp_would_see() -> None:
    songs = [Song("a", "angry", 0.0, 20.0), Song("b", "happy", 20.0, 40.0), Song("c", "happy", 40.0, 60.0)]
    shown = (
        ["warming_up"] * 2
        + ["angry"] * 8
        + ["uncertain"]  # a flicker to uncertain and back within the song: two changes, no label change
        + ["angry"] * 9
        + ["angry"] * 4  # the new song keeps the old mood for 4 hops...
        + ["uncertain"]
        + ["happy"] * 15  # ...then shows its own: latency 6 s (hop ending at 26 s)
        + ["happy"] * 3
        + ["sad"] * 2  # a same-mood change where the label leaves the mood early
        + ["happy"] * 15
    )
    records = song_records(songs, hops(shown), settle_s=10.0)
    assert [r["extra_changes"] for r in records] == [2, 1, 2]  # song b: angry->uncertain->happy needs one
    assert [r["extra_label_changes"] for r in records] == [0, 0, 2]
    assert records[1]["latency_s"] == 6.0 and records[1]["mood_change"]
    assert records[2]["same_mood"] and records[2]["left_early"]
    assert records[0]["settled"] == 11 and records[0]["right"] == 10 and records[0]["uncertain"] == 1
    figures = summarise(records)
    assert figures["accuracy"] == pytest.approx(32 / 33)  # all but the uncertain settled hop of song a
    assert figures["uncertain"] == pytest.approx(1 / 33)
    assert figures["changes_per_10min"] == pytest.approx(600 * 5 / 60)
    assert figures["false_change_share"] == 1.0


def test_a_mood_never_shown_is_a_missed_change() -> None:
    songs = [Song("a", "angry", 0.0, 10.0), Song("b", "sad", 10.0, 20.0)]
    figures = summarise(song_records(songs, hops(["angry"] * 20), settle_s=5.0))
    assert figures["missed_mood_changes"] == 1.0 and figures["latency_median_s"] is None
    assert figures["accuracy"] == pytest.approx(0.5, abs=0.05)


def test_a_folder_with_no_song_the_model_knows_scores_nothing(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "calm").mkdir()  # a label the tiny model does not have
    sf.write(tmp_path / "calm" / "a.wav", mood_audio("sad", 3.0), 16000)
    result = stream.evaluate_stream(tmp_path, ModelRunner(tiny_model), Settings())
    assert result["songs"] == 0 and result["accuracy"] is None and result["intervals"] == {}


def test_intervals_resample_songs() -> None:
    songs = [Song(str(i), "angry", 10.0 * i, 10.0 * (i + 1)) for i in range(20)]
    shown = [("angry" if (t // 10) % 2 else "sad") for t in range(200)]
    records = song_records(songs, hops(shown, start=0.5), settle_s=0.0)
    low, high = lamp.intervals(records, n=200)["accuracy"]
    assert low < summarise(records)["accuracy"] < high


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("moods")
    for label in ("angry", "happy", "sad"):
        (root / label).mkdir()
        for seed in range(2):
            sf.write(root / label / f"{label}{seed}.wav", mood_audio(label, 10.0, seed=seed + 7), 16000)
    return root


@pytest.mark.slow
def test_the_stream_runs_through_the_daemon_itself(
    folder: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[Daemon] = []
    real_run = Daemon.run

    async def spy(self: Daemon, stop):  # type: ignore[no-untyped-def]
        ran.append(self)
        await real_run(self, stop)

    monkeypatch.setattr(Daemon, "run", spy)
    runner = ModelRunner(tiny_model)
    result = stream.evaluate_stream(folder, runner, Settings(), streams=2, settle_s=4.0, keep_hops=True)
    assert len(ran) == 2 and ran[0].source.kind == "file"  # `moodstream run --source file:...`, twice
    assert result["songs"] == 12 and result["streams"] == 2
    # the synthetic moods are easy: the shown mood is right on most settled hops, and the truth came
    # from where each song lay in the stream
    assert result["accuracy"] > 0.7
    songs = result["hops"][0]["songs"]
    assert [s["end_s"] - s["start_s"] for s in songs] == [10.0] * 6
    assert sorted(Path(s["file"]).name for s in songs) == sorted(p.name for p in folder.glob("*/*.wav"))


@pytest.mark.slow
def test_replaying_the_recorded_hops_gives_what_the_daemon_showed(folder: Path, tiny_model: Path) -> None:
    """What the study compares settings with (pipeline_hops, then replay) is the daemon's own path."""
    runner = ModelRunner(tiny_model)
    for smoothing in (
        SmoothingSettings(),
        SmoothingSettings(mood_seconds=5.0, evidence_weight=0.9, min_confidence=0.8),
    ):
        settings = Settings(smoothing=smoothing)
        daemon = stream.evaluate_stream(folder, runner, settings, gap_s=1.5, keep_hops=True)
        piped = stream.evaluate_stream(folder, runner, settings, gap_s=1.5, keep_hops=True, player=stream.pipeline_hops)
        assert piped["hops"][0]["hops"]["shown"] == daemon["hops"][0]["hops"]["shown"]
        assert piped["hops"][0]["hops"]["novelty"] == daemon["hops"][0]["hops"]["novelty"]
        recorded = stream.hops_from_json(piped["hops"][0]["hops"])
        assert any(h.shown == "silence" for h in recorded)  # the gaps: pauses that reset the filter
        meta = runner.metadata
        again = replay(recorded, runner.labels, smoothing, 1.0, meta.temperature)
        assert [h.shown for h in again] == [h.shown for h in recorded]
        assert [h.novelty for h in again] == [h.novelty for h in recorded]
        runs = detect(recorded, 1.0, smoothing.song_seconds)  # once, for many replays
        fast = replay(recorded, runner.labels, smoothing, 1.0, meta.temperature, runs=runs)
        assert [h.shown for h in fast] == [h.shown for h in recorded]


@pytest.mark.slow
def test_the_command_prints_the_figures_and_writes_the_json(
    folder: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "stream.json"
    argv = ["evaluate", str(folder), "--model", str(tiny_model), "--stream", "--settle", "4", "--json", str(out)]
    assert cli.main([*argv, "--mood-seconds", "30"]) == 0
    printed = capsys.readouterr().out
    assert "6 songs" in printed and "shown mood right" in printed and "to a new mood: median" in printed
    result = json.loads(out.read_text())
    assert result["smoothing"]["mood_seconds"] == 30.0 and "hops" not in result
    assert set(result["intervals"]) >= {"accuracy", "changes_per_10min"}
    assert cli.main([*argv, "--streams", "0"]) == 2
    assert "--streams 0: must be 1 to 100" in capsys.readouterr().err


def test_a_silent_gap_between_songs_is_digital_silence(tmp_path: Path) -> None:
    clips = []
    for i, label in enumerate(("angry", "sad")):
        wav = tmp_path / f"{i}.wav"
        sf.write(wav, np.full(1600, 0.1, dtype=np.float32), 16000, subtype="PCM_16")
        clips.append((wav, label, f"clip{i}"))
    songs = stream.render(clips, 16000, tmp_path / "s.wav", gap_s=0.5)
    assert [(s.start_s, s.end_s) for s in songs] == [(0.0, 0.1), (0.6, 0.7)]
    audio, _ = sf.read(tmp_path / "s.wav")
    assert np.all(audio[1600:9600] == 0) and audio.size == 11200
