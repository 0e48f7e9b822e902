"""Settings: frozen dataclasses, loaded once from TOML and overridden by command-line flags.

Every section is a frozen dataclass; its fields (names, types, defaults) are the whole schema, so
an unknown key or a value of the wrong type is an error that names the key. The rest of the code
receives a :class:`Settings` and never reads files or the environment itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_CONFIG = Path("/etc/moodstream/config.toml")


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


SOURCE_KINDS = ("device", "file", "stdin", "demo", "auto")
RING_SECONDS = 30.0  # the daemon's sample and feature rings hold this much
MIN_HOP_SECONDS = 0.01  # one feature frame


@dataclass(frozen=True)
class SourceSettings:
    kind: str = "device"  # device | file | stdin | demo | auto (device if there is one, else demo)
    device: str = ""  # sounddevice name (substring) or index; "" = system default input
    path: str = ""  # for kind = "file"
    realtime: bool = False  # pace a file source like a live input
    rate: int = 16000  # sample rate of raw s16le on stdin
    channels: int = 1  # channels of raw s16le on stdin
    channel: int = -1  # which input channel to use; -1 = mean of all channels (a device: its first two)
    block_seconds: float = 0.25  # longest audio block per callback / read (see block_seconds_for)

    def validate(self) -> None:
        _choice("source.kind", self.kind, SOURCE_KINDS)
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
        # the hop's level is read from the 30 s sample ring, and a hop needs at least a feature frame
        if not MIN_HOP_SECONDS <= self.hop_seconds <= RING_SECONDS:
            raise ConfigError(
                f"model.hop_seconds: must be between {MIN_HOP_SECONDS:g} and {RING_SECONDS:g} s, "
                f"got {self.hop_seconds!r}"
            )


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
class ServerSettings:
    """The WebSocket broadcast and its web page; loopback only unless a host is given."""

    enabled: bool = True
    host: str = "127.0.0.1"  # "0.0.0.0" (or an address) exposes it to the network
    port: int = 8765
    token: str = ""  # when set, clients must send it (?token= or Authorization: Bearer)
    allowed_origins: tuple[str, ...] = ()  # browser Origins allowed besides the page's own
    max_clients: int = 64
    max_message_bytes: int = 4096  # larger client frames close the connection (1009)
    client_queue: int = 64  # messages a client may lag behind before it is dropped (4000)
    ping_interval: float = 20.0  # keepalive pings; a peer silent for as long again is closed
    mdns: bool = True  # advertise _moodstream._tcp over mDNS when listening beyond loopback

    def validate(self) -> None:
        if not self.host:
            raise ConfigError("server.host: must not be empty (127.0.0.1 = this machine only)")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"server.port: must be in 0..65535, got {self.port!r}")
        _positive("server.max_clients", self.max_clients)
        _positive("server.max_message_bytes", self.max_message_bytes)
        _positive("server.client_queue", self.client_queue)
        _positive("server.ping_interval", self.ping_interval)


@dataclass(frozen=True)
class LivenessSettings:
    """When a live input counts as lost, and how patiently it is reopened."""

    stall_seconds: float = 5.0  # no audio from the device for this long -> lost, reopen
    digital_silence_is_loss: bool = False  # only exact zeros for stall_seconds also counts as lost
    backoff_initial_s: float = 0.5  # first wait before reopening; doubles per failed attempt...
    backoff_max_s: float = 30.0  # ...up to this

    def validate(self) -> None:
        _positive("liveness.stall_seconds", self.stall_seconds)
        _positive("liveness.backoff_initial_s", self.backoff_initial_s)
        if self.backoff_max_s < self.backoff_initial_s:
            raise ConfigError("liveness.backoff_max_s: must be >= liveness.backoff_initial_s")


@dataclass(frozen=True)
class Settings:
    source: SourceSettings = field(default_factory=SourceSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    liveness: LivenessSettings = field(default_factory=LivenessSettings)
    server: ServerSettings = field(default_factory=ServerSettings)

    def validate(self) -> Settings:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


def block_seconds_for(settings: Settings) -> float:
    """The capture block: each hop split into equal blocks no longer than source.block_seconds.

    Every hop then ends where a block ends, so no hop waits for the rest of a block to arrive; and
    the fewer blocks per second, the less the daemon wakes (measured on a paced file: 1.12% of a
    core in 0.1 s blocks, 0.63% in 0.25 s blocks)."""
    hop = settings.model.hop_seconds
    return hop / math.ceil(hop / settings.source.block_seconds - 1e-9)


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
    "stall_seconds": ("liveness", "stall_seconds"),
    "host": ("server", "host"),
    "port": ("server", "port"),
    "token": ("server", "token"),
    "origin": ("server", "allowed_origins"),
    "max_clients": ("server", "max_clients"),
    "server_enabled": ("server", "enabled"),
    "mdns": ("server", "mdns"),
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
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    for section, values in (overrides or {}).items():
        if not isinstance(data.setdefault(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table")
        data[section].update(values)
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
    spec = getattr(args, "source", None)
    if spec is not None:
        out.setdefault("source", {}).update(parse_source_spec(spec))
    return out


def parse_source_spec(spec: str) -> dict[str, str]:
    """``--source device|file:PATH|stdin|demo|auto`` -> source settings."""
    kind, colon, path = spec.partition(":")
    if kind == "file":
        if not path:
            raise ConfigError("--source file:PATH needs a path after 'file:'")
        return {"kind": "file", "path": path}
    if colon or kind not in SOURCE_KINDS:
        raise ConfigError(f"--source: expected device, file:PATH, stdin, demo or auto, got {spec!r}")
    return {"kind": kind}


def _build(cls: type, section: str, values: dict[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {section}.{key} (known: {', '.join(sorted(fields))})")
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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
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
