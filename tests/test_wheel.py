"""The wheel on its own: built from a copy of the tree and installed with pip into a bare folder,
it carries the shipped models, and `moodstream run` classifies with its default model without a
checkout in sight (what `pip install moodstream` on a Pi gives)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer.audio.synth import music
from streamer.model.metadata import read_metadata
from tests.buildenv import MIN_SETUPTOOLS, setuptools_dir

REPO = Path(__file__).resolve().parent.parent
BUILD = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        setuptools_dir() is None,
        reason=f"needs setuptools>={MIN_SETUPTOOLS} in this venv to build offline (the dev extra: make .venv/.all)",
    ),
]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the folder pip installed it into)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for name in ("streamer", "trainer", "models"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp / "dist"
    built = subprocess.run(
        [sys.executable, "-c", BUILD, str(dist)], cwd=src, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    assert "Warning" not in built.stderr, built.stderr  # SPDX license string, package data declared
    wheel = dist / built.stdout.split()[-1]
    site = tmp / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    return wheel, site


def test_the_wheel_carries_the_shipped_models_and_nothing_of_the_workshop(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        f"moodstream_models/{p.name}" for p in (REPO / "models").iterdir() if p.suffix in {".tflite", ".md", ".json"}
    }
    assert "moodstream_models/moodstream-3class.tflite" in shipped and shipped <= names
    assert {"streamer/sinks/web/index.html", "streamer/cli.py", "trainer/cli.py"} <= names
    assert not any(n.split("/")[0] in {"tests", "bench", "cache", "runs", "models"} for n in names)


def test_moodstream_run_from_the_installed_wheel_uses_its_default_model(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, site = installed
    clip = tmp_path / "clip.wav"
    sf.write(clip, music(12.0, seed=4).astype(np.float32), 16000)
    # -S: no site-packages processing, so the editable install of this checkout stays out;
    # the dependencies come from this venv's folders, moodstream itself only from the wheel.
    deps = os.pathsep.join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{deps}"}
    where = subprocess.run(
        [sys.executable, "-S", "-c", "import streamer.model.shipped as m; print(m.default_model_path())"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    default = Path(where.stdout.strip())
    assert default == site / "moodstream_models" / "moodstream-3class-musicnn-student.tflite"
    run = subprocess.run(
        [sys.executable, "-S", "-m", "streamer.cli", "run", "--source", f"file:{clip}", "--jsonl", "-", "--no-server"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in run.stdout.splitlines()]
    emotion = [e for e in events if e["type"] == "emotion" and e["raw"]]  # classified: a label or uncertain
    assert len(emotion) == 9  # 12 s of audio, a 3.008 s window, 1 s hops
    default_meta = read_metadata(REPO / "models" / "moodstream-3class-musicnn-student.tflite")
    assert {e["model"] for e in emotion} == {default_meta.name}
    assert set(emotion[0]["raw"]) == {"angry", "happy", "sad"}
