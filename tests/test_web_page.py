"""The live web page in headless Chromium (Debian's /usr/bin/chromium through playwright), in real
time: bars, level and the last-hour strip follow the events; the page greys out when data stops and
reconnects by itself; it asks for a token on 401 and keeps it; the history view shows a day and a
session. Each state is saved as a screenshot in the test's tmp folder."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from streamer.config import HistorySettings
from streamer.core.events import EventBus, StatusEvent
from streamer.sinks import protocol
from streamer.sinks.history import HistorySink
from tests.wire import emotion, serving

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"  # Debian's; never a browser downloaded by playwright
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}


@asynccontextmanager
async def browser_page(viewport: dict[str, int] | None = None, timezone: str | None = None) -> AsyncIterator[Any]:
    """A fresh page in headless Chromium (in ``timezone``, else the machine's); skips when Debian's
    chromium is not installed."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    async_api = pytest.importorskip("playwright.async_api")
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(
                viewport=viewport or {"width": 1100, "height": 1000}, **({"timezone_id": timezone} if timezone else {})
            )
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.errors = errors
            yield page
        finally:
            await browser.close()


async def label_shows(page: Any, label: str) -> None:
    await page.wait_for_function(
        "label => document.getElementById('label').textContent === label", arg=label, timeout=15000
    )


async def until(page: Any, script: str, *arg: Any, timeout: float = 20000) -> None:
    """Wait for a JavaScript expression (or, with an argument, a function of it) to be true."""
    # a function, not an expression: the page's CSP forbids eval, which playwright's polling of an
    # expression needs
    if arg:
        await page.wait_for_function(script, arg=arg[0], timeout=timeout)
    else:
        await page.wait_for_function(f"() => ({script})", timeout=timeout)


@asynccontextmanager
async def memory_history(bus: EventBus, server: Any, hop: float = 0.5) -> AsyncIterator[HistorySink]:
    """The daemon's history sink without a database (the last hour in memory), answering get_history."""
    sink = HistorySink(HistorySettings(), hop_seconds=hop)
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(bus, stop))
    server.requests["get_history"] = sink.answer
    await asyncio.sleep(0.05)
    try:
        yield sink
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def test_page_shows_the_label_bars_level_and_strip_and_greys_out_when_events_stop(tmp_path: Path) -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, token="pw") as server, memory_history(bus, server), browser_page() as page:
            now = time.time()
            for seq in range(20):  # what the daemon heard in the minutes before the page was opened
                past = emotion(seq, "angry" if seq < 10 else "happy")
                bus.publish(dataclasses.replace(past, timestamp=now - 10 * (20 - seq)))
            await page.goto(f"http://127.0.0.1:{server.port}/?token=pw")
            await until(page, "document.querySelectorAll('#bars .bar').length === 3")
            await until(page, "document.getElementById('conn').textContent === 'live'")
            # the strip starts from the daemon's memory of the last hour
            await until(page, "Number(document.getElementById('strip').dataset.segments) >= 2")
            assert "memory" in await page.text_content("#strip-source")
            before = int(await page.get_attribute("#strip", "data-segments"))
            bus.publish(emotion(21, "happy"))
            await label_shows(page, "happy")
            color = await page.evaluate("getComputedStyle(document.getElementById('hero')).getPropertyValue('--mood')")
            assert color.strip() == protocol.PALETTE["happy"]
            bus.publish(emotion(22, "sad"))
            await label_shows(page, "sad")
            assert "seq 22" in await page.text_content("#detail")
            width = await page.evaluate("[...document.querySelectorAll('#bars .smooth')].map(e => e.style.width)")
            assert width == ["10%", "10%", "80%"]
            assert await page.text_content("#level") == "-20 dBFS"
            assert await page.get_attribute("#source", "data-state") == "listening"
            await until(page, "n => Number(document.getElementById('strip').dataset.segments) === n", before + 2)
            assert await page.get_attribute("#strip", "data-last") == "sad"
            # the strip's newest pixels are sad's colour
            rgb = await page.evaluate(
                "(() => { const c = document.getElementById('strip');"
                " return [...c.getContext('2d').getImageData(c.width - 1, c.height / 2, 1, 1).data].slice(0, 3); })()"
            )
            assert "#{:02x}{:02x}{:02x}".format(*rgb) == protocol.PALETTE["sad"]
            bus.publish(StatusEvent("mark", "session 4 start", details={"text": "session 4 start"}))
            await until(page, "document.getElementById('marks').textContent.includes('session 4 start')")
            await page.screenshot(path=str(tmp_path / "live.png"), full_page=True)

            bus.publish(emotion(23, state="uncertain"))
            await label_shows(page, "uncertain")
            assert "no mood believed enough" in await page.text_content("#detail")
            assert await page.evaluate("document.querySelectorAll('#bars .bar.lead').length") == 0
            await page.screenshot(path=str(tmp_path / "uncertain.png"), full_page=True)
            bus.publish(emotion(24, state="silence"))
            await label_shows(page, "silence")
            assert await page.get_attribute("#source", "data-state") == "silence"
            bus.publish(StatusEvent("source_lost", "input x lost: no audio for 5 s"))
            await until(page, "document.getElementById('source').dataset.state === 'lost'")
            assert not await page.evaluate("document.body.classList.contains('stale')")
            # no event for 3 hops (0.5 s each here) while still connected: grey, and since when
            await until(page, "document.body.classList.contains('stale')", timeout=10000)
            assert "no data since" in await page.text_content("#stale")
            assert "sends nothing" in await page.text_content("#stale")
            await until(
                page, "getComputedStyle(document.getElementById('hero')).filter === 'grayscale(1) brightness(0.7)'"
            )
            await page.screenshot(path=str(tmp_path / "quiet.png"), full_page=True)
            bus.publish(emotion(25, "angry"))  # data again: colour again
            await until(page, "!document.body.classList.contains('stale')")
            await label_shows(page, "angry")
            assert page.errors == []

    asyncio.run(main())
    assert all((tmp_path / f"{name}.png").stat().st_size > 10_000 for name in ("live", "uncertain", "quiet"))


