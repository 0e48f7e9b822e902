"""Model file format and runtime: metadata round trip, a real LiteRT interpreter on the exported
int8 file, int8 vs float agreement, and clear errors for every kind of unusable file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.features.mfcc import FeatureConfig, extract
from streamer.model.metadata import ModelFileError, ModelMetadata, metadata_bytes, read_metadata
from streamer.model.runner import ModelRunner
from streamer.model.shipped import default_model_path, shipped_models_dir
from tests.conftest import TINY_LABELS, TINY_WINDOW_S

pytestmark = pytest.mark.slow  # the session's tiny model trains once (about 20 s)


def _windows(runner: ModelRunner, audio: np.ndarray) -> list[np.ndarray]:
    frames = extract(audio)
    n = runner.window_frames
    return [frames[s : s + n] for s in range(0, frames.shape[0] - n + 1, n // 2)]


def test_metadata_round_trip(tiny_model: Path) -> None:
    meta = read_metadata(tiny_model)
    assert meta.labels == TINY_LABELS
    assert meta.window_seconds == TINY_WINDOW_S
    assert meta.window_frames == FeatureConfig().frames_for(TINY_WINDOW_S)
    assert meta.feature_config == FeatureConfig()
    assert meta.quantized and meta.output_quantization == (1 / 256, -128)
    again = ModelMetadata.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta


def test_the_training_step_is_read_from_the_key_older_files_carry(tiny_model: Path) -> None:
    """Files exported before the rename call the step between training windows "hop_seconds"."""
    legacy = read_metadata(tiny_model).to_dict()
    legacy["hop_seconds"] = legacy.pop("train_step_seconds") + 0.5
    assert ModelMetadata.from_dict(legacy).train_step_seconds == legacy["hop_seconds"]
    current = read_metadata(tiny_model).to_dict()
    assert "hop_seconds" not in current and ModelMetadata.from_dict(current) == read_metadata(tiny_model)


def test_int8_file_runs_in_litert_and_recognises_moods(tiny_model: Path, tiny_model_audio) -> None:
    runner = ModelRunner(tiny_model)
    assert runner.backend == "ai-edge-litert"
    assert runner.labels == TINY_LABELS and runner.name == "tiny-test"
    for k, label in enumerate(TINY_LABELS):
        probs = np.mean([runner.predict(w) for w in _windows(runner, tiny_model_audio(label, 6.0, seed=77))], axis=0)
        assert probs.shape == (3,) and abs(probs.sum() - 1) < 0.02
        assert int(np.argmax(probs)) == k, (label, probs)


def test_int8_agrees_with_float(tiny_model: Path, tiny_model_audio) -> None:
    int8 = ModelRunner(tiny_model)
    flt = ModelRunner(tiny_model.with_name("tiny-float.tflite"))
    assert not flt.metadata.quantized
    diffs = []
    for label in TINY_LABELS:
        for w in _windows(int8, tiny_model_audio(label, 5.0, seed=5)):
            a, b = int8.predict(w), flt.predict(w)
            diffs.append(np.max(np.abs(a - b)))
            top2 = np.sort(b)[-2:]
            if top2[1] - top2[0] > 0.1:  # where the float model is decided, int8 decides alike
                assert np.argmax(a) == np.argmax(b), (a, b)
    assert max(diffs) < 0.1, max(diffs)


def test_predict_rejects_a_window_of_the_wrong_shape(tiny_model: Path) -> None:
    runner = ModelRunner(tiny_model)
    with pytest.raises(ValueError, match="shape"):
        runner.predict(np.zeros((runner.window_frames - 1, 20), np.float32))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found"):
        read_metadata(tmp_path / "nope.tflite")
    with pytest.raises(ModelFileError, match="not found"):
        ModelRunner(tmp_path / "nope.tflite")


def test_default_model_path_is_the_shipped_three_class_student() -> None:
    assert default_model_path().name == "moodstream-3class-musicnn-student.tflite"
    assert default_model_path().parent.name == "models"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:6],
        lambda b: b"",
        lambda b: b"hello, not a model at all" * 10,
        lambda b: bytes(np.random.default_rng(0).integers(0, 256, len(b), dtype=np.uint8)),
        lambda b: b[:4] + b"TFL3" + bytes(64),
    ],
)
def test_corrupt_or_truncated_file(tiny_model: Path, tmp_path: Path, mangle) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(mangle(tiny_model.read_bytes()))
    with pytest.raises(ModelFileError, match=r"bad\.tflite"):
        ModelRunner(bad)


def test_file_without_moodstream_metadata(tiny_model: Path, tmp_path: Path) -> None:
    data = tiny_model.read_bytes()
    name = len("moodstream").to_bytes(4, "little") + b"moodstream"
    assert data.count(name) == 1
    bad = tmp_path / "plain.tflite"
    bad.write_bytes(data.replace(name, name[:-1] + b"X"))
    with pytest.raises(ModelFileError, match="no moodstream metadata"):
        read_metadata(bad)


def _with_metadata(tiny_model: Path, tmp_path: Path, edit) -> Path:
    from trainer.common.export import embed_metadata

    data = tiny_model.read_bytes()
    meta = json.loads(metadata_bytes(data))
    edit(meta)
    out = tmp_path / "edited.tflite"
    out.write_bytes(embed_metadata(data, json.dumps(meta).encode()))
    return out


def test_embedding_replaces_the_entry(tiny_model: Path, tmp_path: Path) -> None:
    path = _with_metadata(tiny_model, tmp_path, lambda m: m.update(name="renamed"))
    assert read_metadata(path).name == "renamed"
    assert ModelRunner(path).name == "renamed"


@pytest.mark.parametrize("field", ["labels", "mean", "feature_config", "window_frames", "input_quantization"])
def test_metadata_missing_a_field(tiny_model: Path, tmp_path: Path, field: str) -> None:
    path = _with_metadata(tiny_model, tmp_path, lambda m: m.pop(field))
    with pytest.raises(ModelFileError, match=field):
        read_metadata(path)


def test_metadata_not_json(tiny_model: Path, tmp_path: Path) -> None:
    from trainer.common.export import embed_metadata

    bad = tmp_path / "nojson.tflite"
    bad.write_bytes(embed_metadata(tiny_model.read_bytes(), b"{not json"))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_metadata(bad)


def test_metadata_with_another_sample_rate(tiny_model: Path, tmp_path: Path) -> None:
    def edit(m: dict) -> None:
        m["feature_config"]["sample_rate"] = 22050
        m["window_frames"] = FeatureConfig(sample_rate=22050).frames_for(m["window_seconds"])

    with pytest.raises(ModelFileError, match="22050 Hz"):
        read_metadata(_with_metadata(tiny_model, tmp_path, edit))


def test_metadata_that_contradicts_the_graph(tiny_model: Path, tmp_path: Path) -> None:
    path = _with_metadata(tiny_model, tmp_path, lambda m: m.update(labels=["a", "b"]))
    with pytest.raises(ModelFileError, match="output shape"):
        ModelRunner(path)


def test_an_unreadable_model_file_is_a_model_file_error(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mode 000 does not stop root, who runs these tests, so the refusal is the kernel's error
    raised by hand; the daemon turns ModelFileError into one line and exit status 2."""
    copy = tmp_path / "model.tflite"
    copy.write_bytes(tiny_model.read_bytes())
    real = Path.open

    def denied(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == copy:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(ModelFileError, match="cannot read the model file: Permission denied"):
        read_metadata(copy)


def test_the_weights_digest_ignores_the_metadata(tiny_model: Path, tmp_path: Path) -> None:
    """A new calibration rewrites the file but not what the network computes: caches key on the weights."""
    from streamer.model.metadata import weights_digest
    from trainer.common.export import embed_metadata

    data = tiny_model.read_bytes()
    meta = read_metadata(tiny_model)
    calibrated = embed_metadata(data, dataclasses.replace(meta, temperature=1.7).to_json())
    assert calibrated != data and weights_digest(calibrated) == weights_digest(data)
    shipped = (shipped_models_dir() / "moodstream-3class.tflite").read_bytes()
    assert weights_digest(shipped) != weights_digest(data)
