"""One training run: prepare the data once, then the baseline and each architecture in turn,
each finished model recorded in ``OUT/<name>/result.json`` so that a restarted run skips it."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.features.mfcc import FeatureConfig, centre_columns
from streamer.model.metadata import FORMAT_VERSION, ModelMetadata, read_metadata
from streamer.model.runner import ModelRunner
from streamer.util.atomic import write_atomic
from trainer.common.report import curves, markdown, write_json
from trainer.common.scoring import runner_probabilities, score, timed
from trainer.families.paper.architectures import DEEP
from trainer.families.paper.prepare import Prepared, prepare
from trainer.families.paper.segments import standardisation, standardise

log = logging.getLogger(__name__)
CENTRED = (0,)  # the log-energy column: the only feature a gain moves


@dataclass(frozen=True)
class RunConfig:
    data_dir: str
    out: str
    labels: tuple[str, ...] | None = None
    window_seconds: float = 10.0
    overlap: float = 0.5
    architectures: tuple[str, ...] = DEEP
    baseline: bool = True
    protocol: str = "honest"
    augment: bool = True
    chain_copies: int = 0  # capture-chain copies of each training clip (streamer.audio.chain random draws)
    clean_copies: bool = True  # keep the clean training clips beside their chained copies
    centre_energy: bool = False  # subtract each window's mean log energy (a level-free input)
    weight_decay: float = 0.0
    epochs: int = 150
    patience: int = 12
    batch_size: int = 64
    learning_rate: float = 1e-3
    time_budget_s: float | None = None  # per model
    seed: int = 0
    group_column: str | None = None
    name: str = "moodstream"

    def fingerprint(self) -> dict[str, Any]:
        """Settings that change the models (a run folder holds one such set)."""
        d = dataclasses.asdict(self)
        for k in ("out", "architectures", "baseline", "time_budget_s"):
            d.pop(k)
        return d


class RunError(ValueError):
    """A run that cannot go on, with the reason."""


def run(config: RunConfig, cache: Path, workers: int | None = None) -> dict[str, dict[str, Any]]:
    """Train, export, evaluate and report; returns {model name: result}."""
    out = Path(config.out)
    _claim(out, config)
    data = prepare(
        Path(config.data_dir),
        list(config.labels) if config.labels else None,
        config.window_seconds,
        config.overlap,
        cache,
        protocol=config.protocol,
        augment=config.augment,
        seed=config.seed,
        group_column=config.group_column,
        workers=workers,
        chain_copies=config.chain_copies,
        clean_copies=config.clean_copies,
    )
    if config.centre_energy:  # every part, once: the model file's runner does the same per window
        for part in data.parts.values():
            part.x = centre_columns(part.x, CENTRED)
    mean, std = standardisation(data.parts["train"].x)
    run_info = {
        **dataclasses.asdict(config),
        "labels": data.labels,
        "data": data.summary(),
        "skipped": data.skipped,
        "window_frames": data.window_frames,
    }
    _claim_split(out / "split.json", _split_files(data, Path(config.data_dir)))
    write_json(out / "run.json", run_info)
    results: dict[str, dict[str, Any]] = {}
    if config.baseline:
        results["baseline"] = _cached(out / "baseline", lambda d: _baseline(data, mean, std, config))
    for arch in config.architectures:
        results[arch] = _cached(out / arch, lambda d, a=arch: _deep(a, data, mean, std, config, d))
    write_json(out / "metrics.json", {"run": run_info, "results": results})
    write_atomic(out / "report.md", markdown(run_info, results))
    return results


def _split_files(data: Prepared, root: Path) -> dict[str, list[str]]:
    """The clips of each part, relative to the data folder (to evaluate on exactly the test part)."""
    return {
        part: sorted(data.clips[i].path.relative_to(root).as_posix() for i in np.unique(p.clips))
        for part, p in data.parts.items()
    }


def _claim(out: Path, config: RunConfig) -> None:
    """A run folder belongs to one set of settings: resuming with others would mix models."""
    marker = out / "settings.json"
    if marker.is_file():
        if json.loads(marker.read_text()) != json.loads(json.dumps(config.fingerprint())):
            raise RunError(f"{out} holds a run with other settings ({marker}); choose another --out")
    else:
        write_json(marker, config.fingerprint())


def _claim_split(path: Path, split: dict[str, list[str]]) -> None:
    """Finished models are reused only on the split they were trained on: changed data or
    grouping would otherwise put their training clips into the test part."""
    if path.is_file() and json.loads(path.read_text()) != split:
        raise RunError(
            f"{path.parent} was trained on another split ({path}): the data or its grouping "
            "changed since; choose another --out"
        )
    write_json(path, split)


def _cached(folder: Path, make) -> dict[str, Any]:
    done = folder / "result.json"
    if done.is_file():
        log.info("%s: finished earlier, not retrained", folder.name)
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    result = make(folder)
    write_json(done, result)
    return result


def _baseline(data: Prepared, mean: np.ndarray, std: np.ndarray, config: RunConfig) -> dict[str, Any]:
    from trainer.families.paper.baseline import Baseline

    p = data.parts
    model = Baseline(config.seed).fit(
        standardise(p["train"].x, mean, std), p["train"].y, standardise(p["val"].x, mean, std), p["val"].y
    )
    scores = {
        part: {
            "float": score(
                model.probabilities(standardise(p[part].x, mean, std)), p[part].y, p[part].clips, data.labels
            )
        }
        for part in ("val", "test")
    }
    return {"architecture": "logistic regression on window feature means/stds", "C": model.c, **scores}


def _deep(
    arch: str, data: Prepared, mean: np.ndarray, std: np.ndarray, config: RunConfig, folder: Path
) -> dict[str, Any]:
    from trainer.common.export import embed_metadata, export
    from trainer.families.paper.architectures import batch_one_copy, build
    from trainer.families.paper.fit import fit

    p = data.parts
    train_x = standardise(p["train"].x, mean, std)
    val_x = standardise(p["val"].x, mean, std)
    cfg = FeatureConfig()
    model = build(
        arch, data.window_frames, cfg.n_features, len(data.labels), seed=config.seed, weight_decay=config.weight_decay
    )
    log.info("%s: %d parameters, %d training windows", arch, model.count_params(), len(train_x))
    fitted = fit(
        model,
        train_x,
        p["train"].y,
        val_x,
        p["val"].y,
        epochs=config.epochs,
        patience=config.patience,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        time_budget_s=config.time_budget_s,
        seed=config.seed,
        verbose=2,
    )
    del train_x, val_x
    curves(fitted["history"], f"{config.name} {arch} ({', '.join(data.labels)})", folder / "curves.png")
    meta = ModelMetadata(
        format_version=FORMAT_VERSION,
        name=f"{config.name}-{len(data.labels)}class-{arch}" + ("-paper-leaky" if config.protocol == "paper" else ""),
        architecture=arch,
        labels=tuple(data.labels),
        feature_config=cfg,
        window_seconds=config.window_seconds,
        window_frames=data.window_frames,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        input_quantization=(0.0, 0),
        output_quantization=(0.0, 0),
        train_step_seconds=data.hop_frames / cfg.frames_per_second,
        centred_columns=CENTRED if config.centre_energy else (),
        training=_training_summary(data, config, fitted),
    )
    files = {"int8": folder / "model-int8.tflite", "float": folder / "model-float.tflite"}
    rep = standardise(p["train"].x[np.random.default_rng(0).permutation(len(p["train"].y))[:512]], mean, std)
    export(batch_one_copy(model, arch), meta, rep, files["int8"], files["float"])
    result: dict[str, Any] = {
        "architecture": arch,
        "fit": {k: v for k, v in fitted.items() if k != "history"},
        "history": fitted["history"],
        "val": {},
        "test": {},
        "size_bytes": {},
        "inference_ms": {},
    }
    for kind, path in files.items():
        runner = ModelRunner(path)
        for part in ("val", "test"):
            probs = runner_probabilities(runner, p[part].x)
            result[part][kind] = score(probs, p[part].y, p[part].clips, data.labels)
        result["inference_ms"][kind] = timed(runner.predict, p["test"].x[0])
    for kind, path in files.items():  # the test figures travel inside each file
        summary = {k: {lvl: _headline(result["test"][k][lvl]) for lvl in ("window", "clip")} for k in files}
        meta_k = dataclasses.replace(read_metadata(path), metrics={"protocol": config.protocol, "test": summary})
        write_atomic(path, embed_metadata(path.read_bytes(), meta_k.to_json()))
        result["size_bytes"][kind] = path.stat().st_size
    return result


def _headline(m: dict[str, Any]) -> dict[str, float]:
    keys = ("accuracy", "weighted_accuracy", "balanced_accuracy", "macro_f1", "n")
    return {k: m[k] for k in keys}


def _training_summary(data: Prepared, config: RunConfig, fitted: dict[str, Any]) -> dict[str, Any]:
    return {
        "data": os.path.basename(os.path.normpath(config.data_dir)),
        "protocol": config.protocol,
        "split": data.summary(),
        "overlap": config.overlap,
        "augment": config.augment,
        "chain_copies": config.chain_copies,
        "clean_copies": config.clean_copies,
        "centre_energy": config.centre_energy,
        "weight_decay": config.weight_decay,
        "learning_rate": config.learning_rate,
        "seed": config.seed,
        "epochs_run": fitted["epochs_run"],
        "best_epoch": fitted["best_epoch"],
        "skipped_files": len(data.skipped),
    }
