"""The shipped models: their short names (`--model 4class`), their cards and the default model.

The files are the truth for what ships (models/moodstream-<short>.tflite, each with its metadata
inside); models/index.json, written by `make models` from the trainer's family registry, says
which family and card each belongs to and which is the default, so no name is spelled out here.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from typing import Any

from streamer.model.metadata import ModelFileError, ModelMetadata

PREFIX = "moodstream-"


def shipped_models_dir() -> Path:
    """Where the shipped models are: the installed ``moodstream_models`` package (models/ itself
    in an editable install), else models/ beside this code (a bare checkout)."""
    spec = importlib.util.find_spec("moodstream_models")
    if spec is not None and spec.origin:
        return Path(spec.origin).parent
    return Path(__file__).resolve().parents[2] / "models"


@functools.cache
def index(folder: Path | None = None) -> dict[str, Any]:
    """models/index.json: {"default": short name, "models": {short: {"family", "card"}}}."""
    path = (folder or shipped_models_dir()) / "index.json"
    try:
        data = json.loads(path.read_text())
        return {"default": str(data["default"]), "models": dict(data["models"])}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: the shipped models' index is unreadable ({exc})") from None


def default_model_path() -> Path:
    """The model `moodstream run` uses without --model (the index names it)."""
    return shipped_models_dir() / f"{PREFIX}{index()['default']}.tflite"


def shipped() -> dict[str, Path]:
    """Short name ("3class", "3class-musicnn") -> file of each shipped model, sorted by short name."""
    files = shipped_models_dir().glob(f"{PREFIX}*.tflite")
    return dict(sorted((f.stem.removeprefix(PREFIX), f) for f in files))


def card_of(short: str) -> Path:
    """The card that tells how a shipped model was made and chosen (its family's)."""
    return shipped_models_dir() / index()["models"][short]["card"]


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
