"""A Raspberry Pi estimate (issue 7.6), clearly an ESTIMATE: this run's single-core CPU figures
scaled by an assumed per-core slowdown of a Pi 4 (Cortex-A72, 1.5-1.8 GHz) and a Pi 5 (Cortex-A76,
2.4 GHz) relative to one core of this machine. Nothing here was measured on a Pi."""

from __future__ import annotations

from typing import Any

from bench.common import Section, fmt, table
from trainer.common.cost import PI_SLOWDOWN


def estimate(results: dict[str, dict[str, Any]]) -> Section | None:
    """Scale what this run measured; None when the streaming benchmark did not run."""
    streaming = results.get("streaming")
    if not streaming:
        return None
    rows_in: list[tuple[str, float, str]] = []
    head = streaming["runs"][0]
    for r in streaming["runs"]:
        if r["kind"] == "int8" and r["hop_seconds"] == 1.0:
            head = r
            break
    rows_in.append(
        (
            f"pipeline CPU, {head['model']}, hop 1 s (% of one core)",
            100 * head["cpu_seconds_per_audio_second"]["pipeline"]["median"],
            "%",
        )
    )
    daemon = results.get("daemon")
    if daemon:
        rows_in.append(
            (
                "whole daemon paced in real time, steady state (% of one core)",
                daemon["paced"]["percent_steady"]["median"],
                "%",
            )
        )
        rows_in.append(("CPU seconds to start up", daemon["paced"]["cpu_seconds_to_ready"], "s"))
    inference = results.get("inference")
    if inference:
        for m in inference["models"]:
            if m["model"] == head["model"]:
                rows_in.append((f"inference per window, {m['model']} (ms)", m["ai_edge_litert_ms"]["median"], "ms"))
    rows = [[what, fmt(value)] + [fmt(value * k) for k in PI_SLOWDOWN.values()] for what, value, _ in rows_in]
    md = (
        "**An estimate, not a measurement.** Single-core CPU figures from this run multiplied by an assumed "
        f"per-core slowdown: {', '.join(f'{name} {k:g}x' for name, k in PI_SLOWDOWN.items())} (reasoning in "
        "`trainer/common/cost.py`: commonly reported single-core scores put a Zen 3 server core at about 4-5x "
        "a Pi 4 core, rounded up to 6x for numpy's less tuned aarch64 paths; the Pi 5 at 2-3x a Pi 4, the "
        "Raspberry Pi Foundation's own figure). Memory does not scale this way: peak RSS on a 64-bit Pi OS "
        "should be close to the figure measured here (same wheels, same Python).\n\n"
        + table(["figure", "here"] + [f"{name} (est.)" for name in PI_SLOWDOWN], rows)
    )
    data = {
        "slowdown_assumed": PI_SLOWDOWN,
        "figures": [
            {"figure": what, "here": value, **{name: value * k for name, k in PI_SLOWDOWN.items()}}
            for what, value, _ in rows_in
        ],
    }
    return Section("pi_estimate", "Raspberry Pi estimate (issue 7.6)", data, md)
