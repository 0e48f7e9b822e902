"""`moodstream watch [ws://HOST:PORT] [--token T]`: the dashboard of a running daemon.
`moodstream watch mqtt://BROKER`: every device on a broker instead, one row each (streamer/commands/fleet.py).

Fed only by the WebSocket protocol, so it attaches to the systemd service over SSH; it keeps
reconnecting with backoff while the daemon restarts, and gives up only when it is refused for
good (wrong token, Origin). Without a terminal it prints one line per event. The token may come
from $MOODSTREAM_TOKEN instead of the flag, out of sight of ps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable

from rich.console import Console
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from streamer.commands.client import DEFAULT_URL, FATAL_STATUS, TOKEN_ENV, WatchError, normalise_url, reconnecting
from streamer.config import MQTT_PASSWORD_ENV, MqttSettings
from streamer.sinks import protocol
from streamer.sinks.dashboard import REFRESH_S, Dashboard, Screen


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        nargs="?",
        default=DEFAULT_URL,
        help=f"the daemon's WebSocket (default {DEFAULT_URL}; HOST:PORT is fine), or mqtt(s)://BROKER for the fleet",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"the daemon's token, if it requires one (default: ${TOKEN_ENV}; "
        "a flag shows in ps, the variable does not)",
    )
    parser.add_argument(
        "--mqtt-username",
        metavar="NAME",
        help=f"broker user for mqtt:// URLs (the password: ${MQTT_PASSWORD_ENV})",
    )


def main(args: argparse.Namespace) -> int:
    if args.url.startswith(("mqtt://", "mqtts://")):
        return _main_fleet(args)
    try:
        return asyncio.run(_main(normalise_url(args.url), args.token))
    except WatchError as exc:
        print(f"moodstream watch: {exc}", file=sys.stderr)
        return 2


def _main_fleet(args: argparse.Namespace) -> int:
    from streamer.commands import fleet  # imports aiomqtt: only for mqtt:// URLs

    async def run(settings: MqttSettings) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await fleet.watch_fleet(settings, Console(), stop, lambda line: print(line, flush=True))

    try:
        asyncio.run(run(fleet.settings_for(args.url, args.mqtt_username, os.environ.get(MQTT_PASSWORD_ENV))))
    except fleet.FleetError as exc:
        print(f"moodstream watch: {exc}", file=sys.stderr)
        return 2
    return 0


async def _main(url: str, token: str | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await watch(url, token, Console(), stop, lambda line: print(line, flush=True))
    return 0


async def watch(
    url: str,
    token: str | None,
    console: Console,
    stop: asyncio.Event,
    emit: Callable[[str], None],
    dashboard: Dashboard | None = None,
) -> None:
    """Show the daemon at ``url`` until ``stop`` is set; reconnect whenever the connection ends."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    dashboard = dashboard or Dashboard()
    dashboard.source_label = url
    with Screen(dashboard, console, emit) as screen:
        await reconnecting(lambda: _session(url, headers, screen), screen, stop, f"{url}: ")


async def _session(url: str, headers: dict[str, str], screen: Screen) -> tuple[str, bool]:
    """One connection; returns (why it ended, whether it got as far as a hello)."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=5, max_size=2**20, ping_interval=20) as ws:
            screen.connection(f"{url}: connected", ok=True)
            poller = asyncio.create_task(_poll_state(ws))
            try:
                async for text in ws:
                    try:
                        screen.show(protocol.decode(text))
                    except protocol.ProtocolError as exc:
                        screen.connection(f"{url}: ignored a bad message ({exc})", ok=True)
            finally:
                poller.cancel()
            return f"closed ({ws.close_code} {ws.close_reason})".rstrip(), True
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in FATAL_STATUS:
            raise WatchError(f"{url}: HTTP {status}: {FATAL_STATUS[status]}") from None
        return f"HTTP {status}", False
    except InvalidURI as exc:
        raise WatchError(f"not a WebSocket URL: {exc}") from None
    except ConnectionClosed as exc:
        return f"connection lost ({exc})", True
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        return f"cannot connect ({exc})", False


async def _poll_state(ws: ClientConnection) -> None:
    """Ask for a snapshot now and then: counters (clients, overflows...) change between hops."""
    try:
        while True:
            await asyncio.sleep(REFRESH_S * 2)
            await ws.send('{"type": "get_state"}')
    except ConnectionClosed:
        pass