def test_token_form_on_401_keeps_the_token_in_local_storage(tmp_path: Path) -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, token="s3cret") as server, browser_page(PHONE) as page:
            base = f"http://127.0.0.1:{server.port}/"
            response = await page.goto(base)
            assert response.status == 401  # the page itself, which asks for the token
            await until(page, "!document.getElementById('token-card').hidden")
            assert await page.text_content("#label") == "locked"
            assert "s3cret" not in await page.content()
            await page.screenshot(path=str(tmp_path / "token.png"), full_page=True)
            await page.fill("#token", "wrong")
            await page.click("#token-form button")
            await until(page, "document.getElementById('token-note').textContent === 'That token was refused.'")
            await page.fill("#token", "s3cret")
            await page.click("#token-form button")
            await until(page, "document.getElementById('conn').textContent === 'live'")
            assert await page.evaluate("document.getElementById('token-card').hidden")
            bus.publish(emotion(1, "happy"))
            await label_shows(page, "happy")
            assert await page.evaluate("localStorage.getItem('moodstream.token')") == "s3cret"
            await page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
            # a later visit without ?token= gets in with the kept one
            await page.goto(base)
            await until(page, "document.getElementById('conn').textContent === 'live'")
            assert await page.evaluate("document.getElementById('token-card').hidden")
            assert page.errors == []

    asyncio.run(main())
    assert (tmp_path / "token.png").stat().st_size > 5_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _daemon(tiny_model: Path, port: int, db: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    command = ["run", "--source", "demo", "--model", str(tiny_model), "--hop", "0.5", "--port", str(port), *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", *command, "--token", "pw", "--history", str(db)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_history_view_marks_and_the_grey_page_after_the_daemon_stops(tmp_path: Path, tiny_model: Path) -> None:
    port, db = _free_port(), tmp_path / "history.sqlite"
    daemon = _daemon(tiny_model, port, db)

    async def main() -> None:
        nonlocal daemon
        async with browser_page() as page:
            await _open(page, port, daemon)
            await until(page, "document.getElementById('conn').textContent === 'live'", timeout=30000)
            await until(page, "!document.getElementById('history').hidden")
            await until(page, "Number(document.getElementById('strip').dataset.segments) >= 6", timeout=30000)
            await page.fill("#mark-text", "session 7 start")
            await page.click("#mark-form button")
            await until(page, "document.getElementById('mark-note').textContent.startsWith('marked “session 7 start”')")
            await until(page, "document.getElementById('marks').textContent.includes('session 7 start')")
            await asyncio.sleep(3)  # a few hops inside the session
            await page.fill("#mark-text", "session 7 end")
            await page.click("#mark-form button")
            await until(page, "document.getElementById('mark-note').textContent.includes('session 7 end')")
            await page.click("[data-range=today]")
            await until(page, "document.querySelector('#sessions button')?.textContent.startsWith('session 7')")
            await until(page, "Number(document.getElementById('history-strip').dataset.segments) >= 1")
            assert "mood switches" in await page.text_content("#history-summary")
            await page.click("#sessions button")
            await until(page, "document.getElementById('history-title').textContent === 'session 7'")
            await until(page, "document.querySelectorAll('#history-summary .row').length >= 1")
            await page.screenshot(path=str(tmp_path / "history.png"), full_page=True)

            daemon.send_signal(signal.SIGTERM)  # the daemon stops: grey, since when, retrying
            assert daemon.wait(30) == 0
            await until(page, "document.body.classList.contains('stale')", timeout=15000)
            stale = await page.text_content("#stale")
            assert "no data since" in stale and "disconnected" in stale
            assert (await page.get_attribute("#source", "data-state")) == "stopped"
            await until(
                page, "getComputedStyle(document.getElementById('hero')).filter === 'grayscale(1) brightness(0.7)'"
            )
            await page.screenshot(path=str(tmp_path / "stale.png"), full_page=True)

            daemon = _daemon(tiny_model, port, db)  # it comes back: the page reconnects by itself
            await until(page, "document.getElementById('conn').textContent === 'live'", timeout=60000)
            await until(page, "!document.body.classList.contains('stale')", timeout=30000)
            assert page.errors == []

    try:
        asyncio.run(main())
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
    for name in ("history", "stale"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000


async def _open(page: Any, port: int, daemon: subprocess.Popen) -> None:
    async with asyncio.timeout(60):  # the daemon loads its model first
        while True:
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            try:
                await page.goto(f"http://127.0.0.1:{port}/?token=pw")
                return
            except Exception:
                await asyncio.sleep(0.3)


async def _mark(page: Any, text: str) -> None:
    await page.fill("#mark-text", text)
    await page.click("#mark-form button")
    await until(page, "t => document.getElementById('mark-note').textContent.includes(t)", text)


def test_the_day_view_follows_the_music_on_a_local_day_axis_with_marks_apart_from_sessions(
    tmp_path: Path, tiny_model: Path
) -> None:
    """In a time zone far from the machine's: the Today view is that zone's day (00:00 to 24:00), it
    grows with every hop without a click, and its summary is asked for again as bins fill; a plain
    mark is listed as a mark, a "start" mark makes an open session whose view refreshes by itself.
    Screenshots over time: history-0 (opened), -1 (hops later), -2 (the open session, refreshed)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = "Pacific/Auckland"  # UTC+13 in December: its midnight is not the machine's
    config = tmp_path / "config.toml"
    config.write_text("[history]\nflush_seconds = 1.0\n")
    port, db = _free_port(), tmp_path / "history.sqlite"
    daemon = _daemon(tiny_model, port, db, "--config", str(config))
    shots: list[Path] = []

    async def shot(page: Any) -> None:
        shots.append(tmp_path / f"history-{len(shots)}.png")
        await page.screenshot(path=str(shots[-1]), full_page=True)

    async def main() -> None:
        async with browser_page(timezone=zone) as page:
            await _open(page, port, daemon)
            await until(page, "document.getElementById('conn').textContent === 'live'", timeout=30000)
            await until(page, "!document.getElementById('history').hidden && window.moodstream.view?.reply")
            view = await page.evaluate("({from: moodstream.view.from, to: moodstream.view.to, skew: moodstream.skew})")
            midnight = datetime.now(ZoneInfo(zone)).replace(hour=0, minute=0, second=0, microsecond=0)
            assert abs(view["from"] - view["skew"] - midnight.timestamp()) < 1 and view["to"] - view["from"] == 86400
            ticks = await page.evaluate("[...document.querySelectorAll('#history-axis span')].map(s => s.textContent)")
            assert ticks[0] == "00:00" and ticks[-1] == "24:00" and len(ticks) >= 4, ticks
            assert zone in await page.text_content("#history-zone")
            await shot(page)
            before = int(await page.get_attribute("#history-strip", "data-segments"))
            await until(page, "n => Number(document.getElementById('history-strip').dataset.segments) >= n + 4", before)
            await shot(page)  # the day grew hop by hop, nothing clicked

            await _mark(page, "tea break")
            await _mark(page, "session 8 start")
            await until(page, "document.querySelector('#sessions button')?.textContent.endsWith('–now')")
            sessions = await page.evaluate("[...document.querySelectorAll('#sessions button')].map(b => b.textContent)")
            assert len(sessions) == 1 and sessions[0].startswith("session 8 · "), sessions  # tea break is no session
            assert "tea break" in await page.text_content("#history-marks")
            assert await page.get_attribute("#history-strip", "data-sessions") == "1"
            await page.click("#sessions button")
            await until(page, "document.getElementById('history-title').textContent === 'session 8'")
            await until(page, "document.getElementById('history-summary').textContent.includes('hops')")
            first = await page.text_content("#history-summary .facts")
            # an open session includes now: asked for again within about 10 s, with no click
            await until(page, "t => document.querySelector('#history-summary .facts').textContent !== t", first,
                        timeout=25000)  # fmt: skip
            await shot(page)
            hops = [
                int(re.search(r"(\d+) hops", t)[1]) for t in (first, await page.text_content("#history-summary .facts"))
            ]
            assert hops[1] > hops[0], hops
            await _mark(page, "session 8 end")
            await until(page, "!document.querySelector('#sessions button')?.textContent.endsWith('–now')")
            assert page.errors == []

    try:
        asyncio.run(main())
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)
    assert len(shots) == 3 and all(p.stat().st_size > 10_000 for p in shots)
    assert len({p.read_bytes() for p in shots}) == 3  # three different moments
