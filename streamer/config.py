"""Settings: frozen dataclasses, loaded once from TOML and overridden by command-line flags.

Every section is a frozen dataclass; its fields (names, types, defaults) are the whole schema, so
an unknown key or a value of the wrong type is an error that names the key. The rest of the code
receives a :class:`Settings` and never reads files or the environment itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_CONFIG = Path("/etc/moodstream/config.toml")


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


@dataclass(frozen=True)
class SourceSettings:
    kind: str = "device"  # device | file | stdin | demo
    device: str = ""  # sounddevice name (substring) or index; "" = system default input
    path: str = ""  # for kind = "file"
    realtime: bool = False  # pace a file source like a live input
    rate: int = 16000  # sample rate of raw s16le on stdin
    channels: int = 1  # channels of raw s16le on stdin
    channel: int = -1  # which input channel to use; -1 = mean of all channels
    block_seconds: float = 0.1  # audio callback / read block

    def validate(self) -> None:
        _choice("source.kind", self.kind, ("device", "file", "stdin", "demo"))
        if self.kind == "file" and not self.path:
            raise ConfigError("source.path: a file source needs a path (--source file:PATH)")
        _positive("source.rate", self.rate)
        _positive("source.channels", self.channels)
        _positive("source.block_seconds", self.block_seconds)
        if self.channel < -1:
            raise ConfigError("source.channel: must be -1 (mean) or a channel index >= 0")


@dataclass(frozen=True)
class ModelSettings:
    path: str = ""  # "" = the shipped 3-class model
    hop_seconds: float = 1.0  # classify the latest window this often

    def validate(self) -> None:
        _positive("model.hop_seconds", self.hop_seconds)


@dataclass(frozen=True)
class SmoothingSettings:
    time_constant_s: float = 3.0  # EMA of probabilities; 0 = no smoothing
    switch_margin: float = 0.10  # a new label must lead the current one by this much...
    switch_hops: int = 2  # ...for this many consecutive hops before the label switches

    def validate(self) -> None:
        if self.time_constant_s < 0:
            raise ConfigError("smoothing.time_constant_s: must be >= 0")
        if not 0 <= self.switch_margin < 1:
            raise ConfigError("smoothing.switch_margin: must be in [0, 1)")
        _positive("smoothing.switch_hops", self.switch_hops)


@dataclass(frozen=True)
class GateSettings:
    silence_dbfs: float = -50.0  # hop RMS below this -> state "silence", no emotion claimed

    def validate(self) -> None:
        if self.silence_dbfs > 0:
            raise ConfigError("gate.silence_dbfs: must be <= 0 dBFS")


@dataclass(frozen=True)
class OutputSettings:
    jsonl: str = ""  # path or "-" for stdout; "" = none (nothing written per hop by default)
    dashboard: bool = False
    log_level: str = "info"

    def validate(self) -> None:
        _choice("output.log_level", self.log_level, ("debug", "info", "warning", "error"))


@dataclass(frozen=True)
class Settings:
    source: SourceSettings = field(default_factory=SourceSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    output: OutputSettings = field(default_factory=OutputSettings)

    def validate(self) -> Settings:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


# flag dest -> (section, key). Flags not listed here are not settings.
FLAGS: dict[str, tuple[str, str]] = {
    "device": ("source", "device"),
    "realtime": ("source", "realtime"),
    "rate": ("source", "rate"),
    "channels": ("source", "channels"),
    "channel": ("source", "channel"),
    "model": ("model", "path"),
    "hop": ("model", "hop_seconds"),
    "time_constant": ("smoothing", "time_constant_s"),
    "switch_margin": ("smoothing", "switch_margin"),
    "switch_hops": ("smoothing", "switch_hops"),
    "silence_dbfs": ("gate", "silence_dbfs"),
    "jsonl": ("output", "jsonl"),
    "dashboard": ("output", "dashboard"),
    "log_level": ("output", "log_level"),
}


def load(path: Path | None = None, overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    """Settings from a TOML file (or /etc/moodstream/config.toml when it exists), then overrides."""
    data: dict[str, Any] = {}
    if path is None and SYSTEM_CONFIG.exists():
        path = SYSTEM_CONFIG
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    return from_dict(data).validate()


def from_dict(data: dict[str, Any]) -> Settings:
    """Build Settings from nested plain data, rejecting unknown keys and wrong types by name."""
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    built = {}
    for name, values in data.items():
        if name not in sections:
            raise ConfigError(f"unknown config section [{name}] (known: {', '.join(sections)})")
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        section_type = _type_of(Settings, name)
        built[name] = _build(section_type, name, values)
    return Settings(**built)


def overrides_from_args(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings that flags set explicitly (argparse defaults must be None to mean 'unset')."""
    out: dict[str, dict[str, Any]] = {}
    for dest, (section, key) in FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            out.setdefault(section, {})[key] = value
    return out


def _build(cls: type, section: str, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"unknown config key {section}.{key} (known: {', '.join(sorted(fields))})"
            )
        kwargs[key] = _coerce(f"{section}.{key}", _type_of(cls, key), value)
    return cls(**kwargs)


def _type_of(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(key: str, expected: Any, value: Any) -> Any:
    origin = typing.get_origin(expected)
    if origin is tuple or expected is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: unsupported setting type {expected}")
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {expected}")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key}: must be > 0, got {value!r}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {value!r}")
