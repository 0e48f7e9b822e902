"""`moodstream run` as a process (issue 7.3): start-up time to ready, peak RSS, and the whole
daemon's CPU per second of audio when paced like a live input.

Ready is the daemon's own sd_notify ``READY=1`` (sent once the source and the model are up), read
from a NOTIFY_SOCKET this benchmark binds, exactly as systemd would see it. Peak RSS is the
child's VmHWM from /proc, polled every 20 ms until it exits (``ru_maxrss`` would include this
benchmark process's own memory, which the child held between fork and exec).
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import soundfile

from bench.common import CACHE, ROOT, Section, fmt, target
from bench.models import shipped_default
from streamer.audio.synth import music
from streamer.util.timing import stats

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DAEMON_CPU_TARGET = 0.5  # % of one core for the whole daemon, paced (issue 16.7; a Pi core is ~10x slower)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Daemon:
    """A running `moodstream run` child with its notify socket."""

    proc: subprocess.Popen
    notify: socket.socket
    started: float  # time.monotonic() just before the spawn
    peak_rss_mib: float | None = None  # VmHWM of the daemon's own memory, polled while it runs

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        """Never leave a daemon behind when a measurement fails half-way."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.notify.fileno() != -1:
            path = Path(self.notify.getsockname())
            self.notify.close()
            shutil.rmtree(path.parent, ignore_errors=True)

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from spawn to READY=1."""
        self.notify.settimeout(timeout)
        while True:
            try:
                data = self.notify.recv(4096)
            except TimeoutError:
                raise RuntimeError(f"no READY=1 within {timeout} s: {self.stderr_tail()}") from None
            if b"READY=1" in data.split(b"\n"):
                return time.monotonic() - self.started

    def cpu_seconds(self) -> float:
        """User + system CPU so far, from /proc (while it runs)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def poll_rss(self) -> None:
        """Read VmHWM (the peak resident set of the process's memory since exec) while it lives.

        Not ``ru_maxrss``: Linux carries the forked parent's resident set over exec into that."""
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mib = max(self.peak_rss_mib or 0.0, int(line.split()[1]) / 1024)
        except (OSError, ValueError):
            pass

    def finish(self, timeout: float = 120.0) -> tuple[int, resource.struct_rusage]:
        """Wait for the exit, polling the peak RSS; (status, that child's own rusage)."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll_rss()
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                return self.proc.returncode, usage
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("the daemon did not exit")
            time.sleep(0.02)

    def stderr_tail(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()[-2000:].decode(errors="replace")


def start(
    args: list[str], stdin: int | IO | None = subprocess.DEVNULL, stdout: int | None = subprocess.DEVNULL
) -> Daemon:
    """Spawn ``moodstream run ARGS`` with a notify socket of our own (binary pipes)."""
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="bench-notify-"))
    path = folder / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(path))
    env = dict(os.environ, NOTIFY_SOCKET=str(path), PYTHONUNBUFFERED="1")
    env.pop("WATCHDOG_USEC", None)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", *args],
        cwd=ROOT,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )
    return Daemon(proc, notify, started)


def _file(seconds: float, name: str) -> Path:
    path = CACHE / name
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, music(seconds, seed=11), 16000, subtype="PCM_16")
    return path


def run(quick: bool = False) -> Section:
    model = shipped_default()
    runs = 2 if quick else 5
    short = _file(3.0, "daemon-short.wav")
    base = ["--model", str(model.path), "--port", "0", "--log-level", "warning"]
    ready, first_event, rss = [], [], []
    for _ in range(runs):
        with start([*base, "--source", f"file:{short}", "--jsonl", "-"], stdout=subprocess.PIPE) as d:
            ready.append(d.wait_ready())
            stdout = d.proc.stdout
            assert stdout is not None  # stdout=PIPE
            for line in stdout:
                if b'"type":"emotion"' in line.replace(b" ", b""):
                    first_event.append(time.monotonic() - d.started)
                    break
            status, _ = d.finish()
            stdout.read()
            if status != 0:
                raise RuntimeError(f"moodstream run exited with {status}: {d.stderr_tail()}")
        if d.peak_rss_mib is not None:
            rss.append(d.peak_rss_mib)
    paced_s, settle_s, paced_runs = (6.0, 3.0, 1) if quick else (30.0, 12.0, 3)
    paced = _file(paced_s, "daemon-paced.wav")
    after_ready, steady, to_ready = [], [], []
    for _ in range(paced_runs):
        with start([*base, "--source", f"file:{paced}", "--realtime"]) as d:
            d.wait_ready()
            ready_at, cpu_at_ready = time.monotonic(), d.cpu_seconds()
            # Steady state: from settle_s after ready (the window full, first inference and lazy
            # initialisations done) to 2 s before the file ends (shutdown not included).
            time.sleep(settle_s)
            t0, c0 = time.monotonic(), d.cpu_seconds()
            time.sleep(max(0.0, ready_at + paced_s - 2.0 - time.monotonic()))
            t1, c1 = time.monotonic(), d.cpu_seconds()
            status, usage = d.finish(timeout=paced_s + 60)
            if status != 0:
                raise RuntimeError(f"moodstream run --realtime exited with {status}: {d.stderr_tail()}")
        if d.peak_rss_mib is None:
            raise RuntimeError("could not read the daemon's VmHWM while it ran")
        rss.append(d.peak_rss_mib)
        to_ready.append(cpu_at_ready)
        after_ready.append(100 * (usage.ru_utime + usage.ru_stime - cpu_at_ready) / paced_s)
        steady.append(100 * (c1 - c0) / (t1 - t0))
    data: dict[str, Any] = {
        "model": model.path.name,
        "shipped": model.shipped,
        "runs": runs,
        "ready_seconds": stats(ready),
        "first_event_seconds": stats(first_event),
        "peak_rss_mib": stats(rss),
        "paced": {
            "audio_seconds": paced_s,
            "runs": paced_runs,
            "settle_seconds": settle_s,
            "cpu_seconds_to_ready": stats(to_ready)["median"],
            "percent_after_ready": stats(after_ready),
            "percent_steady": stats(steady),
        },
    }
    md = (
        f"`moodstream run --model {model.path.name} --port 0` (WebSocket server on, as installed) on a file "
        f"source, {runs} runs of a 3 s file plus {paced_runs} runs paced in real time (`--realtime`, {paced_s:g} s, "
        "capture blocks of the default length). "
        "Ready = the daemon's sd_notify `READY=1` (source and model up) on a NOTIFY_SOCKET bound by the "
        "benchmark; first event = the first emotion event line on stdout (`--jsonl -`, a warming-up event "
        "counts); peak RSS = the daemon's VmHWM from /proc, polled every 20 ms while it runs; CPU from "
        "/proc/PID/stat (ticks of 10 ms, so a few tenths of a percent).\n\n"
        f"- start-up to ready: median **{fmt(data['ready_seconds']['median'])} s** "
        f"(range {fmt(data['ready_seconds']['min'])}-{fmt(data['ready_seconds']['max'])})\n"
        f"- start-up to first event: median {fmt(data['first_event_seconds']['median'])} s\n"
        f"- peak RSS: median **{fmt(data['peak_rss_mib']['median'])} MiB** "
        f"(max {fmt(data['peak_rss_mib']['max'])} MiB over the {len(rss)} runs read while alive)\n"
        f"- the whole daemon paced in real time (capture loop, pipeline, bus, server, asyncio), steady "
        f"state ({settle_s:g} s after ready to 2 s before the end): median "
        f"**{fmt(data['paced']['percent_steady']['median'])}% of one core** (range "
        f"{fmt(data['paced']['percent_steady']['min'])}-{fmt(data['paced']['percent_steady']['max'])}); "
        f"everything after ready, the first inference, lazy initialisation and shutdown included: "
        f"{fmt(data['paced']['percent_after_ready']['median'])}%; start-up itself took "
        f"{fmt(data['paced']['cpu_seconds_to_ready'])} CPU s."
    )
    targets = [
        target(
            "streaming CPU, the whole daemon process paced in real time, steady state (stricter reading)",
            data["paced"]["percent_steady"]["median"],
            DAEMON_CPU_TARGET,
            "% of one core",
        ),
        target("peak RSS of `moodstream run`", data["peak_rss_mib"]["max"], 100.0, "MiB"),
        target("start-up to ready", data["ready_seconds"]["median"], 2.0, "s"),
    ]
    return Section("daemon", "The daemon process: start-up, memory, CPU (issue 7.3)", data, md, targets)
