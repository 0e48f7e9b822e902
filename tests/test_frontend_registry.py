"""A new front-end is a settings dataclass, a streaming extractor and one ``register`` line: the
metadata reads its kind, the pipeline frames audio with its extractor and the runner prepares its
windows with its ``window_input``, with no other change (streamer.features.frontend)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from streamer.features import frontend
from streamer.features.frontend import FrontEnd, config_from_dict, expect, extractor_for, window_input
from streamer.features.logmel import LogMelConfig
from streamer.features.mfcc import FeatureConfig
from streamer.features.settings import FrameSettings
from streamer.model.metadata import FORMAT_VERSION, ModelMetadata


@dataclass(frozen=True)
class RmsSettings(FrameSettings):
    """A toy front-end: one RMS value per 10 ms frame."""

    kind: ClassVar[str] = "toy_rms"
    sample_rate: int = 16000
    hop_length: int = 160
    gains: tuple[float, ...] = (1.0,)

    @property
    def frame_samples(self) -> int:
        return self.hop_length

    @property
    def n_features(self) -> int:
        return 1


class RmsExtractor:
    def __init__(self, settings: RmsSettings) -> None:
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        x = np.concatenate([self._pending, np.asarray(chunk, dtype=np.float32)])
        n = self.settings.n_frames(x.size)
        frames = x[: n * self.settings.hop_length].reshape(n, -1)
        self._pending = x[n * self.settings.hop_length :]
        return np.sqrt((frames**2).mean(axis=1, keepdims=True))


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frontend, "FRONT_ENDS", dict(frontend.FRONT_ENDS))  # the test's own registry
    frontend.register(FrontEnd(RmsSettings.kind, RmsSettings, RmsExtractor, lambda w, s: np.log(w + 1e-6)))


def test_a_registered_front_end_is_read_from_metadata_and_framed_by_its_extractor(toy: None) -> None:
    settings = RmsSettings(gains=(0.5, 2.0))
    assert config_from_dict("toy_rms", settings.to_dict()) == settings  # tuples survive JSON
    meta = ModelMetadata(
        format_version=FORMAT_VERSION,
        name="toy",
        architecture="toy",
        labels=("a", "b"),
        feature_config=settings,
        window_seconds=1.0,
        window_frames=settings.frames_for(1.0),
        mean=(0.0,),
        std=(1.0,),
        input_quantization=(0.0, 0),
        output_quantization=(0.0, 0),
    )
    back = ModelMetadata.from_dict(meta.to_dict())
    assert back.features == "toy_rms" and back.feature_config == settings and back.window_frames == 100
    signal = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    batch = extractor_for(settings).push(signal)
    stream = extractor_for(settings)
    chunked = np.concatenate([stream.push(c) for c in np.array_split(signal, 7)])
    np.testing.assert_array_equal(chunked, batch)
    assert batch.shape == (100, 1)
    np.testing.assert_allclose(window_input(settings, batch), np.log(batch + 1e-6))


def test_an_unknown_kind_or_setting_is_refused_by_name(toy: None) -> None:
    with pytest.raises(ValueError, match=r"unknown feature kind 'nope'.*toy_rms"):
        config_from_dict("nope", {})
    with pytest.raises(ValueError, match=r"unknown toy_rms settings: \['colour'\]"):
        config_from_dict("toy_rms", {"colour": 1})


def test_a_tool_for_one_front_end_refuses_another() -> None:
    assert expect(FeatureConfig(), FeatureConfig) == FeatureConfig()
    with pytest.raises(ValueError, match="needs a musicnn_logmel model, not a mfcc_contrast one"):
        expect(FeatureConfig(), LogMelConfig)
