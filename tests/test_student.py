"""The distilled musicnn student (trainer/families/musicnn/student.py): its size, that distillation learns, that the
exported student + head is a working musicnn_logmel model file, and that the data never holds a
validation or test clip. Synthetic audio only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("sklearn")

import soundfile as sf

from streamer.audio.synth import music
from streamer.features.logmel import LogMelConfig, mel_power
from streamer.model.metadata import read_metadata
from streamer.model.runner import ModelRunner
from trainer.common.dataset import Clip
from trainer.common.heads import fit_head
from trainer.common.split import Split
from trainer.families.musicnn.embeddings import PATCH_FRAMES, patches
from trainer.families.musicnn.head import REFERENCE_POWER
from trainer.families.musicnn.student import (
    MAC_BOUND,
    ClipData,
    build,
    build_student,
    count_macs,
    distil,
    distillation_clips,
    evaluate_test,
    export_student,
    lr_cuts,
    stack,
    with_head,
)

CONFIG = LogMelConfig(normalisation="rms", reference_power=REFERENCE_POWER)


def _patches(seconds: float, seed: int) -> np.ndarray:
    return patches(music(seconds, seed=seed).astype(np.float32), CONFIG, 1.0)


def test_student_shapes_and_cost() -> None:
    model = build_student()
    assert tuple(model.input.shape) == (None, PATCH_FRAMES, 96)
    assert tuple(model.output.shape) == (None, 200)
    macs = count_macs(model)
    assert 20e6 <= macs <= MAC_BOUND, macs  # the teacher: ~1.4 G


def test_count_macs_by_hand() -> None:
    import keras
    from keras import layers

    inp = keras.Input((10, 8))
    x = layers.Reshape((10, 8, 1))(inp)
    x = layers.Conv2D(4, 3, padding="same")(x)  # 10*8 * 4 * 9 * 1
    x = layers.DepthwiseConv2D(3, padding="same")(x)  # 10*8 * 4 * 9
    x = layers.BatchNormalization()(x)  # folded: free
    out = layers.Dense(5)(layers.Flatten()(x))  # 320 * 5
    assert count_macs(keras.Model(inp, out)) == 2880 + 2880 + 1600
    lstm = keras.Model(inp, layers.LSTM(3)(inp))
    with pytest.raises(ValueError, match="no rule for LSTM"):
        count_macs(lstm)


def test_a_few_distillation_steps_lower_the_loss() -> None:
    import keras

    keras.utils.set_random_seed(0)  # the initial weights: not whatever earlier tests left the global RNG at
    x = _patches(12.0, seed=1)
    rng = np.random.default_rng(0)
    y = (x.mean(axis=1) - x.mean()) @ rng.normal(0, 1, (96, 200)).astype(np.float32)  # made up, learnable
    y = (y - y.mean(axis=0)) / (y.std(axis=0) + 1e-6)
    model = build_student(width=8, dense=32)
    history = distil(model, [x], y, x, y, epochs=4, patience=4, batch=4, lr=1e-2, budget_s=120)
    assert history["epochs"] == 4 and len(history["val_loss"]) == 4
    # the training loss (batch statistics; a few steps barely move BatchNorm's moving averages,
    # which the validation loss uses)
    assert history["loss"][-1] < 0.9 * history["loss"][0], history["loss"]


def test_exported_student_and_head_run_in_the_daemon(tmp_path: Path) -> None:
    student = build_student(width=8, dense=32)
    x = _patches(10.0, seed=2)
    emb = student.predict(x, verbose=0)
    labels = ["angry", "happy", "sad"]
    head = fit_head(np.concatenate([emb] * 3), np.repeat([0, 1, 2], len(emb)), 0.1)
    files = export_student(with_head(student, head, 3), labels, CONFIG, x, tmp_path, {"teacher": "test"})
    for kind, path in files.items():
        meta = read_metadata(path)
        assert meta.features == "musicnn_logmel"
        assert meta.window_frames == PATCH_FRAMES and meta.labels == tuple(labels)
        assert meta.quantized == (kind == "int8")
        assert meta.training["teacher"] == "test"
        runner = ModelRunner(path)
        window = mel_power(music(4.0, seed=3).astype(np.float32), CONFIG)[:PATCH_FRAMES]
        probs = runner.predict(window)
        assert probs.shape == (3,)
        assert probs.sum() == pytest.approx(1.0, abs=0.02)


def test_evaluate_test_scores_the_test_part_once_and_keeps_it(tmp_path: Path) -> None:
    """The student run's test figures come from the daemon's path (streamer.evaluation.evaluate), on exactly
    the split's test clips, and a rerun keeps them instead of evaluating again."""
    student = build_student(width=8, dense=32)
    x = _patches(10.0, seed=2)
    labels = ["angry", "happy", "sad"]
    head = fit_head(np.concatenate([student.predict(x, verbose=0)] * 3), np.repeat([0, 1, 2], len(x)), 0.1)
    out = tmp_path / "run"
    export_student(with_head(student, head, 3), labels, CONFIG, x, out, {"teacher": "test"})
    data = tmp_path / "data"
    for n, label in enumerate(labels * 2):
        (data / label).mkdir(parents=True, exist_ok=True)
        sf.write(data / label / f"clip{n}.wav", music(8.0, seed=n), 16000)
    test = [f"{label}/clip{n}.wav" for n, label in enumerate(labels)]
    (out / "split.json").write_text(json.dumps({"train": [], "val": [], "test": test}))
    (out / "result.json").write_text("{}")
    done = evaluate_test(data, out)
    assert set(done) == {"clean/int8", "clean/float", "room/int8"}
    assert all(figures["n_clips"] == 3 for figures in done.values())
    assert json.loads((out / "result.json").read_text())["evaluate"] == done
    for job in done:
        assert json.loads((out / f"evaluate-{job.replace('/', '-')}.json").read_text())["n_clips"] == 3
    (out / "model-int8.tflite").unlink()  # a rerun must not need the files again
    assert evaluate_test(data, out) == done


