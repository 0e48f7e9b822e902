"""Artist-grouped k-fold cross-validation over train+val (the test part untouched) to choose a
training recipe: the 87-clip validation part moves by about 9 points from one draw to the next,
too much to choose with.

The family is the shippable ``linear`` model (softmax regression on each feature's window mean
and mean absolute deviation, trainer.architectures). Its trainable part sees only those
statistics, so here it is trained on precomputed statistics (the same function, a hundredth of
the cost on two shared cores). Each fold's held-out clips are scored at clip level (window
probabilities averaged, the daemon's clip decision) on their clean audio and on one random
capture-chain draw of them (``chain0``: room, microphone, noise, level, codec; streamer.chain),
which no training fold saw. Candidates are ranked by the mean over folds of the clean and
chained macro-F1.

`python -m trainer.crossval --labels angry,happy,sad --out runs/cv-3class` writes ``cv.json``
(per candidate and fold) and resumes: a finished (candidate, fold) is not refitted."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.atomic import write_atomic
from streamer.features import FeatureConfig, centre_columns
from streamer.metrics import classification_metrics
from trainer.augment import ORIGINAL, chain_variants
from trainer.dataset import scan
from trainer.featurecache import Job, features
from trainer.run import CENTRED
from trainer.segments import segment, window_geometry
from trainer.split import group_folds, split_by_group

log = logging.getLogger(__name__)
HELD_OUT_CHAIN = "chain0"
WINDOW_S, OVERLAP = 10.0, 0.5  # the shipped models' window (models/README.md)


@dataclass(frozen=True)
class Candidate:
    """A training recipe (the RunConfig settings it maps to)."""

    name: str
    clean_copies: bool = True
    chain_copies: int = 0
    centre_energy: bool = False
    weight_decay: float = 0.0
    learning_rate: float = 1e-3
    mixup: float = 0.0  # Beta(a, a) mixing of training rows (0: none)


CANDIDATES = (
    Candidate("clean"),
    Candidate("clean+centre", centre_energy=True),
    Candidate("chain-mix", chain_copies=1),
    Candidate("chain-mix+centre", chain_copies=1, centre_energy=True),
    Candidate("chain-only+centre", clean_copies=False, chain_copies=1, centre_energy=True),
    Candidate("chain-mix+centre+wd", chain_copies=1, centre_energy=True, weight_decay=1e-3, learning_rate=3e-4),
    Candidate("chain-mix+centre+mixup", chain_copies=1, centre_energy=True, mixup=0.4),
)


def statistics(windows: np.ndarray) -> np.ndarray:
    """(N, frames, F) -> (N, 2F): per-feature window mean and mean absolute deviation, exactly
    what the linear model's pooling layers compute."""
    mean = windows.mean(axis=1)
    return np.concatenate([mean, np.abs(windows - mean[:, None, :]).mean(axis=1)], axis=1).astype(np.float32)


@dataclass
class Unit:
    """One clip's windows' statistics per variant (raw and with the energy centred)."""

    clip: int
    label: int
    raw: dict[str, np.ndarray]
    centred: dict[str, np.ndarray]


def load_units(
    data: Path, labels: list[str], cache: Path, window_s: float, overlap: float, copies: int, workers: int | None
) -> tuple[list[Unit], list[str], list[str]]:
    """Train+val clips of the seed-0 split with their clean and chained window statistics."""
    clips, labels = scan(data, labels)
    split = split_by_group([c.label for c in clips], [c.group for c in clips], 0)
    pool = sorted(split["train"] + split["val"])
    variants = (ORIGINAL, *chain_variants(copies))
    config = FeatureConfig()
    feats, failed = features([Job(clips[i].path, variants) for i in pool], config, cache, workers)
    frames, hop = window_geometry(config, window_s, overlap)
    units = []
    for i in pool:
        if clips[i].path in failed or feats[(clips[i].path, ORIGINAL)].shape[0] < frames:
            continue
        wins = {v: segment(feats[(clips[i].path, v)], frames, hop) for v in variants}
        units.append(
            Unit(
                i,
                labels.index(clips[i].label),
                {v: statistics(w) for v, w in wins.items()},
                {v: statistics(centre_columns(w, CENTRED)) for v, w in wins.items()},
            )
        )
    return units, labels, [clips[u.clip].group for u in units]


def _rows(units: list[Unit], variants: tuple[str, ...], centred: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, cs = [], [], []
    for u in units:
        for v in variants:
            s = (u.centred if centred else u.raw)[v]
            xs.append(s)
            ys.append(np.full(len(s), u.label))
            cs.append(np.full(len(s), u.clip))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(cs)


def fit_fold(
    cand: Candidate, train: list[Unit], inner_val: list[Unit], held: list[Unit], n_labels: int, seed: int
) -> dict[str, Any]:
    """Train the linear model's head on one fold's training clips; score the held-out clips."""
    import keras

    from trainer.architectures import statistics_head
    from trainer.fit import fit

    variants = (*((ORIGINAL,) if cand.clean_copies else ()), *chain_variants(cand.chain_copies))
    x, y, _ = _rows(train, variants, cand.centre_energy)
    vx, vy, _ = _rows(inner_val, (ORIGINAL,), cand.centre_energy)
    mu, sd = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    if cand.mixup:
        x, y_soft = _mixup(x, y, n_labels, cand.mixup, seed)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(x.shape[1],))
    reg = keras.regularizers.L2(cand.weight_decay) if cand.weight_decay else None
    model = keras.Model(inputs, statistics_head(inputs, n_labels, regulariser=reg))
    fitted = fit(
        model,
        (x - mu) / sd,
        y_soft if cand.mixup else y,
        (vx - mu) / sd,
        vy,
        learning_rate=cand.learning_rate,
        seed=seed,
    )
    out: dict[str, Any] = {"epochs_run": fitted["epochs_run"], "best_epoch": fitted["best_epoch"]}
    for name, variant in (("clean", ORIGINAL), ("chain", HELD_OUT_CHAIN)):
        hx, hy, hc = _rows(held, (variant,), cand.centre_energy)
        probs = model.predict((hx - mu) / sd, verbose=0, batch_size=1024)
        ids = np.unique(hc)
        clip_p = np.stack([probs[hc == c].mean(axis=0) for c in ids])
        clip_y = np.asarray([hy[hc == c][0] for c in ids])
        m = classification_metrics(clip_y, clip_p.argmax(axis=1), list(range(n_labels)))
        out[name] = {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "n": m["n"]}
    return out


