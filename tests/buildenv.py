"""What builds this package offline (CI is offline): pyproject.toml's SPDX license string needs
setuptools>=77, newer than Debian bookworm's python3-setuptools (66), so builds use the setuptools
that the dev extra installs into this venv."""

from __future__ import annotations

from pathlib import Path

SYSTEM_PYTHON = Path("/usr/bin/python3")
MIN_SETUPTOOLS = 77


def setuptools_dir() -> Path | None:
    """This venv's setuptools package, when it is new enough to build the project."""
    try:
        import setuptools
    except ImportError:
        return None
    if int(setuptools.__version__.split(".")[0]) < MIN_SETUPTOOLS:
        return None
    return Path(setuptools.__file__).parent


def setuptools_only_path(folder: Path) -> Path:
    """A folder holding just this venv's setuptools (a link), for PYTHONPATH: another Python's
    build without isolation then finds it, and nothing else of this venv."""
    found = setuptools_dir()
    assert found is not None, "setuptools_dir() first"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "setuptools").symlink_to(found)
    return folder
