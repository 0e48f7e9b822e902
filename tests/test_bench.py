"""The benchmarks' code paths in --quick mode (tiny sizes), so that `make bench` cannot rot.

These check structure and sanity of the results, never a timing threshold: the machine is shared.
The aarch64 wheel check needs PyPI, so only its offline part (requirements for aarch64) runs here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from bench.aarch64 import requirements
from streamer.util.timing import interleaved, percentile, stats

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ["features", "trainer", "inference", "streaming", "daemon", "latency", "fanout", "fleet"]


def _numbers(obj):
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, (int, float)):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


@pytest.mark.slow
def test_quick_run_writes_both_reports(tmp_path: Path) -> None:
    out = tmp_path / "docs"
    env = dict(os.environ, MOODSTREAM_BENCH_CACHE=str(tmp_path / "cache"), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", ",".join(OFFLINE), "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "benchmarks.json").read_text())
    assert report["quick"] is True and report["failed"] == {} and report["skipped"] == {}
    assert set(report["benchmarks"]) == set(OFFLINE) | {"pi_estimate"}
    assert report["machine"]["cores"] == os.cpu_count() and report["machine"]["libraries"]["numpy"] == np.__version__
    assert all(math.isfinite(x) for x in _numbers(report["benchmarks"]))
    features = report["benchmarks"]["features"]["audio_seconds_per_cpu_second"]
    assert {"batch", "stream_100ms", "librosa"} <= set(features) and all(v["median"] > 0 for v in features.values())
    for run in report["benchmarks"]["streaming"]["runs"]:
        costs = run["cpu_seconds_per_audio_second"]
        assert set(costs) == {"pipeline", "features_per_hop", "inference_per_hop", "naive_features", "naive_librosa"}
        assert all(c["median"] > 0 for c in costs.values())
        assert run["naive_over_features_and_inference"]["median"] > 0
        assert run["ratio_ceiling"] == run["window_seconds"] / run["hop_seconds"]
    for run in report["benchmarks"]["latency"]["runs"]:
        # the model ran on every measured hop (the temporal model may still be making up its mind)
        assert run["states"] and set(run["states"]) <= {"emotion", "uncertain"}
        assert run["samples"] == run["clients"] * run["hops"]
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
        assert len(run["slowest_client_per_hop_ms"]) == run["hops"]
        assert max(run["slowest_client_per_hop_ms"]) == run["max_ms"]
    assert all(r["missed_hops"] == 0 for r in report["benchmarks"]["fanout"]["runs"])
    for run in report["benchmarks"]["fleet"]["runs"]:  # a local Mosquitto (.ci/run installs it)
        assert run["connected"] == run["devices"] and run["received_hops"] + run["lost"] == run["published_hops"]
    daemon = report["benchmarks"]["daemon"]
    assert daemon["peak_rss_mib"]["median"] > 10 and daemon["ready_seconds"]["median"] > 0
    assert 0 <= daemon["paced"]["percent_steady"]["median"] <= 100 * os.cpu_count()  # (a quick run: ticks are coarse)
    assert report["machine"]["heap_kept"] is True
    assert {t["target"].split(",")[0] for t in report["targets"]} >= {
        "peak RSS of `moodstream run`",
        "start-up to ready",
    }
    assert all(isinstance(t["met"], bool) for t in report["targets"])
    text = (out / "BENCHMARKS.md").read_text()
    assert "--quick" in text and "## Targets" in text and "An estimate, not a measurement" in text


def test_aarch64_requirements_come_from_pyproject_with_markers_evaluated() -> None:
    reqs = requirements()
    names = [r.split(">")[0].split("=")[0].lower() for r in reqs]
    assert "ai-edge-litert" in names and "numpy" in names and "soxr" in names
    assert "scipy" not in names and "python_speech_features" not in names  # the daemon needs neither
    assert len(names) == len(set(names))  # the [pi] extra repeats ai-edge-litert: listed once
    assert not any(";" in r for r in reqs) and not any("tensorflow" in n for n in names)


def test_statistics_helpers() -> None:
    assert percentile(list(range(1, 101)), 99) == 99 and percentile([5.0], 50) == 5.0
    s = stats([3.0, 1.0, 2.0, 10.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 10.0 and s["q1"] <= s["q3"]
    calls: list[str] = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3)
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    assert calls == ["a", "b", "b", "a", "a", "b"]  # the order rotates each round
    seen: dict[str, set[int]] = {"free": set(), "one": set()}

    def blas_threads(name: str) -> Callable[[], None]:
        return lambda: seen[name].update(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")

    interleaved({"free": blas_threads("free"), "one": blas_threads("one")}, 2, one_blas_thread=frozenset({"one"}))
    assert seen["one"] == {1}
    assert seen["free"] == {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


def test_merge_replaces_the_rerun_sections_and_keeps_the_others() -> None:
    """`python -m bench --only aarch64 --merge`: one section rerun, the full report otherwise kept."""
    from bench.__main__ import merge

    old_md = (
        "# moodstream benchmarks\n\nGenerated by `make bench` on D1.\n\n## Targets (issue 7)\n\n| t |\n\n"
        "## Feature extraction speed (issue 2)\n\nfast\n\n## aarch64: skipped\n\nno debootstrap\n\n"
        "## Raspberry Pi estimate (issue 7.6)\n\nslow\n"
    )
    target = {"target": "speed", "value": 1, "unit": "x", "limit": 2, "higher_is_better": False, "met": True}
    old = {
        "benchmarks": {"features": {"x": 1}},
        "skipped": {"aarch64": "no debootstrap"},
        "failed": {},
        "targets": [target],
    }
    new_md = "# moodstream benchmarks\n\n## aarch64: wheels and an emulated arm64 run (issue 7.7)\n\nit runs\n"
    report = {"benchmarks": {"aarch64": {"ok": True}}, "skipped": {}, "failed": {}, "targets": []}
    info = {"date_utc": "D2", "cpu": "cpu", "cores": 2, "load_average_at_start": [1.0]}
    markdown, merged = merge(old_md, old, new_md, report, ["aarch64"], info)
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Targets (issue 7)",
        "## Feature extraction speed (issue 2)",
        "## aarch64: wheels and an emulated arm64 run (issue 7.7)",  # where its skipped section was
        "## Raspberry Pi estimate (issue 7.6)",
    ]
    assert "it runs" in markdown and "no debootstrap" not in markdown and "fast" in markdown
    assert "Generated by `make bench` on D1." in markdown and "Sections rerun on D2" in markdown
    assert merged["benchmarks"] == {"features": {"x": 1}, "aarch64": {"ok": True}} and merged["skipped"] == {}
    assert merged["targets"] == old["targets"]
