"""Real capture: PortAudio (through sounddevice) records a private PulseAudio server's virtual
device while paplay feeds it a WAV; the daemon's events must hear that WAV. Skipped, with the
reason, only where PulseAudio cannot start."""

from __future__ import annotations

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

from streamer.audio.synth import mood_audio
from streamer.core.pipeline import level_of
from tests.pulse import PulseServer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def command(server: PulseServer, *args: str) -> subprocess.Popen[str]:
    env = dict(server.env, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_event(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"the daemon ended: {proc.stderr.read() if proc.stderr else ''}"
    return json.loads(line)


def test_daemon_hears_what_pulseaudio_plays(pulse: PulseServer, tiny_model: Path, tmp_path: Path) -> None:
    audio = mood_audio("happy", 6.0)
    wav = tmp_path / "happy.wav"
    sf.write(wav, audio, 16000, subtype="PCM_16")
    proc = command(
        pulse, "run", "--device", "pulse", "--model", str(tiny_model), "--hop", "0.5", "--jsonl", "-", "--no-server"
    )
    try:
        first = read_event(proc)
        assert first["kind"] == "source_connected" and first["details"]["source"] == "pulse"
        # the idle monitor delivers digital silence: the gate says so, no emotion is claimed
        while (event := read_event(proc))["type"] != "emotion":
            pass
        assert event["state"] in ("warming_up", "silence")
        player = pulse.play(wav)
        events = []
        t0 = time.monotonic()
        while player.poll() is None:
            events.append(read_event(proc))
            assert time.monotonic() - t0 < 30, "paplay never finished"
        done = time.monotonic()
        while time.monotonic() - done < 2.0:  # and some silence after it
            events.append(read_event(proc))
        assert player.wait() == 0, player.stderr.read() if player.stderr else ""
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    events += [json.loads(line) for line in out.splitlines()]
    hops = [e for e in events if e["type"] == "emotion"]
    loud = [e for e in hops if e["level"]["rms_dbfs"] > -60]
    # 6 s of music in 0.5 s hops; hops straddling its start and end may be partly silent
    assert 10 <= len(loud) <= 14
    heard = [e for e in loud if e["state"] == "emotion"]
    assert len(heard) >= 7  # the 2 s window fills after 4 hops of music
    assert all(e["label"] == "happy" for e in heard)
    assert np.median([e["raw"]["happy"] for e in heard]) > 0.8
    expected_db = level_of(audio).rms_dbfs
    assert np.median([e["level"]["rms_dbfs"] for e in loud]) == pytest.approx(expected_db, abs=1.0)
    assert hops[-2]["state"] == "silence"  # the music is over: silence again, no claim
    assert [e["seq"] for e in hops] == list(range(hops[0]["seq"], hops[0]["seq"] + len(hops)))


def test_a_device_name_that_matches_nothing_lists_the_devices(pulse: PulseServer, tiny_model: Path) -> None:
    proc = command(pulse, "run", "--device", "Blue Yeti", "--model", str(tiny_model), "--no-server")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1  # retryable: the device may be plugged in later
    assert "no input device matches 'Blue Yeti'" in err and "'pulse'" in err and "Traceback" not in err


def test_devices_command_lists_the_pulse_device_and_its_rates(pulse: PulseServer) -> None:
    proc = command(pulse, "devices")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    line = next(line for line in out.splitlines() if " pulse " in f" {line} ")
    assert "16000" in line and "48000" in line


def test_pulse_helper_env_is_private(pulse: PulseServer) -> None:
    runtime = Path(pulse.env["XDG_RUNTIME_DIR"])
    assert runtime.stat().st_mode & 0o777 == 0o700
    assert runtime != Path(os.environ.get("XDG_RUNTIME_DIR", "/nonexistent"))
    assert "virt.monitor" in pulse.pactl("get-default-source").stdout
