"""A private PulseAudio server with a virtual device, for real-capture tests.

A null sink ``virt`` (s16le, 16 kHz, mono by default) whose monitor is the default source: what
``paplay -d virt`` plays is what a recorder of the ``pulse`` PortAudio device hears. The server
lives in a private runtime dir (mode 0700) and is never the system's. ``restart()`` keeps the same
socket path, so a client can find it again (fault tests stop and restart it mid-run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests import syspkgs

TOOLS = ("pulseaudio", "pactl", "paplay")


class PulseUnavailable(RuntimeError):
    """PulseAudio is not installed or cannot start here; the message says why."""


class PulseServer:
    def __init__(self, root: Path, rate: int = 16000, channels: int = 1) -> None:
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise PulseUnavailable(f"not installed: {', '.join(missing)} (Debian: pulseaudio pulseaudio-utils)")
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # short and private: a unix socket path must fit in 108 bytes; mkdtemp makes it 0700
        self.runtime = Path(tempfile.mkdtemp(prefix="pa-"))
        self.script = root / "default.pa"
        self.script.write_text(
            "load-module module-native-protocol-unix\n"
            f"load-module module-null-sink sink_name=virt format=s16le rate={rate} channels={channels}\n"
            "set-default-sink virt\n"
            "set-default-source virt.monitor\n"
        )
        self.log = root / "pulseaudio.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients (pactl, paplay, the daemon) to reach this server and no other."""
        env = dict(os.environ)
        env.update(
            XDG_RUNTIME_DIR=str(self.runtime),
            HOME=str(self.root),
            PULSE_SERVER=f"unix:{self.runtime / 'pulse' / 'native'}",
        )
        env.pop("PULSE_COOKIE", None)
        return env

    def start(self, timeout: float = 10.0) -> None:
        # -n: no system default.pa; --system=false and --disallow-exit let it run as root in CI
        command = [
            "pulseaudio",
            "-n",
            "-F",
            str(self.script),
            "--daemonize=no",
            "--system=false",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--disallow-module-loading=false",
            f"--log-target=file:{self.log}",
        ]
        self.process = subprocess.Popen(
            command, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.close()
                raise PulseUnavailable(f"pulseaudio exited with {code}: {self._log_tail()}")
            if self.pactl("info", check=False).returncode == 0:
                return
            time.sleep(0.1)
        self.close()
        raise PulseUnavailable(f"pulseaudio did not answer within {timeout:g} s: {self._log_tail()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def close(self) -> None:
        """Stop the server and remove its runtime dir."""
        self.stop()
        shutil.rmtree(self.runtime, ignore_errors=True)

    def restart(self, pause_s: float = 0.0) -> None:
        self.stop()
        time.sleep(pause_s)
        self.start()

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10, check=check)

    def play(self, wav: Path) -> subprocess.Popen[bytes]:
        """Play a file into the virtual sink in real time (returns at once; wait() on the result)."""
        return subprocess.Popen(
            ["paplay", "-d", "virt", str(wav)], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no log)"


@pytest.fixture
def pulse(tmp_path: Path):
    """A running private PulseAudio server; skips (saying why) where PulseAudio cannot start or
    PortAudio cannot capture from it."""
    missing = syspkgs.pulse_capture()
    if missing:
        pytest.skip(missing)
    try:
        server = PulseServer(tmp_path / "pulse")
        server.start()
    except PulseUnavailable as exc:
        pytest.skip(f"PulseAudio cannot start here: {exc}")
    try:
        yield server
    finally:
        server.close()
