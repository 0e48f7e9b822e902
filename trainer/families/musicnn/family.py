"""The musicnn family's steps for `make models`: the network with a cross-validated head
(trainer.families.musicnn.head) and its distilled student (trainer.families.musicnn.student), for 3
and 4 classes, and the student of the teachers that cross-validation chooses among musicnn and two
AudioSet networks (``teachers``: trainer.families.musicnn.teacherstudent), which replaces a shipped
student only where it scores at least as high on the test part, clean and room; shipped as
moodstream-<N>class-musicnn and -musicnn-student, scored the daemon's way on the test part (clean,
room, every single link of the capture chain) beside the paper family's file, and
models/README-musicnn.md written from the figures."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from streamer.audio.chain import CHAINS
from streamer.util.atomic import write_atomic
from trainer.common.chains import chain_evaluations
from trainer.common.evaluation import evaluate_all, summary, test_folder
from trainer.families.family import Family, Job
from trainer.families.musicnn.embeddings import EVALUATE_HOP_S

THREE = ("angry", "happy", "sad")
FOUR = ("angry", "happy", "sad", "calm")
# run name -> labels; shipped as moodstream-Nclass-musicnn and moodstream-Nclass-musicnn-student
MUSICNN = {"musicnn-3class": THREE, "musicnn-4class": FOUR}
STUDENT = {"student-3class": THREE, "student-4class": FOUR}
TEACHERS = "teachers"
LINKS = tuple(c for c in CHAINS if c not in ("clean", "room"))  # the capture chain's single links
SHIPPED = ("3class-musicnn", "4class-musicnn", "3class-musicnn-student", "4class-musicnn-student")
# the figures each shipped file carries in its metadata: name in the metadata -> (chain, kind) evaluated
FIGURES = {"test/int8": ("clean", "int8"), "test/float": ("clean", "float"), "room/int8": ("room", "int8")}


def train(name: str, job: Job) -> None:
    """One run: the network's head, a student, or the teachers' student (each resumable)."""
    if name == TEACHERS:
        from trainer.families.musicnn.teacherstudent import train as train_teachers

        train_teachers(job.data, job.runs)
        return
    if name in MUSICNN:
        from trainer.families.musicnn.head import train as train_head

        train_head(list(MUSICNN[name]), job.data, job.runs / name, job.cache / "musicnn-embeddings")
        return
    from trainer.families.musicnn.student import main as student

    labels = ",".join(STUDENT[name])
    if student(["--labels", labels, "--data", str(job.data), "--out", str(job.runs / name)]):
        raise RuntimeError(f"make models: the {name} run failed")


def ship(job: Job) -> None:
    """Ship each musicnn run's int8 file as models/moodstream-Nclass-musicnn.tflite and its
    student's, evaluate them (int8 clean and room, float clean; int8 through every single link of
    the capture chain) and the paper family's shipped file on the same test part and at the same
    hop, and write models/README-musicnn.md from every metrics-*-musicnn.json. This writes
    figures; the default model is chosen in trainer.families.registry."""
    data, runs, models = job.data, job.runs, job.models
    from trainer.families.musicnn.card import card

    for name in MUSICNN:
        result_file = runs / name / "result.json"
        if not result_file.is_file():
            continue
        key = name.removeprefix("musicnn-")
        result = json.loads(result_file.read_text())
        target = models / f"moodstream-{key}-musicnn.tflite"
        write_atomic(target, (runs / name / "model-int8.tflite").read_bytes())
        # the same split as the paper family's run of these labels (same scan, grouping and seed)
        folder = test_folder(data, runs / name / "split.json", runs / name / "test-data")
        paper_file = models / f"moodstream-{key}.tflite"
        jobs = {
            "clean/int8": (folder, target, runs / name / "evaluate-clean-int8.json", None),
            "clean/float": (
                folder,
                runs / name / "model-float.tflite",
                runs / name / "evaluate-clean-float.json",
                None,
            ),
            "room/int8": (folder, target, runs / name / "evaluate-room-int8.json", "room"),
            "clean/paper": (folder, paper_file, runs / name / "evaluate-clean-paper.json", None),
            "room/paper": (folder, paper_file, runs / name / "evaluate-room-paper.json", "room"),
        }
        done = evaluate_all(jobs, EVALUATE_HOP_S)
        evaluations: dict[str, dict[str, Any]] = {"clean": {}, "room": {}}
        for what, ev in done.items():
            chain, kind = what.split("/")
            evaluations[chain][kind] = ev
        student_file = models / f"moodstream-{key}-musicnn-student.tflite"
        student = ship_student(runs / f"student-{key}", student_file)
        shipped_files = {"paper": paper_file, "network": target, **({"student": student_file} if student else {})}
        metrics = {
            **result,
            "file": target.name,
            "size": target.stat().st_size,
            "evaluate": evaluations,
            "evaluate_hop_s": EVALUATE_HOP_S,
            "student": student,
            "links": _links(folder, shipped_files, runs / name / "links"),
        }
        write_atomic(models / f"metrics-{key}-musicnn.json", json.dumps(metrics, indent=2) + "\n")
    from trainer.families.musicnn.teacherstudent import ship as ship_teachers

    ship_teachers(data, runs, models, LINKS)
    family = {
        f.name.removeprefix("metrics-").removesuffix("-musicnn.json"): json.loads(f.read_text())
        for f in sorted(models.glob("metrics-*-musicnn.json"))
    }
    teachers, transfer = (
        json.loads(f.read_text()) if f.is_file() else None
        for f in (models / "teachers.json", models / "student-transfer.json")
    )
    if family:
        stamp_test_figures(models, family)
        write_atomic(models / "README-musicnn.md", card(family, _costs(models, runs), teachers, transfer))


def stamp_test_figures(models: Path, family: dict[str, dict[str, Any]]) -> list[Path]:
    """Write each shipped file's test figures (the card's, from `moodstream evaluate` on the test
    part: int8 and float clean, int8 through the room) into its own metadata, where `moodstream
    models` reads them; the graph is untouched. Returns the files it stamped."""
    from streamer.model.metadata import read_metadata
    from trainer.common.export import embed_metadata

    stamped = []
    for key, metrics in family.items():
        network = metrics["evaluate"]
        results = {f"{key}-musicnn": {k: network[c][kind] for k, (c, kind) in FIGURES.items()}}
        if metrics.get("student"):
            results[f"{key}-musicnn-student"] = {
                k: metrics["student"]["evaluate"][f"{c}/{kind}"] for k, (c, kind) in FIGURES.items()
            }
        for short, evaluations in results.items():
            path = models / f"moodstream-{short}.tflite"
            parts: dict[str, dict[str, Any]] = {"test": {}, "room": {}}
            for where, ev in evaluations.items():
                part, kind = where.split("/")
                parts[part][kind] = {"clip": {k: ev[k] for k in ("accuracy", "macro_f1")} | {"n": ev["n_clips"]}}
            figures = {"protocol": "honest", "hop_seconds": EVALUATE_HOP_S, **parts}
            meta = dataclasses.replace(read_metadata(path), metrics=figures)
            write_atomic(path, embed_metadata(path.read_bytes(), meta.to_json()))
            stamped.append(path)
    return stamped


def _links(folder: Path, files: dict[str, Path], out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{model kind: {link: evaluate's summary}}: each file through every single link of the
    capture chain (level, mic, noise, reverb, codec: `room` is all of them at once) at the family's
    hop, one process per file; cached per file and link by trainer.common.chains.chain_evaluations."""
    with ProcessPoolExecutor(max_workers=len(files)) as pool:
        futures = {
            kind: pool.submit(chain_evaluations, folder, file, out / kind, LINKS, 0, EVALUATE_HOP_S)
            for kind, file in files.items()
        }
        results = {kind: future.result() for kind, future in futures.items()}
    return {kind: {c: summary(r) for c, r in res.items()} for kind, res in results.items()}


