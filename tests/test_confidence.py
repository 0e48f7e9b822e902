"""trainer.studies.confidence: per threshold, the share of hops with a claimed label and how often the claim
is right, decided by the daemon's own Smoother; the models are files or shipped short names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamer.config import SmoothingSettings
from streamer.model.shipped import resolve
from trainer.studies import confidence


def test_a_higher_threshold_claims_fewer_hops_and_these_more_often_right() -> None:
    sure_right = np.array([[0.9, 0.05, 0.05]] * 4)  # truth 0
    unsure_wrong = np.array([[0.1, 0.55, 0.35]] * 4)  # truth 0, claims 1 below 0.60
    smoothing = SmoothingSettings()
    per_clip = 4 - (smoothing.switch_hops - 1)  # a new label must lead switch_hops hops first
    rows = {r["min_confidence"]: r for r in confidence.score([(0, sure_right), (0, unsure_wrong)], smoothing)}
    assert rows[0.0]["hops"] == 8
    assert rows[0.0]["claimed"] == 2 * per_clip and rows[0.0]["precision"] == 0.5
    assert rows[0.6]["claimed"] == per_clip and rows[0.6]["precision"] == 1.0
    assert rows[0.8]["claimed"] == per_clip and rows[0.8]["coverage"] == per_clip / 8
    assert rows[max(rows)]["precision"] == 1.0


def test_models_are_files_or_short_names(tmp_path: Path, monkeypatch) -> None:
    seen = []
    part = {"clips": 0, "thresholds": []}

    def measure(data: Path, model: Path) -> dict:
        seen.append(model)
        return {"model": model.name, "val": part, "test": part}

    monkeypatch.setattr(confidence, "measure", measure)
    out = tmp_path / "c.json"
    assert confidence.main([str(tmp_path), "--json", str(out), "--models", "3class,4class"]) == 0
    assert seen == [resolve("3class"), resolve("4class")]
    seen.clear()
    confidence.main([str(tmp_path), "--json", str(out)])
    assert seen == [resolve("3class-musicnn-student"), resolve("4class-musicnn-student")]  # the default family
    assert [r["model"] for r in json.loads(out.read_text())] == [p.name for p in seen]
