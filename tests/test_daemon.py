"""`moodstream run` as a user runs it: a subprocess printing JSON lines, stopped by signals, and
refusing bad configuration with a message that names the key."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from streamer import cli
from streamer.audio.sources import FileSource
from streamer.audio.synth import mood_audio
from streamer.config import ModelSettings, ServerSettings, Settings, SourceSettings, block_seconds_for, load
from streamer.core.events import to_dict
from streamer.daemon import Daemon
from streamer.model.runner import ModelRunner

pytestmark = pytest.mark.slow  # subprocesses load the model; the tiny model trains once
ROOT = Path(__file__).resolve().parent.parent


def moodstream(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", *args],
        cwd=kwargs.pop("cwd", ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def lines_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("daemon") / "clip.wav"
    audio = np.concatenate([mood_audio("happy", 5.0), mood_audio("sad", 4.5, seed=2)])
    sf.write(path, audio, 16000)
    return path


def test_jsonl_on_stdout_has_one_event_per_hop(tiny_model: Path, clip: Path) -> None:
    proc = moodstream("--source", f"file:{clip}", "--model", str(tiny_model), "--jsonl", "-", "--no-server")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = lines_of(out)  # stdout is nothing but JSON lines; logs go to stderr
    emotion = [e for e in events if e["type"] == "emotion"]
    assert len(emotion) == 9  # 9.5 s of audio, 1 s hops
    assert [e["seq"] for e in emotion] == list(range(9))
    assert emotion[0]["state"] == "warming_up" and emotion[-1]["state"] in ("emotion", "uncertain")
    assert set(emotion[-1]["raw"]) == {"angry", "happy", "sad"}
    assert emotion[3]["label"] == "happy"
    kinds = [e["kind"] for e in events if e["type"] == "status"]
    assert kinds == ["source_connected", "source_ended", "stopped"]
    assert "Traceback" not in err


def test_sigterm_closes_the_stream_and_flushes_pending_events(tiny_model: Path, clip: Path, tmp_path: Path) -> None:
    out_path = tmp_path / "events.jsonl"
    proc = moodstream(
        "--source",
        f"file:{clip}",
        "--realtime",
        "--model",
        str(tiny_model),
        "--hop",
        "0.5",
        "--jsonl",
        str(out_path),
        "--no-server",
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if out_path.exists() and out_path.read_text().count('"emotion"') >= 4:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    events = lines_of(out_path.read_text())
    emotion = [e for e in events if e["type"] == "emotion"]
    assert 4 <= len(emotion) < 19  # stopped before the end of the 9.5 s clip
    assert [e["seq"] for e in emotion] == list(range(len(emotion)))  # nothing lost on the way out
    assert events[-1]["kind"] == "stopped"
    assert events[-1]["details"]["hops"] == len(emotion)
    assert "source_ended" not in [e.get("kind") for e in events]


def test_sigint_stops_the_demo_source(tiny_model: Path) -> None:
    proc = moodstream("--source", "demo", "--model", str(tiny_model), "--hop", "0.5", "--jsonl", "-", "--no-server")
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["kind"] == "source_connected" and first["details"]["source_kind"] == "demo"
    while json.loads(proc.stdout.readline()).get("seq", -1) < 4:
        pass
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert lines_of(out)[-1]["kind"] == "stopped"


def test_auto_without_an_input_device_falls_back_to_the_demo_and_says_so(tiny_model: Path) -> None:
    env_probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sounddevice as sd; print(any(d['max_input_channels'] > 0 for d in sd.query_devices()))",
        ],
        capture_output=True,
        text=True,
    )
    if env_probe.stdout.strip() == "True":
        pytest.skip("this machine has an audio input device; auto would use it")
    proc = moodstream("--source", "auto", "--model", str(tiny_model), "--jsonl", "-", "--no-server")
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert first["details"]["source_kind"] == "demo"
    assert "playing the built-in demo music instead" in err


def test_nothing_is_written_per_hop_without_jsonl(tiny_model: Path, clip: Path, tmp_path: Path) -> None:
    proc = moodstream("--source", f"file:{clip}", "--model", str(tiny_model), "--no-server", cwd=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "" and list(tmp_path.iterdir()) == []
    assert err.count("\n") < 10  # a few log lines, not one per hop


@pytest.mark.parametrize(
    ("toml", "flags", "named"),
    [
        ("[source]\nbogus = 1\n", [], "source.bogus"),
        ('[model]\nhop_seconds = "fast"\n', [], "model.hop_seconds"),
        ("[liveness]\nstall_seconds = 0\n", [], "liveness.stall_seconds"),
        ("[nonsense]\n", [], "[nonsense]"),
        ("", ["--hop", "-1"], "model.hop_seconds"),
        ("", ["--switch-margin", "1.5"], "smoothing.switch_margin"),
        ("", ["--min-confidence", "1.5"], "smoothing.min_confidence"),
        ("[history]\nflush_seconds = 0\n", [], "history.flush_seconds"),
        ("[history]\nretention_days = -1\n", [], "history.retention_days"),
        ("", ["--source", "cassette"], "--source"),
    ],
)
def test_config_errors_name_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, flags: list[str], named: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    assert cli.main(["run", "--config", str(config), *flags]) == 2  # before anything starts
    out, err = capsys.readouterr()
    assert named in err and "configuration error" in err and out == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "file:/nonexistent/x.wav"], "no such file"),
        (["--model", "/nonexistent/model.tflite"], "model.tflite"),
    ],
)
def test_bad_inputs_fail_with_a_message(tiny_model: Path, args: list[str], message: str) -> None:
    base = ["--model", str(tiny_model), "--no-server", "--source", "demo"]
    proc = moodstream(*base, *args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode in (1, 2)
    assert message in err and "Traceback" not in err


def test_describe_reports_model_source_state_and_hides_the_token(tiny_model: Path, clip: Path) -> None:
    settings = Settings(
        source=SourceSettings(kind="file", path=str(clip)),
        model=ModelSettings(path=str(tiny_model)),
        server=ServerSettings(enabled=False, token="s3cret"),
    )
    daemon = Daemon(settings, ModelRunner(tiny_model), FileSource(str(clip), 0.1, False))
    assert daemon.describe()["state"] is None
    asyncio.run(daemon.run(asyncio.Event()))
    info = daemon.describe()
    assert info["model"] == {
        "name": "tiny-test",
        "architecture": "cnn",
        "labels": ["angry", "happy", "sad"],
        "window_seconds": 2.0,
        "hop_seconds": 1.0,
        "backend": "ai-edge-litert",
    }
    assert info["source"] == {"kind": "file", "name": str(clip), "state": "ended", "overflows": 0, "reconnects": 0}
    assert info["state"] == to_dict(daemon.bus.last_emotion) and info["state"]["seq"] == 8
    assert info["counters"]["hops"] == 9 and info["counters"]["hops_warming_up"] == 1
    assert "s3cret" not in json.dumps(info)
    assert info["config"]["model"]["hop_seconds"] == 1.0


def test_the_readme_config_example_is_the_defaults(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "config.toml"
    config.write_text(block)
    assert load(config) == Settings()


@pytest.mark.parametrize(
    "hop, longest, block",
    [
        (1.0, 0.25, 0.25),
        (0.5, 0.25, 0.25),
        (0.75, 0.25, 0.25),
        (2.0, 0.25, 0.25),
        (0.3, 0.25, 0.15),
        (0.1, 0.25, 0.1),
        (1.0, 0.1, 0.1),
        (1.0, 0.3, 0.25),
    ],
)
def test_capture_blocks_split_each_hop_evenly(hop: float, longest: float, block: float) -> None:
    settings = Settings(source=SourceSettings(block_seconds=longest), model=ModelSettings(hop_seconds=hop))
    assert block_seconds_for(settings) == pytest.approx(block)


def test_a_reader_that_goes_away_ends_the_run_quietly(tiny_model: Path) -> None:
    proc = moodstream("--source", "demo", "--model", str(tiny_model), "--hop", "0.25", "--jsonl", "-", "--no-server")
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "went away" in err and "Traceback" not in err and "BrokenPipe" not in err


def test_an_unwritable_jsonl_path_is_a_configuration_error(tiny_model: Path, clip: Path) -> None:
    proc = moodstream(
        "--source",
        f"file:{clip}",
        "--model",
        str(tiny_model),
        "--no-server",
        "--jsonl",
        "/nonexistent/dir/events.jsonl",
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "output.jsonl" in err and "No such file or directory" in err and "Traceback" not in err


def test_stdin_s16le_at_44k_stereo_through_the_command(tiny_model: Path, tmp_path: Path) -> None:
    mono = soxr.resample(mood_audio("happy", 4.0), 16000, 44100)
    raw = tmp_path / "audio.s16le"
    raw.write_bytes((np.stack([mono, mono], axis=1) * 32767).astype("<i2").tobytes())
    with raw.open("rb") as stdin:  # as `arecord -f S16_LE -r 44100 -c 2 | moodstream run ...`
        proc = moodstream(
            "--source",
            "stdin",
            "--rate",
            "44100",
            "--channels",
            "2",
            "--model",
            str(tiny_model),
            "--hop",
            "0.5",
            "--jsonl",
            "-",
            "--no-server",
            stdin=stdin,
        )
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    hops = [e for e in lines_of(out) if e["type"] == "emotion"]
    assert len(hops) == 8  # 4 s at 0.5 s per hop
    assert [e["label"] for e in hops[4:]] == ["happy"] * 4


def test_silence_and_sound_are_announced_as_status(tiny_model: Path, tmp_path: Path) -> None:
    path = tmp_path / "gap.wav"
    happy = mood_audio("happy", 4.0)
    sf.write(path, np.concatenate([happy, np.zeros(3 * 16000, np.float32), happy]), 16000)
    proc = moodstream("--source", f"file:{path}", "--model", str(tiny_model), "--jsonl", "-", "--no-server")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = lines_of(out)
    states = [e["state"] for e in events if e["type"] == "emotion"]
    assert "silence" in states and states[-1] == "emotion"
    kinds = [e["kind"] for e in events if e["type"] == "status"]
    assert kinds == ["source_connected", "silence", "sound", "source_ended", "stopped"]
    # each announcement comes right before the first hop of the new state
    first_silent = next(i for i, e in enumerate(events) if e.get("state") == "silence")
    assert events[first_silent - 1].get("kind") == "silence"
