"""Teacher embeddings of every clip, per 3 s patch, under a capture condition, cached by the clip's
content and the teacher's weights (issue 28).

Teachers: ``musicnn`` (the MSD network the student learns today:
trainer.families.musicnn.embeddings.Embedder on the patch's level-normalised log-mel, 200 values),
``yamnet`` (1024) and ``mn04`` (384), the two AudioSet networks (trainer.families.musicnn.weights
says where their weights come from). Every teacher sees the same windows: the samples of the
student's log-mel patches (187 frames, 3.008 s, one every ``STRIDE_S`` seconds, as
trainer.families.musicnn.student cuts them), so that the concatenated embeddings of a patch are one
distillation target. The AudioSet networks take the window's waveform scaled to ``LEVEL_RMS``
(musicnn's ``rms`` normalisation does the same on the mel power): their log-mel inputs would
otherwise move with the capture level.

Conditions are trainer.families.musicnn.embeddings' (``clean``, ``room`` as `moodstream evaluate
--chain room` draws it, ``augment-K`` random capture-chain draws); a clip's chain runs once for all
teachers.

``python -m trainer teachers --conditions clean,room`` fills the cache
(background: about 0.2 s per patch for the three networks on one core).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from streamer.audio.decode import AudioError, load_audio
from streamer.features.logmel import LogMelConfig
from trainer.common.cache import content_digest, save_array
from trainer.common.dataset import Clip
from trainer.common.paths import RUN_CACHE
from trainer.families.musicnn import weights
from trainer.families.musicnn.embeddings import PATCH_FRAMES, condition_audio

log = logging.getLogger(__name__)

CACHE = RUN_CACHE / "teacher-embeddings"
CACHE_VERSION = 1
NAMES = ("musicnn", "yamnet", "mn04")
DIMS = {"musicnn": 200, "yamnet": 1024, "mn04": 384}
LABEL_SETS = (("angry", "happy", "sad"), ("angry", "happy", "sad", "calm"))  # whose splits the pool spans
STRIDE_S = 3.0  # trainer.families.musicnn.student's patch stride (10 patches per 30 s clip)
LEVEL_RMS = 0.1  # -20 dBFS: the AudioSet networks' input level
MAX_GAIN = 1000.0  # +60 dB at most (digital silence stays silence)
HOP = 256  # streamer.logmel's hop: patch k starts at sample k * step * HOP
WINDOW = (PATCH_FRAMES - 1) * HOP + 512  # 48128 samples: what the patch's 187 frames cover


def window_starts(n_samples: int, stride_s: float = STRIDE_S, rate: int = 16000) -> list[int]:
    """First sample of each patch, exactly where trainer.families.musicnn.embeddings.patches puts its
    log-mel patches."""
    step = round(stride_s * rate / HOP) * HOP
    return list(range(0, n_samples - WINDOW + 1, step))


def levelled(window: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(window, dtype=np.float64))))
    return (window * min(LEVEL_RMS / max(rms, 1e-12), MAX_GAIN)).astype(np.float32)


class Teacher:
    """One frozen network as a function of a clip's audio: (n_patches, dim) embeddings, and what
    keys its cache (the weights' digest and the input settings)."""

    def __init__(self, name: str, fn: Callable[[np.ndarray], np.ndarray], ident: dict[str, Any]) -> None:
        self.name, self.fn, self.ident = name, fn, ident

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return self.fn(audio)


def musicnn_teacher(config: LogMelConfig, threads: int = 1) -> Teacher:
    from trainer.families.musicnn import network as musicnn
    from trainer.families.musicnn.embeddings import Embedder, patches

    embedder = Embedder(threads=threads)

    def fn(audio: np.ndarray) -> np.ndarray:
        x = patches(audio, config, STRIDE_S)
        return np.zeros((0, DIMS["musicnn"]), np.float32) if x is None else embedder(x)

    return Teacher("musicnn", fn, {"wheel_sha256": musicnn.SHA256, "log_mel": config.to_dict()})


def audioset_teacher(name: str, provenance: weights.Provenance, threads: int = 1) -> Teacher:
    if name == "yamnet":
        from trainer.families.musicnn.yamnet import YAMNet

        net: Callable[[np.ndarray], np.ndarray] = YAMNet(provenance.path, threads)
    else:
        from trainer.families.musicnn.efficientat import MN04

        net = MN04(provenance.path, threads)

    def fn(audio: np.ndarray) -> np.ndarray:
        starts = window_starts(len(audio))
        if not starts:
            return np.zeros((0, DIMS[name]), np.float32)
        return np.asarray(net(np.stack([levelled(audio[s : s + WINDOW]) for s in starts])), dtype=np.float32)

    return Teacher(name, fn, {"weights_sha256": provenance.sha256, "level_rms": LEVEL_RMS})


def load_teachers(
    names: tuple[str, ...],
    config: LogMelConfig,
    local: Path | None = None,
    accept: dict[str, str] | None = None,
    threads: int = 1,
) -> tuple[list[Teacher], dict[str, dict[str, str]]]:
    """The named teachers and the provenance of the AudioSet ones' weights (for the card)."""
    out, provenance = [], {}
    for name in names:
        if name == "musicnn":
            out.append(musicnn_teacher(config, threads))
            continue
        prov = weights.resolve(name, local, accept=accept)
        provenance[name] = prov.to_dict()
        out.append(audioset_teacher(name, prov, threads))
    return out, provenance


def _key(content: str, condition: str, teacher: Teacher) -> str:
    ident = [CACHE_VERSION, content, condition, teacher.name, teacher.ident, STRIDE_S, WINDOW]
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def embed(
    clips: list[Clip], condition: str, teachers: list[Teacher], cache: Path = CACHE, only_cached: bool = False
) -> dict[str, dict[Path, np.ndarray]]:
    """{teacher: {clip path: (n_patches, dim)}} for ``clips`` under ``condition``: read from the cache,
    else computed (the clip's capture chain once for every teacher that misses it) and cached;
    with ``only_cached`` nothing is computed. Clips that cannot be used are left out (logged)."""
    out: dict[str, dict[Path, np.ndarray]] = {t.name: {} for t in teachers}
    t0, done = time.perf_counter(), 0
    for clip in clips:
        content = content_digest(clip.path)
        files = {t.name: cache / t.name / f"{_key(content, condition, t)}.npy" for t in teachers}
        missing = [t for t in teachers if not files[t.name].is_file()]
        for t in teachers:
            if t not in missing:
                out[t.name][clip.path] = np.load(files[t.name])
        if not missing or only_cached:
            continue
        try:
            audio = condition_audio(load_audio(clip.path, 16000), condition, clip.path.name)
        except (AudioError, ValueError) as exc:
            log.warning("%s: skipped (%s)", clip.path, exc)
            continue
        for t in missing:
            emb = t(audio)
            if not len(emb):
                log.warning("%s: shorter than one patch, skipped", clip.path)
                break
            files[t.name].parent.mkdir(parents=True, exist_ok=True)
            save_array(files[t.name], emb)
            out[t.name][clip.path] = emb
        done += 1
        if done % 25 == 0:
            log.info("%s: %d clips embedded, %.2f s per clip", condition, done, (time.perf_counter() - t0) / done)
    return out


def pool_clips(data: Path) -> list[Clip]:
    """Every clip in a training or validation part of the 3- or 4-class split (no clip that is only
    in a test part), in a seeded random order: a cache filled part-way holds a fair sample."""
    from trainer.common.split import load_split

    found: dict[Path, Clip] = {}
    for labels in LABEL_SETS:
        split = load_split(data, list(labels))
        for i in split.parts["train"] + split.parts["val"]:
            found[split.clips[i].path] = split.clips[i]
    clips = [found[p] for p in sorted(found)]
    return [clips[i] for i in np.random.default_rng(0).permutation(len(clips))]


def main(argv: list[str] | None = None) -> int:
    from trainer.common.paths import DEFAULT_DATA
    from trainer.families.musicnn.head import config_for

    p = argparse.ArgumentParser(prog="python -m trainer teachers", description="cache teacher embeddings")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--conditions", default="clean,room")
    p.add_argument("--teachers", default=",".join(NAMES))
    p.add_argument("--teacher-weights", type=Path, help=f"local weights folder (else ${weights.ENV}, else download)")
    p.add_argument("--accept-sha256", action="append", default=[], metavar="NAME=DIGEST")
    p.add_argument("--shard", default="0/1", help="I/N: every N-th clip from the I-th (parallel jobs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=CACHE)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    teachers, _ = load_teachers(
        tuple(args.teachers.split(",")),
        config_for("rms"),
        args.teacher_weights,
        weights.parse_accept(args.accept_sha256),
        args.threads,
    )
    index, count = (int(v) for v in args.shard.split("/"))
    clips = pool_clips(args.data)[index::count]
    for condition in args.conditions.split(","):
        embed(clips, condition, teachers, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
