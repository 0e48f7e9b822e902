"""models/README-musicnn.md: the musicnn family's section of the model card, generated from its
runs and from `moodstream evaluate` on the test part (int8, clean and the ``room`` chain), beside
the paper family's shipped files evaluated the same way. A file of its own, so that the paper
family's card (trainer/families/paper/card.py) and this one are generated independently."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TARGETS = {"3class": {"clean": 0.88, "room": 0.80}, "4class": {"clean": 0.81}}


def _macro(ev: dict[str, Any] | None) -> str:
    """Macro-F1 and its 95% interval (artist groups resampled where known)."""
    if not ev:
        return "-"
    iv = ev.get("group_intervals") or ev.get("intervals") or {}
    lo_hi = iv.get("macro_f1")
    span = f" ({lo_hi[0]:.2f}-{lo_hi[1]:.2f})" if isinstance(lo_hi, list | tuple) and len(lo_hi) == 2 else ""
    return f"{ev['macro_f1']:.3f}{span}"


def _f1(ev: dict[str, Any] | None) -> str:
    return f"{ev['accuracy']:.3f} / {_macro(ev)} ({ev['n_clips']} clips)" if ev else "-"


def _head(scores: dict[str, Any]) -> str:
    return "; ".join(
        f"{part} "
        + " / ".join(
            f"{cond} {scores[part][cond]['macro_f1']:.3f} ({scores[part][cond]['clips']} clips)"
            for cond in ("clean", "room")
        )
        for part in ("val", "test")
    )


def _cv_table(rows: list[dict[str, Any]], best: dict[str, Any]) -> list[str]:
    out = [
        "| level normalisation | head trained on | C | CV clean macro-F1 (clips) | CV room macro-F1 (clips) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        mark = "**" if r is best or r == best else ""
        out.append(
            f"| {mark}{r['normalisation']}{mark} | {r['training']} | {r['C']:g} | "
            f"{r['clean']['mean']:.3f} ± {r['clean']['std']:.3f} ({r['clips']['clean']}) | "
            f"{r['room']['mean']:.3f} ± {r['room']['std']:.3f} ({r['clips']['room']}) |"
        )
    return out


def _teachers_row(name: str, state: dict[str, Any], combo: str, gains: Sequence[str] = ("-", "-")) -> str:
    """One row of a teachers table: ``combo``'s best C, its fold CV, the gains and leave-one-genre-out."""
    best = state["best"][combo]
    row = state["rows"][f"{combo} C={best['C']:g}"]
    return (
        f"| {name} | {best['C']:g} | {np.mean(row['clean']):.3f} ± {np.std(row['clean']):.3f} | "
        f"{np.mean(row['room']):.3f} ± {np.std(row['room']):.3f} | {gains[0]} | {gains[1]} | "
        f"{best['genre']['clean']:.3f} | {best['genre']['room']:.3f} |"
    )


def _met(goal: float, network: dict[str, Any] | None, student: dict[str, Any] | None) -> str:
    parts = [(w, ev) for w, ev in (("network", network), ("student", student)) if ev]
    return ", ".join(f"{w} {'met' if ev['macro_f1'] >= goal else 'NOT met'}" for w, ev in parts)


def _student(st: dict[str, Any] | None) -> list[str]:
    """The distilled student's paragraph (trainer/families/musicnn/student.py), when it ran."""
    if not st:
        return []
    d, hist, first = st["student"], st["student"]["history"], st["first_student"]
    chosen = first["history"]["best_epoch"]
    taught = "targets" in d and not d["targets"].startswith("musicnn 0.1.0")
    learns = (
        f"the teachers' embeddings of the *clean* patch side by side ({d['targets']})"
        if taught
        else "the network's penultimate embedding of the *clean* patch"
    )
    whose = "teachers'" if taught else "network's"
    cut = "" if hist["epochs"] >= chosen else f", stopped by its wall-clock budget short of the {chosen} chosen"
    return [
        f"Distilled student (`{st['file']}`, {st['size'] / 1e6:.2f} MB): a small separable CNN on the same "
        f"log-mel patches ({d['macs'] / 1e6:.0f} M multiply-adds per patch against about 1,400 M for the "
        f"network; {d['params']:,} parameters) trained to output {learns} "
        f"from the clean patch and from {len(d['conditions']) - 1} random capture-chain "
        f"draws of it (streamer.audio.chain.random_chain), so that it learns the network and the rooms' "
        f"irrelevance at once. Distilled on {d['train_clips']} clips (every clip of both splits but their "
        f"test parts: the targets need no label), {d['train_patches_per_condition']} patches per condition "
        f"(one every 3 s), for {hist['epochs']} epochs ({hist['seconds'] / 60:.0f} min on 2 shared cores{cut}): "
        f"the count that early stopping chose in a first run on {first['train_clips']} of them with the "
        f"{first['val_clips']} validation clips held out (cosine to the {whose} "
        "embeddings on those: "
        f"{first['val_cosine_to_teacher']:.2f}). Its logistic-regression head is trained on the training "
        f"and validation parts' clean and chain patches, with C {st['chosen_C']:g} chosen on the validation "
        "part over the first run's student.",
        "",
    ]


