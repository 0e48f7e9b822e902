"""A real Mosquitto for the MQTT tests: on a free loopback port, with a config file the test writes
(anonymous, or a password file made by mosquitto_passwd), stopped (and restartable) by the test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
needs_mosquitto = pytest.mark.skipif(
    not Path(MOSQUITTO).exists(), reason="Debian's mosquitto is not installed (.ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(folder: Path, name: str) -> Path:
    """A self-signed certificate for 127.0.0.1 (``name``.pem, key ``name``.key), made by openssl."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert


class Broker:
    """``start()`` / ``stop()`` (again and again, on the same port); ``url`` for the sink."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.folder = folder
        self.port = free_port()
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        if tls:  # a self-signed certificate for 127.0.0.1, which is its own CA (self.ca_file)
            self.ca_file = self_signed(folder, "broker")
            lines += [f"certfile {self.ca_file}", f"keyfile {folder / 'broker.key'}"]
        if os.geteuid() == 0:  # mosquitto would switch to its own user, who cannot read the test's files
            lines.append("user root")
        if users:
            passwd = folder / "passwd"
            for i, (name, password) in enumerate(users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(["mosquitto_passwd", *create, "-b", str(passwd), name, password], check=True)
            os.chmod(passwd, 0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.folder / "mosquitto.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()[-500:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening in 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Recorder:
    """A real subscriber: every (topic, payload, retained) it receives, in order."""

    def __init__(self, broker: Broker, *topics: str, username: str = "", password: str = "") -> None:
        self.broker = broker
        self.topics = topics or ("#",)
        self.username, self.password = username, password
        self.messages: list[tuple[str, str, bool]] = []
        self.subscribed = asyncio.Event()

    def payloads(self, topic: str) -> list[str]:
        return [p for t, p, _ in self.messages if t == topic]

    async def run(self) -> None:
        import aiomqtt

        async with aiomqtt.Client(
            "127.0.0.1", self.broker.port, username=self.username or None, password=self.password or None
        ) as client:
            for topic in self.topics:
                await client.subscribe(topic)
            self.subscribed.set()
            async for message in client.messages:
                payload = message.payload.decode() if isinstance(message.payload, bytes) else str(message.payload)
                self.messages.append((str(message.topic), payload, bool(message.retain)))


@contextlib.asynccontextmanager
async def recording(broker: Broker, *topics: str) -> AsyncIterator[Recorder]:
    recorder = Recorder(broker, *topics)
    task = asyncio.create_task(recorder.run())
    waiter = asyncio.create_task(recorder.subscribed.wait())
    await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield recorder
    finally:
        task.cancel()
        await asyncio.gather(task, waiter, return_exceptions=True)


async def until(condition: Callable[[], object], seconds: float, what: str = "the condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:g} s waiting for {what}")
        await asyncio.sleep(0.05)
