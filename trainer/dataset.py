"""Dataset scan: one sub-folder per label, optionally a metadata.csv (file, label, group column).

The group (artist when known, else the file itself) is what the honest split keeps together:
clips of one artist in both training and test would measure memory, not music."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from streamer.labelled import audio_files, label_folders

GROUP_COLUMNS = ("artist", "group", "album")


class DatasetError(ValueError):
    """A data folder that cannot be used, with the reason."""


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    group: str

    @property
    def key(self) -> str:
        """Stable identifier relative to the data folder (label/file)."""
        return f"{self.label}/{self.path.name}"


def scan(data_dir: Path, labels: list[str] | None = None, group_column: str | None = None) -> tuple[list[Clip], list[str]]:
    """Clips (sorted, labels in ``labels`` order or alphabetical) and the label list."""
    data_dir = Path(data_dir)
    try:
        found = label_folders(data_dir)
    except FileNotFoundError as exc:
        raise DatasetError(str(exc)) from None
    if labels:
        unknown = [label for label in labels if label not in found]
        if unknown:
            raise DatasetError(f"{data_dir}: no folder for label(s) {', '.join(unknown)} (found: {', '.join(found)})")
    else:
        labels = found
    if len(labels) < 2:
        raise DatasetError(f"{data_dir}: need at least two label folders, found {found}")
    groups = _groups(data_dir, group_column)
    clips = []
    for label in labels:
        for path in audio_files(data_dir / label):
            rel = path.relative_to(data_dir).as_posix()
            clips.append(Clip(path, label, groups.get(rel) or f"file:{rel}"))
    if not clips:
        raise DatasetError(f"{data_dir}: no audio files under {', '.join(labels)}")
    return clips, list(labels)


def _groups(data_dir: Path, group_column: str | None) -> dict[str, str]:
    """file (relative path) -> group from metadata.csv; empty when there is none."""
    meta = data_dir / "metadata.csv"
    if not meta.is_file():
        if group_column:
            raise DatasetError(f"--group {group_column} needs {meta}")
        return {}
    with meta.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "file" not in columns:
            raise DatasetError(f"{meta}: needs a 'file' column (has {columns})")
        column = group_column or next((c for c in GROUP_COLUMNS if c in columns), None)
        if column is None:
            return {}
        if column not in columns:
            raise DatasetError(f"{meta}: no column {column!r} (has {columns})")
        return {row["file"]: f"{column}:{row[column].strip().casefold()}" for row in reader if row.get(column, "").strip()}
