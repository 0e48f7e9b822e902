"""Artist-grouped k-fold cross-validation over train+val (the test part untouched) to choose a
training recipe: the 87-clip validation part moves by about 9 points from one draw to the next,
too much to choose with.

The family is the shippable ``linear`` model (softmax regression on each feature's window mean
and mean absolute deviation, trainer.families.paper.architectures). Its trainable part sees only those
statistics, so here that function is fitted on precomputed statistics by L-BFGS (scikit-learn's
logistic regression; the trainer's Keras fit with early stopping took a minute and a half per
fold on two shared cores). Each fold's held-out clips are scored at clip level (window
probabilities averaged, the daemon's clip decision) on their clean audio and on one random
capture-chain draw of them (``chain0``: room, microphone, noise, level, codec; streamer.audio.chain),
which no training fold saw. Candidates are ranked by the mean over folds of the clean and
chained macro-F1.

`python -m trainer crossval --labels angry,happy,sad --out runs/cv-3class` writes ``cv.json``
(per candidate and fold) and resumes: a finished (candidate, fold) is not refitted."""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.evaluation.metrics import classification_metrics
from streamer.features.mfcc import FeatureConfig, centre_columns
from streamer.util.atomic import write_atomic
from trainer.common.dataset import scan
from trainer.common.split import group_folds, split_by_group
from trainer.families.paper.augment import ORIGINAL, chain_variants
from trainer.families.paper.featurecache import Job, features
from trainer.families.paper.run import CENTRED, RunConfig
from trainer.families.paper.segments import segment, window_geometry

log = logging.getLogger(__name__)
HELD_OUT_CHAIN = "chain0"


@dataclass(frozen=True)
class Candidate:
    """A training recipe: the RunConfig settings it maps to (``c`` is the cross-validation fit's
    inverse L2 strength; ``weight_decay`` and ``learning_rate`` what the shipped model trains with).
    The RunConfig settings default to RunConfig's own defaults."""

    name: str
    clean_copies: bool = RunConfig.clean_copies
    chain_copies: int = RunConfig.chain_copies
    centre_energy: bool = RunConfig.centre_energy
    c: float = 1.0
    weight_decay: float = RunConfig.weight_decay
    learning_rate: float = RunConfig.learning_rate
    mixup: float = 0.0  # Beta(a, a) mixing of training rows (0: none)


