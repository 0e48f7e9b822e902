"""The README walked through top to bottom: every command line of its ```sh blocks is run here, as
written, or named below with the reason it cannot run here and the test that covers it instead. A
new command in the README fails this test until it is one or the other.

What "as written" allows, and nothing else: commands run from .venv/bin (the README's `source
.venv/bin/activate`), in a scratch folder holding the files the README names (song.flac, DATA_DIR,
day.png...); every command that reads settings also gets `--config FILE`, whose [server] port is a
free one (8765 may be the service's), whose [source] kind is the demo (no sound card here) and
which keeps a history; host names that do not exist here (homeassistant.local, pi.local, arecord's
sound card) become this machine's broker, daemon and a generator of the same audio format."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf

from streamer.audio.synth import mood_audio
from tests.broker import Broker, needs_mosquitto

pytestmark = [pytest.mark.slow, needs_mosquitto]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN = "T"  # the README's MOODSTREAM_TOKEN=T
TAKES_CONFIG = ("run", "watch", "mark", "history", "evaluate", "mqtt-forget")
ELSEWHERE = {  # command (its start) -> why not here, and what covers it
    "make test": "is what runs this test",
    "moodstream-train DATA_DIR": "trains for minutes on labelled music; tests/test_trainer_e2e.py trains on made audio",
    "moodstream evaluate DATA_DIR --model runs/mine": "needs the model that moodstream-train writes (above)",
    "make models": "needs the 4Q data set and hours; tests/test_families.py runs the loop with a toy family",
    "python examples/lighting.py --wled": "needs a WLED light; tests/test_server_examples.py drives a stand-in",
}


def readme_commands() -> list[str]:
    """Every command line of the README's ```sh blocks, comments stripped."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Walk:
    """The scratch folder, its config and the environment the README's commands run in."""

    def __init__(self, folder: Path, broker: Broker) -> None:
        self.folder, self.broker = folder, broker
        self.port = free_port()
        self.config = folder / "config.toml"
        self.config.write_text(
            f'[source]\nkind = "demo"\n[server]\nport = {self.port}\ntoken = "{TOKEN}"\n'
            f'[history]\npath = "{folder / "history.sqlite"}"\nflush_seconds = 1.0\n'
        )
        self.config.chmod(0o640)
        sf.write(folder / "song.flac", mood_audio("happy", 6.0), 16000)
        for label in ("angry", "happy", "sad"):
            (folder / "DATA_DIR" / label).mkdir(parents=True)
            for seed in range(2):
                sf.write(folder / "DATA_DIR" / label / f"{seed}.wav", mood_audio(label, 8.0, seed=seed), 16000)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("MOODSTREAM_", "NOTIFY_SOCKET"))}
        self.env.update(PATH=f"{BIN}:{os.environ['PATH']}", PYTHONPATH=str(ROOT))

    def command(self, line: str) -> str:
        line = line.replace("homeassistant.local", f"127.0.0.1:{self.broker.port}")
        line = line.replace("ws://pi.local:8765", f"ws://127.0.0.1:{self.port}")
        line = line.replace("arecord -f S16_LE -r 44100 -c 2", f"{sys.executable} {ROOT}/tests/s16le_stereo.py 44100 4")
        words = line.split()
        at = next((i for i, w in enumerate(words) if w == "moodstream"), None)
        if at is not None and len(words) > at + 1 and words[at + 1] in TAKES_CONFIG:
            line += f" --config {self.config}"
        return line

    def run(self, line: str, seconds: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run a README line; ``seconds``: it runs until stopped, so stop it (SIGINT) after that long."""
        command = self.command(line)
        proc = subprocess.Popen(
            ["bash", "-c", command], cwd=self.folder, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=seconds if seconds is not None else 300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, to the whole pipeline
            out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, f"{command}\n{err}"
        return subprocess.CompletedProcess(command, proc.returncode, out, err)


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    broker.start()
    try:
        yield Walk(tmp_path, broker)
    finally:
        broker.stop()


def check(walk: Walk, line: str) -> None:
    """Run one README command and check it did what the README says."""
    if line == "make run":
        result = walk.run(f"make -C {ROOT} run RUN_ARGS='--port {free_port()}'", seconds=25)
        assert "listening: open http://127.0.0.1:" in result.stderr, result.stderr
        if "playing the built-in demo music instead" in result.stderr:  # no input here: the demo, explained
            assert "demo: moodstream plays its own synthesised music" in result.stderr
        return
    if line.startswith("source "):
        assert (BIN / "activate").is_file() and (BIN / "moodstream").is_file()  # what it puts on PATH
        return
    if line == "moodstream devices":
        result = walk.run(line)
        assert result.returncode in (0, 1) and (result.stdout + result.stderr).strip()
        return
    if line.startswith("moodstream run --source file:song.flac --jsonl -"):
        result = walk.run(line)
        events = [json.loads(x) for x in result.stdout.splitlines()]
        assert result.returncode == 0 and sum(e["type"] == "emotion" for e in events) == 6, result.stderr
        assert "open http" not in result.stderr  # a run of moments opens no server
        return
    if line.startswith(("moodstream run", "arecord")):
        result = walk.run(line, seconds=6)
        assert result.returncode == 0, result.stderr
        if "--mqtt" not in line:
            assert f"open http://127.0.0.1:{walk.port}/" in result.stderr or "--no-server" in line, result.stderr
        if "--mqtt" in line:
            assert f"connected to MQTT broker mqtt://127.0.0.1:{walk.broker.port}" in result.stderr, result.stderr
        if "--model 4class" in line:
            assert "labels=angry,happy,sad,calm" in result.stderr
        return
    if line in ("moodstream models", "moodstream --version"):
        result = walk.run(line)
        assert result.returncode == 0 and result.stdout.strip()
        assert "no test figures" not in result.stdout
        return
    if line.startswith(("moodstream watch", "MOODSTREAM_TOKEN=T moodstream watch")):
        result = walk.run(line, seconds=4)
        assert ": connected" in result.stdout, result.stdout + result.stderr
        return
    if line.startswith("moodstream mark"):
        result = walk.run(line)
        assert result.returncode == 0 and result.stdout.startswith("marked: session 12"), result.stderr
        return
    if line.startswith("moodstream history"):
        result = walk.run(line)
        assert result.returncode == 0, result.stderr
        for name in ("session.csv", "day.png"):
            if name in line:
                assert (walk.folder / name).stat().st_size > 0
        if "--session" in line or "--since" in line:
            assert re.search(r"\d+ hops from", result.stdout), result.stdout
        return
    if line.startswith("moodstream mqtt-forget"):
        result = walk.run(line)
        assert result.returncode == 0 and "cleared homeassistant/sensor/" in result.stdout, result.stderr
        return
    if line.startswith("moodstream evaluate DATA_DIR --chain room"):
        result = walk.run(line)
        assert result.returncode == 0 and "through chain room" in result.stdout, result.stderr
        assert json.loads((walk.folder / "room.json").read_text())["n_clips"] == 6
        return
    raise AssertionError(f"the README's command {line!r} is neither run nor named in ELSEWHERE")


class Daemon:
    """The running daemon that watch, mark and history talk to: the README's own `moodstream run
    --source demo`, with the walk's config."""

    def __init__(self, walk: Walk) -> None:
        self.walk = walk
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        if self.proc is not None:
            return
        self.proc = subprocess.Popen(
            ["bash", "-c", self.walk.command("moodstream run --source demo")], cwd=self.walk.folder,
            env=self.walk.env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        while "listening: open" not in (log := self.proc.stderr.readline()):
            assert log, "the daemon ended before it listened"

    def stop(self) -> None:
        if self.proc is None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0 and "Traceback" not in err, err
        self.proc = None


def test_every_readme_command_runs_here_or_is_named_with_what_covers_it(walk: Walk) -> None:
    lines = readme_commands()
    assert len(lines) > 25
    talks_to_the_daemon = ("moodstream watch ws", "moodstream watch --", "MOODSTREAM_TOKEN", "moodstream mark",
                           "moodstream history")  # fmt: skip
    daemon = Daemon(walk)
    ran = []
    try:
        for line in lines:
            if any(line.startswith(skip) for skip in ELSEWHERE):
                continue
            if line == "moodstream watch" or line.startswith(talks_to_the_daemon):
                daemon.start()
            else:
                daemon.stop()  # its port is the config's: the next `moodstream run` needs it
            check(walk, line)
            if line.startswith("moodstream mark") and line.endswith('start"'):
                time.sleep(3)  # a few hops inside the session before its end mark
            if line.startswith("moodstream mark") and line.endswith('end"'):
                time.sleep(2)  # the history's flush (1 s in the config)
            ran.append(line)
    finally:
        daemon.stop()
    skipped = [line for line in lines if line not in ran]
    assert skipped and all(any(line.startswith(k) for k in ELSEWHERE) for line in skipped), skipped
