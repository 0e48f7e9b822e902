"""Scoring shipped files the daemon's way for the cards: ``streamer.evaluation.evaluate.evaluate``
on a folder of links to exactly a split's test clips, at a family's hop, default settings otherwise
(never a config file), kept as JSON so that a rerun skips what is done."""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from streamer.util.atomic import write_atomic
from trainer.common.chains import link_folder


def test_folder(data: Path, split_json: Path, dest: Path) -> Path:
    """A labelled folder of symlinks to exactly the test part's clips, and to the data's
    metadata.csv so that `moodstream evaluate` resamples whole artists as the split grouped them."""
    return link_folder(data, json.loads(split_json.read_text())["test"], dest)


def evaluate_file(folder: Path, model: Path, out: Path, chain: str | None, hop_s: float) -> dict[str, Any]:
    """One evaluation at ``hop_s``, kept in ``out``; an evaluation that scores no clip stops the run."""
    from streamer.config import ModelSettings, Settings
    from streamer.evaluation.evaluate import evaluate
    from streamer.model.runner import ModelRunner

    settings = Settings(model=ModelSettings(hop_seconds=hop_s))
    result = evaluate(folder, ModelRunner(model), settings, chain, 0)
    if not result["n_clips"]:
        raise RuntimeError(f"evaluating {model} ({chain or 'clean'}) on {folder} scored no clip")
    write_atomic(out, json.dumps(result, indent=2) + "\n")
    return result


def evaluate_all(jobs: dict[str, tuple[Path, Path, Path, str | None]], hop_s: float) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_file` for each (folder, model, json out, chain), in concurrent processes
    (each is single-threaded and the room chain is slow)."""
    with ProcessPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {key: pool.submit(evaluate_file, *job, hop_s) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What a card keeps of one evaluate result: clips, accuracy, macro-F1 and its interval."""
    return {k: result.get(k) for k in ("n_clips", "accuracy", "macro_f1", "group_intervals")}
