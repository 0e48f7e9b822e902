"""Caches keyed by content: what a clip holds, not where it lies; arrays written atomically."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from streamer.util.atomic import write_atomic


def content_digest(path: Path) -> str:
    """A file's sha256: caches key on what a clip holds, not on where it lies."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def save_array(path: Path, array: np.ndarray) -> None:
    """One cached array as .npy, written atomically (a killed job leaves no half file)."""
    buf = io.BytesIO()
    np.save(buf, array)
    write_atomic(path, buf.getvalue())
