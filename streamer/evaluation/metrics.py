"""Classification metrics in plain numpy, shared by the trainer's report and `moodstream evaluate`
so that both print the same numbers for the same predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Rows are true labels, columns predictions."""
    m = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return m


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


Labels = Sequence[int] | np.ndarray  # label indices, a list or an array


def classification_metrics(y_true: Labels, y_pred: Labels, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, the paper's weighted accuracy (Eq. 2: total true positives over total support,
    i.e. per-class recall weighted by support), balanced accuracy (unweighted mean recall),
    per-class precision/recall/F1/support, macro and weighted averages and the confusion matrix."""
    n = len(labels)
    cm = confusion_matrix(np.asarray(y_true), np.asarray(y_pred), n)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = support.sum()
    present = support > 0
    used = present | (predicted > 0)  # macro averages over labels seen (sklearn's convention)
    weights = support / total if total else np.zeros(n)
    return {
        "n": int(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "weighted_accuracy": float(np.sum(recall * weights)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_precision": float(precision[used].mean()) if used.any() else 0.0,
        "macro_recall": float(recall[used].mean()) if used.any() else 0.0,
        "macro_f1": float(f1[used].mean()) if used.any() else 0.0,
        "weighted_precision": float(np.sum(precision * weights)),
        "weighted_recall": float(np.sum(recall * weights)),
        "weighted_f1": float(np.sum(f1 * weights)),
        "per_class": {
            label: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, label in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
    }


def bootstrap_intervals(
    y_true: Labels,
    y_pred: Labels,
    n_labels: int,
    groups: Sequence[str] | None = None,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile intervals of accuracy and macro-F1 over resampled test parts: how far the
    figures could move on another test part of the same size. Without ``groups`` the clips are
    resampled one by one; with them, whole groups (artists) are, because clips of one artist
    stand or fall together and resampling them alone understates the spread."""
    true_ix, pred_ix = np.asarray(y_true, int), np.asarray(y_pred, int)
    units, unit_of = np.unique(
        np.asarray(groups if groups is not None else np.arange(true_ix.size)), return_inverse=True
    )
    if true_ix.size == 0:
        return {"level": level, "resamples": 0, "units": 0, "accuracy": [0.0, 0.0], "macro_f1": [0.0, 0.0]}
    per_unit = np.zeros((units.size, n_labels, n_labels))
    np.add.at(per_unit, (unit_of, true_ix, pred_ix), 1)
    weights = np.random.default_rng(seed).multinomial(units.size, np.full(units.size, 1 / units.size), size=resamples)
    draws = np.einsum("ru,uij->rij", weights, per_unit)
    tp = np.diagonal(draws, axis1=1, axis2=2)
    support, predicted = draws.sum(axis=2), draws.sum(axis=1)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    used = (support > 0) | (predicted > 0)  # as classification_metrics averages
    macro_f1 = (f1 * used).sum(axis=1) / used.sum(axis=1)
    accuracy = tp.sum(axis=1) / draws.sum(axis=(1, 2))
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return {
        "level": level,
        "resamples": resamples,
        "units": int(units.size),
        "accuracy": [float(v) for v in np.percentile(accuracy, tails)],
        "macro_f1": [float(v) for v in np.percentile(macro_f1, tails)],
    }


def describe_intervals(i: dict[str, Any], unit: str = "clips") -> str:
    """bootstrap_intervals in words, as `moodstream evaluate` and the model card print them."""
    acc, f1 = i["accuracy"], i["macro_f1"]
    return (
        f"{100 * i['level']:g}% interval with the {unit} resampled: accuracy {acc[0]:.3f}-{acc[1]:.3f}, "
        f"macro-F1 {f1[0]:.3f}-{f1[1]:.3f}"
    )
