"""The model file: a .tflite whose TFLite ``metadata`` entry "moodstream" holds everything the daemon
needs (labels, feature settings, window, standardisation, quantisation, training summary, metrics).

One lone file is therefore a complete model. Reading it needs no TensorFlow: a few lines of
flatbuffer walking find the entry (the trainer writes it with the official schema). Every problem
becomes a :class:`ModelFileError` that names the file and says what is wrong.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.features.frontend import MFCC_CONTRAST, AnyConfig, config_from_dict
from streamer.features.mfcc import FeatureConfig

# 2 added centred_columns, 3 the features kind (front-end): an older reader must refuse such a file,
# not ignore the field. Files without "features" (any version) are MFCC + contrast.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
METADATA_NAME = "moodstream"
EXPECTED_SAMPLE_RATE = FeatureConfig().sample_rate

# Field slots of the TFLite schema tables we walk (tensorflow/lite/schema/schema.fbs).
_MODEL_BUFFERS, _MODEL_METADATA = 4, 6
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


class ModelFileError(ValueError):
    """A model file that cannot be used, with the file and the reason in the message."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a model needs around it; (scale, zero_point) with scale 0 means a float tensor."""

    format_version: int
    name: str
    architecture: str
    labels: tuple[str, ...]
    feature_config: AnyConfig
    window_seconds: float
    window_frames: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_quantization: tuple[float, int]
    output_quantization: tuple[float, int]
    train_step_seconds: float = 1.0  # step between the training windows (the daemon hops by model.hop_seconds)
    # feature columns whose mean over the window is subtracted before standardising (the log
    # energy, 0: the model then hears the music, not the microphone's gain)
    centred_columns: tuple[int, ...] = ()
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> str:
        """The feature kind (front-end) the model was trained on; files without the field are MFCC + contrast."""
        return self.feature_config.kind

    def __post_init__(self) -> None:
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be non-empty and unique, got {self.labels!r}")
        n = self.feature_config.n_features
        if len(self.mean) != n or len(self.std) != n:
            raise ValueError(f"mean and std need {n} values (one per feature)")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError("std values must be finite and > 0")
        if not all(0 <= c < n for c in self.centred_columns) or len(set(self.centred_columns)) != len(
            self.centred_columns
        ):
            raise ValueError(f"centred_columns must be distinct feature indices below {n}, got {self.centred_columns}")
        if self.window_frames != self.feature_config.frames_for(self.window_seconds):
            raise ValueError(
                f"window_frames {self.window_frames} does not match window_seconds "
                f"{self.window_seconds} ({self.feature_config.frames_for(self.window_seconds)} frames)"
            )
        for which, (scale, _) in (("input", self.input_quantization), ("output", self.output_quantization)):
            if not (math.isfinite(scale) and scale >= 0):
                raise ValueError(f"{which}_quantization scale must be >= 0, got {scale}")

    @property
    def quantized(self) -> bool:
        return self.input_quantization[0] > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "architecture": self.architecture,
            "labels": list(self.labels),
            "features": self.features,
            "feature_config": self.feature_config.to_dict(),
            "window_seconds": self.window_seconds,
            "window_frames": self.window_frames,
            "train_step_seconds": self.train_step_seconds,
            "mean": list(self.mean),
            "std": list(self.std),
            "centred_columns": list(self.centred_columns),
            "input_quantization": {"scale": self.input_quantization[0], "zero_point": self.input_quantization[1]},
            "output_quantization": {"scale": self.output_quantization[0], "zero_point": self.output_quantization[1]},
            "training": self.training,
            "metrics": self.metrics,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        """Inverse of :meth:`to_dict`; ValueError naming the first missing or bad field."""
        required = (
            "format_version",
            "name",
            "architecture",
            "labels",
            "feature_config",
            "window_seconds",
            "window_frames",
            "mean",
            "std",
            "input_quantization",
            "output_quantization",
        )
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"metadata lacks field(s): {', '.join(missing)}")
        if data["format_version"] not in READABLE_VERSIONS:
            raise ValueError(
                f"metadata format_version {data['format_version']!r}; this moodstream reads "
                + " and ".join(map(str, READABLE_VERSIONS))
            )
        try:
            return cls(
                format_version=int(data["format_version"]),
                name=str(data["name"]),
                architecture=str(data["architecture"]),
                labels=tuple(str(x) for x in data["labels"]),
                feature_config=config_from_dict(str(data.get("features", MFCC_CONTRAST)), dict(data["feature_config"])),
                window_seconds=float(data["window_seconds"]),
                window_frames=int(data["window_frames"]),
                mean=tuple(float(x) for x in data["mean"]),
                std=tuple(float(x) for x in data["std"]),
                input_quantization=_quantization(data["input_quantization"]),
                output_quantization=_quantization(data["output_quantization"]),
                # files written before the rename carry it as "hop_seconds" (the shipped ones do)
                train_step_seconds=float(data.get("train_step_seconds", data.get("hop_seconds", 1.0))),
                centred_columns=tuple(int(c) for c in data.get("centred_columns", ())),
                training=dict(data.get("training", {})),
                metrics=dict(data.get("metrics", {})),
            )
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"metadata has a field of the wrong type ({exc})") from None

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode("utf-8")


