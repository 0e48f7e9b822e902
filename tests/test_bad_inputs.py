"""Every bad input of issue 6 through the real `moodstream run` in a subprocess: a clear message
naming the problem, a non-zero exit, and never a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamer.features.mfcc import FeatureConfig
from streamer.model.metadata import read_metadata
from tests import syspkgs

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # each case starts a Python process that imports numpy and LiteRT


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ if env is None else env)
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "run", "--no-server", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def assert_clear_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Failed on purpose, said why in one line at the end, and did not crash."""
    err = result.stderr.strip()
    assert result.returncode in (1, 2), (result.returncode, err)
    assert "Traceback" not in err, err
    message = err.splitlines()[-1] if err else ""
    assert message.startswith("moodstream: "), err  # (log lines may come before it)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert result.stdout == ""
    return message


# models


@pytest.fixture
def model_bytes(tiny_model: Path) -> bytes:
    return tiny_model.read_bytes()


def with_metadata(model: bytes, tmp_path: Path, change) -> Path:
    """The tiny model with its metadata dict edited by ``change`` (the trainer's own embedder)."""
    from trainer.common.export import embed_metadata

    source = tmp_path / "source.tflite"
    source.write_bytes(model)
    meta = read_metadata(source).to_dict()
    change(meta)
    out = tmp_path / "edited.tflite"
    out.write_bytes(embed_metadata(model, json.dumps(meta).encode()))
    return out


def test_missing_model_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tflite"
    assert_clear_failure(run_cli("--source", "demo", "--model", str(missing)), str(missing), "not found")


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="truncated-half"),
        pytest.param(lambda b: b[:100], id="truncated-header"),
        pytest.param(lambda b: b"", id="empty"),
        pytest.param(lambda b: np.random.default_rng(0).bytes(len(b)), id="random-bytes"),
        pytest.param(lambda b: b[:8] + np.random.default_rng(1).bytes(len(b) - 8), id="corrupt-body"),
    ],
)
def test_corrupt_or_truncated_model(tmp_path: Path, model_bytes: bytes, damage) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(damage(model_bytes))
    assert_clear_failure(run_cli("--source", "demo", "--model", str(bad)), str(bad))


def test_model_path_is_a_directory(tmp_path: Path) -> None:
    assert_clear_failure(run_cli("--source", "demo", "--model", str(tmp_path)), str(tmp_path))


@pytest.mark.parametrize("field", ["labels", "feature_config", "mean", "window_frames"])
def test_model_metadata_missing_a_field(tmp_path: Path, model_bytes: bytes, field: str) -> None:
    edited = with_metadata(model_bytes, tmp_path, lambda m: m.pop(field))
    assert_clear_failure(run_cli("--source", "demo", "--model", str(edited)), field)


def test_model_metadata_of_another_sample_rate(tmp_path: Path, model_bytes: bytes) -> None:
    def resample_metadata(meta: dict) -> None:
        """What a 22.05 kHz model would carry: the same 25/10 ms frames at the other rate."""
        meta["feature_config"].update(sample_rate=22050, frame_length=551, hop_length=220, n_fft=1024)
        config = FeatureConfig.from_dict(meta["feature_config"])
        meta["window_frames"] = config.frames_for(meta["window_seconds"])

    edited = with_metadata(model_bytes, tmp_path, resample_metadata)
    assert_clear_failure(run_cli("--source", "demo", "--model", str(edited)), "22050", "16000")


# configuration


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('[source]\nkidn = "demo"\n', ("source.kidn", "known:")),
        ('[sauce]\nkind = "demo"\n', ("[sauce]", "known:")),
        ('[model]\nhop_seconds = "fast"\n', ("model.hop_seconds", "number")),
        ("[server]\nport = 8765.5\n", ("server.port", "integer")),
        ('[output]\ndashboard = "yes"\n', ("output.dashboard", "true or false")),
        ("[gate]\nsilence_dbfs = 6\n", ("gate.silence_dbfs",)),
        ("source = 3\n", ("[source]", "table")),
        ("server = 5\n", ("[server]", "table")),  # (run_cli's --no-server is a flag for that section)
        ('[source\nkind = "demo"\n', ("not valid TOML",)),
    ],
    ids=[
        "unknown-key",
        "unknown-section",
        "wrong-type-str",
        "wrong-type-float",
        "wrong-type-bool",
        "out-of-range",
        "not-a-table",
        "not-a-table-with-a-flag",
        "invalid-toml",
    ],
)
def test_bad_config(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    result = run_cli("--config", str(path))
    assert result.returncode == 2  # the unit does not restart a service that cannot start
    assert_clear_failure(result, "configuration error", *needles)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p, id="missing"),
        pytest.param(lambda p: (p.mkdir(), p)[1], id="a-directory"),
        pytest.param(lambda p: (p.write_bytes(b"\xff\xfe\x00not toml"), p)[1], id="not-utf8"),
    ],
)
def test_unreadable_config_file(tmp_path: Path, make) -> None:
    path = make(tmp_path / "config.toml")
    assert_clear_failure(run_cli("--config", str(path)), "configuration error", str(path))


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--hop", "-1"), "model.hop_seconds"),
        (("--hop", "0.00001"), "model.hop_seconds"),  # no feature frame per hop: it used to spin forever
        (("--hop", "31"), "model.hop_seconds"),  # longer than the 30 s ring
        (("--hop", "inf"), "model.hop_seconds"),
        (("--hop", "nan"), "model.hop_seconds"),
        (("--time-constant", "nan"), "smoothing.time_constant_s"),  # NaN probabilities otherwise
        (("--port", "70000"), "server.port"),
        (("--source", "bogus"), "bogus"),
        (("--stall-seconds", "0"), "liveness.stall_seconds"),
    ],
)
def test_bad_flag_values(flags: tuple[str, ...], needle: str) -> None:
    assert_clear_failure(run_cli(*flags), needle)