def _clip(name: str, label: str = "happy") -> Clip:
    return Clip(Path(f"/data/{label}/{name}.ogg"), label, name)


def test_distillation_clips_hold_out_every_val_and_test_clip() -> None:
    clips = [_clip(f"c{i}") for i in range(8)]
    three = Split(clips, ["happy"], {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6, 7]})
    # the 4-class split puts some of them elsewhere
    four = Split(clips, ["happy"], {"train": [0, 1, 4, 6], "val": [2, 7], "test": [3, 5]})
    train, val = distillation_clips([three, four])
    assert [c.path.stem for c in train] == ["c0", "c1"]  # c2: val of four; c3: test of four; c4, c6 held
    assert [c.path.stem for c in val] == ["c2", "c4"]  # c5, c7: test of the other split
    held = {clips[i].path for s in (three, four) for p in ("val", "test") for i in s.parts[p]}
    assert not held & {c.path for c in train}
    tests = {clips[i].path for s in (three, four) for i in s.parts["test"]}
    assert not tests & {c.path for c in val}


def test_build_caches_clean_and_chain_patches_with_clean_targets(tmp_path: Path) -> None:
    clips = []
    for i, label in enumerate(["happy", "sad"]):
        path = tmp_path / "data" / label / f"{label}.wav"
        path.parent.mkdir(parents=True)
        sf.write(path, music(7.0, seed=10 + i), 16000)
        clips.append(Clip(path, label, label))
    calls = []

    def teacher(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return np.repeat(x.mean(axis=1), 3, axis=1)[:, :200]

    conds = ("clean", "augment-0")
    data = build(clips, conds, CONFIG, tmp_path / "cache", teacher)
    assert calls == [2, 2]  # the teacher sees the clean patches only, once per clip
    for d in data.values():
        assert set(d.inputs) == set(conds)
        assert d.inputs["clean"].shape == (2, PATCH_FRAMES, 96) and d.inputs["clean"].dtype == np.float16
        assert d.target.shape == (2, 200)
        assert not np.allclose(d.inputs["clean"], d.inputs["augment-0"], atol=0.05)  # the chain changed it
    again = build(clips, conds, CONFIG, tmp_path / "cache", teacher)  # resumed from the cache
    assert calls == [2, 2]
    for path, d in again.items():
        np.testing.assert_array_equal(d.target, data[path].target)
    x, y = stack(again, conds)
    assert x.shape == (8, PATCH_FRAMES, 96) and y.shape == (8, 200)
    np.testing.assert_array_equal(y[:2], y[2:4])  # the chain copy's target is its clean patch's


def test_clip_data_trims_conditions_to_a_common_length() -> None:
    d = ClipData({"clean": np.zeros((3, 2, 2)), "augment-0": np.zeros((2, 2, 2))}, np.zeros((3, 200)))
    assert len(d.target) == 2 and all(len(v) == 2 for v in d.inputs.values())


def test_lr_cuts_every_second_epoch_without_progress() -> None:
    # the shipped first student's validation losses: one cut, after epoch 9 (two since the best at 7)
    val = [0.751, 0.78, 0.66, 0.651, 0.63, 0.652, 0.599, 0.619, 0.604, 0.557, 0.567, 0.556]
    assert lr_cuts(val) == [9]
    assert lr_cuts([1.0, 1.0, 1.0, 1.0, 0.5]) == [3]  # a tie is no progress
    assert lr_cuts([3.0, 2.0, 1.0]) == []


def test_distil_without_validation_runs_its_epochs_and_replays_the_cuts() -> None:
    x = _patches(8.0, seed=4)
    y = np.random.default_rng(1).normal(0, 1, (len(x), 200)).astype(np.float32)
    model = build_student(width=8, dense=32)
    history = distil(model, [x, x], y, None, None, epochs=3, batch=4, lr=1e-2, budget_s=120, cuts=[1, 2])
    assert history["epochs"] == history["best_epoch"] == 3 and history["val_loss"] == []
    assert history["stopped_by"] == "epochs"
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-2 / 9)


