"""The paper family's steps for `make models`: for 3 and 4 classes, artist-grouped 5-fold
cross-validation over the training and validation parts chooses the training recipe
(trainer.families.paper.crossval: clean or capture-chain copies, level-free input, weight decay,
mixup) and, with that chain recipe, the architecture (trainer.families.paper.netcv: CNN, CNN-LSTM,
CNN-GRU or linear); the winners are trained on the honest split (with the baseline floor), copied
to models/, scored the daemon's way on the test part, clean and through every capture chain
(trainer.common.chains), and models/README.md is written with the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamer.model.metadata import weights_digest
from streamer.util.atomic import write_atomic
from trainer.common.chains import chain_evaluations
from trainer.common.evaluation import test_folder
from trainer.families.family import Family, Job
from trainer.families.paper.card import HOW_CHOSEN, model_card
from trainer.families.paper.crossval import candidate, run_cv
from trainer.families.paper.netcv import run_netcv
from trainer.families.paper.run import RunConfig, run

THREE = ("angry", "happy", "sad")
FOUR = ("angry", "happy", "sad", "calm")
TARGETS = {"3class": THREE, "4class": FOUR}  # shipped file -> labels
FOLDS = 5


def train(name: str, job: Job) -> None:
    """Cross-validate the recipes and the architectures, then train the winners on the honest split
    (all resumable)."""
    state = run_cv(job.data, list(TARGETS[name]), job.runs / f"{name}-cv", job.cache, FOLDS)
    nets = run_netcv(job.data, list(TARGETS[name]), job.runs / f"{name}-netcv", job.cache)
    config = winner_config(name, state["ranking"][0], job.data, job.runs, job.time_budget_min, nets["ranking"][0])
    run(config, job.cache)


def best_model(candidates: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(run, architecture) with the highest VALIDATION clip-level macro-F1 of the int8 file
    (window level breaks ties); the test part plays no part in the choice."""

    def key(item: tuple[str, str]) -> tuple[float, float]:
        val = candidates[item[0]]["results"][item[1]]["val"]["int8"]
        return val["clip"]["macro_f1"], val["window"]["macro_f1"]

    models = [(run, arch) for run, m in candidates.items() for arch, r in m["results"].items() if "int8" in r["val"]]
    return max(models, key=key)


def winner_config(
    name: str, winner: str, data: Path, runs: Path, time_budget_min: float, arch: str = "linear"
) -> RunConfig:
    """The cross-validation winners (the recipe among the linear model's, trainer.families.paper.crossval;
    the architecture with the chain recipe, trainer.families.paper.netcv) on the honest split (train
    part, early stopping on val). A run folder per recipe holds every architecture trained with it
    (RunConfig's fingerprint leaves the architectures out)."""
    c = candidate(winner)
    return RunConfig(
        data_dir=str(data),
        out=str(runs / f"{name}-{winner}"),
        labels=TARGETS[name],
        architectures=(arch,),
        protocol="honest",
        augment=False,
        chain_copies=c.chain_copies,
        clean_copies=c.clean_copies,
        centre_energy=c.centre_energy,
        weight_decay=c.weight_decay,
        learning_rate=c.learning_rate,
        time_budget_s=time_budget_min * 60,
        name="moodstream",
    )


def ship(job: Job) -> None:
    """Copy each cross-validation winner to models/, evaluate it (clean and through every capture
    chain), write the card. The architecture is the network cross-validation's winner where it ran
    (trainer.families.paper.netcv), else the run's best on validation."""
    data, runs, models = job.data, job.runs, job.models
    cvs = _states(runs, "cv", "cv.json")
    # a network cross-validation still running (no architecture on every fold yet) decides nothing
    netcvs = {k: s for k, s in _states(runs, "netcv", "netcv.json").items() if len(s.get("ranking", [])) >= 2}
    present = {}
    shipped = {}
    chains: dict[str, dict[str, Any]] = _before(models)
    for target_name, cv in cvs.items():
        winner = cv["ranking"][0]
        run_name = f"{target_name}-{winner}"
        if not (runs / run_name / "metrics.json").is_file():
            continue
        present[run_name] = json.loads((runs / run_name / "metrics.json").read_text())
        nets = netcvs.get(target_name)
        arch = nets["ranking"][0] if nets else best_model({run_name: present[run_name]})[1]
        target = models / f"moodstream-{target_name}.tflite"
        write_atomic(target, (runs / run_name / arch / "model-int8.tflite").read_bytes())
        folder = test_folder(data, runs / run_name / "split.json", runs / run_name / "test-data")
        # `moodstream evaluate --chain NAME` for every chain; "clean" is the plain evaluation
        by_chain = chain_evaluations(folder, target, runs / run_name / "chains")
        chains[f"`{target.name}` ({arch}, {winner})"] = by_chain
        shipped[target_name] = {
            "run": run_name,
            "architecture": arch,
            "candidate": winner,
            "file": target.name,
            "size": target.stat().st_size,
            "evaluate": by_chain["clean"],
            "runs": [run_name],
            "chains": by_chain,
        }
    for name, metrics in present.items():
        write_atomic(models / f"metrics-{name}.json", json.dumps(_small(metrics), indent=2) + "\n")
        write_atomic(models / f"report-{name}.md", (runs / name / "report.md").read_text())
    write_atomic(models / "chains.json", json.dumps(_chain_summary(models, shipped), indent=2) + "\n")
    from trainer.common.cost import per_hop

    costs = {s["file"]: per_hop(models / s["file"]) for s in shipped.values()}
    card = model_card(present, shipped, None, HOW_CHOSEN, cv=cvs, chains=chains, netcv=netcvs, costs=costs)
    write_atomic(models / "README.md", card)


def _states(runs: Path, kind: str, file: str) -> dict[str, dict[str, Any]]:
    """Each target's cross-validation state (``runs/<target>-<kind>/<file>``) where it ran."""
    found = {name: runs / f"{name}-{kind}" / file for name in TARGETS}
    return {name: json.loads(path.read_text()) for name, path in found.items() if path.is_file()}


def _before(models: Path) -> dict[str, Any]:
    """The models shipped before the capture-chain work, measured through the same chains
    (models/chains-before.json: kept, since those files are no longer in models/)."""
    file = models / "chains-before.json"
    return json.loads(file.read_text())["rows"] if file.is_file() else {}


def _chain_summary(models: Path, shipped: dict[str, Any]) -> dict[str, Any]:
    """What `make bench` reports without the data: each shipped file (by its weights) and its chain figures."""
    keys = ("macro_f1", "accuracy", "n_clips", "intervals", "group_intervals", "chain")
    return {
        s["file"]: {
            "weights_sha256": weights_digest((models / s["file"]).read_bytes()),
            "candidate": s["candidate"],
            "chains": {c: {k: r.get(k) for k in keys} for c, r in s["chains"].items()},
        }
        for s in shipped.values()
    }


def _small(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics without the per-epoch histories (the card and report keep what matters)."""
    return {
        "run": metrics["run"],
        "results": {k: {kk: vv for kk, vv in v.items() if kk != "history"} for k, v in metrics["results"].items()},
    }


FAMILY = Family("paper", "README.md", tuple(TARGETS), tuple(TARGETS), train, ship)
