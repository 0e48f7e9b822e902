"""What a model file costs the daemon per hop: its front-end's ``push`` of one hop of audio and one
``ModelRunner.predict`` on a window, in CPU milliseconds with one interpreter and one BLAS thread,
as the daemon runs. `make bench` reports it for every shipped file and the model cards quote it,
with a Raspberry Pi estimate (an assumed per-core slowdown, not a measurement)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from streamer.audio.synth import music
from streamer.features.frontend import extractor_for
from streamer.model.runner import ModelRunner
from streamer.util.timing import interleaved, stats

HOP_S = 1.0
# Assumed slowdown of one Pi core against one core here (an AMD EPYC Zen 3 class server core).
# Reasoning: commonly reported single-core scores put a Zen 3 server core at roughly 4-5x a Pi 4
# core; we take 6x to allow for numpy/scipy's less tuned aarch64 paths. The Pi 5 is 2-3x a Pi 4
# per core (the Raspberry Pi Foundation's "2-3x"; sysbench single thread +128% in published
# comparisons), so 6 / 2.5 = 2.4x. A measurement on a Pi replaces all of this.
PI_SLOWDOWN = {"Pi 4 (Cortex-A72)": 6.0, "Pi 5 (Cortex-A76)": 2.4}


def per_hop(path: Path, quick: bool = False) -> dict[str, Any]:
    """Medians and spread of the front-end per hop and the inference per window, and their sum."""
    from threadpoolctl import threadpool_limits

    calls, repeats = (2, 2) if quick else (10, 7)
    runner = ModelRunner(path, threads=1)
    config = runner.metadata.feature_config
    extractor = extractor_for(config)
    seconds = max(6.0, 2 * runner.metadata.window_seconds)
    audio = music(seconds, seed=11).astype(np.float32)
    window = extractor.push(audio)[-runner.window_frames :]
    hop = audio[: round(HOP_S * config.sample_rate)]

    def front() -> None:
        for _ in range(calls):
            extractor.push(hop)

    def infer() -> None:
        for _ in range(calls):
            runner.predict(window)

    with threadpool_limits(limits=1, user_api="blas"):
        times = interleaved({"front": front, "inference": infer}, repeats)
    front_ms = stats([1000 * t / calls for t in times["front"]])
    infer_ms = stats([1000 * t / calls for t in times["inference"]])
    total = front_ms["median"] + infer_ms["median"]
    return {
        "kind": "int8" if runner.metadata.quantized else "float",
        "size_mb": path.stat().st_size / 1e6,
        "front_end_ms_per_hop": front_ms,
        "inference_ms_per_patch": infer_ms,
        "ms_per_1s_hop": total,
        "pi_estimate_ms_per_1s_hop": {name: total * k for name, k in PI_SLOWDOWN.items()},
    }
