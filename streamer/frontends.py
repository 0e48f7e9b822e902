"""Which front-end a model file needs, from its metadata's ``features`` kind.

A model is trained on one kind of input; the kind travels in its metadata and everything that
feeds a model (the daemon's pipeline, `moodstream evaluate`, the runner) takes the extractor and
the window preparation from here, so MFCCs cannot reach a log-mel model by mistake."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamer.features import FeatureConfig, FeatureExtractor
from streamer.logmel import KIND as LOGMEL
from streamer.logmel import LogMelConfig, LogMelExtractor, model_input

MFCC_CONTRAST = "mfcc_contrast"
FEATURE_KINDS: dict[str, type[FeatureConfig] | type[LogMelConfig]] = {
    MFCC_CONTRAST: FeatureConfig,
    LOGMEL: LogMelConfig,
}
AnyConfig = FeatureConfig | LogMelConfig


def kind_of(config: AnyConfig) -> str:
    return LOGMEL if isinstance(config, LogMelConfig) else MFCC_CONTRAST


def config_from_dict(kind: str, data: dict[str, Any]) -> AnyConfig:
    """The feature settings of a model file; ValueError for an unknown kind or setting."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r} (this moodstream knows {', '.join(FEATURE_KINDS)})")
    return FEATURE_KINDS[kind].from_dict(data)


def extractor_for(config: AnyConfig) -> FeatureExtractor | LogMelExtractor:
    """The streaming extractor whose frames the model was trained on."""
    return LogMelExtractor(config) if isinstance(config, LogMelConfig) else FeatureExtractor(config)


def window_input(config: AnyConfig, window: np.ndarray) -> np.ndarray:
    """Feature-ring rows -> what the standardisation sees: the log-mel kind normalises the level
    and takes the log per window; MFCC + contrast frames go as they are."""
    return model_input(window, config) if isinstance(config, LogMelConfig) else np.asarray(window, dtype=np.float32)


def mfcc_config(config: AnyConfig) -> FeatureConfig:
    """The MFCC + contrast settings of a model that must be one (the MFCC benchmarks)."""
    if not isinstance(config, FeatureConfig):
        raise ValueError(f"this needs an {MFCC_CONTRAST} model, not a {kind_of(config)} one")
    return config


def logmel_config(config: AnyConfig) -> LogMelConfig:
    """The log-mel settings of a model that must be one (the musicnn family's tools)."""
    if not isinstance(config, LogMelConfig):
        raise ValueError(f"this needs a {LOGMEL} model, not a {kind_of(config)} one")
    return config