def _quantization(data: dict[str, Any]) -> tuple[float, int]:
    return float(data["scale"]), int(data["zero_point"])


MAX_MODEL_BYTES = 64 * 2**20  # the shipped models are under 1 MiB; a Pi Zero 2 W has 512 MB in all


def read_metadata(path: str | Path, expected_sample_rate: int = EXPECTED_SAMPLE_RATE) -> ModelMetadata:
    """The moodstream metadata of a .tflite file, checked; ModelFileError when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:  # size and identifier first: a 3 GB file given by mistake is never read whole
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ModelFileError(
                f"{path}: {size / 2**20:.0f} MiB is too large for a model file (at most {MAX_MODEL_BYTES // 2**20} MiB)"
            )
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8 or head[4:8] != b"TFL3":
                raise ModelFileError(f"{path}: not a TFLite model file (no TFL3 identifier)")
            data = head + f.read(size)
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file: {exc.strerror or exc}") from None
    blob = metadata_bytes(data, str(path))
    try:
        meta = ModelMetadata.from_dict(json.loads(blob.decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: the moodstream metadata is not valid JSON ({exc})") from None
    except ValueError as exc:
        raise ModelFileError(f"{path}: unusable moodstream metadata: {exc}") from None
    rate = meta.feature_config.sample_rate
    if rate != expected_sample_rate:
        raise ModelFileError(
            f"{path}: the model was trained on {rate} Hz features but this pipeline computes "
            f"{expected_sample_rate} Hz features"
        )
    return meta


def metadata_bytes(data: bytes, where: str = "model") -> bytes:
    """The raw bytes of the "moodstream" metadata entry of a TFLite flatbuffer."""
    reader = _Reader(data, where)
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ModelFileError(f"{where}: not a TFLite model file (no TFL3 identifier)")
    model = reader.root()
    buffers = reader.vector_of_tables(model, _MODEL_BUFFERS)
    for entry in reader.vector_of_tables(model, _MODEL_METADATA):
        if reader.string(entry, _METADATA_NAME) != METADATA_NAME:
            continue
        index = reader.scalar(entry, _METADATA_BUFFER, "<I")
        if index >= len(buffers):
            raise ModelFileError(f"{where}: corrupt or truncated file (metadata buffer {index} missing)")
        return reader.buffer_data(buffers[index])
    raise ModelFileError(f"{where}: no moodstream metadata inside (not a moodstream model file)")


class _Reader:
    """Bounds-checked flatbuffer access: any bad offset is a truncated or corrupt file."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data = data
        self.where = where

    def _unpack(self, fmt: str, pos: int) -> int:
        if pos < 0 or pos + struct.calcsize(fmt) > len(self.data):
            raise ModelFileError(f"{self.where}: corrupt or truncated model file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def root(self) -> int:
        return self._unpack("<I", 0)

    def _field(self, table: int, slot: int) -> int:
        """Absolute position of a field, or 0 when absent."""
        vtable = table - self._unpack("<i", table)
        vsize = self._unpack("<H", vtable)
        entry = 4 + 2 * slot
        if entry + 2 > vsize:
            return 0
        offset = self._unpack("<H", vtable + entry)
        return table + offset if offset else 0

    def _deref(self, pos: int) -> int:
        return pos + self._unpack("<I", pos)

    def scalar(self, table: int, slot: int, fmt: str, default: int = 0) -> int:
        pos = self._field(table, slot)
        return self._unpack(fmt, pos) if pos else default

    def _vector(self, table: int, slot: int) -> tuple[int, int]:
        pos = self._field(table, slot)
        if not pos:
            return 0, 0
        start = self._deref(pos)
        return start + 4, self._unpack("<I", start)

    def vector_of_tables(self, table: int, slot: int) -> list[int]:
        start, n = self._vector(table, slot)
        if start + 4 * n > len(self.data):
            raise ModelFileError(f"{self.where}: corrupt or truncated model file")
        return [self._deref(start + 4 * i) for i in range(n)]

    def string(self, table: int, slot: int) -> str:
        start, n = self._vector(table, slot)
        if start + n > len(self.data):
            raise ModelFileError(f"{self.where}: corrupt or truncated model file")
        return self.data[start : start + n].decode("utf-8", errors="replace")

    def buffer_data(self, buffer: int) -> bytes:
        """Inline data, or data stored after the flatbuffer (offset/size, used by large models)."""
        start, n = self._vector(buffer, _BUFFER_DATA)
        if not n:
            start = self.scalar(buffer, _BUFFER_OFFSET, "<Q")
            n = self.scalar(buffer, _BUFFER_SIZE, "<Q")
        if not n or start + n > len(self.data):
            raise ModelFileError(f"{self.where}: corrupt or truncated model file (metadata buffer out of range)")
        return self.data[start : start + n]
