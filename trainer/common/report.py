"""Report of a run: training curves (PNG), a Markdown report and the JSON metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from streamer.util.atomic import write_atomic


def curves(history: dict[str, list[float]], title: str, path: Path) -> None:
    """Training and validation accuracy and loss per epoch, side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        epochs = range(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], label="training")
        ax.plot(epochs, history[f"val_{metric}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _row(name: str, result: dict[str, Any], kinds: tuple[str, ...]) -> str:
    cells = [name]
    for kind in kinds:
        test = result["test"].get(kind)
        for level in ("window", "clip"):
            m = test[level] if test else None
            cells.append(f"{m['accuracy']:.3f} / {m['macro_f1']:.3f}" if m else "-")
    size = result.get("size_bytes", {}).get("int8")
    ms = result.get("inference_ms", {}).get("int8")
    cells += [f"{size / 1024:.0f} KB" if size else "-", f"{ms:.2f}" if ms else "-"]
    return "| " + " | ".join(cells) + " |"


def markdown(run: dict[str, Any], results: dict[str, dict[str, Any]]) -> str:
    """The run's report: settings, data, a table of test scores, per-class detail, skipped files."""
    labels = run["labels"]
    lines = [
        f"# moodstream training run: {', '.join(labels)} ({run['protocol']} protocol)",
        "",
        f"Data: `{run['data_dir']}`; window {run['window_seconds']:g} s, overlap {run['overlap']:g}; "
        f"augmentation of the training part: {'on' if run['augment'] else 'off'}; "
        f"capture-chain copies per training clip: {run.get('chain_copies', 0)}"
        f"{'' if run.get('clean_copies', True) else ' (clean clips left out)'}; "
        f"window log energy centred: {'yes' if run.get('centre_energy') else 'no'}; seed {run['seed']}.",
        "",
        "Split ("
        + (
            "by group, stratified, 70/15/15"
            if run["protocol"] == "honest"
            else "paper protocol: augmented windows split at random, leaky"
        )
        + "):",
        "",
        "| part | clips | groups | windows | clips per label |",
        "|---|---|---|---|---|",
    ]
    for part in ("train", "val", "test"):
        s = run["data"][part]
        per = ", ".join(f"{k} {v}" for k, v in s["clips_per_label"].items())
        lines.append(f"| {part} | {s['clips']} | {s['groups']} | {s['windows']} | {per} |")
    lines += [
        "",
        "## Test part (accuracy / macro-F1)",
        "",
        "| model | float window | float clip | int8 window | int8 clip | int8 size | int8 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        lines.append(_row(name, result, ("float", "int8")))
    lines += [
        "",
        'Baseline = logistic regression on per-window feature means and deviations (float only; listed under "float").',
        "",
    ]
    for name, result in results.items():
        kind = "int8" if "int8" in result["test"] else "float"
        m = result["test"][kind]["clip"]
        lines += [
            f"### {name} ({kind}, clip level)",
            "",
            f"accuracy {m['accuracy']:.3f}, weighted accuracy (paper Eq. 2) {m['weighted_accuracy']:.3f}, "
            f"balanced accuracy {m['balanced_accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, "
            f"weighted F1 {m['weighted_f1']:.3f}",
            "",
            "| label | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        for label, c in m["per_class"].items():
            lines.append(f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
        lines += ["", "Confusion matrix (rows true, columns predicted: " + ", ".join(labels) + "):", "", "```"]
        lines += ["  ".join(f"{v:4d}" for v in row) for row in m["confusion_matrix"]]
        lines += ["```", ""]
        if "fit" in result:
            f = result["fit"]
            lines += [
                f"Training: {f['epochs_run']} epochs (best {f['best_epoch']}), {f['seconds_per_epoch']} s per epoch"
                + (", stopped by the time budget" if f["stopped_by_time_budget"] else "")
                + f". Curves: `{name}/curves.png`.",
                "",
            ]
    if run["skipped"]:
        lines += ["## Skipped files", ""] + [f"- `{p}`: {why}" for p, why in sorted(run["skipped"].items())] + [""]
    return "\n".join(lines)
