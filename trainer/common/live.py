"""Every shipped model as a lamp sees it (models/README-live.md), and what the temporal model needs
of the file to get there: its calibration.

Calibration: each file plays the validation part of its own split (artist groups, seed 0) through
the daemon's pipeline, clean and through the `room` chain; the temperature that makes its per-hop
probabilities honest (the negative log-likelihood of the song's mood, over the hops whose window
lies inside one song) is written into the file's metadata, where the daemon's mood filter reads it.
A file whose run fitted it on the validation part too (the students) plays through its held-out
twin instead (:func:`held_out_twin`): the same recipe without the validation part, so that the
probabilities calibrated are those of music the model never saw.

The card: each file plays the test part of its split as ``STREAMS`` seeded shuffles into the
daemon with its default settings (streamer.evaluation.stream), clean and through the `room` chain.
Recordings and figures are cached by the file's weights and the settings, so that `make models`
reruns only what changed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamer.config import Settings
from streamer.evaluation.lamp import Hop, Song
from streamer.evaluation.stream import evaluate_stream, hops_from_json, pipeline_hops
from streamer.model.metadata import read_metadata, weights_digest
from streamer.model.runner import ModelRunner
from streamer.util.atomic import write_atomic
from trainer.common.chains import link_folder, split_part
from trainer.common.paths import RUNS, TUNING

log = logging.getLogger(__name__)

STREAMS = 3
CONDITIONS = ("clean", "room")
TARGET_RIGHT = {"clean": 0.82, "room": 0.75}  # issue 24's targets for what a lamp sees
TARGET_CHANGES = 4.0
TARGET_LATENCY_S = 6.0


RECORDING_VERSION = 2  # hops with the change detector's summaries


@dataclass
class Recording:
    """One model's streams of one condition: where each song lay and what the daemon heard."""

    labels: tuple[str, ...]
    hop_s: float
    streams: list[tuple[list[Song], list[Hop]]]


def record(model: Path, data: Path, out: Path, chain: str | None, streams: int, part: str = "val") -> Recording:
    """One part of the model's split played through the daemon's pipeline (``streams`` shuffles, hops
    kept with their summaries), cached by the file's weights."""
    runner = ModelRunner(model)
    digest = weights_digest(model.read_bytes(), str(model))[:12]
    file = out / f"{model.stem}-{part}-{chain or 'clean'}-{streams}-{digest}-v{RECORDING_VERSION}.json"
    if not file.is_file():
        dest = out / f"{len(runner.labels)}class-{part}"
        folder = link_folder(data, split_part(data, list(runner.labels), part), dest)
        result = evaluate_stream(folder, runner, Settings(), chain, 0, streams, keep_hops=True, player=pipeline_hops)
        write_atomic(file, json.dumps(result) + "\n")
    result = json.loads(file.read_text())
    return Recording(
        tuple(result["labels"]),
        result["hop_seconds"],
        [([Song(**s) for s in k["songs"]], hops_from_json(k["hops"])) for k in result["hops"]],
    )


def fit_temperature(recordings: Sequence[Recording], window_s: float = 3.008) -> float:
    """The calibration temperature minimising the songs' negative log-likelihood (golden section)."""
    logp, y = [], []
    for rec in recordings:
        for songs, hops in rec.streams:
            k = 0
            for song in songs:
                while k < len(hops) and hops[k].time_s - window_s < song.start_s:
                    k += 1
                while k < len(hops) and hops[k].time_s <= song.end_s:
                    if hops[k].raw:
                        logp.append(np.log(np.maximum(hops[k].raw, 1e-3)))
                        y.append(rec.labels.index(song.label))
                    k += 1
    x, target = np.asarray(logp), np.asarray(y)

    def nll(t: float) -> float:
        z = x / t
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(len(z)), target] - np.log(np.exp(z).sum(axis=1))).mean())

    lo, hi = 0.1, 10.0
    for _ in range(60):
        a, b = lo + (hi - lo) * 0.382, lo + (hi - lo) * 0.618
        lo, hi = (lo, b) if nll(a) < nll(b) else (a, hi)
    return round((lo + hi) / 2, 3)


