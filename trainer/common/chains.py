"""The chain table: a model through every capture chain (streamer.audio.chain) on the artist-disjoint
test part, scored the daemon's way (streamer.evaluation.evaluate.evaluate), one JSON per chain so that a
rerun skips what is done.

`python -m trainer chains MODEL --labels angry,happy,sad --out DIR` rebuilds the test part of
the split that `make models` uses (trainer.common.split, seed 0) as a folder of links, without training."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from streamer.audio.chain import CHAINS
from streamer.util.atomic import write_atomic

log = logging.getLogger(__name__)


def test_part(data: Path, labels: list[str], seed: int = 0, group_column: str | None = None) -> list[str]:
    """The test part's clips (relative paths), exactly as trainer.families.paper.prepare splits them."""
    from trainer.common.dataset import scan
    from trainer.common.split import split_by_group

    clips, _ = scan(data, labels, group_column)
    split = split_by_group([c.label for c in clips], [c.group for c in clips], seed)
    return sorted(clips[i].path.relative_to(data).as_posix() for i in split["test"])


def link_folder(data: Path, files: list[str], dest: Path) -> Path:
    """A labelled folder of links to ``files`` and to the data's metadata.csv (so that evaluate
    resamples whole artists as the split grouped them)."""
    if dest.exists():
        shutil.rmtree(dest)
    for rel in files:
        link = dest / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((data / rel).resolve())
    if (data / "metadata.csv").is_file():
        (dest / "metadata.csv").symlink_to((data / "metadata.csv").resolve())
    return dest


def chain_evaluations(
    folder: Path,
    model: Path,
    out: Path,
    chains: tuple[str, ...] = CHAINS,
    seed: int = 0,
    hop_seconds: float | None = None,
) -> dict[str, dict[str, Any]]:
    """{chain: evaluate's result} for ``model`` on ``folder`` (at ``hop_seconds``, else the default
    settings' hop); each kept in ``out/<chain>.json`` and reused when the model file has the same
    bytes and the hop is the same."""
    from streamer.config import ModelSettings, Settings
    from streamer.evaluation.evaluate import evaluate
    from streamer.model.runner import ModelRunner

    runner = ModelRunner(model)
    settings = Settings() if hop_seconds is None else Settings(model=ModelSettings(hop_seconds=hop_seconds))
    stamp: dict[str, Any] = {"model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(), "seed": seed}
    if hop_seconds is not None:  # the default hop's results were stamped without it
        stamp["hop_seconds"] = hop_seconds
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for chain in chains:
        file = out / f"{chain}.json"
        if file.is_file():
            done = json.loads(file.read_text())
            if done.get("stamp") == stamp:
                results[chain] = done
                continue
        log.info("%s: chain %s on %s", model.name, chain, folder)
        result = {**evaluate(folder, runner, settings, chain, seed), "stamp": stamp}  # no /etc file
        if not result["n_clips"]:
            raise RuntimeError(f"evaluating {model} through chain {chain} on {folder} scored no clip")
        write_atomic(file, json.dumps(result, indent=2) + "\n")
        results[chain] = result
    return results


def main(argv: list[str] | None = None) -> int:
    from trainer.common.paths import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="python -m trainer chains", description=__doc__.splitlines()[0])
    p.add_argument("model", type=Path)
    p.add_argument("--labels", required=True, help="comma-separated labels of the split (e.g. angry,happy,sad)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, required=True, help="folder for the test links and one JSON per chain")
    p.add_argument("--chains", default=",".join(CHAINS))
    p.add_argument("--seed", type=int, default=0, help="chain seed")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    labels = args.labels.split(",")
    folder = link_folder(args.data, test_part(args.data, labels), args.out / "test-data")
    results = chain_evaluations(folder, args.model, args.out, tuple(args.chains.split(",")), args.seed)
    for chain, r in results.items():
        print(f"{chain:7s} macro-F1 {r['macro_f1']:.3f} on {r['n_clips']} clips")
    return 0
