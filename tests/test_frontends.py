"""The model's metadata picks the front-end: a log-mel model gets log-mel frames through the
daemon's pipeline (streaming == batch up to the network), and no MFCC path can reach it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from streamer.audio.synth import chords, drums, music
from streamer.config import ModelSettings, Settings
from streamer.core.pipeline import Pipeline
from streamer.features.logmel import LogMelConfig, LogMelExtractor, mel_power, model_input
from streamer.features.mfcc import FeatureConfig, FeatureExtractor
from streamer.model import shipped
from streamer.model.metadata import FORMAT_VERSION, ModelFileError, ModelMetadata, read_metadata
from streamer.model.runner import ModelRunner
from streamer.model.shipped import default_model_path, shipped_models_dir

pytestmark = pytest.mark.slow  # converts a small TFLite model once

LABELS = ("angry", "happy", "sad")
CFG = LogMelConfig(normalisation="rms", reference_power=0.33)


@pytest.fixture(scope="module")
def logmel_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real int8 log-mel model (mean over time of the normalised log-mel -> softmax)."""
    keras = pytest.importorskip("keras")
    from trainer.common.export import export

    inp = keras.Input((187, 96))
    hidden = keras.layers.GlobalAveragePooling1D()(inp)
    out = keras.layers.Dense(3, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(seed=0))(
        hidden
    )
    model = keras.Model(inp, out)
    rep = np.stack([model_input(mel_power(s(4.0))[:187], CFG) for s in (chords, drums, music)] * 4)
    meta = ModelMetadata(
        format_version=FORMAT_VERSION,
        name="tiny-logmel",
        architecture="musicnn_msd+logreg",
        labels=LABELS,
        feature_config=CFG,
        window_seconds=3.008,
        window_frames=187,
        mean=(0.0,) * 96,
        std=(1.0,) * 96,
        input_quantization=(0.0, 0),
        output_quantization=(0.0, 0),
    )
    path = tmp_path_factory.mktemp("logmel") / "logmel-int8.tflite"
    export(model, meta, rep, path)
    return path


def test_the_kind_travels_in_the_file(logmel_model: Path) -> None:
    meta = read_metadata(logmel_model)
    assert meta.features == "musicnn_logmel" and meta.feature_config == CFG
    assert json.loads(meta.to_json())["features"] == "musicnn_logmel"
    # files written before the field existed are MFCC + contrast models
    paper = read_metadata(shipped_models_dir() / "moodstream-3class.tflite")
    assert paper.features == "mfcc_contrast" and isinstance(paper.feature_config, FeatureConfig)
    assert meta.format_version == FORMAT_VERSION == 3
    # every earlier format still loads: without the field it means MFCC + contrast, with it its kind
    data = {k: v for k, v in json.loads(paper.to_json()).items() if k != "features"}
    for version in (1, 2):
        old = ModelMetadata.from_dict({**data, "format_version": version})
        assert old.features == "mfcc_contrast" and old.centred_columns == paper.centred_columns
    old_logmel = ModelMetadata.from_dict({**json.loads(meta.to_json()), "format_version": 1})
    assert old_logmel.features == "musicnn_logmel"
    with pytest.raises(ValueError, match="format_version 4"):
        ModelMetadata.from_dict({**data, "format_version": 4})


def test_pipeline_feeds_log_mel_and_equals_batch(logmel_model: Path) -> None:
    runner = ModelRunner(logmel_model)
    pipeline = Pipeline(runner, Settings(model=ModelSettings(path=str(logmel_model), hop_seconds=1.0)))
    assert isinstance(pipeline._extractor, LogMelExtractor)
    assert pipeline.features.latest(0).shape == (0, 96)
    audio = music(6.0, seed=4).astype(np.float32)
    rng = np.random.default_rng(1)
    events, pos = [], 0
    while pos < audio.size:  # ragged capture blocks
        size = int(rng.integers(1, 6000))
        events += pipeline.process(audio[pos : pos + size])
        pos += size
    # 187 frames need 3.008 s; the untrained model may not lead clearly enough for a label (uncertain)
    assert [e.state for e in events[:3]] == ["warming_up"] * 3 and events[3].state in ("emotion", "uncertain")
    # the last hop's raw probabilities are the model on the batch log-mel of the newest 187 frames
    batch = mel_power(audio)[-187:]
    np.testing.assert_allclose(pipeline.features.latest(187), batch, rtol=1e-6)
    expected = runner.predict(batch)
    np.testing.assert_allclose(list(events[-1].raw.values()), expected, atol=1e-6)


def test_mfcc_frames_cannot_reach_a_log_mel_model(logmel_model: Path, tmp_path: Path) -> None:
    from trainer.common.export import embed_metadata

    runner = ModelRunner(logmel_model)
    with pytest.raises(ValueError, match="shape"):
        runner.predict(FeatureExtractor().push(music(3.0))[:187])  # (187, 20): refused
    meta = read_metadata(logmel_model)
    # the same network relabelled as an MFCC model: its tensors give it away
    mfcc_meta = dataclasses.replace(
        meta,
        feature_config=FeatureConfig(),
        window_frames=FeatureConfig().frames_for(3.008),
        mean=(0.0,) * 20,
        std=(1.0,) * 20,
    )
    lying = tmp_path / "lying.tflite"
    lying.write_bytes(embed_metadata(logmel_model.read_bytes(), mfcc_meta.to_json()))
    with pytest.raises(ModelFileError, match="input shape"):
        ModelRunner(lying)
    # a log-mel kind with MFCC settings, or an unknown kind, is an unusable file
    for change, message in (
        ({"features": "musicnn_logmel", "feature_config": FeatureConfig().to_dict()}, "musicnn_logmel settings"),
        ({"features": "chroma"}, "unknown feature kind"),
    ):
        data = {**meta.to_dict(), **change}
        bad = tmp_path / "bad.tflite"
        bad.write_bytes(embed_metadata(logmel_model.read_bytes(), json.dumps(data).encode()))
        with pytest.raises(ModelFileError, match=message):
            read_metadata(bad)


def test_shipped_models_are_selectable_by_short_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # one resolver (streamer.model.shipped) knows both families' short names
    assert shipped.resolve("3class") == shipped_models_dir() / "moodstream-3class.tflite"
    assert shipped.resolve("") == default_model_path() == shipped.resolve("3class-musicnn-student")
    assert shipped.resolve("4class").name == "moodstream-4class.tflite"
    for family in ("3class-musicnn", "4class-musicnn"):
        path = shipped.resolve(family)
        assert path.name == f"moodstream-{family}.tflite"
        assert read_metadata(path).features == "musicnn_logmel"
    local = tmp_path / "3class"
    local.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert shipped.resolve("3class") == Path("3class")  # an existing file wins over a short name
    with pytest.raises(ModelFileError, match="3class-musicnn"):
        shipped.resolve("nonesuch")  # the error lists the shipped names
