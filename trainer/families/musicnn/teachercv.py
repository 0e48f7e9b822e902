"""Which teachers to distil (issue 28): musicnn's embedding alone, with YAMNet's, with mn04's, and with
both, compared per label set by artist-grouped cross-validation over the training and validation
parts of the trainer's split (the test part is not read), clean and through the room.

Per 3 s patch, each teacher's cached embedding (trainer.families.musicnn.teachers) is concatenated;
a logistic-regression head (standardised inputs) is fitted on the training folds' clean patches
(as the issue's first measurement did; so the room figures say how far each embedding itself moves
with the room: the CPU budget left no capture-chain copies of the training audio), and scored at
clip level (patch probabilities averaged, the daemon's clip decision) on the held-out artists'
clean and ``room`` audio. Folds: trainer.common.split.group_folds (trainer.families.paper.crossval's
rule), the same for every row, so rows differ by their features alone: the card gives each row's
gain over musicnn alone as the mean and standard error of its per-fold differences.

Transfer beyond the training music: leave-one-genre-out (AllMusic genres in metadata.csv; every
genre with at least ``MIN_GENRE_CLIPS`` clips in the pool): the head is fitted on the clips of
artists with no clip of that genre and scored on the genre's clips; the figure pools every held-out
(genre, clip) decision into one macro-F1 per condition.

`python -m trainer teachercv --labels angry,happy,sad --out runs/teachercv-3class`
(embeddings must be cached: it computes none).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamer.util.atomic import write_atomic
from trainer.common.split import Split, group_folds, load_split
from trainer.families.musicnn.teachers import CACHE, NAMES, embed, load_teachers

log = logging.getLogger(__name__)

CHOICES = ("musicnn", "musicnn+yamnet", "musicnn+mn04", "musicnn+yamnet+mn04")  # what the student may learn
COMBOS = (*CHOICES, "yamnet", "mn04")  # the AudioSet networks alone: reference rows
CS = (0.003, 0.01, 0.03)
TRAIN_CONDITIONS = ("clean",)
EVAL_CONDITIONS = ("clean", "room")
FOLDS = 5
MIN_GENRE_CLIPS = 40


@dataclass
class Pool:
    """The clips of the training and validation parts that have every teacher under every
    condition: labels, artist groups, genres and per-condition patch features per teacher."""

    paths: list[Path]
    y: np.ndarray
    groups: list[str]
    genres: list[set[str]]
    emb: dict[str, dict[str, list[np.ndarray]]]  # condition -> teacher -> per clip (n, dim)
    _joined: dict[tuple[str, str], list[np.ndarray]] = field(default_factory=dict)

    def features(self, combo: str, condition: str) -> list[np.ndarray]:
        """Per clip, the patches' embeddings of the combination's teachers side by side."""
        if (combo, condition) not in self._joined:
            per_teacher = [self.emb[condition][t] for t in combo.split("+")]
            self._joined[combo, condition] = [np.concatenate(p, axis=1) for p in zip(*per_teacher, strict=True)]
        return self._joined[combo, condition]


def genres_of(data: Path) -> dict[str, set[str]]:
    """metadata.csv's ``genres`` column per file (relative path), split at ``;``."""
    with (data / "metadata.csv").open(newline="") as f:
        return {r["file"]: {g.strip() for g in r.get("genres", "").split(";") if g.strip()} for r in csv.DictReader(f)}


def load_pool(split: Split, data: Path, cache: Path, teachers) -> Pool:
    clips = [split.clips[i] for i in sorted(split.parts["train"] + split.parts["val"])]
    conds = sorted({*TRAIN_CONDITIONS, *EVAL_CONDITIONS})
    found = {c: embed(clips, c, teachers, cache, only_cached=True) for c in conds}
    keep = [
        clip
        for clip in clips
        if all(clip.path in found[c][t.name] and len(found[c][t.name][clip.path]) for c in conds for t in teachers)
    ]
    genres = genres_of(data)
    return Pool(
        [c.path for c in keep],
        np.asarray([split.labels.index(c.label) for c in keep]),
        [c.group for c in keep],
        [genres.get(c.path.relative_to(data).as_posix(), set()) for c in keep],
        {c: {t.name: [found[c][t.name][k.path] for k in keep] for t in teachers} for c in conds},
    )


