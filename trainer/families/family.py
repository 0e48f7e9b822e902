"""What a model family is to `make models`: the runs it can train and the files it ships, and the
two steps the orchestrator calls. A family lives in one folder (``trainer/families/<name>/``)
and is listed once in trainer.families.registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Job:
    """What `make models` hands a family: where the data is and where everything goes."""

    data: Path  # the labelled folder (one sub-folder per label, metadata.csv)
    runs: Path  # one resumable folder per run
    cache: Path  # features and embeddings, keyed by content
    models: Path  # the shipped files and the cards
    time_budget_min: float  # per model, for families that train within a budget


@dataclass(frozen=True)
class Family:
    """A model family. ``train(run, job)`` trains one of ``runs`` (resumable: a rerun skips what
    is done); ``ship(job)`` copies what the runs hold into ``job.models`` as
    ``moodstream-<short>.tflite`` for each short name in ``shipped``, scores them the daemon's way
    and writes the family's ``card`` there."""

    name: str
    card: str  # its card's file name in models/
    runs: tuple[str, ...]  # what `make models --only` may name
    shipped: tuple[str, ...]  # short names of the files it ships
    train: Callable[[str, Job], None]
    ship: Callable[[Job], None]
