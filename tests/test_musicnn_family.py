"""The musicnn family's head: the scikit-learn head folds exactly into the exported dense layer,
and the clip decision averages patch probabilities; its card's table of the capture chain's links."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from trainer.common.dataset import Clip
from trainer.common.heads import clip_f1, fit_head, head_weights
from trainer.common.split import Split


@pytest.mark.parametrize("n_labels", [2, 3, 4])
def test_head_folds_into_one_softmax_layer(n_labels: int) -> None:
    rng = np.random.default_rng(n_labels)
    x = rng.normal(3.0, 2.0, (300, 200))
    y = rng.integers(0, n_labels, 300)
    x[np.arange(300), y] += 4.0  # learnable
    head = fit_head(x, y, 0.1)
    kernel, bias = head_weights(head, n_labels)
    logits = x @ kernel + bias
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, head.predict_proba(x), atol=1e-4)
    assert (probs.argmax(axis=1) == y).mean() > 0.9


class _Fixed:
    """A head whose patch probabilities are given."""

    def __init__(self, probs: dict[int, np.ndarray]) -> None:
        self.probs = probs

    def predict_proba(self, e: np.ndarray) -> np.ndarray:
        return self.probs[int(e[0, 0])]


def test_clip_f1_averages_patches_and_scores_with_the_projects_macro_f1() -> None:
    labels = ["angry", "happy", "sad"]
    clips = [Clip(Path(f"{k}.ogg"), label, f"artist{k}") for k, label in enumerate(labels)]
    split = Split(clips, labels, {"train": [], "val": [0, 1, 2], "test": []})
    emb = {c.path: np.full((2, 1), k) for k, c in enumerate(clips)}
    # clip 0: one patch says happy, one strongly angry -> angry; clip 1 happy; clip 2 happy (sad never predicted)
    probs = {
        0: np.array([[0.4, 0.6, 0.0], [0.9, 0.1, 0.0]]),
        1: np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1]]),
        2: np.array([[0.1, 0.5, 0.4], [0.1, 0.6, 0.3]]),
    }
    f1, n = clip_f1(_Fixed(probs), split, [0, 1, 2], emb)
    assert n == 3
    assert f1 == pytest.approx((1 + 2 / 3 + 0) / 3)  # a class never predicted counts with F1 0
    assert clip_f1(_Fixed(probs), split, [0, 1, 2], {})[1] == 0  # clips without embeddings are left out


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