def _fit(xs: list[np.ndarray], ys: list[int], c: float):
    from trainer.common.heads import fit_head

    return fit_head(np.concatenate(xs), np.concatenate([np.full(len(x), y) for x, y in zip(xs, ys, strict=True)]), c)


def _decisions(head, xs: list[np.ndarray]) -> np.ndarray:
    return np.asarray([int(np.argmax(head.predict_proba(x).mean(axis=0))) for x in xs])


def fit_and_score(pool: Pool, combo: str, c: float, train: list[int], held: list[int]) -> dict[str, np.ndarray]:
    """Clip decisions on ``held`` per evaluation condition, the head fitted on ``train``."""
    xs, ys = [], []
    for cond in TRAIN_CONDITIONS:
        feats = pool.features(combo, cond)
        xs += [feats[i] for i in train]
        ys += [int(pool.y[i]) for i in train]
    head = _fit(xs, ys, c)
    return {cond: _decisions(head, [pool.features(combo, cond)[i] for i in held]) for cond in EVAL_CONDITIONS}


def macro_f1(y: np.ndarray, pred: np.ndarray, n: int) -> float:
    from streamer.evaluation.metrics import classification_metrics

    return float(classification_metrics(y, pred, [str(k) for k in range(n)])["macro_f1"])


def fold_cv(pool: Pool, combo: str, c: float, n_labels: int) -> dict[str, list[float]]:
    folds = group_folds([str(v) for v in pool.y], pool.groups, FOLDS, 0)
    out: dict[str, list[float]] = {cond: [] for cond in EVAL_CONDITIONS}
    for held in folds:
        train = sorted(set(range(len(pool.y))) - set(held))
        pred = fit_and_score(pool, combo, c, train, held)
        for cond in EVAL_CONDITIONS:
            out[cond].append(macro_f1(pool.y[held], pred[cond], n_labels))
    return out


def genre_cv(pool: Pool, combo: str, c: float, n_labels: int) -> dict[str, Any]:
    """Leave-one-genre-out: pooled macro-F1 per condition over every held-out (genre, clip), and
    each genre's accuracy."""
    counts: dict[str, int] = {}
    for gs in pool.genres:
        for g in gs:
            counts[g] = counts.get(g, 0) + 1
    genres = sorted(g for g, n in counts.items() if n >= MIN_GENRE_CLIPS)
    ys: list[np.ndarray] = []
    preds: dict[str, list[np.ndarray]] = {cond: [] for cond in EVAL_CONDITIONS}
    per_genre = {}
    for g in genres:
        held = [i for i, gs in enumerate(pool.genres) if g in gs]
        artists = {pool.groups[i] for i in held}
        train = [i for i in range(len(pool.y)) if pool.groups[i] not in artists]
        pred = fit_and_score(pool, combo, c, train, held)
        ys.append(pool.y[held])
        for cond in EVAL_CONDITIONS:
            preds[cond].append(pred[cond])
        per_genre[g] = {cond: float(np.mean(pred[cond] == pool.y[held])) for cond in EVAL_CONDITIONS} | {
            "clips": len(held)
        }
    y = np.concatenate(ys)
    return {
        "genres": per_genre,
        **{cond: macro_f1(y, np.concatenate(preds[cond]), n_labels) for cond in EVAL_CONDITIONS},
    }


