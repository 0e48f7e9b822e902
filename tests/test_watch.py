"""`moodstream watch`: the dashboard fed by the WebSocket protocol, reconnecting, plain lines."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from rich.console import Console

from streamer.commands.client import WatchError, normalise_url
from streamer.commands.watch import watch
from streamer.core.events import EventBus
from streamer.sinks.dashboard import Dashboard
from tests.wire import emotion, serving, status, url

ROOT = Path(__file__).resolve().parents[1]


async def _until(condition, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)


def _console() -> Console:
    return Console(
        width=100, height=60, record=True, force_terminal=True, color_system="truecolor", file=open(os.devnull, "w")
    )


def test_watch_renders_the_dashboard_and_reconnects_when_the_daemon_restarts() -> None:
    async def main() -> None:
        bus = EventBus()
        console, dashboard, stop = _console(), Dashboard(), asyncio.Event()
        async with serving(bus) as server:
            port = server.port
            task = asyncio.create_task(watch(url(server), None, console, stop, print, dashboard))
            await _until(lambda: server.client_count == 1)
            bus.publish(emotion(0, "sad"))
            bus.publish(status("overflow"))
            await _until(lambda: dashboard.events == 1 and dashboard.statuses)
        screen = console.export_text()
        assert "S  A  D" in screen and "overflow: test overflow" in screen
        assert "window / hop     2.0 s / 0.5 s" in screen
        await _until(lambda: not dashboard.connected)
        assert "retrying" in dashboard.connection
        # The daemon comes back on the same port: watch finds it again, hops numbered afresh.
        bus_again = EventBus()
        async with serving(bus_again, port=port) as again:
            await _until(lambda: again.client_count == 1 and dashboard.connected)
            bus_again.publish(emotion(0, "angry"))
            await _until(lambda: dashboard.events == 2)
        assert dashboard.gaps == 0
        stop.set()
        await asyncio.wait_for(task, 5)
        assert "A  N  G  R  Y" in console.export_text()

    asyncio.run(main())


def test_watch_gives_up_on_a_refused_token() -> None:
    async def main() -> None:
        async with serving(EventBus(), token="right") as server:
            with pytest.raises(WatchError, match="refused the token"):
                await asyncio.wait_for(watch(url(server), "wrong", _console(), asyncio.Event(), print), 10)

    asyncio.run(main())


@pytest.mark.parametrize("url", ["ws://127.0.0.1:99999/", "[::1"])
def test_a_malformed_url_is_a_clear_error(url: str) -> None:
    with pytest.raises(WatchError, match="not a WebSocket URL"):
        normalise_url(url)


def test_urls_people_type_are_normalised() -> None:
    assert normalise_url("pi.local:8765") == "ws://pi.local:8765/"
    assert normalise_url("http://pi:1/") == "ws://pi:1/"
    assert normalise_url("https://pi:1/?token=x") == "wss://pi:1/?token=x"
    assert normalise_url("ws://127.0.0.1:8765") == "ws://127.0.0.1:8765/"


def test_watch_without_a_terminal_prints_plain_lines_and_exits_on_sigint() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, token="s3cret") as server:  # the token from the environment
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streamer.cli",
                "watch",
                f"127.0.0.1:{server.port}",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=ROOT,
                env={**os.environ, "MOODSTREAM_TOKEN": "s3cret"},
            )
            try:
                await _until(lambda: server.client_count == 1, 30)
                bus.publish(emotion(5, "happy"))
                lines = []
                async with asyncio.timeout(10):
                    while not any("hop 5 happy" in line for line in lines):
                        lines.append((await proc.stdout.readline()).decode())
                proc.send_signal(signal.SIGINT)
                assert await asyncio.wait_for(proc.wait(), 10) == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        text = "".join(lines)
        assert "connected: model tiny labels angry, happy, sad" in text
        assert "\x1b[" not in text  # no terminal codes in a pipe

    asyncio.run(main())


def test_a_wrong_token_from_the_environment_is_refused_for_good() -> None:
    async def main() -> tuple[int, bytes]:
        async with serving(EventBus(), token="s3cret") as server:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streamer.cli",
                "watch",
                f"127.0.0.1:{server.port}",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=ROOT,
                env={**os.environ, "MOODSTREAM_TOKEN": "wrong"},
            )
            _, err = await asyncio.wait_for(proc.communicate(), 30)
            return proc.returncode, err

    code, err = asyncio.run(main())
    assert code == 2 and b"refused the token" in err
