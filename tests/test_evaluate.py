"""`moodstream evaluate`: the daemon's own path over a labelled folder, metrics as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer import cli as moodstream
from streamer.audio.synth import SR
from streamer.config import Settings
from streamer.core.pipeline import Pipeline, clip_decision
from streamer.evaluation.evaluate import clip_probabilities
from streamer.model.runner import ModelRunner

pytestmark = pytest.mark.slow  # uses the session's tiny model


def _folder(root: Path, tiny_model_audio, seconds: float = 4.0) -> Path:
    for label in ("angry", "happy", "sad"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            sf.write(root / label / f"{i}.wav", tiny_model_audio(label, seconds, seed=40 + i), SR)
    return root


def test_evaluate_writes_the_metrics(tiny_model: Path, tiny_model_audio, tmp_path: Path) -> None:
    data = _folder(tmp_path / "d", tiny_model_audio)
    sf.write(data / "sad" / "short.wav", tiny_model_audio("sad", 1.0), SR)  # shorter than the window
    (data / "sad" / "broken.wav").write_bytes(b"nope" * 100)
    (data / "jazzy").mkdir()
    sf.write(data / "jazzy" / "j.wav", tiny_model_audio("happy", 3.0), SR)
    out = tmp_path / "m.json"
    assert moodstream.main(["evaluate", str(data), "--model", str(tiny_model), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for key in (
        "labels",
        "n_clips",
        "accuracy",
        "weighted_accuracy",
        "balanced_accuracy",
        "macro_f1",
        "per_class",
        "confusion_matrix",
        "model",
    ):
        assert key in r
    assert r["n_clips"] == 6 and r["accuracy"] == 1.0
    assert r["intervals"]["accuracy"] == [1.0, 1.0] and r["intervals"]["level"] == 0.95
    assert len(r["clips"]) == 6 and all(c["predicted"] == c["label"] == Path(c["file"]).parent.name for c in r["clips"])
    assert r["group_intervals"] is None  # no metadata.csv: no artists to resample
    assert r["skipped_labels"] == {"jazzy": 1}
    reasons = {Path(s["file"]).name: s["reason"] for s in r["skipped_files"]}
    assert "window" in reasons["short.wav"] and "not a readable audio file" in reasons["broken.wav"]
    assert r["model"]["backend"] == "ai-edge-litert" and r["model"]["name"] == "tiny-test"


def test_clip_verdict_is_the_daemon_pipeline(tiny_model: Path, tiny_model_audio, tmp_path: Path) -> None:
    audio = tiny_model_audio("happy", 5.0, seed=3)
    path = tmp_path / "c.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    runner = ModelRunner(tiny_model)
    settings = Settings()
    expected = clip_decision(Pipeline(runner, settings).process(audio))
    # fed in odd-sized chunks like a live source: the same verdict
    pipe = Pipeline(runner, settings)
    events = [e for start in range(0, audio.size, 1234) for e in pipe.process(audio[start : start + 1234])]
    assert np.allclose(clip_decision(events), expected, atol=1e-6)
    assert np.allclose(clip_probabilities(path, runner, settings), expected, atol=1e-6)


def test_missing_model_is_a_clear_error(tmp_path: Path, capsys, tiny_model_audio) -> None:
    data = _folder(tmp_path / "d", tiny_model_audio, seconds=1.0)
    code = moodstream.main(["evaluate", str(data), "--model", str(tmp_path / "none.tflite")])
    assert code == 2
    assert "model file not found" in capsys.readouterr().err


def test_missing_data_folder(tiny_model: Path, tmp_path: Path, capsys) -> None:
    code = moodstream.main(["evaluate", str(tmp_path / "nothing"), "--model", str(tiny_model)])
    assert code == 2
    assert "no such data folder" in capsys.readouterr().err


def test_evaluate_resamples_the_artists_of_metadata_csv(
    tiny_model: Path, tiny_model_audio, tmp_path: Path, capsys
) -> None:
    """Artists as the trainer's split groups them: credit variants merged, unknown artists per file."""
    data = _folder(tmp_path / "d", tiny_model_audio)
    (data / "metadata.csv").write_text(
        "file,label,artist\nangry/0.wav,angry,Band A\nangry/1.wav,angry,Band A & Friends\n"
        "happy/0.wav,happy,X\nhappy/1.wav,happy,Y\nsad/0.wav,sad,Z\nsad/1.wav,sad,\n"
    )
    out = tmp_path / "m.json"
    assert moodstream.main(["evaluate", str(data), "--model", str(tiny_model), "--json", str(out)]) == 0
    groups = json.loads(out.read_text())["group_intervals"]
    assert groups["units"] == 5 and groups["accuracy"] == [1.0, 1.0]
    assert "with the 5 artist groups of metadata.csv resampled" in capsys.readouterr().out
    (data / "metadata.csv").write_text("name,artist\n0.wav,A\n")
    assert moodstream.main(["evaluate", str(data), "--model", str(tiny_model)]) == 2
    assert "needs a 'file' column" in capsys.readouterr().err
