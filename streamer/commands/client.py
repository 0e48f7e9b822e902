"""What every client command shares (`watch`, `mark`, the fleet view): where the daemon is by
default, its token, the answers that mean "refused for good", and a reconnect loop with backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from streamer.sinks.dashboard import Screen
from streamer.sinks.urls import WATCH_DEFAULT, host_port
from streamer.util.backoff import Backoff

DEFAULT_URL = f"ws://{host_port(*WATCH_DEFAULT)}/"
TOKEN_ENV = "MOODSTREAM_TOKEN"  # the token without a flag, which every user could read in ps
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
FATAL_STATUS = {
    401: f"the daemon refused the token (see --token, ${TOKEN_ENV})",
    403: "the daemon refused this client",
}


class WatchError(RuntimeError):
    """Refused for good: retrying cannot help."""


def normalise_url(url: str) -> str:
    """ws:// URL from what a person types: HOST:PORT, http://HOST:PORT/ or ws(s)://..."""
    if "://" not in url:
        url = "ws://" + url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError when out of range)
    except ValueError as exc:
        raise WatchError(f"not a WebSocket URL: {url}: {exc}") from None
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))


async def reconnecting(
    session: Callable[[], Awaitable[tuple[str, bool]]], screen: Screen, stop: asyncio.Event, label: str
) -> None:
    """Run ``session`` again and again until ``stop`` is set, with backoff between attempts (reset by
    a session that connected), showing why each ended; the daemon's view and the fleet's
    (streamer.commands.fleet) share it. ``session`` returns (why it ended, whether it connected),
    or raises to give up."""
    backoff = Backoff(BACKOFF_INITIAL_S, BACKOFF_MAX_S)
    while not stop.is_set():
        attempt = asyncio.ensure_future(session())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({attempt, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not attempt.done():
            attempt.cancel()
            await asyncio.gather(attempt, return_exceptions=True)
            return
        reason, connected = attempt.result()
        if connected:
            backoff.reset()
        screen.connection(f"{label}{reason}; retrying in {backoff.delay:.1f} s", ok=False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff.delay)
        backoff.failed()
