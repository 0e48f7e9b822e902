"""A labelled folder: one sub-folder per label holding audio files, optionally a metadata.csv
(file, label, artist...). The trainer and `moodstream evaluate` read data folders the same way
through this.

Groups keep clips of one artist together (the trainer's split; evaluate's artist-level
intervals). Artist credits vary ("Xavier Cugat" / "Xavier Cugat & His Orchestra", "Sizzla" /
"Sizzla Kalonji"), and one song can be credited to two names, so artists are canonicalised and
merged with every artist that shares a song title or is a word-for-word prefix of them: groups
may come out coarser than artists, never finer."""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

GROUP_COLUMNS = ("artist", "group", "album")
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".opus"})


class MetadataError(ValueError):
    """A metadata.csv that cannot be used, with the reason."""


def label_folders(data_dir: Path) -> list[str]:
    """Names of the label sub-folders, sorted (hidden folders ignored)."""
    if not Path(data_dir).is_dir():
        raise FileNotFoundError(f"{data_dir}: no such data folder")
    return sorted(p.name for p in Path(data_dir).iterdir() if p.is_dir() and not p.name.startswith("."))


def audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (recursively, by suffix), sorted; symlinks followed."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def file_groups(data_dir: Path, group_column: str | None = None) -> dict[str, str]:
    """file (relative path) -> group from the folder's metadata.csv (``group_column``, else the
    first of artist, group, album it has); empty when there is none."""
    meta = data_dir / "metadata.csv"
    if not meta.is_file():
        if group_column:
            raise MetadataError(f"{meta} is missing: the group column {group_column!r} needs it")
        return {}
    with meta.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        if "file" not in columns:
            raise MetadataError(f"{meta}: needs a 'file' column (has {columns})")
        column = group_column or next((c for c in GROUP_COLUMNS if c in columns), None)
        if column is None:
            return {}
        if column not in columns:
            raise MetadataError(f"{meta}: no column {column!r} (has {columns})")
        rows = [row for row in reader if row.get(column, "").strip()]
    if column != "artist":
        return {row["file"]: f"{column}:{row[column].strip().casefold()}" for row in rows}
    return artist_groups((row["file"], row["artist"], row.get("title") or "") for row in rows)


_CREDIT_SPLIT = re.compile(r"\s+(?:feat\.?|ft\.?|featuring|&|and|with|\+|vs\.?)\s+|,")


def canonical_artist(name: str) -> str:
    """The lead artist of a credit: 'The Sir Douglas Quintet + 2' -> 'sir douglas quintet'."""
    text = unicodedata.normalize("NFKC", name).casefold()
    lead = " ".join(_CREDIT_SPLIT.split(text)[0].split())
    lead = re.sub(r"^the\s+", "", lead)
    return lead or " ".join(text.split())


def canonical_title(title: str) -> str:
    """A song title without versions or punctuation: "Trav'lin' Light (Remastered)" -> 'travlin light'."""
    text = unicodedata.normalize("NFKC", title).casefold()
    text = re.sub(r"\(.*?\)|\[.*?\]", " ", text).split(" - ")[0]
    return " ".join(re.sub(r"[^\w\s]", "", text).split())


def artist_groups(rows: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """file -> group for (file, artist, title) rows: artists merged through shared song titles
    and word-for-word prefixes of their names (union-find); a group is named by its first artist."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    artist_of: dict[str, str] = {}
    for file, artist, title in rows:
        node = "artist:" + canonical_artist(artist)
        artist_of[file] = node
        find(node)
        if song := canonical_title(title):
            union(node, "title:" + song)
    artists = {n for n in parent if n.startswith("artist:")}
    for node in artists:
        words = node.removeprefix("artist:").split()
        for k in range(1, len(words)):
            if (prefix := "artist:" + " ".join(words[:k])) in artists:
                union(node, prefix)
    # every member of a group gets the same name: its smallest node, which is an artist where it can be
    names: dict[str, str] = {}
    for node in sorted(parent):
        names.setdefault(find(node), node)
    return {file: names[find(node)] for file, node in artist_of.items()}
