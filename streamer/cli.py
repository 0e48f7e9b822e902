"""`moodstream` command line: one sub-command per module.

Each command module provides ``configure(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

from streamer import version
from streamer.util import tuning

tuning.tune()  # before numpy is first imported (see streamer/util/tuning.py)

import argparse  # noqa: E402  (after tune(): see above)
import os  # noqa: E402  (after tune())
import sys  # noqa: E402  (after tune())
from types import ModuleType  # noqa: E402  (after tune())

from streamer.commands import (  # noqa: E402  (they import numpy: after tune())
    devices,
    evaluate,
    history,
    mark,
    models,
    mqtt_forget,
    run,
    watch,
)

COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "run": (run, "listen and broadcast emotions (the daemon)"),
    "devices": (devices, "list audio input devices and their rates"),
    "evaluate": (evaluate, "score a model on a labelled folder, the daemon's way"),
    "watch": (watch, "show the dashboard of a running daemon over WebSocket, or of every device on an MQTT broker"),
    "mark": (mark, "put a session mark into the running daemon's stream"),
    "history": (history, "summarise, export or plot the mood history"),
    "mqtt-forget": (mqtt_forget, "clear this daemon's retained MQTT topics and Home Assistant entities"),
    "models": (models, "list the shipped models: labels, size and the model card's figures"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moodstream", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"moodstream {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        module.configure(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args._module.main(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C before a command set up its own handling (start-up)
        print("moodstream: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `moodstream models | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