def test_refit_distils_on_train_and_val_clips_for_the_chosen_epochs(tmp_path: Path, monkeypatch) -> None:
    import trainer.families.musicnn.student as student

    clips = [_clip(f"c{i}") for i in range(6)]
    split = Split(clips, ["happy"], {"train": [0, 1, 2], "val": [3, 4], "test": [5]})
    monkeypatch.setattr(student, "load_split", lambda data_dir, labels: split)
    x = _patches(6.0, seed=5).astype(np.float16)
    seen: list[set[str]] = []

    def fake_build(clips, conds, config, cache, teacher=None, only_cached=False):
        seen.append({c.path.stem for c in clips})
        return {c.path: ClipData({k: x for k in conds}, np.ones((len(x), 200), np.float32)) for c in clips}

    monkeypatch.setattr(student, "build", fake_build)
    monkeypatch.setattr(student, "build_student", lambda width, embedding: build_student(width, 16, embedding))
    first = {"history": {"best_epoch": 2, "val_loss": [1.0, 0.9, 0.95]}, "width": 8}
    model, report = student.refitted_student(tmp_path, CONFIG, first, tmp_path / "cache", k=1)
    assert seen == [{"c0", "c1", "c2", "c3", "c4"}]  # every clip but the test part's
    assert report["train_clips"] == 5 and report["history"]["epochs"] == 2 and report["lr_cuts"] == []
    assert report["loss"] == "mse"  # the first students' reports did not name it
    monkeypatch.setattr(student, "distil", lambda *a, **k: pytest.fail("not cached"))
    again, report_again = student.refitted_student(tmp_path, CONFIG, first, tmp_path / "cache", k=1)
    assert report_again == report
    np.testing.assert_allclose(
        again.predict(x.astype(np.float32), verbose=0), model.predict(x.astype(np.float32), verbose=0), atol=1e-5
    )


