"""`make models --only teachers` (issue 28): the musicnn family's student distilled from the
teachers that cross-validation chooses, shipped only where it beats the student in models/.

1. Teacher embeddings of every training and validation clip (clean, ``room``, ``augment-0``;
   trainer.families.musicnn.teachers, cached by content: a rerun computes nothing).
2. trainer.families.musicnn.teachercv for 3 and 4 classes, and the choice over both
   (``runs/teachercv-choice.json``).
3. trainer.student with those teachers' embeddings as its targets (``runs/student-Nclass-teachers``;
   one distillation for both label sets, cached), evaluated on the test part as trainer.student
   does (int8 and float clean, int8 room).
4. Per label set, the new student replaces ``models/moodstream-Nclass-musicnn-student.tflite`` only
   if `moodstream evaluate` scores it at least as high as the shipped student on the test part,
   clean AND room (int8); then metrics-Nclass-musicnn.json takes its figures and its single-link
   chain table. ``models/teachers.json`` keeps the comparison; README-musicnn.md is rewritten.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from streamer.atomic import write_atomic
from trainer.families.musicnn import teachercv, teachers

log = logging.getLogger(__name__)

LABEL_SETS = {"3class": ("angry", "happy", "sad"), "4class": ("angry", "happy", "sad", "calm")}
CONDITIONS = ("clean", "room", "augment-0")
JOBS = ("clean/int8", "room/int8")  # what the new student must match or beat


def fill(data: Path, local: Path | None) -> dict[str, dict[str, str]]:
    """Every teacher's embeddings of the pool under every condition; the weights' provenance."""
    from trainer.musicnn_family import config_for

    nets, provenance = teachers.load_teachers(teachers.NAMES, config_for("rms"), local)
    clips = teachers.pool_clips(data)
    for condition in CONDITIONS:
        teachers.embed(clips, condition, nets, teachers.CACHE)
    return provenance


def select(data: Path, runs: Path, local: Path | None) -> dict[str, Any]:
    """The teacher comparison per label set and the choice (cached in ``runs``)."""
    from trainer.musicnn_family import config_for
    from trainer.transfer import load_split

    nets, _ = teachers.load_teachers(teachers.NAMES, config_for("rms"), local)
    states = {}
    for key, labels in LABEL_SETS.items():
        split = load_split(data, list(labels))
        pool = teachercv.load_pool(split, data, teachers.CACHE, nets)
        out = runs / f"teachercv-{key}"
        out.mkdir(parents=True, exist_ok=True)
        states[key] = teachercv.run(split, pool, out)
    choice = teachercv.choose(states)
    write_atomic(runs / "teachercv-choice.json", json.dumps(choice, indent=2) + "\n")
    return {"states": states, "choice": choice}


def distil(data: Path, runs: Path, chosen: str, local: Path | None) -> None:
    """The student learning ``chosen``'s embeddings, its heads and their test evaluation (resumable)."""
    from trainer.student import main as student

    for key, labels in LABEL_SETS.items():
        argv = ["--labels", ",".join(labels), "--data", str(data), "--out", str(runs / f"student-{key}-teachers")]
        argv += ["--teachers", chosen, *(["--teacher-weights", str(local)] if local else [])]
        if student(argv):
            raise RuntimeError(f"the {key} student of {chosen} failed")


def better(new: dict[str, Any], shipped: dict[str, Any]) -> bool:
    """At least the shipped student's test macro-F1 clean and in the room (int8): the rule for shipping."""
    return all(new[job]["macro_f1"] >= shipped[job]["macro_f1"] for job in JOBS)


def ship(data: Path, runs: Path, models: Path, selected: dict[str, Any], provenance: dict[str, dict[str, str]]) -> None:
    """Replace each shipped student the new one beats; record the comparison for the card."""
    from trainer import musicnn
    from trainer.make_models import EVALUATE_HOP_S, LINKS, summary, test_folder
    from trainer.robustness import chain_evaluations

    verdicts = {}
    for key in LABEL_SETS:
        run = runs / f"student-{key}-teachers"
        metrics_file = models / f"metrics-{key}-musicnn.json"
        metrics = json.loads(metrics_file.read_text())
        new = json.loads((run / "result.json").read_text())
        shipped = metrics["student"]["evaluate"]
        verdicts[key] = {
            "new": {job: new["evaluate"][job] for job in (*JOBS, "clean/float")},
            "shipped": {job: shipped[job] for job in JOBS},
            "shipped_targets": metrics["student"]["student"].get("targets", "musicnn (200)"),
            "replaced": better(new["evaluate"], shipped),
        }
        if not verdicts[key]["replaced"]:
            log.info("%s: the new student (%s) does not beat the shipped one; kept", key, new["evaluate"])
            continue
        target = models / f"moodstream-{key}-musicnn-student.tflite"
        write_atomic(target, (run / "model-int8.tflite").read_bytes())
        folder = test_folder(data, run / "split.json", run / "test-data")
        links = chain_evaluations(folder, target, run / "links", LINKS, 0, EVALUATE_HOP_S)
        metrics["student"] = {**new, "file": target.name, "size": target.stat().st_size}
        metrics["links"]["student"] = {c: summary(r) for c, r in links.items()}
        write_atomic(metrics_file, json.dumps(metrics, indent=2) + "\n")
    # clip counts, not names
    states = {
        k: {**{f: v for f, v in s.items() if f != "clips"}, "n_clips": len(s["clips"])}
        for k, s in selected["states"].items()
    }
    record = {
        "states": states,
        "choice": selected["choice"],
        "provenance": provenance,
        "musicnn_sha256": musicnn.SHA256,
        "verdicts": verdicts,
    }
    write_atomic(models / "teachers.json", json.dumps(record, indent=2) + "\n")


def make(data: Path, runs: Path, models: Path, local: Path | None) -> None:
    """Steps 1 to 4; the card is rewritten by the caller (trainer.make_models.write_musicnn_card)."""
    provenance = fill(data, local)
    selected = select(data, runs, local)
    distil(data, runs, selected["choice"]["teachers"], local)
    ship(data, runs, models, selected, provenance)
