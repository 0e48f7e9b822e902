"""The shipped models through the capture chains (issue 13), and their features + inference per
1 s hop.

The chain table is READ from models/chains.json, not recomputed: `make models` writes it after
running `moodstream evaluate --chain` for every chain over the artist-disjoint test part (that
needs the data set and about half an hour on two shared cores). Each row is checked against the
shipped file's SHA-256, so figures of another file are reported as stale rather than shown.
The per-hop cost is measured here: `FeatureExtractor.push` of 1 s of audio plus one
`ModelRunner.predict`, process CPU time, one interpreter thread and one BLAS thread."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from bench.common import ROOT, Section, Skipped, fmt, table, target
from streamer.audio.chain import CHAINS
from streamer.util.timing import cpu_seconds, stats

CHAINS_JSON = ROOT / "models" / "chains.json"
HOP_TARGET_MS = 5.0


def per_hop_ms(path, hops: int, repeats: int) -> dict[str, float]:
    """CPU ms of the features of one 1 s hop plus one inference on the newest window."""
    from threadpoolctl import threadpool_limits

    from streamer.audio.synth import music
    from streamer.features.frontend import expect
    from streamer.features.mfcc import FeatureConfig, FeatureExtractor
    from streamer.model.runner import ModelRunner

    runner = ModelRunner(path)
    cfg = expect(runner.metadata.feature_config, FeatureConfig)
    audio = music(runner.metadata.window_seconds + hops, cfg.sample_rate).astype(np.float32)
    warm = round(runner.metadata.window_seconds * cfg.sample_rate)
    step = cfg.sample_rate

    def one_round() -> None:
        extractor = FeatureExtractor(cfg)
        frames = [extractor.push(audio[:warm])]
        for start in range(warm, warm + hops * step, step):
            frames.append(extractor.push(audio[start : start + step]))
            window = np.concatenate(frames)[-runner.window_frames :]
            runner.predict(window)

    # One BLAS thread, as the `moodstream` command runs (streamer/util/tuning.py): on a busy machine
    # idle BLAS workers spin and bill CPU time that the daemon never spends.
    with threadpool_limits(limits=1, user_api="blas"):
        one_round()  # warm-up
        warm_cost = cpu_seconds(lambda: FeatureExtractor(cfg).push(audio[:warm]))
        times = [(cpu_seconds(one_round) - warm_cost) / hops * 1000 for _ in range(repeats)]
    return stats(times)


def run(quick: bool = False) -> Section:
    if not CHAINS_JSON.is_file():
        raise Skipped(f"{CHAINS_JSON.relative_to(ROOT)} is missing: `make models` writes it")
    figures = json.loads(CHAINS_JSON.read_text())
    hops, repeats = (3, 2) if quick else (30, 5)
    rows, data, targets, stale = [], {}, [], []
    for name, entry in figures.items():
        path = ROOT / "models" / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            stale.append(name)
            continue
        cells = []
        for chain in CHAINS:
            r = entry["chains"].get(chain)
            if r is None:
                cells.append("-")
                continue
            lo, hi = (r.get("group_intervals") or r["intervals"])["macro_f1"]
            cells.append(f"{r['macro_f1']:.3f} ({lo:.2f}-{hi:.2f})")
        hop = per_hop_ms(path, hops, repeats)
        data[name] = {"candidate": entry["candidate"], "chains": entry["chains"], "per_hop_ms": hop}
        rows.append([name, entry["candidate"], *cells, fmt(hop["median"])])
        targets.append(target(f"features + inference per 1 s hop, {name}", hop["median"], HOP_TARGET_MS, "ms"))
        clean = entry["chains"].get("clean", {}).get("macro_f1")
        worst = min(
            (entry["chains"][c]["macro_f1"] for c in CHAINS if c not in ("clean", "room") and c in entry["chains"]),
            default=None,
        )
        if clean is not None and worst is not None:
            targets.append(target(f"worst single-link chain minus clean, {name}", worst - clean, -0.05, "", True))
    if not rows:
        raise Skipped(f"models/chains.json describes other files than the shipped ones ({', '.join(stale)})")
    md = (
        "Macro-F1 on the artist-disjoint test part through each capture chain (`moodstream evaluate "
        "--chain NAME`, int8, clip level, chain seed 0), with the 95 % interval over resampled artists: "
        "read from `models/chains.json` as `make models` measured it (not recomputed here; each row "
        "matched to the shipped file by SHA-256"
        + (f"; stale rows left out: {', '.join(stale)}" if stale else "")
        + "). Last column: features (`FeatureExtractor.push` of 1 s) plus one `ModelRunner.predict` per "
        f"1 s hop, CPU ms with one BLAS thread, median of {repeats} rounds of {hops} hops, measured now.\n\n"
        + table(["model", "recipe", *CHAINS, "ms per hop"], rows)
    )
    return Section("chains", "Capture chains and per-hop cost", {"models": data}, md, targets)
