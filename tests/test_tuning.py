"""streamer.util.tuning: the settings `moodstream` applies to itself take effect, and yield to the user's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Where a fresh 2 MiB numpy array lives: glibc's default serves it with its own mmap (then frees it
# to the kernel, to be page-faulted in again next time); with keep_heap() it comes from the heap.
PROBE = """
import json, sys
from streamer.util import tuning
kept = tuning.keep_heap() if sys.argv[1] == "keep" else None
import numpy as np
a = np.ones(1 << 18)
address = a.ctypes.data
heap = [line.split()[0].split("-") for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
print(json.dumps({"kept": kept, "in_heap": any(int(lo, 16) <= address < int(hi, 16) for lo, hi in heap)}))
"""


def probe(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.exists("/proc/self/maps"), reason="glibc heap layout in /proc"
)
def test_keep_heap_serves_hop_sized_arrays_from_the_heap() -> None:
    assert probe("default") == {"kept": None, "in_heap": False}  # the probe can tell the two apart
    assert probe("keep") == {"kept": True, "in_heap": True}


def test_keep_heap_leaves_a_users_malloc_settings_alone() -> None:
    assert probe("keep", MALLOC_TRIM_THRESHOLD_="131072")["kept"] is False


def test_the_moodstream_command_runs_one_blas_thread_unless_told_otherwise() -> None:
    code = "import os, streamer.cli; print(os.environ['OPENBLAS_NUM_THREADS'])"
    environ = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for env, expected in ((environ, "1"), ({**environ, "OPENBLAS_NUM_THREADS": "3"}, "3")):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == expected