def _mixup(x: np.ndarray, y: np.ndarray, n_labels: int, alpha: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row mixed with a random partner (Beta(alpha, alpha) weights): soft labels."""
    rng = np.random.default_rng(seed)
    lam = rng.beta(alpha, alpha, size=(len(x), 1)).astype(np.float32)
    partner = rng.permutation(len(x))
    onehot = np.eye(n_labels, dtype=np.float32)[y]
    return lam * x + (1 - lam) * x[partner], lam * onehot + (1 - lam) * onehot[partner]


def cross_validate(
    units: list[Unit],
    groups: list[str],
    labels: list[str],
    candidates: tuple[Candidate, ...],
    out: Path,
    k: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Every candidate on every fold (resumable through ``out/cv.json``); summary per candidate."""
    file = out / "cv.json"
    state: dict[str, Any] = json.loads(file.read_text()) if file.is_file() else {}
    folds = group_folds([labels[u.label] for u in units], groups, k, seed)
    fold_ids = [sorted(units[i].clip for i in f) for f in folds]
    if state.get("folds") not in (None, fold_ids):
        raise ValueError(f"{file} holds other folds: choose another --out")
    state.update({"labels": labels, "k": k, "seed": seed, "folds": fold_ids})
    state.setdefault("results", {})
    for cand in candidates:
        res = state["results"].setdefault(cand.name, {"candidate": asdict(cand), "folds": {}})
        for f, held_ix in enumerate(folds):
            if str(f) in res["folds"]:
                continue
            rest = [i for g, fold in enumerate(folds) if g != f for i in fold]
            inner = set(folds[(f + 1) % k])  # early stopping on the next fold, never on the held-out one
            train = [units[i] for i in rest if i not in inner]
            result = fit_fold(
                cand, train, [units[i] for i in inner], [units[i] for i in held_ix], len(labels), seed + f
            )
            res["folds"][str(f)] = result
            log.info(
                "%s fold %d: clean %.3f chain %.3f",
                cand.name,
                f,
                result["clean"]["macro_f1"],
                result["chain"]["macro_f1"],
            )
            write_atomic(file, json.dumps(state, indent=1) + "\n")
        res["summary"] = summarise(res["folds"])
    state["ranking"] = rank(state["results"])
    write_atomic(file, json.dumps(state, indent=1) + "\n")
    return state


def summarise(folds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for kind in ("clean", "chain"):
        v = np.asarray([f[kind]["macro_f1"] for f in folds.values()])
        out[kind] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0}
    both = np.asarray([(f["clean"]["macro_f1"] + f["chain"]["macro_f1"]) / 2 for f in folds.values()])
    out["both"] = {"mean": float(both.mean()), "std": float(both.std(ddof=1)) if both.size > 1 else 0.0}
    return out


def rank(results: dict[str, Any]) -> list[str]:
    """Candidates best first by the mean over folds of (clean + chained) / 2."""
    done = [n for n, r in results.items() if "summary" in r]
    return sorted(done, key=lambda n: -results[n]["summary"]["both"]["mean"])


def run_cv(
    data: Path,
    labels: list[str],
    out: Path,
    cache: Path,
    folds: int = 5,
    candidates: tuple[Candidate, ...] = CANDIDATES,
    workers: int | None = None,
) -> dict[str, Any]:
    """Features (cached), folds and every candidate: the state of ``out/cv.json``."""
    copies = max(c.chain_copies for c in CANDIDATES)
    units, labels, groups = load_units(data, labels, cache, WINDOW_S, OVERLAP, copies, workers)
    log.info("%d clips in %d artist groups, %d folds", len(units), len(set(groups)), folds)
    out.mkdir(parents=True, exist_ok=True)
    return cross_validate(units, groups, labels, candidates, out, folds)


def candidate(name: str) -> Candidate:
    return next(c for c in CANDIDATES if c.name == name)


def main(argv: list[str] | None = None) -> int:
    from trainer.make_models import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="python -m trainer.crossval", description=__doc__.splitlines()[0])
    p.add_argument("--labels", required=True)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("MOODSTREAM_DATA", DEFAULT_DATA)))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=Path("runs/cache"))
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only", help="comma-separated candidate names (default: all)")
    p.add_argument("--workers", type=int)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    chosen = tuple(c for c in CANDIDATES if not args.only or c.name in args.only.split(","))
    state = run_cv(args.data, args.labels.split(","), args.out, args.cache, args.folds, chosen, args.workers)
    for name in state["ranking"]:
        s = state["results"][name]["summary"]
        print(
            f"{name:26s} clean {s['clean']['mean']:.3f} ± {s['clean']['std']:.3f}   "
            f"chain {s['chain']['mean']:.3f} ± {s['chain']['std']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
