"""The paper family's networks (CNN, CNN-LSTM, CNN-GRU; trainer.families.paper.architectures)
cross-validated with the chain recipe against the family's linear model, on
trainer.families.paper.crossval's folds (issue 28).

trainer.families.paper.crossval compares recipes for the linear model only, by L-BFGS on precomputed
statistics; the networks see whole windows and need Keras fits. Each (architecture, fold) is one
such fit, as the trainer trains the shipped model: the recipe's clean and chained windows of the
fold's training clips (level-free input, standardised by their statistics), Adam, class weights,
weight decay on the output layer, early stopping on a group-disjoint share of the training clips
(their clean windows, as the trainer stops on its validation part), best weights kept. The held-out
fold is scored at clip level (float; window probabilities averaged) on its clean clips and on the
``chain0`` draw that no training fold saw, as trainer.families.paper.crossval scores the linear
recipes. The Keras ``linear`` model runs in the same harness, so the comparison differs in the
architecture alone.

The budget (two shared cores; a network epoch took 14-24 s on one split): an epoch cap, early
stopping and a wall-clock limit per fit, recorded in the output. Folds run in the outer loop, so an
interrupted run has scored every architecture on the same folds. Resumable: a finished
(architecture, fold) in ``OUT/netcv.json`` is not refitted.

`nohup nice -n 15 python -m trainer netcv --labels angry,happy,sad --out runs/netcv-3class &`
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.evaluation.metrics import classification_metrics
from streamer.features.mfcc import centre_columns
from streamer.util.atomic import write_atomic
from trainer.common.split import group_folds, split_by_group
from trainer.families.paper.augment import ORIGINAL, chain_variants
from trainer.families.paper.crossval import (
    HELD_OUT_CHAIN,
    Candidate,
    ClipWindows,
    candidate,
    load_windows,
    rank,
    summarise,
)
from trainer.families.paper.run import CENTRED, RunConfig
from trainer.families.paper.segments import standardisation, standardise

log = logging.getLogger(__name__)

ARCHITECTURES = ("linear", "cnn", "cnn_lstm", "cnn_gru")
RECIPE = "chain-mix+centre+wd"  # trainer.families.paper.crossval's winner for 3 and 4 classes (models/README.md)
INNER_VAL = 0.15  # share of a fold's training clips (whole artist groups) for early stopping


@dataclass(frozen=True)
class Budget:
    """What one fit may spend: epochs (the linear model's own cap: at the recipe's learning rate it
    still improved at epoch 100, about 1 s each, where the networks stop early by patience),
    patience of early stopping, wall-clock seconds."""

    epochs: int = 100
    patience: int = 6
    seconds: float = 1500.0
    linear_epochs: int = 400


def _rows(units: list[ClipWindows], variants: tuple[str, ...], centre: bool) -> tuple[np.ndarray, ...]:
    xs, ys, cs = [], [], []
    for u in units:
        for v in variants:
            w = u.windows[v]
            xs.append(centre_columns(w, CENTRED) if centre else w)
            ys.append(np.full(len(w), u.label))
            cs.append(np.full(len(w), u.clip))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.concatenate(cs)


def clip_scores(probs: np.ndarray, y: np.ndarray, clips: np.ndarray, n_labels: int) -> dict[str, Any]:
    """Clip-level macro-F1 and accuracy: window probabilities averaged per clip (the daemon's decision)."""
    ids = np.unique(clips)
    clip_p = np.stack([probs[clips == c].mean(axis=0) for c in ids])
    clip_y = np.asarray([y[clips == c][0] for c in ids])
    m = classification_metrics(clip_y, clip_p.argmax(axis=1), [str(i) for i in range(n_labels)])
    return {"macro_f1": m["macro_f1"], "accuracy": m["accuracy"], "n": m["n"]}


def fit_fold(
    arch: str,
    cand: Candidate,
    train: list[ClipWindows],
    groups: list[str],
    held: list[ClipWindows],
    labels: list[str],
    budget: Budget,
    seed: int,
) -> dict[str, Any]:
    """One architecture on one fold: fitted on ``train`` (early stopping on a group-disjoint part
    of it), scored on ``held`` clean and chained."""
    from trainer.families.paper.architectures import build
    from trainer.families.paper.fit import fit

    inner = split_by_group([labels[u.label] for u in train], groups, seed, (1 - INNER_VAL, INNER_VAL))
    fit_units, stop_units = [train[i] for i in inner["train"]], [train[i] for i in inner["val"]]
    variants = (*((ORIGINAL,) if cand.clean_copies else ()), *chain_variants(cand.chain_copies))
    x, y, _ = _rows(fit_units, variants, cand.centre_energy)
    mean, std = standardisation(x)
    x = standardise(x, mean, std)
    xv, yv, _ = _rows(stop_units, (ORIGINAL,), cand.centre_energy)
    model = build(arch, x.shape[1], x.shape[2], len(labels), seed=seed, weight_decay=cand.weight_decay)
    fitted = fit(
        model,
        x,
        y,
        standardise(xv, mean, std),
        yv,
        epochs=budget.linear_epochs if arch == "linear" else budget.epochs,
        patience=budget.patience,
        learning_rate=cand.learning_rate,
        time_budget_s=budget.seconds,
        seed=seed,
    )
    del x
    out: dict[str, Any] = {
        "fit": {k: v for k, v in fitted.items() if k != "history"},
        "val_loss": fitted["history"]["val_loss"],
        "clips": {"fit": len(fit_units), "stop": len(stop_units), "held": len(held)},
    }
    for name, variant in (("clean", ORIGINAL), ("chain", HELD_OUT_CHAIN)):
        hx, hy, hc = _rows(held, (variant,), cand.centre_energy)
        probs = model.predict(standardise(hx, mean, std), batch_size=256, verbose=0)
        out[name] = clip_scores(probs, hy, hc, len(labels))
    return out


def cross_validate(
    units: list[ClipWindows],
    groups: list[str],
    labels: list[str],
    out: Path,
    archs: tuple[str, ...] = ARCHITECTURES,
    cand: Candidate | None = None,
    budget: Budget = Budget(),
    k: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Every architecture on every fold, folds outermost (resumable through ``out/netcv.json``);
    the folds are trainer.families.paper.crossval's (same clips, same rule, same seed)."""
    cand = cand or candidate(RECIPE)
    file = out / "netcv.json"
    state: dict[str, Any] = json.loads(file.read_text()) if file.is_file() else {}
    folds = group_folds([labels[u.label] for u in units], groups, k, seed)
    if not all(folds):
        raise ValueError(f"{len(set(groups))} artist groups cannot fill {k} folds: use fewer folds")
    fold_ids = [sorted(units[i].clip for i in f) for f in folds]
    settings = {"recipe": asdict(cand), "budget": asdict(budget), "inner_val": INNER_VAL}
    if state.get("folds") not in (None, fold_ids) or state.get("settings") not in (None, settings):
        raise ValueError(f"{file} holds other folds or settings: choose another --out")
    state.update({"labels": labels, "k": k, "seed": seed, "folds": fold_ids, "settings": settings})
    results = state.setdefault("results", {})
    for f, held_ix in enumerate(folds):
        train_ix = [i for g, fold in enumerate(folds) if g != f for i in fold]
        for arch in archs:
            res = results.setdefault(arch, {"folds": {}})
            if str(f) in res["folds"]:
                continue
            started = time.monotonic()
            result = fit_fold(
                arch,
                cand,
                [units[i] for i in train_ix],
                [groups[i] for i in train_ix],
                [units[i] for i in held_ix],
                labels,
                budget,
                seed + f,
            )
            result["seconds"] = round(time.monotonic() - started, 1)
            res["folds"][str(f)] = result
            res["summary"] = summarise(res["folds"])
            log.info(
                "%s fold %d: clean %.3f chain %.3f (%d epochs, best %d, %.0f s)",
                arch,
                f,
                result["clean"]["macro_f1"],
                result["chain"]["macro_f1"],
                result["fit"]["epochs_run"],
                result["fit"]["best_epoch"],
                result["seconds"],
            )
            state["ranking"] = rank({a: r for a, r in results.items() if len(r["folds"]) == k})
            write_atomic(file, json.dumps(state, indent=1) + "\n")
    state["ranking"] = rank({a: r for a, r in results.items() if len(r["folds"]) == k})
    write_atomic(file, json.dumps(state, indent=1) + "\n")
    return state


def run_netcv(
    data: Path,
    labels: list[str],
    out: Path,
    cache: Path,
    archs: tuple[str, ...] = ARCHITECTURES,
    budget: Budget = Budget(),
    folds: int = 5,
    workers: int | None = None,
) -> dict[str, Any]:
    """Features (featurecache, shared with crossval), folds and every architecture."""
    cand = candidate(RECIPE)
    units, labels, groups = load_windows(
        data, labels, cache, RunConfig.window_seconds, RunConfig.overlap, cand.chain_copies, workers
    )
    log.info("%d clips in %d artist groups, %d folds", len(units), len(set(groups)), folds)
    out.mkdir(parents=True, exist_ok=True)
    return cross_validate(units, groups, labels, out, archs, cand, budget, folds)


def limit_threads(threads: int) -> None:
    """At most ``threads`` for TensorFlow's ops (the machine's cores are shared)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def main(argv: list[str] | None = None) -> int:
    from trainer.common.paths import DEFAULT_DATA, RUN_CACHE

    p = argparse.ArgumentParser(prog="python -m trainer netcv", description=__doc__.splitlines()[0])
    p.add_argument("--labels", required=True)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="labelled folder (default: $MOODSTREAM_DATA)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--cache", type=Path, default=RUN_CACHE)
    p.add_argument("--archs", default=",".join(ARCHITECTURES))
    p.add_argument("--epochs", type=int, default=Budget.epochs)
    p.add_argument("--patience", type=int, default=Budget.patience)
    p.add_argument("--fit-budget", type=float, default=Budget.seconds, help="seconds per fit")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="feature extraction processes")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limit_threads(args.threads)
    budget = Budget(args.epochs, args.patience, args.fit_budget)
    state = run_netcv(
        args.data,
        args.labels.split(","),
        args.out,
        args.cache,
        tuple(args.archs.split(",")),
        budget,
        workers=args.workers,
    )
    for name in state["ranking"]:
        s = state["results"][name]["summary"]
        print(f"{name:10s} clean {s['clean']['mean']:.3f} ± {s['clean']['std']:.3f}   chain {s['chain']['mean']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
