"""`moodstream models`: the shipped models, and their short names (`--model 4class`).

Everything listed is read from the metadata inside each file (labels, architecture, window and the
trainer's test figures), so the list cannot drift from the files; the model card
(models/README.md, and models/README-musicnn.md for the musicnn family) tells how they were chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamer.model.metadata import ModelFileError, ModelMetadata
from streamer.model.runner import default_model_path, shipped_models_dir

PREFIX = "moodstream-"


def shipped() -> dict[str, Path]:
    """Short name ("3class", "3class-musicnn") -> file of each shipped model, sorted by short name."""
    files = shipped_models_dir().glob(f"{PREFIX}*.tflite")
    return dict(sorted((f.stem.removeprefix(PREFIX), f) for f in files))


def card_of(short: str) -> Path:
    """The model card that tells how a shipped model was chosen: the musicnn family has its own."""
    return shipped_models_dir() / ("README-musicnn.md" if "-musicnn" in short else "README.md")


def resolve(spec: str) -> Path:
    """A model setting -> its file: "" is the default model, an existing path is itself, and a
    shipped model's short name ("4class", or "moodstream-4class") is that file."""
    if not spec:
        return default_model_path()
    path = Path(spec)
    if path.exists():
        return path
    models = shipped()
    short = spec.removesuffix(".tflite").removeprefix(PREFIX)
    if short in models and "/" not in spec:
        return models[short]
    if "/" not in spec and not spec.endswith(".tflite"):
        names = ", ".join(models) or "none found"
        raise ModelFileError(f"model {spec!r}: no such file, and no shipped model of that name (shipped: {names})")
    return path  # the runner says that the file does not exist


def card_figures(meta: ModelMetadata) -> str:
    """The trainer's test figures from the metadata: int8 clip-level accuracy / macro-F1."""
    test: dict[str, Any] = meta.metrics.get("test", {})
    kind = "int8" if "int8" in test else "float"
    clip = test.get(kind, {}).get("clip")
    if not clip:
        return "no test figures in the file"
    protocol = meta.metrics.get("protocol", "?")
    return (
        f"test ({kind}, clip level, {clip['n']} clips, {protocol} split): "
        f"accuracy {clip['accuracy']:.3f}, macro-F1 {clip['macro_f1']:.3f}"
    )
