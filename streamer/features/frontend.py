"""Which front-end a model file needs, from its metadata's ``features`` kind: a registry.

A model is trained on one kind of input; the kind travels in its metadata and everything that
feeds a model (the daemon's pipeline, `moodstream evaluate`, the runner) takes the extractor and
the window preparation from here, so MFCCs cannot reach a log-mel model by mistake. A new
front-end is a module with a settings dataclass (on streamer.features.settings.FrameSettings) and
a streaming extractor, plus one ``register`` line below."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from streamer.features.logmel import LogMelConfig, LogMelExtractor, model_input
from streamer.features.mfcc import FeatureConfig, FeatureExtractor
from streamer.features.settings import FrameSettings

AnyConfig = FrameSettings  # the settings of any registered front-end


class Extractor(Protocol):
    """Streaming features: any chunking of ``push`` gives the frames one push of it all gives."""

    def push(self, chunk: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class FrontEnd:
    """A front-end: its settings type, its streaming extractor, and what a window of its frames
    becomes before the model's standardisation (``window_input``)."""

    kind: str
    settings: type[FrameSettings]
    extractor: Callable[[Any], Extractor]
    window_input: Callable[[np.ndarray, Any], np.ndarray]  # (window, settings)


FRONT_ENDS: dict[str, FrontEnd] = {}


def register(front_end: FrontEnd) -> None:
    FRONT_ENDS[front_end.kind] = front_end


def _as_float32(window: np.ndarray, _config: Any) -> np.ndarray:
    return np.asarray(window, dtype=np.float32)


register(FrontEnd(FeatureConfig.kind, FeatureConfig, FeatureExtractor, _as_float32))
register(FrontEnd(LogMelConfig.kind, LogMelConfig, LogMelExtractor, model_input))
MFCC_CONTRAST = FeatureConfig.kind  # files written before the ``features`` field are this kind


def front_end(config: FrameSettings) -> FrontEnd:
    """The registered front-end of these settings."""
    return FRONT_ENDS[config.kind]


def config_from_dict(kind: str, data: dict[str, Any]) -> FrameSettings:
    """The feature settings of a model file; ValueError for an unknown kind or setting."""
    if kind not in FRONT_ENDS:
        raise ValueError(f"unknown feature kind {kind!r} (this moodstream knows {', '.join(FRONT_ENDS)})")
    return FRONT_ENDS[kind].settings.from_dict(data)


def extractor_for(config: FrameSettings) -> Extractor:
    """The streaming extractor whose frames the model was trained on."""
    return front_end(config).extractor(config)


def window_input(config: FrameSettings, window: np.ndarray) -> np.ndarray:
    """Feature-ring rows -> what the standardisation sees (the log-mel kind normalises the level
    and takes the log per window; MFCC + contrast frames go as they are)."""
    return front_end(config).window_input(window, config)


S = TypeVar("S", bound=FrameSettings)


def expect(config: FrameSettings, settings: type[S]) -> S:
    """The settings of a model that must be of one kind (a tool made for one front-end)."""
    if not isinstance(config, settings):
        raise ValueError(f"this needs a {settings.kind} model, not a {config.kind} one")
    return config