def ship_student(run: Path, target: Path) -> dict[str, Any] | None:
    """Ship a student run's int8 file (trainer.families.musicnn.student evaluated it on the same test part, at the
    same hop, clean and in the room) and return its result for the card; None without a run."""
    result_file = run / "result.json"
    if not result_file.is_file():
        return None
    result = json.loads(result_file.read_text())
    if set(result.get("evaluate", {})) != {"clean/int8", "clean/float", "room/int8"}:
        raise RuntimeError(
            f"{run}: the student's test evaluation is incomplete (rerun trainer.families.musicnn.student)"
        )
    write_atomic(target, (run / "model-int8.tflite").read_bytes())
    return {**result, "file": target.name, "size": target.stat().st_size}


def _costs(models: Path, runs: Path) -> dict[str, Any]:
    """The family's cost per hop, measured now as `make bench` measures it (trainer.common.cost):
    each shipped file of the family, then the float files the network was exported beside."""
    from trainer.common.cost import per_hop

    shipped = sorted(p for short in SHIPPED if (p := models / f"moodstream-{short}.tflite").is_file())
    files = shipped + sorted(runs.glob("musicnn-*/model-float.tflite"))
    named = ((p.name if p.parent == models else f"{p.parent.name}/{p.name}", p) for p in files)
    return {"models": [{"model": name, **per_hop(path)} for name, path in named]}


FAMILY = Family("musicnn", "README-musicnn.md", (*MUSICNN, *STUDENT, TEACHERS), SHIPPED, train, ship)
