"""What every benchmark shares: the machine description, table formatting and the :class:`Section`
each benchmark module returns (CPU-time measurement and its statistics: streamer.util.timing).

The machine is shared and noisy, so claims rest on ratios measured side by side in one run, with
the contenders interleaved (round-robin) and medians reported with their spread.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
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


def fake_emotion(seq: int, label: str, probabilities: dict[str, float], hop_s: float = 1.0) -> Any:
    """A claimed hop as the daemon would publish it, for the load benchmarks' simulated daemons."""
    from streamer.core.events import EmotionEvent, Level

    return EmotionEvent(
        seq=seq,
        timestamp=time.time(),
        stream_time=seq * hop_s,
        state="emotion",
        label=label,
        confidence=probabilities[label],
        probabilities=probabilities,
        raw=probabilities,
        level=Level(-20.0, -6.0, False),
        processing_ms=1.0,
        model="bench",
    )
