"""A model family is one folder plus one registry line: a toy family, registered here the way
trainer/families/registry.py lists the real ones, is trained and shipped by `make models`, and
`moodstream` then lists it, resolves it, finds its card and runs it as the default model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamer.config import Settings
from streamer.core.pipeline import Pipeline
from streamer.model import shipped
from streamer.model.runner import ModelRunner
from trainer import make_models
from trainer.families.family import Family, Job
from trainer.families.registry import DEFAULT_MODEL, FAMILIES

pytest.importorskip("tensorflow")


def _train(name: str, job: Job) -> None:
    from trainer.families.paper.tiny import train_tiny_model

    out = job.runs / name
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "tiny-int8.tflite").is_file():  # resumable, as a family's runs must be
        train_tiny_model(out)


def _ship(job: Job) -> None:
    job.models.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(job.runs / "toy-3class" / "tiny-int8.tflite", job.models / "moodstream-3class-toy.tflite")
    (job.models / "README-toy.md").write_text("# The toy family\n")


TOY = Family("toy", "README-toy.md", ("toy-3class",), ("3class-toy",), _train, _ship)


def test_the_registry_names_the_default_among_its_shipped_models() -> None:
    names = [short for family in FAMILIES for short in family.shipped]
    assert DEFAULT_MODEL in names and len(names) == len(set(names))
    assert len({f.name for f in FAMILIES}) == len(FAMILIES)


def test_the_shipped_index_is_the_registry_and_the_files() -> None:
    index = shipped.index()
    files = set(shipped.shipped())
    assert set(index["models"]) == files
    assert index["default"] == DEFAULT_MODEL
    by_family = {short: f for f in FAMILIES for short in f.shipped}
    for short, entry in index["models"].items():
        assert entry == {"family": by_family[short].name, "card": by_family[short].card}
        assert shipped.card_of(short).is_file()


@pytest.mark.slow
def test_a_toy_family_is_trained_shipped_listed_and_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamer.audio.synth import mood_audio
    from streamer.commands import models as models_command

    data, models = tmp_path / "data", tmp_path / "models"
    data.mkdir()
    argv = ["--data", str(data), "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path), "--models", str(models)]
    assert make_models.main(argv, families=(TOY,), default="3class-toy") == 0
    assert json.loads((models / "index.json").read_text()) == {
        "default": "3class-toy",
        "models": {"3class-toy": {"family": "toy", "card": "README-toy.md"}},
    }
    assert make_models.main([*argv, "--only", "nope"], families=(TOY,), default="3class-toy") == 2

    monkeypatch.setattr(shipped, "shipped_models_dir", lambda: models)
    shipped.index.cache_clear()
    try:
        assert shipped.resolve("") == shipped.resolve("3class-toy") == models / "moodstream-3class-toy.tflite"
        assert shipped.card_of("3class-toy") == models / "README-toy.md"
        assert models_command.main(None) == 0  # type: ignore[arg-type]
        listing = capsys.readouterr().out
        assert "3class-toy (default): angry, happy, sad" in listing and "card: README-toy.md" in listing
        runner = ModelRunner(shipped.resolve(""))
        events = Pipeline(runner, Settings()).process(np.concatenate([mood_audio("angry", 4.0)] * 2))
        assert [e.state for e in events][-1] in ("emotion", "uncertain")
    finally:
        shipped.index.cache_clear()
