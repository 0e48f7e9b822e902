"""Dataset scan: one sub-folder per label, optionally a metadata.csv (file, label, group column).

The group (artist when known, else the file itself; see streamer.evaluation.labelled.file_groups) is what
the honest split keeps together: clips of one artist in both training and test would measure
memory, not music."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamer.evaluation.labelled import MetadataError, audio_files, file_groups, label_folders


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


def scan(
    data_dir: Path, labels: list[str] | None = None, group_column: str | None = None
) -> tuple[list[Clip], list[str]]:
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
    try:
        groups = file_groups(data_dir, group_column)
    except MetadataError as exc:
        raise DatasetError(str(exc)) from None
    clips = []
    for label in labels:
        for path in audio_files(data_dir / label):
            rel = path.relative_to(data_dir).as_posix()
            clips.append(Clip(path, label, groups.get(rel) or f"file:{rel}"))
    if not clips:
        raise DatasetError(f"{data_dir}: no audio files under {', '.join(labels)}")
    return clips, list(labels)
