"""Small labelled data folders for trainer and evaluate tests, written by the tests themselves."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

from streamer.audio.synth import MOODS as TINY_LABELS
from streamer.audio.synth import SR, mood_audio


def make_dataset(
    root: Path,
    clips_per_label: int = 8,
    seconds: float = 5.0,
    seed: int = 0,
    labels: tuple[str, ...] = TINY_LABELS,
    metadata: bool = True,
) -> Path:
    """One folder per label; artists own one or two clips each; some files stereo at 22.05 kHz
    (the trainer must resample and mix them). Returns ``root``."""
    rows = []
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(clips_per_label):
            audio = mood_audio(label, seconds, seed=seed * 1000 + i)
            name = f"{label}/{label}{i:02d}.wav"
            if i % 3 == 1:
                audio = _stereo_22k(audio)
                sf.write(root / name, audio, 22050)
            else:
                sf.write(root / name, audio, SR)
            rows.append({"file": name, "label": label, "artist": f"{label}-artist-{i // 2}"})
    if metadata:
        with (root / "metadata.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file", "label", "artist"])
            writer.writeheader()
            writer.writerows(rows)
    return root


def _stereo_22k(audio: np.ndarray) -> np.ndarray:
    import soxr

    up = soxr.resample(audio, SR, 22050)
    return np.stack([up, up], axis=1).astype(np.float32)


def add_bad_files(root: Path, label: str = "sad") -> dict[str, str]:
    """Unusable files the trainer must skip and list: name -> expected reason fragment."""
    folder = root / label
    (folder / "garbage.wav").write_bytes(b"this is not audio at all" * 20)
    sf.write(folder / "empty.wav", np.zeros(0, np.float32), SR)
    sf.write(folder / "silent.wav", np.zeros(5 * SR, np.float32), SR)
    sf.write(folder / "short.wav", mood_audio(label, 0.5), SR)
    return {
        "garbage.wav": "not a readable audio file",
        "empty.wav": "no samples",
        "silent.wav": "silent",
        "short.wav": "shorter than",
    }
