"""Logistic-regression heads on frozen embeddings (per patch; a clip's verdict averages its patches'
probabilities, as the daemon's clip decision averages its hops), shared by every family that fits
one: fitting, clip-level scoring with the project's one macro-F1 (streamer.evaluation.metrics),
and the fitted head as one dense softmax layer for export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamer.evaluation.metrics import classification_metrics
from trainer.common.split import Split

CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # the grid of inverse L2 strengths a head is chosen from


def fit_head(x: np.ndarray, y: np.ndarray, c: float) -> Any:
    """Standardised inputs, then a logistic regression with inverse L2 strength ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000)).fit(x, y)


def clip_f1(model: Any, split: Split, idx: Any, emb_cond: dict[Path, np.ndarray]) -> tuple[float, int]:
    """Clip-level macro-F1 (patch probabilities averaged per clip) and the clips scored; clips
    without embeddings are left out."""
    y_true, y_pred = [], []
    for i in idx:
        e = emb_cond.get(split.clips[i].path)
        if e is None:
            continue
        y_true.append(split.labels.index(split.clips[i].label))
        y_pred.append(int(np.argmax(model.predict_proba(e).mean(axis=0))))
    return classification_metrics(y_true, y_pred, split.labels)["macro_f1"], len(y_true)


def head_weights(head, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """The fitted scaler + logistic regression as one dense softmax layer's (kernel, bias)."""
    scaler, lr = head.named_steps["standardscaler"], head.named_steps["logisticregression"]
    coef = lr.coef_ if n_labels > 2 else np.vstack([-lr.coef_, lr.coef_]) / 2
    bias = lr.intercept_ if n_labels > 2 else np.asarray([-lr.intercept_[0], lr.intercept_[0]]) / 2
    kernel = (coef / scaler.scale_).T
    return kernel.astype(np.float32), (bias - (coef * scaler.mean_ / scaler.scale_).sum(axis=1)).astype(np.float32)
