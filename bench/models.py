"""Which model files the benchmarks measure: the shipped ones in models/, plus the ones the trainer
benchmark trained and exported into cache/bench/models for the kinds (architecture, int8/float)
that are not shipped. Every table says which is which."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, Skipped
from bench.trainer_speed import MODELS as TRAINED
from streamer.model.metadata import ModelMetadata, read_metadata

SHIPPED = ROOT / "models"


@dataclass(frozen=True)
class BenchModel:
    path: Path
    metadata: ModelMetadata
    shipped: bool

    @property
    def kind(self) -> str:
        return "int8" if self.metadata.quantized else "float"

    @property
    def label(self) -> str:
        return f"{self.path.name} ({self.metadata.architecture}, {self.kind}, {self.origin})"

    @property
    def origin(self) -> str:
        return "shipped" if self.shipped else "trained by the benchmark"


def models_under_test() -> list[BenchModel]:
    """Shipped models first, then trained ones of kinds not shipped; int8 before float. MFCC +
    contrast models only: the musicnn family has its own benchmark (bench/musicnn_cost.py)."""
    shipped = [BenchModel(p, meta, True) for p in sorted(SHIPPED.glob("*.tflite")) if _mfcc(meta := read_metadata(p))]
    kinds = {(m.metadata.architecture, m.kind) for m in shipped}
    trained = [
        m
        for p in sorted(TRAINED.glob("*.tflite"))
        if ((m := BenchModel(p, read_metadata(p), False)).metadata.architecture, m.kind) not in kinds
    ]
    found = shipped + sorted(trained, key=lambda m: (m.metadata.architecture, m.kind != "int8"))
    if not found:
        raise Skipped(
            "no model files: neither shipped ones in models/ nor the trainer benchmark's "
            "(run `python -m bench --only trainer` first)"
        )
    return found


def _mfcc(meta: ModelMetadata) -> bool:
    return meta.features == "mfcc_contrast"


def shipped_default() -> BenchModel:
    """The model `moodstream run` uses when none is named, whatever its family (the whole-daemon cost)."""
    from streamer.model.shipped import default_model_path

    path = default_model_path()
    return BenchModel(path, read_metadata(path), True)


def is_default(path: Path) -> bool:
    """Whether ``path`` is the model `moodstream run` uses when none is named."""
    from streamer.model.shipped import default_model_path

    return path.resolve() == default_model_path().resolve()


def headline_model(models: list[BenchModel]) -> BenchModel:
    """The model a table's headline is about: the daemon's default when it is one of ``models``,
    else the first int8 one (the default may be of the musicnn family, which these MFCC tables
    leave to bench/musicnn_cost.py and the daemon benchmark)."""
    return next((m for m in models if is_default(m.path)), next((m for m in models if m.kind == "int8"), models[0]))
