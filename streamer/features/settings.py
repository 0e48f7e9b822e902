"""What every front-end's settings share: the frame grid (rate, hop, frame length) and their
round trip through a model file's metadata. Each front-end declares a frozen dataclass on this
base; the model file carries it, so the daemon frames audio exactly as the trainer did."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self


class FrameSettings:
    """Base of a front-end's frozen settings dataclass; ``kind`` names the front-end in metadata."""

    kind: ClassVar[str]
    sample_rate: int
    hop_length: int

    @property
    def frame_samples(self) -> int:
        """Samples one frame spans (a frame is emitted only once they are all there)."""
        raise NotImplementedError

    @property
    def n_features(self) -> int:
        raise NotImplementedError

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def n_frames(self, n_samples: int) -> int:
        """Complete frames in ``n_samples`` samples."""
        if n_samples < self.frame_samples:
            return 0
        return 1 + (n_samples - self.frame_samples) // self.hop_length

    def frames_for(self, seconds: float) -> int:
        """Number of frames in a window of ``seconds`` of audio."""
        return self.n_frames(round(seconds * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists)."""
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The settings from a model file; ValueError for a setting this front-end does not know."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - set(fields)
        if unknown:
            raise ValueError(f"unknown {cls.kind} settings: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
