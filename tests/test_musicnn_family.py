"""The musicnn family's head: the scikit-learn head folds exactly into the exported dense layer,
and the clip decision averages patch probabilities."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from trainer.musicnn_family import _fit, _macro_f1, head_weights


@pytest.mark.parametrize("n_labels", [2, 3, 4])
def test_head_folds_into_one_softmax_layer(n_labels: int) -> None:
    rng = np.random.default_rng(n_labels)
    x = rng.normal(3.0, 2.0, (300, 200))
    y = rng.integers(0, n_labels, 300)
    x[np.arange(300), y] += 4.0  # learnable
    head = _fit(x, y, 0.1)
    kernel, bias = head_weights(head, n_labels)
    logits = x @ kernel + bias
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, head.predict_proba(x), atol=1e-4)
    assert (probs.argmax(axis=1) == y).mean() > 0.9


def test_macro_f1() -> None:
    assert _macro_f1(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2]), 3) == 1.0
    # one class never predicted: its F1 is 0
    assert _macro_f1(np.array([0, 1, 2]), np.array([0, 1, 1]), 3) == pytest.approx((1 + 2 / 3 + 0) / 3)
