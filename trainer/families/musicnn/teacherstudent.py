"""`make models --only teachers` (issue 28): the musicnn family's student distilled from the
teachers that cross-validation chooses, shipped only where it beats the student in models/. The
AudioSet teachers' weights are downloaded, or read from ``$MOODSTREAM_TEACHER_WEIGHTS``
(trainer.families.musicnn.weights).

1. Teacher embeddings of every training and validation clip (clean and ``room``;
   trainer.families.musicnn.teachers, cached by content: a rerun computes nothing).
2. trainer.families.musicnn.teachercv for 3 and 4 classes, and the choice over both
   (``runs/teachercv-choice.json``).
3. trainer.families.musicnn.student with those teachers' embeddings as its targets
   (``runs/student-Nclass-teachers``; one distillation for both label sets, cached), evaluated on
   the test part as the student always is (int8 and float clean, int8 room).
4. Per label set, the new student replaces ``models/moodstream-Nclass-musicnn-student.tflite`` only
   if `moodstream evaluate` scores it at least as high as the shipped student on the test part,
   clean AND room (int8); then metrics-Nclass-musicnn.json takes its figures and its single-link
   chain table. ``models/teachers.json`` keeps the comparison (the family's card shows it).

Steps 1-3 are :func:`train`, step 4 :func:`ship` (the family's two steps).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from streamer.util.atomic import write_atomic
from trainer.families.musicnn import teachercv, teachers

log = logging.getLogger(__name__)

LABEL_SETS = {f"{len(labels)}class": labels for labels in teachers.LABEL_SETS}
CONDITIONS = ("clean", "room")
JOBS = ("clean/int8", "room/int8")  # what the new student must match or beat


def fill(data: Path, nets: list[teachers.Teacher]) -> None:
    """Every teacher's embeddings of the pool under every condition."""
    clips = teachers.pool_clips(data)
    for condition in CONDITIONS:
        teachers.embed(clips, condition, nets, teachers.CACHE)


def select(data: Path, runs: Path, nets: list[teachers.Teacher]) -> dict[str, Any]:
    """The teacher comparison per label set and the choice (cached in ``runs``)."""
    from trainer.common.split import load_split

    states = {}
    for key, labels in LABEL_SETS.items():
        split = load_split(data, list(labels))
        pool = teachercv.load_pool(split, data, teachers.CACHE, nets)
        out = runs / f"teachercv-{key}"
        out.mkdir(parents=True, exist_ok=True)
        states[key] = teachercv.run(split, pool, out)
    choice = teachercv.choose(states)
    write_atomic(runs / "teachercv-choice.json", json.dumps(choice, indent=2) + "\n")
    return choice


def distil(data: Path, runs: Path, chosen: str) -> None:
    """The student learning ``chosen``'s embeddings, its heads and their test evaluation (resumable)."""
    from trainer.families.musicnn.student import main as student

    for key, labels in LABEL_SETS.items():
        argv = ["--labels", ",".join(labels), "--data", str(data), "--out", str(runs / f"student-{key}-teachers")]
        if student([*argv, "--teachers", chosen]):
            raise RuntimeError(f"the {key} student of {chosen} failed")


def train(data: Path, runs: Path) -> None:
    """Steps 1 to 3 (each resumable)."""
    from trainer.families.musicnn.head import config_for

    nets, provenance = teachers.load_teachers(teachers.NAMES, config_for("rms"))
    runs.mkdir(parents=True, exist_ok=True)
    write_atomic(runs / "teachers-provenance.json", json.dumps(provenance, indent=2) + "\n")
    fill(data, nets)
    distil(data, runs, select(data, runs, nets)["teachers"])


def better(new: dict[str, Any], shipped: dict[str, Any]) -> bool:
    """At least the shipped student's test macro-F1 clean and in the room (int8): the rule for shipping."""
    return all(new[job]["macro_f1"] >= shipped[job]["macro_f1"] for job in JOBS)


def ship(data: Path, runs: Path, models: Path, links: tuple[str, ...]) -> None:
    """Replace each shipped student the new one beats (its figures through each of ``links``, the
    capture chain's single links, replace the old one's); record the comparison for the card. Once it
    replaced one, a rerun keeps the verdict it recorded (the shipped student is then the new one)."""
    from trainer.common.chains import chain_evaluations
    from trainer.common.evaluation import summary, test_folder
    from trainer.families.musicnn import network
    from trainer.families.musicnn.embeddings import EVALUATE_HOP_S

    if not (runs / "teachercv-choice.json").is_file() or not (runs / "teachers-provenance.json").is_file():
        return
    states = {k: json.loads((runs / f"teachercv-{k}" / "teachercv.json").read_text()) for k in LABEL_SETS}
    choice = json.loads((runs / "teachercv-choice.json").read_text())
    record_file = models / "teachers.json"
    before = json.loads(record_file.read_text()).get("verdicts", {}) if record_file.is_file() else {}
    verdicts = {}
    for key in LABEL_SETS:
        run = runs / f"student-{key}-teachers"
        metrics_file = models / f"metrics-{key}-musicnn.json"
        if not (run / "result.json").is_file() or not metrics_file.is_file():
            continue
        metrics, new = json.loads(metrics_file.read_text()), json.loads((run / "result.json").read_text())
        if metrics["student"]["student"].get("targets") == new["student"]["targets"] and key in before:
            verdicts[key] = before[key]  # shipped already: the verdict stands
            continue
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
        by_link = chain_evaluations(folder, target, run / "links", links, 0, EVALUATE_HOP_S)
        metrics["student"] = {**new, "file": target.name, "size": target.stat().st_size}
        metrics["links"]["student"] = {c: summary(r) for c, r in by_link.items()}
        write_atomic(metrics_file, json.dumps(metrics, indent=2) + "\n")
    record = {
        # clip counts, not names
        "states": {
            k: {**{f: v for f, v in s.items() if f != "clips"}, "n_clips": len(s["clips"])} for k, s in states.items()
        },
        "choice": choice,
        "provenance": json.loads((runs / "teachers-provenance.json").read_text()),
        "musicnn_sha256": network.SHA256,
        "verdicts": verdicts,
    }
    write_atomic(record_file, json.dumps(record, indent=2) + "\n")
