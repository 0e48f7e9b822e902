"""What every client command shares (`watch`, `mark`, the fleet view): where the daemon is (its
address and token come from the settings every command reads: streamer.config.from_args), the
answers that mean "refused for good", and a reconnect loop with backoff."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from streamer.config import SYSTEM_CONFIG, TOKEN_ENV, ServerSettings
from streamer.sinks.dashboard import Screen
from streamer.sinks.urls import WATCH_DEFAULT, WILDCARDS, host_port
from streamer.util.backoff import Backoff

DEFAULT_URL = f"ws://{host_port(*WATCH_DEFAULT)}/"
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 10.0
FATAL_STATUS = (401, 403)


class WatchError(RuntimeError):
    """Refused for good: retrying cannot help."""


def add_token_flag(parser: argparse.ArgumentParser) -> None:
    """``--token``, overriding server.token of the config and $MOODSTREAM_TOKEN (as `run --token` does)."""
    parser.add_argument(
        "--token",
        dest="server__token",
        metavar="TOKEN",
        help=f"the daemon's token (default: server.token of the config, or ${TOKEN_ENV}; a flag shows in ps)",
    )


def daemon_url(settings: ServerSettings) -> str:
    """The WebSocket of the daemon these settings describe, as seen from this machine."""
    host = "127.0.0.1" if settings.host in WILDCARDS else settings.host
    return f"ws://{host_port(host, settings.port)}/"


def refusal(status: int, token: str) -> str:
    """Why an HTTP answer to the handshake refuses us, and what to do."""
    if status == 403:
        return "the daemon refused this client"
    if status != 401:
        return "refused"
    if token:
        return f"the daemon refused the token (from --token, ${TOKEN_ENV} or server.token of the config)"
    return (
        f"the daemon needs a token: server.token of its config (read from --config, else {SYSTEM_CONFIG}), "
        f"${TOKEN_ENV} or --token"
    )


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
