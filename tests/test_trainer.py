"""Trainer parts: scan, splits (no group in two parts), windows, augmentation of the training part
only, the feature cache, class weights, and the metrics shared with `moodstream evaluate`."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.evaluation.labelled import artist_groups, canonical_artist
from streamer.evaluation.metrics import bootstrap_intervals, classification_metrics, describe_intervals
from streamer.features.mfcc import FeatureConfig
from tests.trainer_data import add_bad_files, make_dataset
from trainer.common.dataset import DatasetError, scan
from trainer.common.split import split_by_group, split_random
from trainer.families.paper import featurecache
from trainer.families.paper import prepare as prepare_mod
from trainer.families.paper.augment import AUGMENTATIONS, ORIGINAL
from trainer.families.paper.run import RunError, _claim_split
from trainer.families.paper.segments import segment, window_geometry


def _random_groups(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    groups = [f"g{int(g)}" for g in rng.zipf(1.6, n) % (n // 2)]
    labels = [("angry", "happy", "sad", "calm")[int(rng.integers(4))] for _ in range(n)]
    return labels, groups


@pytest.mark.parametrize("seed", range(5))
def test_split_by_group_never_puts_a_group_in_two_parts(seed: int) -> None:
    labels, groups = _random_groups(600, seed)
    split = split_by_group(labels, groups, seed=seed)
    assert sorted(i for ix in split.values() for i in ix) == list(range(600))
    owner: dict[str, str] = {}
    for part, ix in split.items():
        for i in ix:
            assert owner.setdefault(groups[i], part) == part, f"group {groups[i]} in two parts"
    for label, n in Counter(labels).items():  # stratified: each part near its share of each label
        for part, share in zip(("train", "val", "test"), (0.7, 0.15, 0.15), strict=True):
            got = sum(labels[i] == label for i in split[part])
            assert abs(got - share * n) <= 0.06 * n + 3, (label, part, got, share * n)


def test_split_is_seeded() -> None:
    labels, groups = _random_groups(300, 0)
    assert split_by_group(labels, groups, seed=1) == split_by_group(labels, groups, seed=1)
    assert split_by_group(labels, groups, seed=1) != split_by_group(labels, groups, seed=2)


def test_split_random_is_stratified_and_complete() -> None:
    labels = ["a"] * 100 + ["b"] * 40
    split = split_random(labels, seed=0)
    assert sorted(i for ix in split.values() for i in ix) == list(range(140))
    assert sum(labels[i] == "a" for i in split["train"]) == 70
    assert sum(labels[i] == "b" for i in split["test"]) == 6


def test_window_geometry_and_segments() -> None:
    cfg = FeatureConfig()
    frames, hop = window_geometry(cfg, 10.0, 0.5)
    assert (frames, hop) == (998, 500)
    x = np.arange(3000 * 20, dtype=np.float32).reshape(3000, 20)
    w = segment(x, frames, hop)
    assert w.shape == (5, 998, 20)
    assert np.array_equal(w[2], x[1000:1998])
    assert segment(x[:997], frames, hop).shape == (0, 998, 20)
    with pytest.raises(ValueError):
        window_geometry(cfg, 10.0, 1.0)


def test_class_weights_are_inverse_frequency() -> None:
    from trainer.families.paper.fit import class_weights

    w = class_weights(np.array([0] * 60 + [1] * 30 + [2] * 10), 3)
    assert w[0] * 60 == pytest.approx(w[1] * 30) == pytest.approx(w[2] * 10)
    assert w[2] == pytest.approx(100 / 30)


def test_metrics_match_scikit_learn() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300))
    m = classification_metrics(y, p, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert m["weighted_accuracy"] == pytest.approx(skm.accuracy_score(y, p))  # Eq. 2 = total TP / support
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, p, average="weighted"))
    assert m["per_class"]["c"]["precision"] == pytest.approx(skm.precision_score(y, p, average=None)[2])
    assert m["confusion_matrix"] == skm.confusion_matrix(y, p).tolist()


def test_metrics_with_absent_labels_and_no_data() -> None:
    m = classification_metrics([0, 0, 1], [0, 1, 1], ["a", "b", "c"])
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # c never seen: not averaged
    empty = classification_metrics([], [], ["a", "b"])
    assert empty["n"] == 0 and empty["accuracy"] == 0.0


def _clips(confusion: list[list[int]]) -> tuple[list[int], list[int]]:
    y_true, y_pred = zip(
        *[(t, p) for t, row in enumerate(confusion) for p, n in enumerate(row) for _ in range(n)], strict=True
    )
    return list(y_true), list(y_pred)


def _slow_bootstrap(y_true: list[int], y_pred: list[int], groups: list[int]) -> dict[str, np.ndarray]:
    """The plain way: draw whole groups with replacement, score their clips with classification_metrics."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    units = list(members.values())
    rng = np.random.default_rng(1)
    out: dict[str, list[float]] = {"accuracy": [], "macro_f1": []}
    for _ in range(1500):
        picked = [i for u in rng.integers(0, len(units), len(units)) for i in units[u]]
        m = classification_metrics([y_true[i] for i in picked], [y_pred[i] for i in picked], ["a", "b", "c"])
        for key in out:
            out[key].append(m[key])
    return {key: np.percentile(v, [2.5, 97.5]) for key, v in out.items()}


