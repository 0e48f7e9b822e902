"""A labelled folder: one sub-folder per label holding audio files. The trainer and
`moodstream evaluate` read data folders the same way through this."""

from __future__ import annotations

from pathlib import Path

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".opus"})


def label_folders(data_dir: Path) -> list[str]:
    """Names of the label sub-folders, sorted (hidden folders ignored)."""
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"{data_dir}: no such data folder")
    return sorted(p.name for p in Path(data_dir).iterdir() if p.is_dir() and not p.name.startswith("."))


def audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively, by suffix), sorted; symlinks followed."""
    return sorted(
        p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )
