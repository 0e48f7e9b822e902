"""What every benchmark shares: the machine description, CPU-time measurement of interleaved
contenders, robust statistics, and the :class:`Section` each benchmark module returns.

The machine is shared and noisy, so claims rest on ratios measured side by side in one run, with
the contenders interleaved (round-robin) and medians reported with their spread.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Scratch (generated audio, fallback models); tests point it at a temporary folder.
CACHE = Path(os.environ.get("MOODSTREAM_BENCH_CACHE", ROOT / "cache" / "bench"))

LIBRARIES = (
    "numpy",
    "scipy",
    "python_speech_features",
    "librosa",
    "numba",
    "ai-edge-litert",
    "tflite-runtime",
    "tensorflow-cpu",
    "keras",
    "websockets",
    "soxr",
    "soundfile",
)


class Skipped(Exception):
    """Raised by a benchmark that cannot run on this machine; the message says why."""


@dataclass
class Section:
    """One benchmark's outcome: machine-readable ``data`` and the Markdown that explains it."""

    key: str
    title: str
    data: dict[str, Any]
    markdown: str
    targets: list[dict[str, Any]] = field(default_factory=list)


def target(name: str, value: float | None, limit: float, unit: str, higher_is_better: bool = False) -> dict:
    """A target row for the summary table; ``met`` is None when the value could not be measured."""
    met = None if value is None else value >= limit if higher_is_better else value <= limit
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "unit": unit,
        "higher_is_better": higher_is_better,
        "met": met,
    }


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """The facts a reader needs to weigh the figures."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "arch": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": {name: v for name in LIBRARIES if (v := version(name))},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def cpu_seconds(fn: Callable[[], Any]) -> float:
    """Process CPU time (all threads, user + system) that one call of ``fn`` takes."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def interleaved(
    contenders: dict[str, Callable[[], Any]], repeats: int, one_blas_thread: frozenset[str] = frozenset()
) -> dict[str, list[float]]:
    """CPU seconds of each contender, run round-robin ``repeats`` times so that load on the
    machine falls on all of them alike (rotating the order each round). Those named in
    ``one_blas_thread`` run with OpenBLAS limited to one thread (as OPENBLAS_NUM_THREADS=1 would:
    on a busy machine BLAS worker threads spin-wait and burn CPU time that one thread would not);
    the limit is set outside the timed call, so its own cost is not counted."""
    from threadpoolctl import threadpool_limits

    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            limit = threadpool_limits(limits=1, user_api="blas") if name in one_blas_thread else nullcontext()
            with limit:
                times[name].append(cpu_seconds(contenders[name]))
    return times


def stats(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max, and the interquartile range when there are enough values)."""
    ordered = sorted(values)
    out = {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "n": len(ordered)}
    if len(ordered) >= 4:
        q = statistics.quantiles(ordered, n=4)
        out["q1"], out["q3"] = q[0], q[2]
    return out


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): p99 of 100 values is the 99th smallest."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def fmt(x: float | None, digits: int = 3) -> str:
    """Significant-figure formatting for tables ('-' when missing)."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.{digits}g}" if abs(x) < 10**digits else f"{x:,.0f}"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
