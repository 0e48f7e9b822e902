"""`python -m trainer confidence DATA_DIR [--models A,B]`: how right the daemon's claimed label is,
per ``[smoothing] min_confidence``, on the models' own validation and test parts (default: the
default family's 3- and 4-class files; a model file or a shipped short name each).

Each clip goes through the daemon's Pipeline (features, model, EMA) once; the smoothed
probabilities of every classified hop are then decided again by a Smoother with no EMA of its own
for each threshold, which gives exactly the daemon's decisions at that threshold. A hop counts as
right when its claimed label is the clip's label. The split is the trainer's (artist groups,
seed 0), recomputed here, so no test clip is one the models were trained or chosen on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from streamer.audio.decode import load_audio
from streamer.config import Settings, SmoothingSettings
from streamer.core.pipeline import Pipeline
from streamer.core.smoothing import Smoother
from streamer.model.runner import ModelRunner
from streamer.model.shipped import resolve
from streamer.util.atomic import write_atomic
from trainer.common.dataset import scan
from trainer.common.split import split_by_group

MODELS = "3class-musicnn-student,4class-musicnn-student"
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.0, 0.85, 0.05))


def smoothed_hops(runner: ModelRunner, settings: Settings, path: Path) -> np.ndarray:
    """Smoothed probabilities of every classified hop of one clip (rows), the daemon's way."""
    audio = load_audio(path, runner.metadata.feature_config.sample_rate, settings.source.channel)
    events = Pipeline(runner, settings).process(audio)
    rows = [list(e.probabilities.values()) for e in events if e.probabilities]
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(runner.labels))


def decide(rows: np.ndarray, smoothing: SmoothingSettings, threshold: float) -> list[int | None]:
    """The daemon's claimed label per hop at this threshold (the rows are already smoothed)."""
    settings = dataclasses.replace(smoothing, time_constant_s=0.0, min_confidence=threshold)
    smoother = Smoother(settings, 1.0)
    return [smoother.update(row)[1] for row in rows]


def score(clips: list[tuple[int, np.ndarray]], smoothing: SmoothingSettings) -> list[dict[str, Any]]:
    """Per threshold: share of hops with a claimed label, and how often the claim is right."""
    out = []
    total = sum(len(rows) for _, rows in clips)
    for t in THRESHOLDS:
        claimed = right = 0
        for truth, rows in clips:
            for label in decide(rows, smoothing, t):
                if label is not None:
                    claimed += 1
                    right += label == truth
        out.append(
            {
                "min_confidence": t,
                "hops": total,
                "claimed": claimed,
                "coverage": round(claimed / total, 4) if total else 0.0,
                "precision": round(right / claimed, 4) if claimed else None,
            }
        )
    return out


def measure(data_dir: Path, model: Path) -> dict[str, Any]:
    runner = ModelRunner(model)
    labels = list(runner.labels)
    settings = Settings()
    clips, _ = scan(data_dir, labels)
    split = split_by_group([c.label for c in clips], [c.group for c in clips], seed=0)
    smoothing = dataclasses.asdict(settings.smoothing)
    result: dict[str, Any] = {"model": runner.name, "labels": labels, "smoothing": smoothing}
    for part in ("val", "test"):
        rows = [(labels.index(clips[i].label), smoothed_hops(runner, settings, clips[i].path)) for i in split[part]]
        print(f"{runner.name} {part}: {len(rows)} clips", file=sys.stderr, flush=True)
        result[part] = {"clips": len(rows), "thresholds": score(rows, settings.smoothing)}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer confidence", description=__doc__.splitlines()[0])
    p.add_argument("data_dir", type=Path)
    p.add_argument("--json", type=Path, required=True, help="write the figures here")
    p.add_argument("--models", default=MODELS, help="comma-separated model files or shipped short names")
    args = p.parse_args(argv)
    results = [measure(args.data_dir, resolve(spec)) for spec in args.models.split(",")]
    write_atomic(args.json, json.dumps(results, indent=2) + "\n")
    for r in results:
        print(f"\n{r['model']}  (val {r['val']['clips']} clips, test {r['test']['clips']} clips)")
        print("min_confidence  val coverage / precision  test coverage / precision")
        for v, t in zip(r["val"]["thresholds"], r["test"]["thresholds"], strict=True):
            print(
                f"{v['min_confidence']:>14.2f}  {v['coverage']:.3f} / {v['precision'] or 0:.3f}"
                f"              {t['coverage']:.3f} / {t['precision'] or 0:.3f}"
            )
    return 0