def held_out_twin(model: Path, runs: Path = RUNS) -> Path | None:
    """The held-out twin of a file (trainer.families.musicnn.student.export_tuning) from the run that
    made it, found by its weights (the shipped copy's metadata differs); None without one: the file's
    validation part is held out already, or its run is not on this machine."""
    digest = weights_digest(model.read_bytes(), str(model))
    for made in sorted(runs.glob("*/model-int8.tflite")):
        twin = made.parent / TUNING / "model-int8.tflite"
        if twin.is_file() and weights_digest(made.read_bytes(), str(made)) == digest:
            return twin
    return None


def calibrate(data: Path, model: Path, out: Path, runs: Path = RUNS) -> float:
    """Fit the file's temperature on its validation part (one stream, clean and room), through its
    held-out twin where it has one, and write it into its metadata when it moved; returns it."""
    from trainer.common.export import embed_metadata

    source = held_out_twin(model, runs) or model
    log.info("calibrating %s on the validation part through %s", model.name, source)
    recordings = [record(source, data, out, chain, 1) for chain in (None, "room")]
    meta = read_metadata(model)
    fitted = fit_temperature(recordings, meta.window_seconds)
    if abs(fitted - meta.temperature) > 0.005:
        write_atomic(model, embed_metadata(model.read_bytes(), dataclasses.replace(meta, temperature=fitted).to_json()))
    return fitted


def live_figures(data: Path, model: Path, out: Path, settings: Settings | None = None) -> dict[str, dict[str, Any]]:
    """{condition: evaluate_stream's result without its per-song records} for one model file."""
    settings = settings or Settings()
    runner = ModelRunner(model)
    stamp = {
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "smoothing": dataclasses.asdict(settings.smoothing),
        "hop_seconds": settings.model.hop_seconds,
        "streams": STREAMS,
    }
    results = {}
    for condition in CONDITIONS:
        file = out / f"{model.stem}-{condition}.json"
        if file.is_file() and (done := json.loads(file.read_text())).get("stamp") == stamp:
            results[condition] = done
            continue
        labels = list(runner.labels)
        folder = link_folder(data, split_part(data, labels), out / f"{len(labels)}class-test")
        chain = None if condition == "clean" else condition
        result = evaluate_stream(folder, runner, settings, chain, 0, STREAMS)
        result = {k: v for k, v in result.items() if k != "records"} | {"stamp": stamp}
        write_atomic(file, json.dumps(result, indent=1) + "\n")
        results[condition] = result
    return results


def _cell(r: dict[str, Any], key: str, fmt: str) -> str:
    value = r.get(key)
    if value is None:
        return "-"
    low, high = r["intervals"].get(key, (value, value))
    return f"{value:{fmt}} ({low:{fmt}}-{high:{fmt}})"


def _met(r: dict[str, Any], condition: str) -> str:
    goals = [
        (r["accuracy"] or 0) >= TARGET_RIGHT[condition],
        (r["changes_per_10min"] or 0) <= TARGET_CHANGES,
        (r["latency_median_s"] or float("inf")) <= TARGET_LATENCY_S,
    ]
    return "met" if all(goals) else "NOT met"


