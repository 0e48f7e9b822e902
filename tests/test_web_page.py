"""The live web page in headless Chromium (Debian's /usr/bin/chromium through playwright)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from streamer import protocol
from streamer.events import EventBus
from tests.wire import emotion, serving

pytestmark = pytest.mark.slow

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


@asynccontextmanager
async def browser_page() -> AsyncIterator[Any]:
    """A fresh page in headless Chromium; skips when Debian's chromium is not installed."""
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    async_api = pytest.importorskip("playwright.async_api")
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
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


def test_page_shows_the_label_and_bars_the_server_sends() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, token="pw") as server, browser_page() as page:
            await page.goto(f"http://127.0.0.1:{server.port}/?token=pw")
            await page.wait_for_function("document.querySelectorAll('#bars .bar').length === 3")
            await page.wait_for_function("document.getElementById('conn').textContent === 'live'")
            bus.publish(emotion(1, "happy"))
            await label_shows(page, "happy")
            color = await page.evaluate("getComputedStyle(document.getElementById('hero')).getPropertyValue('--mood')")
            assert color.strip() == protocol.PALETTE["happy"]
            bus.publish(emotion(2, "sad"))
            await label_shows(page, "sad")
            assert "seq 2" in await page.text_content("#detail")
            width = await page.evaluate("[...document.querySelectorAll('#bars .smooth')].map(e => e.style.width)")
            assert width == ["10%", "10%", "80%"]
            bus.publish(emotion(3, state="silence"))
            await label_shows(page, "silence")
            assert page.errors == []

    asyncio.run(main())


def test_page_without_the_token_is_refused() -> None:
    async def main() -> None:
        async with serving(EventBus(), token="pw") as server, browser_page() as page:
            response = await page.goto(f"http://127.0.0.1:{server.port}/")
            assert response.status == 401

    asyncio.run(main())
