"""`moodstream run`: load the settings and the model, open the source, serve the daemon until a
signal; SIGHUP restarts it with the configuration read afresh."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import logging
import os
import signal
import sys
from pathlib import Path

from streamer import config as config_mod
from streamer.audio.sources import DeviceNotFound, NoInputDevice, PortAudioWedged, SourceError, build_source
from streamer.config import ConfigError
from streamer.daemon import Daemon
from streamer.model import shipped
from streamer.model.metadata import ModelFileError
from streamer.model.runner import ModelRunner
from streamer.sinks import server
from streamer.sinks.jsonl import OutputError
from streamer.util import logs

log = logging.getLogger(__name__)

RELOAD = -1  # _serve's answer to SIGHUP: main starts the process again (exec) with its config re-read
BUSY_PORT_HINT = "; is another moodstream or the service running (systemctl status moodstream)? --port picks another"


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--config", type=Path, help=f"TOML settings (default: {config_mod.SYSTEM_CONFIG} if it exists)")
    a("--source", help="device | file:PATH | stdin | demo | auto (default: device)")
    config_mod.add_flags(parser)


def main(args: argparse.Namespace) -> int:
    try:
        settings = config_mod.load(args.config, config_mod.overrides_from_args(args), os.environ)
    except ConfigError as exc:
        print(f"moodstream: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.output.log_level)
    try:
        runner = ModelRunner(shipped.resolve(settings.model.path))
        block = config_mod.block_seconds_for(settings)
        source = build_source(dataclasses.replace(settings.source, block_seconds=block))
        daemon = Daemon(settings, runner, source)
    except (ModelFileError, SourceError, ValueError) as exc:
        print(f"moodstream: {exc}", file=sys.stderr)
        return 2
    try:
        code = asyncio.run(_serve(daemon))
        if code == RELOAD:  # SIGHUP: stopped cleanly; start again in this process, config read afresh
            log.info("SIGHUP: restarting with the configuration read afresh")
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
        print(f"moodstream: {exc}{BUSY_PORT_HINT if busy else ''}", file=sys.stderr)
        return 1


async def _serve(daemon: Daemon) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reload = asyncio.Event()

    def hangup() -> None:
        reload.set()
        stop.set()

    loop.add_signal_handler(signal.SIGHUP, hangup)
    await daemon.run(stop)
    log.info("stopped after %d hops", daemon.counters["hops"])
    return RELOAD if reload.is_set() else 0
