"""The broadcast from a real daemon (`moodstream run` in a subprocess, the tiny model, audio from a
file or stdin): real clients, the web page in Chromium and `watch` all see what it sends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamer.commands.watch import watch
from streamer.sinks import protocol
from streamer.sinks.dashboard import Dashboard
from tests.test_web_page import browser_page, label_shows
from tests.wire import valid

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "daemon-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemon(model: Path, config: Path, port: int, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamer.cli",
            "run",
            "--config",
            str(config),
            "--model",
            str(model),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **popen,
    )


async def _connect(port: int, proc: subprocess.Popen, **kwargs):
    """Connect once the daemon listens (it loads the model first)."""
    async with asyncio.timeout(60):
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited: {proc.stderr.read().decode()}")
            try:
                return await connect(f"ws://127.0.0.1:{port}/", **kwargs)
            except OSError:
                await asyncio.sleep(0.2)


async def _json(ws) -> dict:
    return valid(json.loads(await asyncio.wait_for(ws.recv(), 10)))


@pytest.fixture(scope="module")
def live_daemon(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A daemon playing two minutes of 'happy' in real time, hop 0.25 s, token required."""
    from streamer.audio.synth import mood_audio

    folder = tmp_path_factory.mktemp("live_daemon")
    sf.write(folder / "happy.wav", mood_audio("happy", 120.0), 16000)
    (folder / "config.toml").write_text(f'[server]\ntoken = "{TOKEN}"\n')
    port = _free_port()
    proc = _daemon(
        tiny_model,
        folder / "config.toml",
        port,
        "--source",
        f"file:{folder / 'happy.wav'}",
        "--realtime",
        "--hop",
        "0.25",
    )
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, proc.stderr.read().decode()


def test_hello_first_then_every_hop_in_order(live_daemon: int) -> None:
    async def main() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with asyncio.timeout(60):
            while True:  # the fixture's daemon may still be loading
                try:
                    ws = await connect(f"ws://127.0.0.1:{live_daemon}/", additional_headers=headers)
                    break
                except OSError:
                    await asyncio.sleep(0.2)
        async with ws:
            hello = await _json(ws)
            assert hello["type"] == "hello" and hello["protocol"] == protocol.PROTOCOL_VERSION
            assert hello["model"]["name"] == "tiny-test"
            assert hello["model"]["labels"] == ["angry", "happy", "sad"]
            assert hello["model"]["hop_seconds"] == 0.25
            assert "token" not in hello["config"]["server"] and TOKEN not in json.dumps(hello)
            seqs, labels = [], []
            while len(seqs) < 24:
                message = await _json(ws)
                if message["type"] == "emotion":
                    seqs.append(message["seq"])
                    labels.append(message["label"])
            assert seqs == list(range(seqs[0], seqs[0] + 24))
            assert "happy" in labels
            await ws.send('{"type": "get_state"}')
            while (state := await _json(ws))["type"] != "state":
                pass
            assert state["server"]["clients"] >= 1 and state["source"]["kind"] == "file"
        for wrong in ({}, {"Authorization": "Bearer nope"}):
            with pytest.raises(InvalidStatus) as info:
                await connect(f"ws://127.0.0.1:{live_daemon}/", additional_headers=wrong)
            assert info.value.response.status_code == 401

    asyncio.run(main())


def test_the_page_shows_the_label_the_daemon_sends(live_daemon: int) -> None:
    async def main() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with connect(f"ws://127.0.0.1:{live_daemon}/", additional_headers=headers) as ws:
            while (await _json(ws)).get("label") != "happy":
                pass
        async with browser_page() as page:
            await page.goto(f"http://127.0.0.1:{live_daemon}/?token={TOKEN}")
            await label_shows(page, "happy")
            assert "tiny-test" in await page.text_content("#model")
            assert page.errors == []

    asyncio.run(main())


def test_watch_renders_the_live_daemon(live_daemon: int) -> None:
    async def main() -> str:
        console = Console(width=100, height=60, record=True, force_terminal=True, file=open(os.devnull, "w"))  # noqa: SIM115 (devnull, closed at exit)
        dashboard, stop = Dashboard(), asyncio.Event()
        task = asyncio.create_task(watch(f"ws://127.0.0.1:{live_daemon}/", TOKEN, console, stop, print, dashboard))
        async with asyncio.timeout(30):
            while (dashboard.last or {}).get("label") != "happy" or not dashboard.info.get("counters"):
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)
        return console.export_text()

    text = asyncio.run(main())
    assert "H  A  P  P  Y" in text
    assert "tiny-test (cnn, ai-edge-litert)" in text and "[connected]" in text
    assert f"ws://127.0.0.1:{live_daemon}/: connected" in text


def test_a_stalled_client_is_dropped_while_a_fast_one_gets_every_hop(tiny_model: Path, tmp_path: Path) -> None:
    """Audio pushed on stdin faster than real time: a burst of hops. The daemon ends with stdin."""
    from streamer.audio.synth import mood_audio

    (tmp_path / "config.toml").write_text("[server]\nclient_queue = 4\n")
    pcm = (mood_audio("happy", 60.0) * 32767).astype("<i2").tobytes()
    port = _free_port()
    proc = _daemon(
        tiny_model, tmp_path / "config.toml", port, "--source", "stdin", "--hop", "0.1", stdin=subprocess.PIPE
    )

    async def main() -> tuple[list[dict], int | None]:
        fast = await _connect(port, proc)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        stalled = await connect(f"ws://127.0.0.1:{port}/", sock=sock, max_queue=1)
        assert (await _json(fast))["type"] == "hello"

        def feed() -> None:  # in a thread: pipe writes block
            step = 16000  # half a second of s16le, 25 times faster than real time
            for i in range(0, len(pcm), step):
                proc.stdin.write(pcm[i : i + step])
                proc.stdin.flush()
                time.sleep(0.02)
            proc.stdin.close()

        feeder = asyncio.create_task(asyncio.to_thread(feed))
        messages = []
        try:
            async with asyncio.timeout(120):
                async for text in fast:
                    messages.append(valid(json.loads(text)))
        except ConnectionClosed:
            pass
        await feeder
        code = fast.close_code
        stalled.transport.abort()
        return messages, code

    try:
        messages, code = asyncio.run(main())
        assert proc.wait(30) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    seqs = [m["seq"] for m in messages if m["type"] == "emotion"]
    assert len(seqs) > 150 and seqs == list(range(len(seqs)))
    stopped = [m for m in messages if m["type"] == "status" and m["kind"] == "stopped"]
    assert stopped and stopped[0]["details"]["dropped_clients"] == 1
    assert messages[-1] is stopped[0] and code == protocol.CLOSE_GOING_AWAY
    assert np.mean([m["label"] == "happy" for m in messages if m.get("state") == "emotion"]) > 0.5
