"""Where the trainer reads and writes: one place for every root, so that no module guesses.

``DEFAULT_DATA`` honours ``$MOODSTREAM_DATA`` for every entry point alike (the labelled folder
beside the checkout otherwise); everything a run produces goes under ``runs/`` and downloads under
``cache/`` (both ignored by git)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"  # the shipped files and their cards
RUNS = REPO / "runs" / "models"  # one folder per training run (resumable)
RUN_CACHE = REPO / "runs" / "cache"  # features, embeddings and students, keyed by content
TUNING = "tuning"  # a run's sub-folder with the held-out twin of its file (trainer.common.live.held_out_twin)
DOWNLOADS = REPO / "cache"  # pinned third-party files (musicnn's wheel)
DEFAULT_DATA = Path(os.environ.get("MOODSTREAM_DATA") or REPO.parent / "shared" / "data" / "4q")
