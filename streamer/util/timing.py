"""CPU-time measurement as the project reports it (`make bench`, the model cards): contenders
interleaved round-robin so that load on a shared, noisy machine falls on all of them alike, and
medians with their spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any


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
