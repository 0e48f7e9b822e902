"""Debian's own python3, which builds this package without downloading anything (CI is offline)
when python3-setuptools and python3-wheel are installed, as .ci/run installs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

SYSTEM_PYTHON = Path("/usr/bin/python3")


def system_python_builds(min_setuptools: int) -> bool:
    """Whether SYSTEM_PYTHON has wheel and setuptools >= ``min_setuptools`` (61: pyproject
    metadata; 64: editable installs)."""
    if not SYSTEM_PYTHON.exists():
        return False
    probe = f"import setuptools, wheel, sys; sys.exit(int(setuptools.__version__.split('.')[0]) < {min_setuptools})"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0
