"""`moodstream models`: the shipped models, read from the metadata inside each file (labels, size, test figures)."""

from __future__ import annotations

import argparse
import sys

from streamer.model.metadata import ModelFileError, read_metadata
from streamer.model.shipped import card_figures, card_of, default_model_path, shipped, shipped_models_dir


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "Use a short name with `moodstream run --model NAME`; models/README.md is the model card."


def main(args: argparse.Namespace) -> int:
    models = shipped()
    if not models:
        print(f"moodstream: no shipped models in {shipped_models_dir()}", file=sys.stderr)
        return 1
    default = default_model_path().resolve()
    status = 0
    for short, path in models.items():
        mark = " (default)" if path.resolve() == default else ""
        try:
            meta = read_metadata(path)
        except ModelFileError as exc:
            print(f"{short}{mark}: unreadable: {exc}")
            status = 1
            continue
        size_kb = path.stat().st_size / 1024
        print(f"{short}{mark}: {', '.join(meta.labels)}")
        data = meta.training.get("data", "?")
        print(
            f"    {meta.architecture}, {meta.window_seconds:g} s window, {size_kb:.0f} KB, "
            f"{'int8' if meta.quantized else 'float32'}; trained on {data}"
        )
        print(f"    {card_figures(meta)}; card: {card_of(short).name}")
        print(f"    {path}")
    return status
