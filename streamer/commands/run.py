"""`moodstream run`: load the settings and the model, open the source, serve the daemon until a
signal; SIGHUP restarts it with the configuration read afresh, once that configuration passes the
checks of start-up (streamer/commands/hangup.py)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable

from streamer import config as config_mod
from streamer.audio.sources import DeviceNotFound, NoInputDevice, PortAudioWedged, SourceError, build_source
from streamer.commands.hangup import Hangups, Reloader
from streamer.config import ConfigError, ServerSettings
from streamer.daemon import Daemon
from streamer.model import shipped
from streamer.model.metadata import ModelFileError
from streamer.model.runner import ModelRunner
from streamer.sinks import server, urls
from streamer.sinks.jsonl import OutputError
from streamer.util import logs

log = logging.getLogger(__name__)

RELOAD = -1  # _serve's answer to SIGHUP: main starts the process again (exec) with its config re-read


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    config_mod.add_config_flag(parser)
    a("--source", help="device | file:PATH | stdin | demo | auto (default: device)")
    a(
        "--server",
        action="store_true",
        help="serve the WebSocket and the page also for a file read as fast as it decodes (without "
        "--realtime), which otherwise runs without them",
    )
    config_mod.add_flags(parser)


def main(args: argparse.Namespace) -> int:
    hangups = Hangups()
    hangups.install()  # from here to the exec a SIGHUP is a reload, never the end of the process
    try:
        settings = config_mod.from_args(args)
    except ConfigError as exc:
        print(f"moodstream: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.output.log_level)
    settings = _server_for_the_source(settings, args.server)
    try:
        runner = ModelRunner(shipped.resolve(settings.model.path))
        block = config_mod.block_seconds_for(settings)
        source = build_source(dataclasses.replace(settings.source, block_seconds=block), labels=runner.labels)
        daemon = Daemon(settings, runner, source)
    except (ModelFileError, SourceError, ValueError) as exc:
        print(f"moodstream: {exc}", file=sys.stderr)
        return 2
    try:
        code = asyncio.run(_serve(daemon, hangups, lambda: _check(args)))
        if code == RELOAD:  # SIGHUP: stopped cleanly; start again in this process, config read afresh
            log.info("SIGHUP: restarting with the configuration read afresh")
            Hangups.block()  # SIGHUPs from now wait for the next process's handler
            os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
        return code
    except ConfigError as exc:
        print(f"moodstream: configuration error: {exc}", file=sys.stderr)
        return 2
    except DeviceNotFound as exc:
        # 1, not 2: the named microphone may be plugged in later, and systemd retries exit 1
        # (the unit's RestartPreventExitStatus=2 is for mistakes that restarting cannot fix)
        print(f"moodstream: {exc}", file=sys.stderr)
        return 1
    except NoInputDevice as exc:
        print(f"moodstream: {exc}; try --source demo, file:PATH or stdin", file=sys.stderr)
        return 1
    except (SourceError, server.ServerError, OutputError, PortAudioWedged) as exc:
        busy = isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EADDRINUSE
        print(f"moodstream: {exc}{busy_port_hint(settings.server) if busy else ''}", file=sys.stderr)
        return 1


def _server_for_the_source(settings: config_mod.Settings, asked: bool) -> config_mod.Settings:
    """A file read as fast as it decodes is over in moments: no server, no page to open, no port
    taken from the service, unless ``--server`` asks for one."""
    source = settings.source
    if not settings.server.enabled or asked or source.kind != "file" or source.realtime:
        return settings
    log.info(
        "reading %s as fast as it decodes: no WebSocket server (--realtime paces it like a live input)", source.path
    )
    return dataclasses.replace(settings, server=dataclasses.replace(settings.server, enabled=False))


def busy_port_hint(settings: ServerSettings) -> str:
    """What to do about a taken port, naming a free one (and the `make run` line when `make run`
    started us: the Makefile says so in MOODSTREAM_MAKE_RUN)."""
    free = urls.free_port(settings.host, settings.port + 1)
    flag = f"--port {free}" if free else "--port 0"
    run = f'make run RUN_ARGS="{flag}"' if os.environ.get("MOODSTREAM_MAKE_RUN") else f"moodstream run {flag} ..."
    return (
        "; another moodstream or the service (systemctl status moodstream) holds it: stop that one, or "
        f"`{run}` (--port 0: any free port; --no-server: none)"
    )


def _check(args: argparse.Namespace) -> None:
    """Raise what start-up would refuse with exit 2 in the configuration as it is now."""
    settings = config_mod.from_args(args)
    ModelRunner(shipped.resolve(settings.model.path))


async def _serve(daemon: Daemon, hangups: Hangups, check: Callable[[], None]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reloader = Reloader(check, daemon.bus, stop)
    hangups.attach(loop, reloader.hangup)
    try:
        await daemon.run(stop)
    finally:
        hangups.detach()
    log.info("stopped after %d hops", daemon.counters["hops"])
    return RELOAD if reloader.accepted else 0
