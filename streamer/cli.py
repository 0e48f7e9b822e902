"""`moodstream` command line: one sub-command per module.

Each command module provides ``configure(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

from streamer import tuning, version

tuning.tune()  # before numpy is first imported (see streamer/tuning.py)

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("streamer.daemon", "listen and broadcast emotions (the daemon)"),
    "devices": ("streamer.sources", "list audio input devices and their rates"),
    "evaluate": ("streamer.evaluate", "score a model on a labelled folder, the daemon's way"),
    "watch": ("streamer.watch", "show the dashboard of a running daemon over WebSocket"),
    "models": ("streamer.shipped", "list the shipped models: labels, size and the model card's figures"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moodstream", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"moodstream {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        _load(module).configure(p)
    return parser


def _load(module: str):
    return importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(_load(args._module).main(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C before a command set up its own handling (start-up)
        print("moodstream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