def test_teacher_targets_sit_side_by_side_and_weigh_the_same(tmp_path: Path) -> None:
    """With AudioSet teachers the targets are their embeddings of the clean patches, concatenated
    (a clip a teacher cannot embed drops out), and each teacher's block weighs the same in the loss."""
    from trainer.families.musicnn.student import Targets
    from trainer.families.musicnn.teachers import DIMS, Teacher

    def fake(name: str) -> Teacher:
        return Teacher(name, lambda audio: np.full((2, DIMS[name]), len(name), np.float32), {"weights_sha256": name})

    targets = Targets(("musicnn", "yamnet"))
    targets.cache, targets._teachers = tmp_path / "cache", [fake("musicnn"), fake("yamnet")]
    sf.write(tmp_path / "a.wav", music(7.0, seed=1), 16000)
    data = {tmp_path / "a.wav": ClipData({"clean": np.zeros((3, PATCH_FRAMES, 96), np.float16)}, np.zeros((3, 200)))}
    out = targets.apply(data)[tmp_path / "a.wav"]
    assert out.target.shape == (2, 1224) and len(out.inputs["clean"]) == 2  # truncated to the shorter
    assert np.all(out.target[:, :200] == 7) and np.all(out.target[:, 200:] == 6)
    scale = targets.scale(1224)
    assert np.sum(scale[:200] ** 2) == pytest.approx(np.sum(scale[200:] ** 2))
    assert Targets().apply(data) is data and np.all(Targets().scale(200) == 1) and Targets().key() is None


def test_the_held_out_twin_sees_no_validation_clip_and_is_found_by_its_weights(tmp_path: Path, monkeypatch) -> None:
    """export_tuning: the first student (distilled without a validation clip) with a head on the
    training part alone; trainer.common.live.held_out_twin finds it from a shipped copy of the run's
    file (other metadata, same weights) and from nothing else."""
    import dataclasses

    import trainer.families.musicnn.student as student
    from trainer.common.export import embed_metadata
    from trainer.common.live import held_out_twin

    labels = ["angry", "happy", "sad"]
    clips = [_clip(f"c{i}", labels[i % 3]) for i in range(9)]
    split = Split(clips, labels, {"train": [0, 1, 2, 3, 4, 5], "val": [6, 7], "test": [8]})
    monkeypatch.setattr(student, "load_split", lambda data_dir, labels: split)
    by_label = {label: _patches(4.0, seed=n).astype(np.float16) for n, label in enumerate(labels)}
    seen: list[set[str]] = []

    def fake_build(clips, conds, config, cache, teacher=None, only_cached=False):
        seen.append({c.path.stem for c in clips})
        return {c.path: ClipData({k: by_label[c.label] for k in conds}, np.ones((4, 200), np.float32)) for c in clips}

    first = build_student(width=8, dense=32)
    monkeypatch.setattr(student, "build", fake_build)
    monkeypatch.setattr(student, "trained_student", lambda *a, **k: (first, {}))
    run = tmp_path / "runs" / "student-3class"
    x = np.concatenate(list(by_label.values())).astype(np.float32)
    head = fit_head(first.predict(x, verbose=0), np.repeat([0, 1, 2], len(x) // 3), 0.1)
    export_student(with_head(first, head, 3), labels, CONFIG, x, run, {"teacher": "test"})
    (run / "result.json").write_text(json.dumps({"labels": labels, "chosen_C": 0.1}))

    twin = student.export_tuning(tmp_path, run, CONFIG, tmp_path / "cache", k=1)
    assert seen == [{"c0", "c1", "c2", "c3", "c4", "c5"}]  # the training part alone
    meta = read_metadata(twin)
    assert meta.labels == tuple(labels) and meta.quantized
    assert meta.training["head"]["parts"] == "train" and "held-out" in meta.training["tuning"]

    shipped = tmp_path / "models" / "moodstream-3class-musicnn-student.tflite"
    shipped.parent.mkdir()
    source = run / "model-int8.tflite"
    renamed = dataclasses.replace(read_metadata(source), temperature=0.9)
    shipped.write_bytes(embed_metadata(source.read_bytes(), renamed.to_json()))
    assert held_out_twin(shipped, tmp_path / "runs") == twin
    assert held_out_twin(twin, tmp_path / "runs") is None  # another file's weights
