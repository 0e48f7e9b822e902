"""The musicnn family's head: the scikit-learn head folds exactly into the exported dense layer,
and the clip decision averages patch probabilities; its card's table of the capture chain's links."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from trainer.families.musicnn.head import _fit, _macro_f1, head_weights


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


def test_card_links_table_has_a_row_per_link_and_a_column_per_file() -> None:
    from trainer.families.musicnn.card import _links

    def ev(f1: float) -> dict:
        return {"accuracy": f1, "macro_f1": f1, "n_clips": 87, "group_intervals": {"macro_f1": [f1 - 0.1, f1 + 0.05]}}

    links = {
        "paper": {"level": ev(0.6), "noise": ev(0.5)},
        "network": {"level": ev(0.7), "noise": ev(0.4)},
        "student": {"level": ev(0.8), "noise": ev(0.75)},
    }
    lines = _links(
        {"3class": {"links": links}, "4class": {"links": {k: v for k, v in links.items() if k != "student"}}}
    )
    rows = [line for line in lines if line.startswith("| 3class") or line.startswith("| 4class")]
    assert rows[:2] == [
        "| 3class | level | 87 | 0.600 (0.50-0.65) | 0.700 (0.60-0.75) | 0.800 (0.70-0.85) |",
        "| 3class | noise | 87 | 0.500 (0.40-0.55) | 0.400 (0.30-0.45) | 0.750 (0.65-0.80) |",
    ]
    assert rows[2] == "| 4class | level | 87 | 0.600 (0.50-0.65) | 0.700 (0.60-0.75) | - |"  # no student
    assert len(rows) == 4
    assert _links({"3class": {}}) == []  # not measured: no section


def test_card_says_when_the_refit_stopped_short_of_the_chosen_epochs() -> None:
    from trainer.families.musicnn.card import _student

    first = {"history": {"best_epoch": 12}, "train_clips": 429, "val_clips": 157, "val_cosine_to_teacher": 0.69}
    refit = {"macs": 27e6, "params": 257704, "conditions": ["clean", "augment-0"], "train_clips": 586}
    st = {"file": "s.tflite", "size": 314_000, "chosen_C": 0.01, "first_student": first}
    st["student"] = {**refit, "train_patches_per_condition": 5276, "history": {"epochs": 12, "seconds": 1790}}
    whole = _student(st)[0]
    assert "for 12 epochs (30 min on 2 shared cores)" in whole and "budget" not in whole
    st["student"]["history"] = {"epochs": 9, "seconds": 1801}
    assert (
        "for 9 epochs (30 min on 2 shared cores, stopped by its wall-clock budget short of the 12 chosen)"
        in (_student(st)[0])
    )