def live_card(figures: dict[str, dict[str, dict[str, Any]]], default: str) -> str:
    """The card: one row per (shipped model, condition)."""
    some = next(iter(next(iter(figures.values())).values()))
    smoothing = ", ".join(f"{k} {v:g}" for k, v in some["stamp"]["smoothing"].items())
    lines = [
        "<!-- generated by `make models` (trainer/common/live.py); do not edit by hand -->",
        "# moodstream models, live: what a lamp sees",
        "",
        f"Each shipped model plays the test part of its own artist-disjoint split (seed 0; the clips no "
        f"model or setting was chosen on) as {STREAMS} seeded shuffles, 30 s songs back to back, into the "
        f"daemon itself (`moodstream evaluate DATA --stream --streams {STREAMS}`, `--chain room` for the room rows: "
        "each song its own draw of room, microphone, noise, level and codec), with the default settings: "
        f"hop {some['hop_seconds']:g} s, {smoothing}. Figures with their 95 % interval, songs resampled:",
        "",
        "- **right**: hops whose shown mood is the song's, after each song's first "
        f"{some['settle_s']:g} s (an `uncertain` hop is not right); **uncertain**: the share of those hops "
        "that claim no mood;",
        "- **changes**: changes of what is shown (a mood, or `uncertain`) within songs beyond the one a new "
        "mood needs, per 10 minutes; **of the label**: the same for the claimed label alone (a lamp that "
        "keeps its colour while uncertain);",
        "- **latency**: from a mood change to the first hop showing the new mood, median and 90th "
        "percentile; **missed**: mood changes whose song never shows its mood; **false**: same-mood song "
        "changes (after a song shown right) where the label leaves the mood in the new song's first seconds.",
        "",
        f"Targets: right >= {TARGET_RIGHT['clean']:.2f} clean and >= {TARGET_RIGHT['room']:.2f} in the room, "
        f"<= {TARGET_CHANGES:g} changes per 10 min, median latency <= {TARGET_LATENCY_S:g} s. "
        'The choice of the settings: README, "How the shown mood follows '
        'the music".',
        "",
        "| model | audio | songs | right | uncertain | changes / 10 min | of the label | latency median | "
        "latency p90 | missed | false | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for short, results in figures.items():
        name = f"`{short}`" + (" (default)" if short == default else "")
        for condition, r in results.items():
            lines.append(
                f"| {name} | {condition} | {r['songs']} | {_cell(r, 'accuracy', '.3f')} | "
                f"{_cell(r, 'uncertain', '.3f')} | {_cell(r, 'changes_per_10min', '.1f')} | "
                f"{_cell(r, 'label_changes_per_10min', '.1f')} | {_cell(r, 'latency_median_s', '.1f')} s | "
                f"{_cell(r, 'latency_p90_s', '.1f')} s | {_cell(r, 'missed_mood_changes', '.3f')} | "
                f"{_cell(r, 'false_change_share', '.3f')} | {_met(r, condition)} |"
            )
    return "\n".join(lines) + "\n"


def write_live_card(data: Path, models: Path, out: Path, index: dict[str, Any]) -> None:
    """Calibrate every shipped model in ``index`` (models/index.json), play its test part, write the card."""
    files = {short: models / f"moodstream-{short}.tflite" for short in index["models"]}
    for file in files.values():
        calibrate(data, file, out)
    figures = {short: live_figures(data, file, out) for short, file in files.items()}
    write_atomic(models / "live.json", json.dumps(_summary(figures), indent=1) + "\n")
    write_atomic(models / "README-live.md", live_card(figures, index["default"]))


def _summary(figures: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The card's figures for programs (each file's, no hops), beside the card for people."""
    keep = (
        "songs",
        "accuracy",
        "uncertain",
        "changes_per_10min",
        "label_changes_per_10min",
        "latency_median_s",
        "latency_p90_s",
        "missed_mood_changes",
        "false_change_share",
        "intervals",
        "stamp",
    )
    return {short: {c: {k: r.get(k) for k in keep} for c, r in res.items()} for short, res in figures.items()}


def main(argv: list[str] | None = None) -> int:
    """`python -m trainer live-card`: the last step of `make models` alone, for the files in models/."""
    import argparse

    from streamer.model.shipped import index as shipped_index
    from trainer.common.paths import DEFAULT_DATA, MODELS, RUN_CACHE

    p = argparse.ArgumentParser(prog="python -m trainer live-card", description=main.__doc__)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--models", type=Path, default=MODELS)
    p.add_argument("--cache", type=Path, default=RUN_CACHE / "live")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    write_live_card(args.data, args.models, args.cache, shipped_index(args.models))
    return 0
