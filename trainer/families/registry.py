"""Every model family, listed once: `make models` trains and ships them in this order (the musicnn
family's card compares its files with the paper family's), and writes models/index.json from it,
which `moodstream` reads for the shipped names, their cards and the default model."""

from __future__ import annotations

from trainer.families.family import Family
from trainer.families.musicnn.family import FAMILY as MUSICNN
from trainer.families.paper.family import FAMILY as PAPER

FAMILIES: tuple[Family, ...] = (PAPER, MUSICNN)
# the model `moodstream run` uses without --model: it wins on clean audio AND through a simulated
# room within the CPU budget (models/README-musicnn.md)
DEFAULT_MODEL = "3class-musicnn-student"
