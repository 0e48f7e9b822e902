"""The teacher comparison (trainer/families/musicnn/teachercv.py) on made-up embeddings: a teacher
that carries the label must beat one that does not, in fold CV and leave-one-genre-out alike; the
run resumes; and held-out artists never train the head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from trainer.common.split import Split
from trainer.families.musicnn import teachercv

GENRES = ("Jazz", "Rock", "Folk")


def _pool(n_clips: int = 60, seed: int = 0) -> teachercv.Pool:
    """Teacher ``good`` encodes the label (plus noise), ``noise`` encodes nothing; 3 patches per clip."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_clips) % 3
    emb: dict[str, dict[str, list[np.ndarray]]] = {}
    for cond in ("clean", "augment-0", "room"):
        good = [np.eye(3)[label] * 2 + rng.normal(0, 1.0, (3, 3)) for label in y]
        emb[cond] = {"good": good, "noise": [rng.normal(0, 1, (3, 5)) for _ in y]}
    return teachercv.Pool(
        [Path(f"c{i}.wav") for i in range(n_clips)],
        y,
        [f"artist{i // 2}" for i in range(n_clips)],
        [{GENRES[(i // 2) % 3]} for i in range(n_clips)],
        emb,
    )


def test_features_put_the_teachers_side_by_side() -> None:
    pool = _pool()
    x = pool.features("good+noise", "room")
    assert len(x) == 60 and x[0].shape == (3, 8)
    assert np.array_equal(x[5][:, :3], pool.emb["room"]["good"][5])


def test_a_teacher_that_knows_the_label_wins_in_folds_and_across_genres(monkeypatch) -> None:
    monkeypatch.setattr(teachercv, "MIN_GENRE_CLIPS", 10)
    pool = _pool()
    good, noise = teachercv.fold_cv(pool, "good", 0.1, 3), teachercv.fold_cv(pool, "noise", 0.1, 3)
    assert len(good["clean"]) == teachercv.FOLDS
    assert np.mean(good["clean"]) > 0.8 > 0.6 > np.mean(noise["clean"])
    genre = teachercv.genre_cv(pool, "good", 0.1, 3)
    assert sorted(genre["genres"]) == sorted(GENRES) and genre["room"] > 0.8
    assert sum(g["clips"] for g in genre["genres"].values()) == 60


def test_held_out_artists_never_train_the_head(monkeypatch) -> None:
    pool = _pool()
    seen: list[tuple[list[int], list[int]]] = []
    real = teachercv.fit_and_score

    def spy(pool, combo, c, train, held):
        seen.append((train, held))
        return real(pool, combo, c, train, held)

    monkeypatch.setattr(teachercv, "fit_and_score", spy)
    monkeypatch.setattr(teachercv, "MIN_GENRE_CLIPS", 10)
    teachercv.fold_cv(pool, "good", 0.1, 3)
    teachercv.genre_cv(pool, "good", 0.1, 3)
    for train, held in seen:
        assert not {pool.groups[i] for i in train} & {pool.groups[i] for i in held}


def test_the_run_resumes_and_refuses_other_clips(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(teachercv, "MIN_GENRE_CLIPS", 10)
    monkeypatch.setattr(teachercv, "CS", (0.1,))
    split = Split([], ["angry", "happy", "sad"], {})
    state = teachercv.run(split, _pool(), tmp_path, ("good", "noise"))
    assert set(state["best"]) == {"good", "noise"} and state["best"]["good"]["C"] == 0.1
    monkeypatch.setattr(teachercv, "fold_cv", lambda *a: pytest.fail("recomputed a finished row"))
    monkeypatch.setattr(teachercv, "genre_cv", lambda *a: pytest.fail("recomputed a finished row"))
    assert teachercv.run(split, _pool(), tmp_path, ("good", "noise"))["rows"] == state["rows"]
    with pytest.raises(ValueError, match="other clips"):
        teachercv.run(split, _pool(30), tmp_path, ("good",))


def _state(scores: dict[str, tuple[list[float], list[float], float]]) -> dict:
    """A teachercv state: per combination its fold scores (clean, room) and its genre-out figure."""
    return {
        "labels": ["angry", "happy", "sad"],
        "n_clips": 10,
        "rows": {f"{c} C=0.01": {"combo": c, "C": 0.01, "clean": cl, "room": ro} for c, (cl, ro, _) in scores.items()},
        "best": {c: {"C": 0.01, "genre": {"clean": g, "room": g, "genres": {}}} for c, (_, _, g) in scores.items()},
    }


def test_the_choice_prefers_the_teachers_that_transfer_when_the_scores_tie() -> None:
    base = [0.80, 0.82, 0.78, 0.81, 0.79]
    state = _state(
        {
            "musicnn": (base, base, 0.70),
            "musicnn+yamnet": ([v + 0.03 for v in base], [v + 0.03 for v in base], 0.72),
            "musicnn+mn04": ([v + 0.025 for v in base], [v + 0.025 for v in base], 0.78),
            "musicnn+yamnet+mn04": ([v - 0.05 for v in base], base, 0.90),
        }
    )
    choice = teachercv.choose({"3class": state})
    assert choice["teachers"] == "musicnn+mn04"  # within a standard error of the best, and transfers better
    assert set(choice["within_se"]) == {"musicnn+yamnet", "musicnn+mn04"}
    assert teachercv.gain(state, "musicnn+yamnet", "clean") == pytest.approx((0.03, 0.0), abs=1e-9)


def test_the_card_section_shows_every_row_the_gain_and_the_choice() -> None:
    from trainer.families.musicnn.card import teachers_section

    base = [0.80, 0.82, 0.78, 0.81, 0.79]
    state = _state({"musicnn": (base, base, 0.7), "musicnn+yamnet": ([v + 0.02 for v in base], base, 0.75)})
    prov = {"yamnet": {"reference": "YAMNet", "source": "local file x", "sha256": "ab" * 32, "licence": "Apache-2.0"}}
    text = "\n".join(
        teachers_section(
            {
                "states": {"3class": state},
                "choice": {"teachers": "musicnn+yamnet", "cv": {}, "se": 0.01, "within_se": [], "transfer": {}},
                "provenance": prov,
                "musicnn_sha256": "cd" * 32,
            },
            {"teachers": ["musicnn", "yamnet"], "3class": _state({"student": (base, [v - 0.1 for v in base], 0.65)})},
        )
    )
    assert "| yamnet | YAMNet (local file x) | " + "ab" * 32 + " | Apache-2.0 |" in text
    # the distilled student's own row, in the same table (its transfer beside its teachers')
    assert "| *student of musicnn+yamnet* | 0.01 | 0.800 ± 0.014 | 0.700 ± 0.014 | - | - | 0.650 | 0.650 |" in text
    assert "| **musicnn+yamnet** | 0.01 | 0.820 ± 0.014 | 0.800 ± 0.014 | +0.020 ± 0.000 | +0.000 ± 0.000 |" in text
    assert "| musicnn | 0.01 | 0.800 ± 0.014 | 0.800 ± 0.014 | - | - | 0.700 | 0.700 |" in text


def test_a_new_student_ships_only_when_it_is_at_least_as_good_clean_and_in_the_room() -> None:
    from trainer.families.musicnn.teacherstudent import better

    def ev(clean: float, room: float) -> dict:
        return {"clean/int8": {"macro_f1": clean}, "room/int8": {"macro_f1": room}}

    assert better(ev(0.86, 0.82), ev(0.83, 0.82))
    assert not better(ev(0.90, 0.81), ev(0.83, 0.82))  # a clean gain does not pay for a room loss
    assert not better(ev(0.82, 0.90), ev(0.83, 0.82))


def test_ship_replaces_the_student_only_when_it_is_better_and_keeps_its_verdict(tmp_path: Path, monkeypatch) -> None:
    import json

    from trainer.common import chains, evaluation
    from trainer.families.musicnn import teacherstudent

    def ev(clean: float, room: float) -> dict:
        return {"clean/int8": {"macro_f1": clean}, "room/int8": {"macro_f1": room}, "clean/float": {"macro_f1": clean}}

    runs, models = tmp_path / "runs", tmp_path / "models"
    models.mkdir()
    state = _state({"musicnn": ([0.8] * 5, [0.8] * 5, 0.7)}) | {"clips": ["a.wav"]}
    for key, new in (("3class", ev(0.86, 0.83)), ("4class", ev(0.80, 0.60))):
        (runs / f"teachercv-{key}").mkdir(parents=True)
        (runs / f"teachercv-{key}" / "teachercv.json").write_text(json.dumps(state))
        run = runs / f"student-{key}-teachers"
        run.mkdir()
        (run / "result.json").write_text(json.dumps({"evaluate": new, "student": {"targets": "musicnn + yamnet"}}))
        (run / "model-int8.tflite").write_bytes(b"new " + key.encode())
        old = {"student": {"evaluate": ev(0.83, 0.82), "student": {}}, "links": {"student": {}}}
        (models / f"metrics-{key}-musicnn.json").write_text(json.dumps(old))
        (models / f"moodstream-{key}-musicnn-student.tflite").write_bytes(b"old")
    (runs / "teachercv-choice.json").write_text(json.dumps({"teachers": "musicnn+yamnet"}))
    monkeypatch.setattr(evaluation, "test_folder", lambda *a: tmp_path)
    monkeypatch.setattr(chains, "chain_evaluations", lambda *a: {"level": {"n_clips": 1, "macro_f1": 0.8}})
    prov = {"yamnet": {"name": "yamnet", "source": "src", "sha256": "ab" * 32, "licence": "MIT", "reference": "r"}}
    (runs / "teachers-provenance.json").write_text(json.dumps(prov))
    teacherstudent.ship(tmp_path, runs, models, ("level",))
    record = json.loads((models / "teachers.json").read_text())
    assert record["verdicts"]["3class"]["replaced"] and not record["verdicts"]["4class"]["replaced"]
    assert (models / "moodstream-3class-musicnn-student.tflite").read_bytes() == b"new 3class"
    assert (models / "moodstream-4class-musicnn-student.tflite").read_bytes() == b"old"  # the room would lose
    metrics = json.loads((models / "metrics-3class-musicnn.json").read_text())
    assert metrics["student"]["evaluate"]["clean/int8"]["macro_f1"] == 0.86 and "level" in metrics["links"]["student"]
    assert record["states"]["3class"]["n_clips"] == 1 and "clips" not in record["states"]["3class"]
    assert record["provenance"] == prov
    teacherstudent.ship(tmp_path, runs, models, ("level",))  # a rerun: the new student is shipped, the verdict stays
    again = json.loads((models / "teachers.json").read_text())
    assert again["verdicts"] == record["verdicts"]
