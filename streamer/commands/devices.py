"""`moodstream devices`: the audio inputs PortAudio lists, and the rates each one opens at."""

from __future__ import annotations

import argparse
import sys

from streamer.audio import sources


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Use a name (or part of it) or the index with `moodstream run --device`."


def main(args: argparse.Namespace) -> int:
    try:
        backend = sources.sounddevice_module()
        devices = sources.input_devices(backend)
    except sources.SourceError as exc:
        print(f"no input devices: {exc}", file=sys.stderr)
        return 1
    if not devices:
        print("PortAudio lists no audio input device.", file=sys.stderr)
        return 1
    default = backend.default.device[0]
    for index, info in devices:
        channels = min(2, int(info["max_input_channels"]))
        rates = ", ".join(str(r) for r in sources.supported_rates(backend, index, channels)) or "none probed"
        mark = "*" if index == default else " "
        print(
            f"{mark}{index:3d}  {info['name']}  ({info['max_input_channels']} ch, "
            f"default {info['default_samplerate']:.0f} Hz; opens at: {rates})"
        )
    return 0
