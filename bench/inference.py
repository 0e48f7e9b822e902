"""Model size and inference time per window (issue 7.4): ``ModelRunner.predict`` (standardise,
quantise, invoke, dequantise) with ai-edge-litert, and with tflite-runtime where it installs.

tflite-runtime (last release 2.14, 2023) needs numpy<2, so it lives in a throwaway venv
(cache/tflite-venv, made on first use; the project's venv is never touched) and is measured by
this same module run there as a child: ``python -m bench.inference --child OUT MODEL...``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, Section, fmt, table
from streamer.util.timing import stats

TFLITE_VENV = ROOT / "cache" / "tflite-venv"
TFLITE_PACKAGES = ("numpy<2", "scipy", "python_speech_features==0.6", "tflite-runtime")


def per_window_ms(paths: list[Path], calls: int, repeats: int) -> dict[str, dict]:
    """Median CPU ms per predict() for each model, models interleaved round by round."""
    from streamer.model.runner import ModelRunner

    runners = {p.name: ModelRunner(p) for p in paths}
    rng = np.random.default_rng(0)
    windows = {
        name: rng.normal(0, 1, (r.window_frames, r.metadata.feature_config.n_features)).astype(np.float32)
        for name, r in runners.items()
    }
    for name, r in runners.items():
        r.predict(windows[name])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, r in runners.items():
            start = time.process_time()
            for _ in range(calls):
                r.predict(windows[name])
            times[name].append(1000 * (time.process_time() - start) / calls)
    return {name: {"backend": runners[name].backend, "ms": stats(ts)} for name, ts in times.items()}


def _tflite_runtime_python() -> tuple[Path | None, str]:
    """The throwaway venv's python (created when missing), or None and why not."""
    python = TFLITE_VENV / "bin" / "python"
    if not python.exists():
        made = subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(TFLITE_VENV)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return None, f"venv failed: {made.stderr[-300:]}"
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *TFLITE_PACKAGES],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if pip.returncode != 0:
            return None, f"tflite-runtime does not install here: {pip.stderr[-500:]}"
    return python, ""


def run(quick: bool = False) -> Section:
    from bench.models import models_under_test

    models = models_under_test()
    if quick:
        models = models[:2]
    calls, repeats = (20, 2) if quick else (200, 7)
    paths = [m.path for m in models]
    litert = per_window_ms(paths, calls, repeats)
    python, why = _tflite_runtime_python()
    tflite: dict = {}
    if python is not None:
        out = ROOT / "cache" / "bench" / "tflite_runtime.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(python), "-m", "bench.inference", "--child", str(out), str(calls), str(repeats), *map(str, paths)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            timeout=900,
        )
        if done.returncode == 0:
            tflite = json.loads(out.read_text())
        else:
            why = f"tflite-runtime run failed: {done.stderr[-500:]}"
    rows, data = [], []
    for m in models:
        a = litert[m.path.name]["ms"]["median"]
        t = tflite.get(m.path.name, {}).get("ms", {}).get("median")
        data.append(
            {
                "model": m.path.name,
                "architecture": m.metadata.architecture,
                "kind": m.kind,
                "shipped": m.shipped,
                "bytes": m.path.stat().st_size,
                "window_frames": m.metadata.window_frames,
                "ai_edge_litert_ms": litert[m.path.name]["ms"],
                "tflite_runtime_ms": tflite.get(m.path.name, {}).get("ms"),
            }
        )
        rows.append(
            [
                m.path.name,
                "shipped" if m.shipped else "benchmark's",
                m.metadata.architecture,
                m.kind,
                f"{m.path.stat().st_size / 1024:.0f}",
                m.metadata.window_frames,
                fmt(a),
                fmt(t),
                fmt(t / a) if t else "-",
            ]
        )
    md = (
        f"`ModelRunner.predict` on one window, CPU ms per call (median of {repeats} rounds of {calls} calls, "
        "models interleaved), 1 interpreter thread. tflite-runtime runs in a separate venv with numpy<2 "
        '(`cache/tflite-venv`), measured right after in a child process. "benchmark\'s" models were '
        "trained on synthetic data by the trainer benchmark (same window as the shipped ones)"
        + (f"; not measured: {why}" if why else "")
        + ".\n\n"
        + table(
            [
                "model",
                "origin",
                "arch",
                "kind",
                "KiB",
                "frames",
                "ai-edge-litert ms",
                "tflite-runtime ms",
                "tflite-runtime / litert",
            ],
            rows,
        )
    )
    return Section(
        "inference",
        "Model size and inference time (issue 7.4)",
        {"models": data, "tflite_runtime_note": why or None},
        md,
    )


def _child(argv: list[str]) -> None:
    out, calls, repeats, *paths = argv
    result = per_window_ms([Path(p) for p in paths], int(calls), int(repeats))
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
