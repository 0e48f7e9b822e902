"""`moodstream watch [ws://HOST:PORT] [--token T]`: the dashboard of a running daemon.
`moodstream watch mqtt://BROKER`: every device on a broker instead, one row each (streamer/commands/fleet.py).

Fed only by the WebSocket protocol, so it attaches to the systemd service over SSH; it keeps
reconnecting with backoff while the daemon restarts, and gives up only when it is refused for
good (wrong token, Origin). Without a terminal it prints one line per event. The address and the
token come from the settings every command reads (the config file, $MOODSTREAM_TOKEN, the flags),
so on the daemon's own machine `moodstream watch` needs no argument.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable

from rich.console import Console
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from streamer import config as config_mod
from streamer.commands.client import (
    DEFAULT_URL,
    FATAL_STATUS,
    WatchError,
    add_token_flag,
    daemon_url,
    normalise_url,
    reconnecting,
    refusal,
)
from streamer.config import ConfigError, Settings
from streamer.sinks import protocol
from streamer.sinks.dashboard import REFRESH_S, Dashboard, Screen


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        nargs="?",
        help=f"the daemon's WebSocket (default: the config's port on this machine, {DEFAULT_URL}; HOST:PORT "
        "and http://HOST:PORT/ work too), or mqtt(s)://BROKER for the fleet",
    )
    config_mod.add_config_flag(parser)
    add_token_flag(parser)
    config_mod.add_flags(parser, ("mqtt.username", "mqtt.ca_file"))


def main(args: argparse.Namespace) -> int:
    try:
        settings = config_mod.from_args(args, client=True)
        if args.url and args.url.startswith(("mqtt://", "mqtts://")):
            return _main_fleet(args.url, settings)
        return asyncio.run(_main(normalise_url(args.url or daemon_url(settings.server)), settings.server.token))
    except (WatchError, ConfigError) as exc:
        print(f"moodstream watch: {exc}", file=sys.stderr)
        return 2


def _main_fleet(url: str, settings: Settings) -> int:
    from streamer.commands import fleet  # imports aiomqtt: only for mqtt:// URLs

    async def run(mqtt: config_mod.MqttSettings) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await fleet.watch_fleet(mqtt, Console(), stop, lambda line: print(line, flush=True))

    try:
        asyncio.run(run(fleet.settings_for(url, settings.mqtt)))
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
            reason = refusal(status, headers.get("Authorization", ""))
            raise WatchError(f"{url}: HTTP {status}: {reason}") from None
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
