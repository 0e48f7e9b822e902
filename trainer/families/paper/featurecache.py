"""Features of every (clip, variant), computed through streamer.features.mfcc.extract on both cores and
cached on disk by the file's content and the settings, so that a second run, or a run on a fresh
copy of the data (new paths and times, same bytes), skips extraction."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamer.audio.decode import AudioError, load_audio
from streamer.features.mfcc import FeatureConfig, extract
from streamer.util.atomic import write_atomic
from trainer.families.paper.augment import apply, chain_seed, is_chain

CACHE_VERSION = 2
SILENCE_DBFS = -60.0


@dataclass(frozen=True)
class Job:
    """One clip and the variants (original and/or augmentations) wanted of it."""

    path: Path
    variants: tuple[str, ...]


def _key(content: str, variant: str, config: FeatureConfig) -> str:
    ident = json.dumps(
        [CACHE_VERSION, content, variant, config.to_dict(), _chain_params(content, variant)], sort_keys=True
    )
    return hashlib.sha1(ident.encode()).hexdigest()


def _chain_params(content: str, variant: str) -> dict | None:
    """A capture-chain variant's drawn parameters (they key the cache with its seed), else None."""
    if not is_chain(variant):
        return None
    from streamer.audio.chain import draw_random

    return draw_random(chain_seed(content, variant))


def _content(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_audio(audio: np.ndarray, path: Path) -> None:
    """Silent audio teaches nothing: reject it with the reason."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    if 20 * np.log10(max(rms, 1e-12)) < SILENCE_DBFS:
        raise AudioError(f"{path}: silent (RMS below {SILENCE_DBFS:.0f} dBFS)")


def _compute(args: tuple[Job, FeatureConfig, Path]) -> tuple[Path, dict[str, np.ndarray] | str]:
    """Worker: cached features per variant, or the reason the clip is unusable."""
    job, config, cache = args
    try:
        out: dict[str, np.ndarray] = {}
        audio = None
        content = _content(job.path)
        for variant in job.variants:
            file = cache / f"{_key(content, variant, config)}.npy"
            if file.is_file():
                out[variant] = np.load(file)
                continue
            if audio is None:
                audio = load_audio(job.path, config.sample_rate)
                check_audio(audio, job.path)
            if is_chain(variant):
                from streamer.audio.chain import random_chain

                variant_audio = random_chain(audio, config.sample_rate, chain_seed(content, variant))
            else:
                variant_audio = apply(audio, variant, config.sample_rate)
            frames = extract(variant_audio, config)
            _save(file, frames)
            out[variant] = frames
        return job.path, out
    except (AudioError, ValueError, OSError) as exc:  # ChainError (missing libraries) is a ValueError
        return job.path, str(exc)


def _save(file: Path, frames: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, frames)
    write_atomic(file, buf.getvalue())


def features(
    jobs: Iterable[Job], config: FeatureConfig, cache: Path, workers: int | None = None
) -> tuple[dict[tuple[Path, str], np.ndarray], dict[Path, str]]:
    """{(path, variant): frames} and {path: reason} for the clips that could not be used."""
    jobs = list(jobs)
    cache.mkdir(parents=True, exist_ok=True)
    workers = workers or min(2, os.cpu_count() or 1)
    done: dict[tuple[Path, str], np.ndarray] = {}
    failed: dict[Path, str] = {}
    tasks = [(job, config, cache) for job in jobs]
    bar = tqdm(total=len(tasks), desc="features", unit="clip", leave=False)
    if workers > 1 and len(tasks) > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(workers) as pool:
            results = list(_progress(pool.imap_unordered(_compute, tasks, chunksize=2), bar))
    else:
        results = list(_progress(map(_compute, tasks), bar))
    bar.close()
    for path, result in results:
        if isinstance(result, str):
            failed[path] = result
        else:
            for variant, frames in result.items():
                done[(path, variant)] = frames
    return done, failed


def _progress(results: Iterable, bar: tqdm) -> Iterable:
    for item in results:
        bar.update()
        yield item