def run(split: Split, pool: Pool, out: Path, combos: tuple[str, ...] = COMBOS) -> dict[str, Any]:
    """Every (combination, C) in fold CV, the best C per combination by (clean + room) / 2, that C in
    leave-one-genre-out; resumable through ``out/teachercv.json``."""
    file = out / "teachercv.json"
    state: dict[str, Any] = json.loads(file.read_text()) if file.is_file() else {}
    clips = sorted(p.name for p in pool.paths)
    if state.get("clips") not in (None, clips):
        raise ValueError(f"{file} was made on other clips (more embeddings cached since?): choose another --out")
    state.update({"labels": split.labels, "clips": clips, "folds": FOLDS})
    rows = state.setdefault("rows", {})
    n = len(split.labels)
    for combo in combos:
        for c in CS:
            key = f"{combo} C={c:g}"
            if key not in rows:
                rows[key] = {"combo": combo, "C": c, **fold_cv(pool, combo, c, n)}
                log.info("%s: clean %.3f room %.3f", key, np.mean(rows[key]["clean"]), np.mean(rows[key]["room"]))
                write_atomic(file, json.dumps(state, indent=1) + "\n")
    best = state.setdefault("best", {})
    for combo in combos:
        cands = [r for r in rows.values() if r["combo"] == combo]
        top = max(cands, key=lambda r: np.mean(r["clean"]) + np.mean(r["room"]))
        if best.get(combo, {}).get("C") != top["C"] or "genre" not in best[combo]:
            best[combo] = {"C": top["C"], "genre": genre_cv(pool, combo, top["C"], n)}
            log.info(
                "%s genre-out: clean %.3f room %.3f", combo, best[combo]["genre"]["clean"], best[combo]["genre"]["room"]
            )
            write_atomic(file, json.dumps(state, indent=1) + "\n")
    return state


def cv_score(state: dict[str, Any], combo: str) -> tuple[float, np.ndarray]:
    """(clean + room) / 2 at the combination's chosen C: the mean over folds, and per fold."""
    row = state["rows"][f"{combo} C={state['best'][combo]['C']:g}"]
    per_fold = (np.asarray(row["clean"]) + np.asarray(row["room"])) / 2
    return float(per_fold.mean()), per_fold


def gain(state: dict[str, Any], combo: str, cond: str, base: str = "musicnn") -> tuple[float, float]:
    """Mean and standard error of the per-fold difference to ``base`` (the same folds: paired)."""
    rows = [state["rows"][f"{c} C={state['best'][c]['C']:g}"][cond] for c in (combo, base)]
    diff = np.asarray(rows[0]) - np.asarray(rows[1])
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0


def choose(states: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The teachers the student learns, one choice for every label set (the student is shared):
    the best mean over label sets of (clean + room) / 2; among the choices within one standard
    error of it (per-fold scores, averaged over label sets) the one that transfers best across
    genres (mean of the leave-one-genre-out clean and room figures)."""
    score = {c: np.mean([cv_score(s, c)[0] for s in states.values()]) for c in CHOICES}
    top = max(score, key=lambda c: score[c])
    folds = np.mean([cv_score(s, top)[1] for s in states.values()], axis=0)
    se = float(folds.std(ddof=1) / np.sqrt(len(folds)))
    tied = [c for c in CHOICES if score[c] >= score[top] - se]

    def transfer(c: str) -> float:
        return float(
            np.mean([(s["best"][c]["genre"]["clean"] + s["best"][c]["genre"]["room"]) / 2 for s in states.values()])
        )

    chosen = max(tied, key=transfer)
    return {
        "teachers": chosen,
        "cv": {c: float(v) for c, v in score.items()},
        "within_se": tied,
        "se": se,
        "transfer": {c: transfer(c) for c in CHOICES},
    }


def main(argv: list[str] | None = None) -> int:
    from trainer.common.paths import DEFAULT_DATA
    from trainer.families.musicnn.head import config_for

    p = argparse.ArgumentParser(prog="python -m trainer teachercv", description=__doc__.splitlines()[0])
    p.add_argument("--labels", required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--teacher-weights", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    split = load_split(args.data, args.labels.split(","))
    teachers, _ = load_teachers(NAMES, config_for("rms"), args.teacher_weights)
    pool = load_pool(split, args.data, args.cache, teachers)
    log.info("%d clips with every embedding", len(pool.paths))
    args.out.mkdir(parents=True, exist_ok=True)
    run(split, pool, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
