"""Process-wide settings for a small always-on service; `moodstream` applies them before numpy loads.

Two defaults that suit big batch jobs cost a once-a-second streamer dearly:
- BLAS threads: a hop's matrix products are tiny (100 frames times a 26-filter bank), so extra
  threads only spin. Measured on the demo source, 20 s: 3.7 CPU s with OpenBLAS's default
  threads, 1.1 with one.
- glibc's heap trimming: a hop's arrays (a few hundred KiB) are freed at the top of the heap, given
  back to the kernel, and page-faulted in again next hop. Measured (x86_64, 2026-11-29): the
  features of a 1 s push took 1.14 ms with glibc's defaults and 0.75 ms with the thresholds below;
  its FFT alone 0.93 and 0.25 ms. The memory kept is what a hop already needed.
An explicit setting in the environment wins in both cases.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD_BYTES = 64 << 20  # keep up to this much freed heap instead of returning it at once
MMAP_THRESHOLD_BYTES = 16 << 20  # arrays below this come from the heap, not a fresh mmap each time


def tune() -> None:
    """One BLAS thread (read when numpy is first imported, so call this before) and keep_heap()."""
    for var in BLAS_THREAD_VARS:
        os.environ.setdefault(var, "1")
    keep_heap()


def keep_heap() -> bool:
    """Make glibc keep freed heap for reuse; False where it is not glibc or the user set it."""
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their defaults stand
        return False
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