def _gap(points: float) -> str:
    """Float minus int8 macro-F1, in points, in words."""
    if abs(points) < 0.05:
        return "the same"
    return f"int8 {'loses' if points > 0 else 'gains'} {abs(points):.1f} points"


def _links(family: dict[str, dict[str, Any]]) -> list[str]:
    """Each shipped file through each single link of the capture chain, when they were measured."""
    if not any(f.get("links") for f in family.values()):
        return []
    kinds = (("paper", "paper family"), ("network", "musicnn network"), ("student", "distilled student"))
    lines = [
        "## Through each link of the capture chain (test part, int8, clip level, macro-F1 with its 95% "
        "interval, artist groups resampled)",
        "",
        "`moodstream evaluate --chain LINK --chain-seed 0`, each clip its own draw (streamer.audio.chain: `level` "
        "peak at -30 to -10 dBFS, `mic` loudspeaker and microphone responses, AGC and soft clipping, "
        "`noise` 15-30 dB SNR, `reverb` a shoebox room with RT60 0.2-1.2 s, `codec` a low-rate MP3 round "
        "trip; `room` above is all of them at once, at milder settings).",
        "",
        "| classes | link | clips | " + " | ".join(name for _, name in kinds) + " |",
        "|---|---|---|" + "---|" * len(kinds),
    ]
    for key, f in family.items():
        links = f.get("links") or {}
        for link, first in next(iter(links.values()), {}).items():
            cells = [_macro(links.get(kind, {}).get(link)) for kind, _ in kinds]
            lines.append(f"| {key} | {link} | {first['n_clips']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def teachers_section(teachers: dict[str, Any], transfer: dict[str, Any] | None = None) -> list[str]:
    """Which teachers the student learns (issue 28): the weights' provenance, the fold CV and the
    leave-one-genre-out table per label set (trainer.families.musicnn.teachercv), the choice, and
    (``transfer``, trainer.studies.student_transfer) the distilled student's own embedding in the
    same table."""
    from trainer.families.musicnn.teachercv import COMBOS, gain

    states, choice = teachers["states"], teachers["choice"]
    lines = [
        "## Teachers: musicnn beside two AudioSet networks (issue 28)",
        "",
        "| teacher | weights (source) | sha256 | licence |",
        "|---|---|---|---|",
        "| musicnn | MSD_musicnn from the pinned `musicnn==0.1.0` wheel (trainer/families/musicnn/network.py) | wheel "
        f"{teachers['musicnn_sha256']} | ISC |",
    ]
    for name, prov in teachers["provenance"].items():
        lines.append(f"| {name} | {prov['reference']} ({prov['source']}) | {prov['sha256']} | {prov['licence']} |")
    lines += [
        "",
        "Each teacher embeds every 3 s patch of the student's log-mel patches (musicnn its 200-value "
        "penultimate layer; YAMNet the 1024 values before its scores, frames of 0.96 s every 0.48 s "
        "averaged; mn04 its 384-value pooled feature map; the AudioSet networks see the window's waveform at "
        "-20 dBFS RMS). A logistic-regression head on the concatenated, standardised embeddings is fitted per "
        "patch on the training folds' clean audio, and scored at "
        "clip level (patch probabilities averaged) on the held-out artists, clean and through the `room` "
        "chain (5 folds by trainer.common.split.group_folds over the training and validation parts; the test part "
        "is not read). C from "
        + ", ".join(f"{c:g}" for c in sorted({r["C"] for s in states.values() for r in s["rows"].values()}))
        + " per row, by (clean + room) / 2. Gains: the mean ± standard error of the per-fold differences to "
        "musicnn alone (the same folds). Leave-one-genre-out: the head fitted on the artists with no clip "
        "of an AllMusic genre and scored on that genre's clips, every genre with 40 clips or more, the "
        "(genre, clip) decisions pooled into one macro-F1.",
        "",
    ]
    for key, state in states.items():
        lines += [
            f"### {len(state['labels'])} classes ({state['n_clips']} clips)",
            "",
            "| teachers | C | CV clean | CV room | gain clean | gain room | genre-out clean | genre-out room |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for combo in COMBOS:
            if combo not in state["best"]:
                continue
            gains = [gain(state, combo, cond) if combo != "musicnn" else None for cond in ("clean", "room")]
            cells = ["-" if g is None else f"{g[0]:+.3f} ± {g[1]:.3f}" for g in gains]
            mark = "**" if combo == choice["teachers"] else ""
            lines.append(_teachers_row(f"{mark}{combo}{mark}", state, combo, cells))
        if transfer and key in transfer:
            lines.append(_teachers_row(f"*student of {'+'.join(transfer['teachers'])}*", transfer[key], "student"))
        lines.append("")
    lines += [
        f"Chosen for the student: **{choice['teachers']}** (mean over both label sets of (clean + room) / 2: "
        + ", ".join(f"{c} {v:.3f}" for c, v in choice["cv"].items())
        + f"; within one standard error ({choice['se']:.3f}) of the best: {', '.join(choice['within_se'])}; "
        "among those the best across genres: "
        + ", ".join(f"{c} {choice['transfer'][c]:.3f}" for c in choice["within_se"])
        + ").",
        "",
    ]
    if transfer:
        lines += [
            f"*student of {'+'.join(transfer['teachers'])}*: the distilled student's output (its estimate of "
            "the teachers' embeddings, what the daemon's head reads) under the same protocol and heads (`python -m "
            "trainer student-transfer`); it was distilled, without labels, on every non-test clip, a held-out genre's "
            "included, as AudioSet's music was among its teachers'. For 4 classes it is this 3-class "
            "student's embedding with a 4-class head, not the shipped 4-class student.",
            "",
        ]
    for key, v in teachers.get("verdicts", {}).items():
        new, old = v["new"], v["shipped"]
        figures = "; ".join(
            f"{job.split('/')[0]} {new[job]['macro_f1']:.3f} against {old[job]['macro_f1']:.3f}" for job in old
        )
        verdict = "it replaced the shipped student" if v["replaced"] else "NOT shipped: the shipped student stays"
        lines.append(
            f"- {key}: the student of {choice['teachers']} on the test part (int8, `moodstream evaluate`): "
            f"{figures} (the shipped student learnt {v['shipped_targets']}): {verdict}."
        )
    return [*lines, ""] if teachers.get("verdicts") else lines


def card(
    family: dict[str, dict[str, Any]],
    bench: dict[str, Any] | None,
    teachers: dict[str, Any] | None = None,
    transfer: dict[str, Any] | None = None,
) -> str:
    """``family``: per class count, the run's result.json plus "file", "size", "evaluate"
    {chain: {"int8": evaluate JSON, "float": ..., "paper": the paper family's shipped file}} and
    "links" {"paper"|"network"|"student": {link: evaluate's summary}}; ``bench``:
    bench/musicnn_cost's data; ``teachers``: the teacher comparison (:func:`teachers_section`);
    ``transfer``: the student under the teachers' protocol (models/student-transfer.json)."""
    lines = [
        "<!-- generated by trainer/make_models.py (trainer/families/musicnn/card.py); do not edit by hand -->",
        "# The musicnn family (issue 18)",
        "",
        "A second model family: musicnn's MSD network (Pons & Serra, `musicnn==0.1.0`, ISC licence; weights "
        "read from the pinned wheel by trainer/families/musicnn/network.py and rebuilt in Keras 3, equal to the "
        "original TF1 "
        "graph within 4e-6) frozen up to its 200-value penultimate layer, and a logistic-regression head "
        "trained on our labels per 3 s patch (187 log-mel frames, 96 bands, n_fft 512, hop 256, "
        "`log10(10000 mel + 1)` in float32, computed by streamer/features/logmel.py). Clip decision: the patch "
        "probabilities averaged, as the daemon averages its hops. One int8 TFLite file holds the network "
        "and the head; its metadata says `features: musicnn_logmel`, so the daemon computes log-mel frames "
        "for it and nothing else.",
        "",
    ]
    for key, f in family.items():
        best = f["cv"]["best"]
        split = f["split"]
        lines += [
            f"## {key}: {', '.join(f['labels'])} (`{f['file']}`, {f['size'] / 1e6:.2f} MB)",
            "",
            f"Data: the trainer's artist-disjoint split (streamer.evaluation.labelled grouping, stratified, 70/15/15, "
            f"seed 0, as `make models` splits for the paper family): train {split['train']}, validation "
            f"{split['val']}, test {split['test']} clips. Patches every {f['patch_stride_s']:g} s of each clip "
            f"for training and cross-validation (the CPU budget: 3 per 30 s clip). Level reference for the "
            f"`rms` normalisation: mean mel power {f['reference_power']} (the median over the clean patches of "
            "the clips in the training part of both splits).",
            "",
            "Chosen in 5-fold artist-grouped cross-validation (StratifiedGroupKFold over the training + "
            "validation clips; clip-level macro-F1 on held-out artists, clean and through the `room` chain of "
            "streamer.audio.chain; mean ± std over folds; the choice maximises the mean of clean and room)"
            + (
                ". Room figures over the clips whose room embeddings were computed in time (the count in "
                "brackets; the capture chain costs 4-10 s per clip on these shared cores):"
                if f.get("cached_room")
                else ":"
            ),
            "",
            *_cv_table(f["cv"]["rows"], best),
            "",
            f"Chosen: normalisation `{best['normalisation']}`, head trained on {best['training']} audio, C "
            f"{best['C']:g}. The head is then fitted on the training part alone. Float head on float "
            f"embeddings (3 patches per clip), macro-F1: {_head(f['float_head'])}.",
            "",
            *_student(f.get("student")),
        ]
    lines += teachers_section(teachers, transfer) if teachers else []
    lines += [
        "## Both families through `moodstream evaluate` (test part, clip level, accuracy / macro-F1, "
        "95% interval of macro-F1 with artist groups resampled)",
        "",
        "| classes | chain | paper family (int8) | musicnn network (int8) | musicnn network (float) "
        "| distilled student (int8) | distilled student (float) | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, f in family.items():
        for chain, ev in f["evaluate"].items():
            p = ev.get("paper")
            goal = TARGETS.get(key, {}).get(chain)
            st = (f.get("student") or {}).get("evaluate", {})
            met = "-" if goal is None else f"{goal:.2f}: " + _met(goal, ev.get("int8"), st.get(f"{chain}/int8"))
            lines.append(
                f"| {key} | {chain} | {_f1(p)} | {_f1(ev.get('int8'))} | {_f1(ev.get('float'))} | "
                f"{_f1(st.get(f'{chain}/int8'))} | {_f1(st.get(f'{chain}/float'))} | {met} |"
            )
    hop = next(iter(family.values()))["evaluate_hop_s"]
    lines += [""]
    for key, f in family.items():
        st = (f.get("student") or {}).get("evaluate", {})
        pairs = [("network", f["evaluate"]["clean"].get("int8"), f["evaluate"]["clean"].get("float"))]
        pairs.append(("student", st.get("clean/int8"), st.get("clean/float")))
        for what, i8, fl in pairs:
            if i8 and fl:
                gap = 100 * (fl["macro_f1"] - i8["macro_f1"])
                verdict = "within 1 point" if abs(gap) <= 1 else "NOT within 1 point"
                lines.append(
                    f"- {key} {what}: int8 {i8['macro_f1']:.3f} against float {fl['macro_f1']:.3f} on clean: "
                    f"{_gap(gap)}, {verdict}."
                )
    lines += [
        "",
        "`clean+room` in the tables: the head also trained on the `room` chain's copies of its training "
        "clips (each clip its own draw; held-out and test clips never). That is the evaluation chain's own "
        "distribution of rooms, so its room figures are optimistic for rooms unlike it.",
        "",
        f"`moodstream evaluate` ran with `--hop {hop:g}` for both families (one model run per {hop:g} s of "
        "audio; the clip decision averages the runs); `room` is `--chain room --chain-seed 0` (each clip "
        "its own room, microphone, noise, level and codec draw).",
        "",
        *_links(family),
    ]
    if bench:
        lines += ["## Cost (bench/musicnn_cost.py, `make bench`)", ""]
        for m in bench["models"]:
            pi = ", ".join(f"{k}: {v:.0f} ms" for k, v in m["pi_estimate_ms_per_1s_hop"].items())
            lines.append(
                f"- {m['model']} ({m['kind']}, {m['size_mb']:.2f} MB): front-end "
                f"{m['front_end_ms_per_hop']['median']:.2f} ms per 1 s hop + inference "
                f"{m['inference_ms_per_patch']['median']:.1f} ms per patch = {m['ms_per_1s_hop']:.1f} ms per "
                f"1 s hop at one patch per hop (target 10 ms); estimated {pi}."
            )
        lines.append("")
    return "\n".join(lines)
