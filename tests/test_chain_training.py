"""Training that survives the capture chain: chained copies of the training part only, cached by
content + chain parameters + seed; the level-free input (the window's mean log energy removed)
carried by the model file and applied by the runner that both the daemon and the trainer use;
artist-grouped folds and the cross-validation over them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from streamer.config import Settings
from streamer.core.pipeline import Pipeline, clip_decision
from streamer.features.mfcc import FeatureConfig, centre_columns, extract
from streamer.model.metadata import FORMAT_VERSION, ModelMetadata, read_metadata
from streamer.model.runner import ModelRunner
from tests.trainer_data import make_dataset
from trainer.common.split import group_folds
from trainer.families.paper import featurecache
from trainer.families.paper import prepare as prepare_mod
from trainer.families.paper.augment import ORIGINAL, chain_variants

pytest.importorskip("pedalboard")


def test_centring_removes_a_gain_and_nothing_else() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 50, 20)).astype(np.float32)
    louder = w.copy()
    louder[..., 0] += 3.5  # a gain adds a constant to the log energy
    assert np.allclose(centre_columns(w, (0,)), centre_columns(louder, (0,)), atol=1e-5)
    assert np.array_equal(centre_columns(w, (0,))[..., 1:], w[..., 1:])
    assert np.allclose(centre_columns(centre_columns(w, (0,)), (0,)), centre_columns(w, (0,)), atol=1e-6)
    assert centre_columns(w, ()) is w


def test_only_the_energy_column_moves_with_the_level() -> None:
    """Why centring column 0 is enough: the MFCCs beside it and the contrast are ratios."""
    from streamer.audio.synth import chords

    x = chords(3.0).astype(np.float32)
    a, b = extract(x), extract(0.05 * x)  # 26 dB quieter
    assert np.allclose(a[:, 0] - b[:, 0], 2 * np.log(20.0), atol=1e-3)
    diff = np.abs(a[:, 1:] - b[:, 1:])
    assert np.mean(diff < 1e-2) > 0.99 and diff.max() < 0.5  # float rounding in the quietest bins only


def test_metadata_carries_the_centred_columns() -> None:
    cfg = FeatureConfig()
    meta = ModelMetadata(
        format_version=FORMAT_VERSION,
        name="m",
        architecture="linear",
        labels=("a", "b"),
        feature_config=cfg,
        window_seconds=2.0,
        window_frames=cfg.frames_for(2.0),
        mean=(0.0,) * 20,
        std=(1.0,) * 20,
        input_quantization=(0.0, 0),
        output_quantization=(0.0, 0),
        centred_columns=(0,),
    )
    back = ModelMetadata.from_dict(json.loads(meta.to_json()))
    assert back.centred_columns == (0,) and back == meta
    old = {**meta.to_dict(), "format_version": 1}
    del old["centred_columns"]
    assert ModelMetadata.from_dict(old).centred_columns == ()  # files written before stay readable
    with pytest.raises(ValueError, match="centred_columns"):
        dataclasses.replace(meta, centred_columns=(20,))
    newer = FORMAT_VERSION + 1  # a file from a future trainer is refused, not half-read
    with pytest.raises(ValueError, match=f"format_version {newer}"):
        ModelMetadata.from_dict({**meta.to_dict(), "format_version": newer})


@pytest.mark.slow  # uses the session's tiny model
def test_a_centred_model_hears_the_music_not_the_gain(tiny_model: Path, tiny_model_audio, tmp_path: Path) -> None:
    from trainer.common.export import embed_metadata

    centred = tmp_path / "centred.tflite"
    meta = dataclasses.replace(read_metadata(tiny_model), centred_columns=(0,))
    centred.write_bytes(embed_metadata(tiny_model.read_bytes(), meta.to_json()))
    plain, runner = ModelRunner(tiny_model), ModelRunner(centred)
    audio = tiny_model_audio("sad", 5.0, seed=9)
    window = extract(audio)[: runner.window_frames]
    shifted = window.copy()
    shifted[:, 0] -= 4.0  # the log energy of the same music 17 dB quieter
    assert np.array_equal(runner.predict(window), runner.predict(shifted))
    assert not np.allclose(plain.predict(window), plain.predict(shifted), atol=1e-3)  # positive control
    # the daemon's path: streaming in odd chunks == one push, and the gain does not move the verdict
    settings = Settings()
    whole = clip_decision(Pipeline(runner, settings).process(audio))
    pipe = Pipeline(runner, settings)
    chunks = [e for s in range(0, audio.size, 777) for e in pipe.process(audio[s : s + 777])]
    assert np.allclose(clip_decision(chunks), whole, atol=1e-6)
    quiet = clip_decision(Pipeline(runner, settings).process(0.3 * audio))  # 10 dB down, above the level gate
    assert quiet is not None and np.abs(quiet - whole).max() < 0.05


def test_group_folds_keep_each_artist_in_one_fold() -> None:
    rng = np.random.default_rng(1)
    groups = [f"g{int(g)}" for g in rng.integers(0, 60, 300)]
    labels = [("a", "b", "c")[int(rng.integers(3))] for _ in range(300)]
    folds = group_folds(labels, groups, 5, seed=0)
    assert sorted(i for f in folds for i in f) == list(range(300))
    owner = {}
    for k, f in enumerate(folds):
        for i in f:
            assert owner.setdefault(groups[i], k) == k
    assert all(40 <= len(f) <= 80 for f in folds)


def test_chained_copies_are_cached_by_content_chain_and_seed(tmp_path: Path, monkeypatch) -> None:
    root = make_dataset(tmp_path / "d", clips_per_label=1, seconds=2.5)
    calls = []
    real = featurecache.extract
    monkeypatch.setattr(featurecache, "extract", lambda *a: calls.append(1) or real(*a))
    jobs = [featurecache.Job(p, (ORIGINAL, *chain_variants(2))) for p in sorted(root.rglob("*.wav"))]
    first, failed = featurecache.features(jobs, FeatureConfig(), tmp_path / "cache", workers=1)
    assert not failed and len(calls) == 9
    for job in jobs:
        a, b, c = (first[(job.path, v)] for v in job.variants)
        assert a.shape == b.shape and not np.allclose(a, b) and not np.allclose(b, c)
    second, _ = featurecache.features(jobs, FeatureConfig(), tmp_path / "cache", workers=1)
    assert len(calls) == 9 and all(np.array_equal(first[k], second[k]) for k in first)
    content = featurecache._content(jobs[0].path)
    assert featurecache._key(content, "chain0", FeatureConfig()) != featurecache._key(
        content, "chain1", FeatureConfig()
    )


def test_only_the_training_part_is_chained(tmp_path: Path, monkeypatch) -> None:
    root = make_dataset(tmp_path / "d", clips_per_label=7, seconds=3.0)
    jobs: list[featurecache.Job] = []
    real = prepare_mod.features
    monkeypatch.setattr(prepare_mod, "features", lambda js, *a, **k: (jobs.extend(js), real(js, *a, **k))[1])
    cache = tmp_path / "cache"
    mixed = prepare_mod.prepare(root, None, 2.0, 0.5, cache, augment=False, chain_copies=1, workers=1)
    train = {mixed.clips[i].path for i in np.unique(mixed.parts["train"].clips)}
    for job in jobs:
        assert job.variants == ((ORIGINAL, "chain0") if job.path in train else (ORIGINAL,)), job.path
    only = prepare_mod.prepare(
        root, None, 2.0, 0.5, cache, augment=False, chain_copies=1, clean_copies=False, workers=1
    )
    n_clean = {p: len(mixed.parts[p].y) for p in mixed.parts}
    assert len(only.parts["train"].y) * 2 == n_clean["train"]  # chained copies alone
    assert len(only.parts["val"].y) == n_clean["val"] and np.array_equal(only.parts["test"].x, mixed.parts["test"].x)
    assert not np.allclose(only.parts["train"].x, mixed.parts["train"].x[: len(only.parts["train"].y)])


@pytest.mark.slow  # chained copies of 27 clips
def test_cross_validation_scores_every_fold_and_resumes(tmp_path: Path, monkeypatch) -> None:
    from trainer.families.paper import crossval

    root = make_dataset(tmp_path / "d", clips_per_label=9, seconds=2.5)
    units, labels, groups = crossval.load_units(root, None, tmp_path / "cache", 2.0, 0.5, 1, 1)
    cands = (crossval.Candidate("clean"), crossval.Candidate("chain-mix+centre", chain_copies=1, centre_energy=True))
    state = crossval.cross_validate(units, groups, labels, cands, tmp_path / "cv", k=3)
    for name in ("clean", "chain-mix+centre"):
        res = state["results"][name]
        assert sorted(res["folds"]) == ["0", "1", "2"]
        for kind in ("clean", "chain"):
            assert 0.0 <= res["summary"][kind]["mean"] <= 1.0 and res["summary"][kind]["std"] >= 0.0
    held = [set(f) for f in state["folds"]]
    assert sum(len(f) for f in held) == len(units) and not (held[0] & held[1])
    assert state["results"]["clean"]["summary"]["clean"]["mean"] > 0.6  # the moods are learnable
    calls = []
    monkeypatch.setattr(crossval, "fit_fold", lambda *a, **k: calls.append(1))
    again = crossval.cross_validate(units, groups, labels, cands, tmp_path / "cv", k=3)
    assert not calls and again["ranking"] == state["ranking"]


def test_too_few_artists_for_the_folds_is_a_clear_error(tmp_path: Path) -> None:
    from trainer.families.paper import crossval

    unit = crossval.Unit(0, 0, {}, {})
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        crossval.cross_validate([unit, unit], ["g", "g"], ["a", "b"], (), tmp_path, k=5)


def test_card_tables_come_from_the_measurements() -> None:
    from trainer.families.paper.card import _chain_gap, _cv_margin, chain_table, cv_table

    def ev(f1: float) -> dict:
        return {"macro_f1": f1, "intervals": {"macro_f1": [f1 - 0.1, f1 + 0.1]}, "group_intervals": None}

    chains = {"clean": ev(0.70), "level": ev(0.62), "mic": ev(0.68), "room": ev(0.55)}
    rows = chain_table({"m": chains}, ("clean", "level", "mic", "room"))
    assert rows[2] == "| m | 0.700 (0.60-0.80) | 0.620 (0.52-0.72) | 0.680 (0.58-0.78) | 0.550 (0.45-0.65) |"
    gap = _chain_gap({"file": "m.tflite", "chains": chains})
    assert "worst single link is level (0.080 below clean; target within 0.05: NOT met)" in gap
    assert "room 0.150 below clean" in gap

    def summary(clean: float, chain: float) -> dict:
        both = (clean + chain) / 2
        return {
            "clean": {"mean": clean, "std": 0.05},
            "chain": {"mean": chain, "std": 0.05},
            "both": {"mean": both, "std": 0.05},
        }

    cv = {
        "folds": [[1], [2], [3], [4], [5]],
        "ranking": ["a", "b"],
        "results": {"a": {"summary": summary(0.70, 0.64)}, "b": {"summary": summary(0.72, 0.60)}},
    }
    table = cv_table(cv, "a")
    assert "| a | 0.700 ± 0.050 | 0.640 ± 0.050 | 0.670 ± 0.050 | **winner, shipped** |" in table
    assert table[-1].endswith("| lost |")
    margin = _cv_margin(cv)
    assert "a leads b by 0.010, well within the standard error of a fold mean (0.022)" in margin
    assert "the best on clean clips alone is b (0.720)" in margin


@pytest.mark.slow  # Keras fits on chained copies of 27 clips
def test_network_cross_validation_uses_the_linear_folds_and_resumes(tmp_path: Path, monkeypatch) -> None:
    from trainer.families.paper import crossval, netcv

    root = make_dataset(tmp_path / "d", clips_per_label=9, seconds=2.5)
    units, labels, groups = crossval.load_windows(root, None, tmp_path / "cache", 1.0, 0.5, 1, 1)
    budget = netcv.Budget(epochs=3, patience=2, seconds=60, linear_epochs=3)
    state = netcv.cross_validate(units, groups, labels, tmp_path / "cv", ("linear", "cnn"), budget=budget, k=3)
    stats, _, _ = crossval.load_units(root, None, tmp_path / "cache", 1.0, 0.5, 1, 1)
    linear = crossval.cross_validate(stats, groups, labels, (crossval.Candidate("clean"),), tmp_path / "lin", k=3)
    assert state["folds"] == linear["folds"]  # the same held-out clips as trainer.crossval's
    assert sorted(state["ranking"]) == ["cnn", "linear"]
    for arch in ("linear", "cnn"):
        for fold in state["results"][arch]["folds"].values():
            assert fold["fit"]["epochs_run"] <= 3 and fold["clips"]["stop"] > 0
            assert fold["clips"]["fit"] + fold["clips"]["stop"] + fold["clips"]["held"] == len(units)
            assert 0.0 <= fold["clean"]["macro_f1"] <= 1.0 and 0.0 <= fold["chain"]["macro_f1"] <= 1.0
    monkeypatch.setattr(netcv, "fit_fold", lambda *a, **k: pytest.fail("refitted a finished fold"))
    again = netcv.cross_validate(units, groups, labels, tmp_path / "cv", ("linear", "cnn"), budget=budget, k=3)
    assert again["ranking"] == state["ranking"]
    with pytest.raises(ValueError, match="other folds or settings"):
        netcv.cross_validate(units, groups, labels, tmp_path / "cv", ("cnn",), budget=netcv.Budget(epochs=4), k=3)


def test_card_says_what_each_network_scored_and_what_it_cost() -> None:
    from trainer.families.paper.card import netcv_section

    def fold(clean: float, seconds: float, stopped: bool = False) -> dict:
        fit = {"epochs_run": 12, "best_epoch": 6, "stopped_by_time_budget": stopped}
        return {"clean": {"macro_f1": clean}, "chain": {"macro_f1": clean - 0.1}, "fit": fit, "seconds": seconds}

    results = {
        "cnn": {"folds": {"0": fold(0.75, 60), "1": fold(0.73, 120, True)}},
        "linear": {"folds": {"0": fold(0.70, 30), "1": fold(0.72, 30)}},
    }
    for r in results.values():
        both = [(f["clean"]["macro_f1"] + f["chain"]["macro_f1"]) / 2 for f in r["folds"].values()]
        r["summary"] = {
            k: {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))}
            for k, v in (
                ("clean", [f["clean"]["macro_f1"] for f in r["folds"].values()]),
                ("chain", [f["chain"]["macro_f1"] for f in r["folds"].values()]),
                ("both", both),
            )
        }
    recipe = {"name": "chain-mix+centre+wd", "weight_decay": 1e-3, "learning_rate": 3e-4}
    state = {
        "k": 2,
        "folds": [[1, 2], [3, 4]],
        "ranking": ["cnn", "linear"],
        "results": results,
        "settings": {
            "budget": {"epochs": 100, "patience": 6, "seconds": 1500.0, "linear_epochs": 400},
            "recipe": recipe,
            "inner_val": 0.15,
        },
    }
    text = "\n".join(netcv_section("3class", state, "cnn"))
    assert "| cnn | 0.740 ± 0.014 | 0.640 ± 0.014 | 0.690 ± 0.014 | **winner, shipped** |" in text
    assert "| linear | 0.710 ± 0.014 |" in text and "| lost |" in text
    assert "at most 100 epochs (the linear model 400), patience 6, 25 min per fit" in text
    assert "cnn 12 epochs (best 6), 1.5 min per fit, 1 fit(s) stopped by the time limit" in text


def test_card_gives_each_shipped_files_cost_per_hop() -> None:
    from trainer.families.paper.card import cost_section

    m = {
        "kind": "int8",
        "size_mb": 0.047,
        "front_end_ms_per_hop": {"median": 1.234},
        "inference_ms_per_patch": {"median": 0.4},
        "ms_per_1s_hop": 1.634,
        "pi_estimate_ms_per_1s_hop": {"Pi 4": 9.8},
    }
    text = "\n".join(cost_section({"moodstream-3class.tflite": m}))
    assert "- `moodstream-3class.tflite` (int8, 47 KB): front-end 1.23 ms per 1 s hop + inference 0.40 ms" in text
    assert "= 1.63 ms per 1 s hop here (one core); estimated Pi 4: 9.8 ms." in text
    assert cost_section({}) == []