CANDIDATES = (
    Candidate("clean"),
    Candidate("clean+centre", centre_energy=True),
    Candidate("chain-mix", chain_copies=1),
    Candidate("chain-mix+centre", chain_copies=1, centre_energy=True),
    Candidate("chain-only+centre", clean_copies=False, chain_copies=1, centre_energy=True),
    Candidate("chain-mix+centre+wd", chain_copies=1, centre_energy=True, c=0.1, weight_decay=1e-3, learning_rate=3e-4),
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


@dataclass
class ClipWindows:
    """One clip's raw feature windows per variant (what the networks of trainer.families.paper.netcv see)."""

    clip: int
    label: int
    windows: dict[str, np.ndarray]


def load_windows(
    data: Path, labels: list[str], cache: Path, window_s: float, overlap: float, copies: int, workers: int | None
) -> tuple[list[ClipWindows], list[str], list[str]]:
    """Train+val clips of the seed-0 split with their clean and chained windows, and their groups."""
    clips, labels = scan(data, labels)
    split = split_by_group([c.label for c in clips], [c.group for c in clips], 0)
    pool = sorted(split["train"] + split["val"])
    variants = (ORIGINAL, *chain_variants(copies))
    config = FeatureConfig()
    feats, failed = features([Job(clips[i].path, variants) for i in pool], config, cache, workers)
    frames, hop = window_geometry(config, window_s, overlap)
    out = [
        ClipWindows(
            i, labels.index(clips[i].label), {v: segment(feats[(clips[i].path, v)], frames, hop) for v in variants}
        )
        for i in pool
        if clips[i].path not in failed and feats[(clips[i].path, ORIGINAL)].shape[0] >= frames
    ]
    return out, labels, [clips[w.clip].group for w in out]


def load_units(
    data: Path, labels: list[str], cache: Path, window_s: float, overlap: float, copies: int, workers: int | None
) -> tuple[list[Unit], list[str], list[str]]:
    """Train+val clips of the seed-0 split with their clean and chained window statistics."""
    wins, labels, groups = load_windows(data, labels, cache, window_s, overlap, copies, workers)
    units = [
        Unit(
            w.clip,
            w.label,
            {v: statistics(x) for v, x in w.windows.items()},
            {v: statistics(centre_columns(x, CENTRED)) for v, x in w.windows.items()},
        )
        for w in wins
    ]
    return units, labels, groups


def _rows(units: list[Unit], variants: tuple[str, ...], centred: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, cs = [], [], []
    for u in units:
        for v in variants:
            s = (u.centred if centred else u.raw)[v]
            xs.append(s)
            ys.append(np.full(len(s), u.label))
            cs.append(np.full(len(s), u.clip))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(cs)


def fit_fold(cand: Candidate, train: list[Unit], held: list[Unit], n_labels: int, seed: int) -> dict[str, Any]:
    """Fit the linear model's function (softmax regression on the standardised statistics, classes
    weighted by inverse frequency as the trainer does) on one fold's training clips; score the
    held-out clips. L-BFGS to convergence rather than the trainer's Adam with early stopping: the
    same family at a hundredth of the cost, so that recipes can be compared on every fold."""
    from sklearn.linear_model import LogisticRegression

    variants = (*((ORIGINAL,) if cand.clean_copies else ()), *chain_variants(cand.chain_copies))
    x, y, _ = _rows(train, variants, cand.centre_energy)
    mu, sd = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    x = (x - mu) / sd
    weight = (len(y) / (n_labels * np.bincount(y, minlength=n_labels)))[y]
    if cand.mixup:  # soft labels as two weighted rows: the same cross-entropy
        rng = np.random.default_rng(seed)
        lam = rng.beta(cand.mixup, cand.mixup, size=len(x))
        partner = rng.permutation(len(x))
        mixed = lam[:, None] * x + (1 - lam[:, None]) * x[partner]
        x = np.concatenate([mixed, mixed])
        y = np.concatenate([y, y[partner]])
        weight = np.concatenate([lam * weight, (1 - lam) * weight[partner]])
    model = LogisticRegression(C=cand.c, max_iter=2000).fit(x, y, sample_weight=weight)
    out: dict[str, Any] = {"iterations": int(np.max(model.n_iter_))}
    for name, variant in (("clean", ORIGINAL), ("chain", HELD_OUT_CHAIN)):
        hx, hy, hc = _rows(held, (variant,), cand.centre_energy)
        probs = model.predict_proba((hx - mu) / sd)
        ids = np.unique(hc)
        clip_p = np.stack([probs[hc == c].mean(axis=0) for c in ids])
        clip_y = np.asarray([hy[hc == c][0] for c in ids])
        m = classification_metrics(clip_y, clip_p.argmax(axis=1), [str(i) for i in range(n_labels)])
        out[name] = {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "n": m["n"]}
    return out


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
    if not all(folds):
        raise ValueError(f"{len(set(groups))} artist groups cannot fill {k} folds: use fewer folds")
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
            train = [units[i] for g, fold in enumerate(folds) if g != f for i in fold]
            result = fit_fold(cand, train, [units[i] for i in held_ix], len(labels), seed + f)
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
    # the shipped models' window (RunConfig's default, models/README.md)
    units, labels, groups = load_units(
        data, labels, cache, RunConfig.window_seconds, RunConfig.overlap, copies, workers
    )
    log.info("%d clips in %d artist groups, %d folds", len(units), len(set(groups)), folds)
    out.mkdir(parents=True, exist_ok=True)
    return cross_validate(units, groups, labels, candidates, out, folds)


def candidate(name: str) -> Candidate:
    return next(c for c in CANDIDATES if c.name == name)


def main(argv: list[str] | None = None) -> int:
    from trainer.common.paths import DEFAULT_DATA, RUN_CACHE

    p = argparse.ArgumentParser(prog="python -m trainer crossval", description=__doc__.splitlines()[0])
    p.add_argument("--labels", required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=RUN_CACHE)
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
