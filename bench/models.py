"""Which model files the benchmarks measure: the shipped ones in models/, or, until they exist,
the ones the trainer benchmark trained and exported into cache/bench/models (said so in the report)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, Skipped
from bench.trainer_speed import MODELS as TRAINED
from streamer.modelfile import ModelMetadata, read_metadata

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
        return f"{self.path.name} ({self.metadata.architecture}, {self.kind})"


def models_under_test() -> list[BenchModel]:
    """Shipped models when there are any, else the trainer benchmark's; int8 before float."""
    for folder, shipped in ((SHIPPED, True), (TRAINED, False)):
        found = [BenchModel(p, read_metadata(p), shipped) for p in sorted(folder.glob("*.tflite"))]
        if found:
            return sorted(found, key=lambda m: (m.metadata.name, m.kind != "int8", m.path.name))
    raise Skipped("no model files: neither shipped ones in models/ nor the trainer benchmark's "
                  "(run `python -m bench --only trainer` first)")


def default_model(models: list[BenchModel]) -> BenchModel:
    """The model the daemon runs by default (the shipped 3-class int8), else the first int8 one."""
    from streamer.model import default_model_path

    default = default_model_path().resolve()
    for m in models:
        if m.path.resolve() == default:
            return m
    return next((m for m in models if m.kind == "int8"), models[0])