# sources


def test_source_file_that_does_not_exist(tmp_path: Path, tiny_model: Path) -> None:
    missing = tmp_path / "song.wav"
    assert_clear_failure(run_cli("--model", str(tiny_model), "--source", f"file:{missing}"), str(missing), "no such")


@pytest.mark.parametrize(
    "content",
    [b"these are not the samples you are looking for\n" * 50, b"", b"RIFF\x00\x00\x00\x00WAVEfmt "],
    ids=["text", "empty", "truncated-wav-header"],
)
def test_source_file_that_is_not_audio(tmp_path: Path, tiny_model: Path, content: bytes) -> None:
    bad = tmp_path / "song.wav"
    bad.write_bytes(content)
    assert_clear_failure(run_cli("--model", str(tiny_model), "--source", f"file:{bad}"), str(bad), "audio")


def test_source_file_that_is_a_directory(tmp_path: Path, tiny_model: Path) -> None:
    assert_clear_failure(
        run_cli("--model", str(tiny_model), "--source", f"file:{tmp_path}"),
        str(tmp_path),
        "directory",
    )


def test_device_name_that_matches_nothing_lists_the_devices(pulse, tiny_model: Path) -> None:
    result = run_cli(
        "--model",
        str(tiny_model),
        "--source",
        "device",
        "--device",
        "no-such-microphone",
        env=pulse.env,
    )
    message = assert_clear_failure(result, "no-such-microphone")
    assert result.returncode == 1  # systemd retries it: the microphone may be plugged in later
    assert "'pulse'" in message  # the devices there are, by name, so the user can pick one


def test_device_when_there_is_no_input_at_all(tmp_path: Path, tiny_model: Path) -> None:
    """No PulseAudio and no sound card: say so. (A machine with a card lists its inputs instead;
    one without PortAudio itself names the package to install.)"""
    cards = Path("/proc/asound/cards")
    has_card = cards.exists() and "no soundcards" not in cards.read_text()
    env = dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path), PULSE_SERVER=f"unix:{tmp_path}/none")
    result = run_cli("--model", str(tiny_model), "--source", "device", "--device", "zzz", env=env)
    if syspkgs.portaudio() is not None:
        expected = ("PortAudio is not available", "install libportaudio2", "try --source demo")
    elif has_card:
        expected = ("no input device matches 'zzz'",)
    else:
        expected = ("no audio input",)
    assert_clear_failure(result, *expected)
    assert result.returncode == 1  # systemd retries: a card (or the library) may come later


# outputs


def test_jsonl_output_that_cannot_be_written_ends_the_run_with_the_reason(tiny_model: Path) -> None:
    result = run_cli("--source", "demo", "--model", str(tiny_model), "--jsonl", "/dev/full")
    assert_clear_failure(result, "cannot write the JSON lines to /dev/full", "No space left")
    assert result.returncode == 1


def test_sigterm_while_stdin_is_silent_stops_cleanly(tiny_model: Path) -> None:
    """The stdin reader blocks in read(); a buffered one made Python abort at exit (SIGABRT)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", "--no-server", "--source", "stdin", "--model", str(tiny_model)],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stderr is not None
    while "listening to stdin" not in (line := proc.stderr.readline()):
        assert line, "the daemon ended before it was listening"
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 0, err
    assert "Fatal Python error" not in err and "Traceback" not in err


def _evaluate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", "evaluate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def test_evaluate_json_output_is_checked_first_and_a_failed_write_keeps_the_figures(
    tmp_path: Path, tiny_model: Path
) -> None:
    from tests.trainer_data import make_dataset

    data = make_dataset(tmp_path / "data", clips_per_label=1, seconds=3.0, metadata=False)
    early = _evaluate(str(data), "--model", str(tiny_model), "--json", str(tmp_path / "missing" / "e.json"))
    assert early.returncode == 2 and "cannot write there" in early.stderr and early.stdout == ""
    late = _evaluate(str(data), "--model", str(tiny_model), "--json", "/proc/e.json")
    if os.geteuid() == 0:  # root passes the folder check; the write itself fails, after the work
        assert late.returncode == 1 and "cannot write /proc/e.json" in late.stderr
        assert "macro-F1" in late.stdout  # the figures were printed all the same
    else:
        assert late.returncode == 2 and "cannot write there" in late.stderr
    (tmp_path / "full").mkdir()
    ok = _evaluate(str(data), "--model", str(tiny_model), "--json", str(tmp_path / "full" / "e.json"))
    assert ok.returncode == 0 and "macro-F1" in ok.stdout
    assert json.loads((tmp_path / "full" / "e.json").read_text())["n_clips"] == 3


def test_ctrl_c_during_start_up_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Before a command installs its own signal handling (imports, the model load), Ctrl-C
    arrives as KeyboardInterrupt wherever the main thread is: raised here from the loading step."""
    from streamer import cli

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.run, "main", interrupted)
    assert cli.main(["run"]) == 130
    assert capsys.readouterr().err == "moodstream: interrupted\n"