@pytest.mark.parametrize(
    "confusion",
    [
        [[22, 5, 2], [6, 18, 5], [1, 2, 26]],
        [[30, 0, 4], [9, 0, 3], [2, 0, 12]],  # a label never predicted
    ],
)
def test_bootstrap_intervals_match_resampling_clips_one_by_one(confusion: list[list[int]]) -> None:
    """The vectorised resampling gives the intervals of the slow way, clip by clip and by group."""
    y_true, y_pred = _clips(confusion)
    point = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    fast = bootstrap_intervals(y_true, y_pred, 3, resamples=4000)
    slow = _slow_bootstrap(y_true, y_pred, list(range(len(y_true))))
    groups = [i // 3 for i in range(len(y_true))]  # clips in threes, as an artist's songs
    fast_groups = bootstrap_intervals(y_true, y_pred, 3, groups, resamples=4000)
    slow_groups = _slow_bootstrap(y_true, y_pred, groups)
    assert fast["units"] == len(y_true) and fast_groups["units"] == len(set(groups))
    for key in ("accuracy", "macro_f1"):
        assert fast[key] == pytest.approx(slow[key], abs=0.02)
        assert fast_groups[key] == pytest.approx(slow_groups[key], abs=0.025)
        assert fast[key][0] < point[key] < fast[key][1]
    wider = bootstrap_intervals(y_true * 16, y_pred * 16, 3)  # 16x the clips: a quarter of the width
    for key in ("accuracy", "macro_f1"):
        ratio = (fast[key][1] - fast[key][0]) / (wider[key][1] - wider[key][0])
        assert 3.2 < ratio < 4.8


def test_bootstrap_by_group_is_wider_when_an_artist_stands_or_falls_together() -> None:
    y_true = [0, 1, 2] * 20
    groups = [i // 6 for i in range(60)]  # ten artists of six clips
    y_pred = [t if g % 3 else (t + 1) % 3 for t, g in zip(y_true, groups, strict=True)]  # every 3rd artist all wrong
    clips = bootstrap_intervals(y_true, y_pred, 3)
    artists = bootstrap_intervals(y_true, y_pred, 3, groups)

    def width(i: dict) -> float:
        return i["accuracy"][1] - i["accuracy"][0]

    assert width(artists) > 1.5 * width(clips)


def test_bootstrap_intervals_of_a_perfect_and_an_empty_score() -> None:
    perfect = bootstrap_intervals([0, 0, 1, 1, 1], [0, 0, 1, 1, 1], 2)
    assert perfect["accuracy"] == [1.0, 1.0] and perfect["macro_f1"] == [1.0, 1.0]
    assert bootstrap_intervals([], [], 2)["resamples"] == 0
    assert (
        describe_intervals(perfect)
        == "95% interval with the clips resampled: accuracy 1.000-1.000, macro-F1 1.000-1.000"
    )


def test_scan_groups_labels_and_errors(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", clips_per_label=4, seconds=1.0)
    clips, labels = scan(root, ["sad", "angry"])
    assert labels == ["sad", "angry"] and len(clips) == 8
    assert {c.group for c in clips if c.label == "sad"} == {"artist:sad-artist-0", "artist:sad-artist-1"}
    with pytest.raises(DatasetError, match="calm"):
        scan(root, ["calm", "sad"])
    with pytest.raises(DatasetError, match="no such data folder"):
        scan(tmp_path / "missing")
    (root / "metadata.csv").unlink()
    clips, _ = scan(root)
    assert len({c.group for c in clips}) == len(clips)  # without metadata each file is its own group


def test_credit_variants_of_one_artist_are_one_group() -> None:
    """Credits seen in the 4Q data that once put one artist into two parts of the split."""
    rows = [
        ("a1", "Charlie Poole", "Bulldog Down in Sunny Tennessee"),
        ("a2", "Charlie Poole & the North Carolina Ramblers", "White House Blues"),
        ("b1", "Xavier Cugat", "Tico-Tico"),
        ("b2", "Xavier Cugat & His Orchestra", "Tico-Tico (Remastered)"),
        ("c1", "The Sir Douglas Quintet + 2", "Song A"),
        ("c2", "Sir Douglas Quintet", "Song B"),
        ("d1", "Sizzla", "Song C"),
        ("d2", "Sizzla Kalonji", "Song D"),
        ("e1", "Eddie Heywood", "Trav'lin' Light"),  # one recording, credited two ways ...
        ("e2", "Billie Holiday", "Travlin Light"),  # ... and a song in common merges artists too
        ("f1", "AC/DC", "Song E"),
        ("g1", "Dismember", "Song F"),
    ]
    groups = artist_groups(rows)
    for pair in (("a1", "a2"), ("b1", "b2"), ("c1", "c2"), ("d1", "d2"), ("e1", "e2")):
        assert groups[pair[0]] == groups[pair[1]], pair
    assert len({groups[f] for f in ("a1", "b1", "c1", "d1", "e1", "f1", "g1")}) == 7  # strangers stay apart
    assert canonical_artist("AC/DC") == "ac/dc" and canonical_artist("Beyoncé feat. Jay-Z") == "beyoncé"


def test_scan_keeps_credit_variants_together_through_the_split(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", clips_per_label=6, seconds=1.0)
    lines = (root / "metadata.csv").read_text().splitlines()
    # the same two artists, credited differently on some of their clips
    lines = [line.replace("sad-artist-2", "The sad-artist-2 & His Band") if "sad04" in line else line for line in lines]
    lines = [
        line.replace("angry-artist-0", "angry-artist-0 feat. Someone") if "angry01" in line else line for line in lines
    ]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    clips, _ = scan(root)
    by_key = {c.key: c.group for c in clips}
    assert by_key["sad/sad04.wav"] == by_key["sad/sad05.wav"] != by_key["sad/sad03.wav"]
    assert by_key["angry/angry01.wav"] == by_key["angry/angry00.wav"]
    for seed in range(5):
        parts = split_by_group([c.label for c in clips], [c.group for c in clips], seed=seed)
        part_of = {clips[i].group: p for p, ix in parts.items() for i in ix}
        assert all(part_of[c.group] == p for p, ix in parts.items() for c in (clips[i] for i in ix))


def test_a_run_folder_refuses_to_resume_on_another_split(tmp_path: Path) -> None:
    split = {"train": ["sad/a.wav"], "val": ["sad/b.wav"], "test": ["sad/c.wav"]}
    _claim_split(tmp_path / "split.json", split)
    _claim_split(tmp_path / "split.json", split)  # the same split: resuming is fine
    moved = {"train": ["sad/a.wav", "sad/c.wav"], "val": ["sad/b.wav"], "test": []}
    with pytest.raises(RunError, match="another split"):
        _claim_split(tmp_path / "split.json", moved)


def _prepare(root: Path, cache: Path, **kw):
    return prepare_mod.prepare(root, None, 2.0, 0.5, cache, workers=1, **kw)


@pytest.mark.slow  # librosa augmentation
def test_augmentation_touches_only_the_training_part(tmp_path: Path, monkeypatch) -> None:
    root = make_dataset(tmp_path / "d", clips_per_label=7, seconds=3.0)
    jobs: list[featurecache.Job] = []
    real = prepare_mod.features

    def spy(js, *args, **kwargs):
        js = list(js)
        jobs.extend(js)
        return real(js, *args, **kwargs)

    monkeypatch.setattr(prepare_mod, "features", spy)
    data = _prepare(root, tmp_path / "cache")
    train_paths = {data.clips[i].path for i in np.unique(data.parts["train"].clips)}
    for job in jobs:
        if job.path in train_paths:
            assert job.variants == (ORIGINAL, *AUGMENTATIONS)
        else:
            assert job.variants == (ORIGINAL,), f"{job.path} is not training data but was augmented"
    frames = 198  # 2 s window
    for part in ("val", "test"):  # exactly the original windows: 3 s clips give 2 windows of 2 s at 50 %
        assert len(data.parts[part].y) == 2 * len(np.unique(data.parts[part].clips))
        assert data.parts[part].x.shape[1] == frames
    groups = {p: {data.clips[i].group for i in np.unique(data.parts[p].clips)} for p in data.parts}
    assert not (groups["train"] & groups["val"] or groups["train"] & groups["test"] or groups["val"] & groups["test"])


@pytest.mark.slow  # librosa augmentation
def test_paper_protocol_leaks_clips_across_parts(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", clips_per_label=5, seconds=4.0)
    data = _prepare(root, tmp_path / "cache", protocol="paper")
    shared = set(data.parts["train"].clips) & set(data.parts["test"].clips)
    assert shared, "the paper protocol puts windows of one clip on both sides of the split"


def test_second_run_reads_the_cache(tmp_path: Path, monkeypatch) -> None:
    root = make_dataset(tmp_path / "d", clips_per_label=3, seconds=2.5)
    calls = []
    real = featurecache.extract
    monkeypatch.setattr(featurecache, "extract", lambda *a: calls.append(1) or real(*a))
    jobs = [featurecache.Job(p, (ORIGINAL,)) for p in sorted(root.rglob("*.wav"))]
    first, _ = featurecache.features(jobs, FeatureConfig(), tmp_path / "cache", workers=1)
    assert len(calls) == 9
    second, failed = featurecache.features(jobs, FeatureConfig(), tmp_path / "cache", workers=1)
    assert len(calls) == 9 and not failed
    assert all(np.array_equal(first[k], second[k]) for k in first)
    changed = FeatureConfig(n_mfcc=12)  # other settings: other cache entries
    featurecache.features(jobs[:1], changed, tmp_path / "cache", workers=1)
    assert len(calls) == 10


def test_cache_follows_content_not_path_or_time(tmp_path: Path, monkeypatch) -> None:
    """A fresh copy of the data (new paths, new times) reuses the cache; changed bytes do not."""
    root = make_dataset(tmp_path / "d", clips_per_label=1, seconds=2.5)
    calls = []
    real = featurecache.extract
    monkeypatch.setattr(featurecache, "extract", lambda *a: calls.append(1) or real(*a))
    cache = tmp_path / "cache"
    originals = sorted(root.rglob("*.wav"))
    featurecache.features([featurecache.Job(p, (ORIGINAL,)) for p in originals], FeatureConfig(), cache, workers=1)
    assert len(calls) == 3
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # new paths and modification times
    copies = sorted(copy.rglob("*.wav"))
    os.utime(copies[0], ns=(1, 1))
    done, _ = featurecache.features(
        [featurecache.Job(p, (ORIGINAL,)) for p in copies], FeatureConfig(), cache, workers=1
    )
    assert len(calls) == 3 and len(done) == 3
    audio, sr = sf.read(copies[1], dtype="float32")
    sf.write(copies[1], audio * 0.5, sr)
    featurecache.features([featurecache.Job(copies[1], (ORIGINAL,))], FeatureConfig(), cache, workers=1)
    assert len(calls) == 4


def test_unusable_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", clips_per_label=7, seconds=3.0)
    expected = add_bad_files(root)
    data = _prepare(root, tmp_path / "cache", augment=False)
    by_name = {Path(p).name: why for p, why in data.skipped.items()}
    assert set(by_name) == set(expected)
    for name, fragment in expected.items():
        assert fragment in by_name[name]
    used = {data.clips[i].path.name for part in data.parts.values() for i in part.clips}
    assert not used & set(expected)


def test_shipped_model_is_chosen_on_validation_not_test() -> None:
    from trainer.families.paper.family import best_model

    def result(val: float, test: float) -> dict:
        def part(f: float) -> dict:
            return {"int8": {"clip": {"macro_f1": f}, "window": {"macro_f1": f}}}

        return {"val": part(val), "test": part(test)}

    candidates = {
        "3class": {
            "results": {
                "cnn": result(0.70, 0.90),
                "cnn_gru": result(0.74, 0.60),
                "baseline": {"val": {"float": {}}, "test": {"float": {}}},
            }
        },
        "3class-noaug": {"results": {"cnn": result(0.72, 0.95)}},
    }
    assert best_model(candidates) == ("3class", "cnn_gru")


def test_model_card_computes_its_sentences_from_the_runs() -> None:
    """Intervals, the hardest label and the leaky model's training come from the figures, so a
    retrained model cannot leave the card's words behind."""
    from trainer.families.paper.card import model_card

    labels = ["angry", "happy", "sad"]
    confusion = [[25, 3, 1], [8, 18, 3], [2, 4, 23]]
    y_true, y_pred = _clips(confusion)
    ev = classification_metrics(y_true, y_pred, labels)
    by_artist = bootstrap_intervals(y_true, y_pred, 3, [i // 4 for i in range(len(y_true))])
    ev.update(
        labels=labels,
        n_clips=ev.pop("n"),
        hop_seconds=1.0,
        intervals=bootstrap_intervals(y_true, y_pred, 3),
        group_intervals=by_artist,
    )
    figures = {"accuracy": 0.7, "macro_f1": 0.7}
    result = {
        "test": {"float": {"window": figures, "clip": figures}, "int8": {"window": figures, "clip": figures}},
        "fit": {"epochs_run": 14, "best_epoch": 14, "seconds_per_epoch": 20.0, "stopped_by_time_budget": True},
    }
    part = {"clips": 29, "groups": 20, "windows": 130, "clips_per_label": {k: 29 for k in labels}}
    run = {
        "run": {
            "labels": labels,
            "augment": True,
            "window_seconds": 10.0,
            "seed": 0,
            "skipped": {},
            "data": {"train": part, "val": part, "test": part},
        },
        "results": {"cnn_lstm": result},
    }
    shipped = {
        "3class": {
            "run": "3class",
            "architecture": "cnn_lstm",
            "file": "m.tflite",
            "size": 2048,
            "evaluate": ev,
            "runs": ["3class"],
        }
    }
    card = model_card({"3class": run}, shipped, run)
    assert "3class: the hardest label is happy (F1 0.667); 8 of its 29 test clips were taken for angry." in card
    assert describe_intervals(ev["intervals"]) in card
    assert describe_intervals(by_artist, "22 artist groups") in card
    assert "the leaky model trained for 14 epoch(s) before the time budget stopped it" in card
