"""moodstream's daemon: capture, features, model, temporal model, events and their consumers."""

from __future__ import annotations

import importlib.metadata


def version() -> str:
    """The installed distribution's version (`moodstream --version`, the mDNS TXT record)."""
    try:
        return importlib.metadata.version("moodstream")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"
