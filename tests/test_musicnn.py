"""musicnn's MSD network rebuilt in Keras 3 gives the original TF1 graph's outputs.

The wheel comes from trainer.families.musicnn.network's own cache (`make test` fetches it first with
``python -m trainer fetch-musicnn``); the original graph runs from the wheel's models.py in a
subprocess with legacy Keras (tests/musicnn_reference.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from streamer.audio.synth import music
from streamer.features.logmel import LogMelConfig, mel_power, model_input
from trainer.families.musicnn import network as musicnn

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def wheel() -> Path:
    found = musicnn.cached_wheel()
    if found is None:
        pytest.skip("musicnn wheel not cached: `make test` fetches it (python -m trainer fetch-musicnn)")
    return found


@pytest.fixture(scope="module")
def patches() -> np.ndarray:
    """Two real log-mel patches of synthetic music and one of random values (musicnn's input range)."""
    cfg = LogMelConfig(normalisation="none")
    real = model_input(mel_power(music(7.0, seed=3)), cfg)
    rng = np.random.default_rng(0)
    return np.stack([real[:187], real[150:337], rng.uniform(0, 3, (187, 96))]).astype(np.float32)


@pytest.fixture(scope="module")
def reference(wheel: Path, patches: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("musicnn_ref")
    np.save(folder / "in.npy", patches)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = [str(wheel), str(musicnn.checkpoint_dir()), str(folder / "in.npy"), str(folder / "out.npz")]
    done = subprocess.run(
        [sys.executable, str(HERE / "musicnn_reference.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(np.load(folder / "out.npz"))


@pytest.mark.slow
def test_keras_rebuild_gives_the_checkpoint_graphs_outputs(reference: dict[str, np.ndarray], patches) -> None:
    model = musicnn.build(logits=True)
    penultimate, logits = (np.asarray(t) for t in model(patches, training=False))
    assert penultimate.shape == (3, 200) and logits.shape == (3, 50)
    assert np.std(reference["penultimate"]) > 0.1  # the reference is not degenerate
    np.testing.assert_allclose(penultimate, reference["penultimate"], atol=1e-4, rtol=1e-4)  # measured: 4e-6
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-4, rtol=1e-4)  # measured: 4e-6
    # and the patches are told apart (not one constant embedding)
    assert np.abs(penultimate[0] - penultimate[2]).max() > 0.1


def test_wheel_is_verified_by_hash(tmp_path: Path) -> None:
    (tmp_path / musicnn.WHEEL).write_bytes(b"not the wheel")
    assert musicnn.cached_wheel(tmp_path) is None  # a wrong file is never used
