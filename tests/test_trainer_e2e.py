"""The whole trainer on synthesised audio: scan, split, augment, features, fit, export, report,
resume; then `moodstream evaluate` on the exported file, the daemon's way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamer import cli as moodstream
from streamer.model.metadata import read_metadata
from streamer.model.runner import ModelRunner
from tests.trainer_data import add_bad_files, make_dataset
from trainer import cli as train_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    data = make_dataset(root / "data", clips_per_label=8, seconds=5.0)
    add_bad_files(data)
    out = root / "run"
    code = train_cli.main(
        [
            str(data),
            "--out",
            str(out),
            "--window",
            "2",
            "--overlap",
            "0.5",
            "--architectures",
            "cnn",
            "--epochs",
            "10",
            "--patience",
            "5",
            "--cache",
            str(root / "cache"),
        ]
    )
    assert code == 0
    return out


def test_run_writes_models_report_and_metrics(trained: Path) -> None:
    for name in ("model-int8.tflite", "model-float.tflite", "curves.png", "result.json"):
        assert (trained / "cnn" / name).stat().st_size > 0
    metrics = json.loads((trained / "metrics.json").read_text())
    cnn = metrics["results"]["cnn"]
    for kind in ("float", "int8"):
        for level in ("window", "clip"):
            m = cnn["test"][kind][level]
            assert {
                "accuracy",
                "weighted_accuracy",
                "balanced_accuracy",
                "macro_f1",
                "per_class",
                "confusion_matrix",
                "weighted_f1",
            } <= set(m)
    assert cnn["test"]["int8"]["clip"]["macro_f1"] >= 0.8  # synthetic moods are easy
    assert abs(cnn["test"]["int8"]["window"]["accuracy"] - cnn["test"]["float"]["window"]["accuracy"]) <= 0.1
    assert metrics["results"]["baseline"]["test"]["float"]["clip"]["n"] > 0
    report = (trained / "report.md").read_text()
    assert "| cnn |" in report and "| baseline |" in report
    for bad in ("garbage.wav", "empty.wav", "silent.wav", "short.wav"):
        assert bad in report  # skipped and listed, the run went on
    split = metrics["run"]["data"]
    assert split["val"]["clips"] > 0 and split["test"]["clips"] > 0


def test_exported_file_is_complete(trained: Path) -> None:
    meta = read_metadata(trained / "cnn" / "model-int8.tflite")
    assert meta.labels == ("angry", "happy", "sad") and meta.quantized
    assert meta.window_seconds == 2.0 and meta.train_step_seconds == 1.0
    assert meta.metrics["test"]["int8"]["clip"]["n"] > 0  # test figures travel inside the file
    assert meta.training["split"]["train"]["clips"] > 0
    assert (trained / "cnn" / "model-int8.tflite").stat().st_size <= 1_000_000


def test_restart_does_not_retrain(trained: Path, monkeypatch) -> None:
    import trainer.families.paper.fit

    def refuse(*a, **k):
        raise AssertionError("a finished model was trained again")

    monkeypatch.setattr(trainer.families.paper.fit, "fit", refuse)
    before = (trained / "cnn" / "model-int8.tflite").read_bytes()
    run = json.loads((trained / "run.json").read_text())
    code = train_cli.main(
        [
            run["data_dir"],
            "--out",
            str(trained),
            "--window",
            "2",
            "--overlap",
            "0.5",
            "--architectures",
            "cnn",
            "--epochs",
            "10",
            "--patience",
            "5",
            "--cache",
            str(trained.parent / "cache"),
        ]
    )
    assert code == 0
    assert (trained / "cnn" / "model-int8.tflite").read_bytes() == before


def test_other_settings_in_the_same_folder_are_refused(trained: Path, capsys) -> None:
    run = json.loads((trained / "run.json").read_text())
    code = train_cli.main(
        [run["data_dir"], "--out", str(trained), "--window", "3", "--cache", str(trained.parent / "cache")]
    )
    assert code == 1
    assert "other settings" in capsys.readouterr().err


def test_moodstream_evaluate_on_the_exported_file(trained: Path, tmp_path: Path) -> None:
    data = make_dataset(
        tmp_path / "fresh", clips_per_label=3, seconds=5.0, seed=7, labels=("angry", "happy", "sad"), metadata=False
    )
    (data / "calm").mkdir()
    (data / "calm" / "x.wav").write_bytes((data / "sad" / "sad00.wav").read_bytes())
    model = trained / "cnn" / "model-int8.tflite"
    out = tmp_path / "eval.json"
    assert moodstream.main(["evaluate", str(data), "--model", str(model), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["labels"] == ["angry", "happy", "sad"]
    assert result["n_clips"] == 9
    assert result["skipped_labels"] == {"calm": 1}
    assert result["macro_f1"] >= 0.8
    assert set(result["per_class"]["happy"]) == {"precision", "recall", "f1", "support"}
    assert np.array(result["confusion_matrix"]).sum() == 9
    assert result["model"]["name"] == ModelRunner(model).name
