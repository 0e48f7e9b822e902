"""How the distilled student transfers beyond the music it learnt from (issue 28): its embeddings
through trainer.families.musicnn.teachercv's protocol (artist-grouped fold CV and
leave-one-genre-out, clean and through the room), so that its figures stand beside its teachers'.

The student here is the one that ships (distilled on every non-test clip, without labels: a held-out
genre's audio was among its distillation clips, as AudioSet's music was among its teachers'); the
heads are fitted and scored exactly as for the teachers. Its inputs for the ``room`` condition are
computed and cached like its training inputs (trainer.families.musicnn.student.build).

`python -m trainer student-transfer --teachers musicnn,yamnet,mn04 --out runs/student-transfer`
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from streamer.util.atomic import write_atomic
from trainer.common.split import Split, load_split
from trainer.families.musicnn import teachercv

log = logging.getLogger(__name__)

LABEL_SETS = {"3class": ("angry", "happy", "sad"), "4class": ("angry", "happy", "sad", "calm")}


def student_pool(split: Split, data: Path, model, config) -> teachercv.Pool:
    """The split's training and validation clips with the student's embeddings per condition."""
    from trainer.families.musicnn.student import build

    clips = [split.clips[i] for i in sorted(split.parts["train"] + split.parts["val"])]
    conds = tuple(sorted({*teachercv.TRAIN_CONDITIONS, *teachercv.EVAL_CONDITIONS}))
    built = build(clips, conds, config)
    keep = [c for c in clips if c.path in built and all(k in built[c.path].inputs for k in conds)]
    genres = teachercv.genres_of(data)
    emb = {
        cond: {
            "student": [
                model.predict(built[c.path].inputs[cond].astype(np.float32), batch_size=256, verbose=0) for c in keep
            ]
        }
        for cond in conds
    }
    return teachercv.Pool(
        [c.path for c in keep],
        np.asarray([split.labels.index(c.label) for c in keep]),
        [c.group for c in keep],
        [genres.get(c.path.relative_to(data).as_posix(), set()) for c in keep],
        emb,
    )


def run(data: Path, out: Path, teachers: tuple[str, ...], local: Path | None, record: Path) -> dict[str, Any]:
    """The student's embeddings through the teachers' protocol per label set; the result (per-fold
    scores, the best C's leave-one-genre-out) is written to ``record``."""
    from trainer.families.musicnn.head import config_for
    from trainer.families.musicnn.student import Targets, refitted_student, trained_student

    config = config_for("rms")
    targets = Targets(teachers, local).load(config)
    _, first = trained_student(data, config, targets=targets)
    model, _ = refitted_student(data, config, first, targets=targets)
    results = {}
    for key, labels in LABEL_SETS.items():
        split = load_split(data, list(labels))
        folder = out / key
        folder.mkdir(parents=True, exist_ok=True)
        state = teachercv.run(split, student_pool(split, data, model, config), folder, ("student",))
        results[key] = {"n_clips": len(state["clips"]), "rows": state["rows"], "best": state["best"]}
    write_atomic(record, json.dumps({"teachers": list(teachers), **results}, indent=2) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    from trainer.common.paths import DEFAULT_DATA, MODELS

    p = argparse.ArgumentParser(prog="python -m trainer student-transfer", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--teachers", required=True, help="the student's targets, as trainer.families.musicnn.student --teachers"
    )
    p.add_argument("--teacher-weights", type=Path)
    p.add_argument(
        "--record", type=Path, default=MODELS / "student-transfer.json", help="the result (the family's card shows it)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for key, r in run(args.data, args.out, tuple(args.teachers.split(",")), args.teacher_weights, args.record).items():
        best = r["best"]["student"]
        print(f"{key}: C {best['C']:g}, genre-out clean {best['genre']['clean']:.3f} room {best['genre']['room']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
