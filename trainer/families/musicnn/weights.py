"""Where the AudioSet teachers' weights come from, and proof that they are the expected bytes.

Each teacher (:data:`TEACHERS`) is downloaded from its official source by default, once, into
``cache/teachers/``; a folder laid out like ``../shared/weights`` (``--teacher-weights DIR`` or
``$MOODSTREAM_TEACHER_WEIGHTS``) is used instead where it is set, so that a machine without a
network can train. Either way the file's sha256 must be the pinned one: the embeddings cached from
it and the models distilled from them are only reproducible from those bytes. A file whose digest
differs is refused with the digest it has, unless the caller accepts that digest explicitly
(``--accept-sha256 NAME=DIGEST``); the card records source, digest and licence of what was used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from streamer.util.atomic import write_atomic
from trainer.common.paths import DOWNLOADS

CACHE = DOWNLOADS / "teachers"
ENV = "MOODSTREAM_TEACHER_WEIGHTS"


class WeightsError(RuntimeError):
    """The weights cannot be had, or are not the pinned bytes, with the reason."""


@dataclass(frozen=True)
class WeightsSpec:
    """One teacher's weights file: its place in a local weights folder, its official source, the
    pinned sha256 and its licence."""

    name: str
    relpath: str
    url: str
    sha256: str
    licence: str
    reference: str


TEACHERS = {
    "yamnet": WeightsSpec(
        "yamnet",
        "yamnet/yamnet.tflite",
        "https://tfhub.dev/google/lite-model/yamnet/classification/tflite/1?lite-format=tflite",
        "687f226c147a2caab4706fbbab5e9cecb14b9a368264bf61108078b1fddf68f5",
        "Apache-2.0 (upstream tensorflow/models research/audioset/yamnet)",
        "YAMNet (MobileNet v1 on AudioSet), Google; TensorFlow Hub / Kaggle Models google/yamnet",
    ),
    "mn04": WeightsSpec(
        "mn04",
        "efficientat-mn04/mn04_as_mAP_432.pt",
        "https://github.com/fschmid56/EfficientAT/releases/download/v0.0.1/mn04_as_mAP_432.pt",
        "899a8c6217063f6941793102a2780b3dd788ab11fce468d9cf5f0577c453321c",
        "MIT (fschmid56/EfficientAT)",
        "EfficientAT mn04_as, Schmid et al., ICASSP 2023: Efficient Large-Scale Audio Tagging via "
        "Transformer-to-CNN Knowledge Distillation",
    ),
}


@dataclass(frozen=True)
class Provenance:
    """What was loaded: the file, where it came from, its digest and licence (the card's row)."""

    name: str
    path: Path
    source: str
    sha256: str
    licence: str
    reference: str

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "source": self.source,
            "sha256": self.sha256,
            "licence": self.licence,
            "reference": self.reference,
        }


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _check(spec: WeightsSpec, path: Path, accept: dict[str, str]) -> str:
    digest = sha256_of(path)
    if digest not in (spec.sha256, accept.get(spec.name)):
        raise WeightsError(
            f"{spec.name}: {path} has sha256 {digest}, not the pinned {spec.sha256}; "
            f"use the verified copy, or accept these bytes with --accept-sha256 {spec.name}={digest} "
            "(embeddings and students made from them will differ)"
        )
    return digest


def _download(spec: WeightsSpec, cache: Path) -> Path:
    target = cache / spec.relpath
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(spec.url, timeout=60) as response:
            data = response.read()
    except OSError as exc:
        raise WeightsError(
            f"{spec.name}: cannot download {spec.url} ({exc}); set {ENV} or --teacher-weights to a folder "
            f"that holds {spec.relpath}"
        ) from None
    write_atomic(target, data)
    return target


def resolve(
    name: str, local: Path | None = None, cache: Path = CACHE, accept: dict[str, str] | None = None
) -> Provenance:
    """The teacher's verified weights file: from ``local`` (or ``$MOODSTREAM_TEACHER_WEIGHTS``)
    when set, else from the official source (downloaded once into ``cache``). A downloaded file
    that fails the check is set aside (``NAME.rejected``), so that the next try downloads again."""
    spec = TEACHERS[name]
    folder = local or (Path(os.environ[ENV]) if os.environ.get(ENV) else None)
    accept = accept or {}
    if folder is not None:
        path = folder / spec.relpath
        if not path.is_file():
            raise WeightsError(f"{spec.name}: no {spec.relpath} under {folder}")
        source = f"a local copy (weights folder: {spec.relpath}) of {spec.url}"
        return Provenance(name, path, source, _check(spec, path, accept), spec.licence, spec.reference)
    path = _download(spec, cache)
    try:
        digest = _check(spec, path, accept)
    except WeightsError:
        shutil.move(path, path.with_name(path.name + ".rejected"))
        raise
    return Provenance(name, path, spec.url, digest, spec.licence, spec.reference)


def parse_accept(items: list[str]) -> dict[str, str]:
    """``NAME=DIGEST`` pairs (``--accept-sha256``) as a dict; an unknown teacher is an error."""
    out = {}
    for item in items:
        name, _, digest = item.partition("=")
        if name not in TEACHERS or len(digest) != 64:
            raise WeightsError(f"--accept-sha256 {item!r}: want NAME=DIGEST with NAME one of {', '.join(TEACHERS)}")
        out[name] = digest.lower()
    return out
