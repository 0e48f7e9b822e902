"""`python -m trainer TOOL [ARGS]`: the trainer's tools in one place (`moodstream-train` is `train`).

Each tool is one module's ``main(argv)``; they import TensorFlow and friends only when run."""

from __future__ import annotations

import importlib
import sys

TOOLS = {
    "make-models": ("trainer.make_models", "reproduce the shipped models, their cards and models/index.json"),
    "train": ("trainer.cli", "one training run of the paper family (also `moodstream-train`)"),
    "crossval": ("trainer.families.paper.crossval", "cross-validate the paper family's recipes"),
    "fetch-musicnn": ("trainer.families.musicnn.network", "download and verify musicnn's pinned wheel"),
    "embed": ("trainer.families.musicnn.embeddings", "cache musicnn embeddings (run it in the background)"),
    "head": ("trainer.families.musicnn.head", "cross-validate and train the head on musicnn's embeddings"),
    "student": ("trainer.families.musicnn.student", "distil musicnn (or --teachers) into the small student"),
    "teachers": ("trainer.families.musicnn.teachers", "cache the teachers' embeddings (run it in the background)"),
    "teachercv": ("trainer.families.musicnn.teachercv", "cross-validate which teachers the student learns"),
    "netcv": ("trainer.families.paper.netcv", "cross-validate the paper family's networks (background, resumable)"),
    "chains": ("trainer.common.chains", "a model through every capture chain on the test part"),
    "live": ("trainer.studies.live", "how the temporal model's defaults were chosen, on validation streams"),
    "live-card": ("trainer.common.live", "calibrate the shipped models and write models/README-live.md"),
    "student-transfer": ("trainer.studies.student_transfer", "the student's embeddings in the teachers' protocol"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in TOOLS:
        width = max(map(len, TOOLS))
        listing = "\n".join(f"  {name:{width}}  {what}" for name, (_, what) in TOOLS.items())
        print(f"usage: python -m trainer TOOL [ARGS]\n\ntools:\n{listing}", file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    module, _ = TOOLS[args[0]]
    return int(importlib.import_module(module).main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
