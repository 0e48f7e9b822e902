"""Settings: frozen dataclasses, loaded once from TOML and overridden by command-line flags.

Every section is a frozen dataclass, and every setting is declared once, as a field made by
:func:`setting`::

    stall_seconds: float = setting(
        5.0,                                         # the default
        "a live input silent this long is reopened", # one line: --help and the README's TOML block
        flag="--stall-seconds",                      # optional: the `moodstream run` flag
        bounds=(0.1, 3600),                          # required for a number (choices=... for a string)
        doc="A live input that ...",                 # optional: the longer text of systemd/config.toml
    )

Everything else follows from the declaration: loading rejects unknown keys, wrong types and values
out of bounds by name (exit 2), :func:`add_flags` makes the flags and their help, and
``python -m streamer.config_docs`` writes the README's TOML blocks and systemd/config.toml, which
tests/test_config.py checks (it also refuses a field declared without :func:`setting`). A check
across fields goes in the section's ``check()`` (or, across sections, in ``Settings.validate``); a
new section is a field of :class:`Settings`. A secret that must not be a flag (ps shows flags) may
come from the environment instead (:data:`ENVIRONMENT`, passed to :func:`load`). The rest of the
code receives a :class:`Settings` and never reads files or the environment itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import math
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SYSTEM_CONFIG = Path("/etc/moodstream/config.toml")
log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration problem, with the offending key in the message."""


SOURCE_KINDS = ("device", "file", "stdin", "demo", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error")
RING_SECONDS = 30.0  # the daemon's sample and feature rings hold this much
MIN_HOP_SECONDS = 0.01  # one feature frame
MAX_CONFIG_BYTES = 64 * 1024  # a settings file is a few kB; more is a mistake (or an attack)


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a number, inclusive (``lo_open``/``hi_open``: that end excluded)."""

    lo: float
    hi: float
    hi_open: bool = False
    lo_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        return above and (value < self.hi if self.hi_open else value <= self.hi)

    def __str__(self) -> str:
        low = f"over {_number(self.lo)}" if self.lo_open else _number(self.lo)
        return f"{low} to {'under ' if self.hi_open else ''}{_number(self.hi)}"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def setting(
    default: Any,
    help: str,
    *,
    flag: str = "",
    bounds: tuple[float, float] | Bounds | None = None,
    choices: tuple[str, ...] = (),
    doc: str = "",
) -> Any:
    """Declare a setting: its default, one-line ``help`` (for ``--help`` and the README), the ``flag``
    of `moodstream run` that overrides it (if any), the ``bounds`` of a number (every number has
    them), the ``choices`` of a string, and ``doc``, the longer text of systemd/config.toml."""
    if isinstance(bounds, tuple):
        bounds = Bounds(*bounds)
    if isinstance(default, (int, float)) and not isinstance(default, bool) and bounds is None:
        raise TypeError(f"a numeric setting needs bounds (default {default!r})")
    meta = {"help": help, "flag": flag, "bounds": bounds, "choices": choices, "doc": doc or help}
    return field(default=default, metadata=meta)


def backoff_initial(default: float, doing: str, to_do: str) -> Any:
    """The first wait of a reconnect loop; every such loop has this and :func:`backoff_max`."""
    return setting(
        default,
        f"first wait before {doing}; doubles per failed attempt...",
        bounds=(0.01, 3600),
        doc=f"Wait this long before the first attempt {to_do}...",
    )


def backoff_max(default: float, note: str = "") -> Any:
    return setting(
        default,
        f"...up to this{note}",
        bounds=(0.01, 3600),
        doc="...doubling per failed attempt, up to this many seconds between attempts.",
    )


def check_backoff(section: str, initial: float, maximum: float) -> None:
    if maximum < initial:
        raise ConfigError(f"{section}.backoff_max_s: must be >= {section}.backoff_initial_s")


@dataclass(frozen=True)
class SourceSettings:
    kind: str = setting(
        "device",
        "device | file | stdin | demo | auto (device if there is one, else demo)",
        choices=SOURCE_KINDS,
        doc='Where audio comes from: "device" (a sound card, USB microphone or line-in through ALSA), '
        '"file" (the file at path), "stdin" (raw s16le), "demo" (synthetic music), or "auto" (the default '
        'input device when there is one, else the demo). A service wants "device": when the device is '
        "missing or unplugged it waits and reopens it (see [liveness]) instead of falling back.",
    )
    device: str = setting(
        "",
        "input device: index or part of its name (see `moodstream devices`)",
        flag="--device",
        doc='Which input: a part of the name that `moodstream devices` lists (e.g. "USB Audio"), or its '
        "index. An empty string means the system's default input.",
    )
    path: str = setting(
        "",
        'the audio file of kind = "file"',
        doc='The audio file to read when kind = "file" (any format soundfile reads; resampled to 16 kHz).',
    )
    realtime: bool = setting(
        False,
        "pace a file source like a live input",
        flag="--realtime",
        doc="Pace a file source like a live input (one second of audio per second) instead of reading it at once.",
    )
    rate: int = setting(
        16000,
        "sample rate of raw s16le on stdin",
        flag="--rate",
        bounds=(1000, 384000),
        doc='Sample rate of raw s16le audio on stdin (kind = "stdin"); it is resampled to 16 kHz.',
    )
    channels: int = setting(
        1,
        "channels of raw s16le on stdin",
        flag="--channels",
        bounds=(1, 64),
        doc="Number of interleaved channels of raw audio on stdin.",
    )
    channel: int = setting(
        -1,
        "input channel to use; -1 = mean of all, of a device's first two",
        flag="--channel",
        bounds=(-1, 63),
        doc="Which input channel to listen to: -1 = the mean of all channels (of a device: its first two), "
        "0 = the first, 1 = the second...",
    )
    block_seconds: float = setting(
        1.0,
        "longest capture block; each hop is split into equal blocks no longer than this",
        bounds=(0.005, 2.0),
        doc="Longest capture block in seconds (the audio callback or read size). Each hop is split into "
        "equal blocks no longer than this, so that hops end on block boundaries and a hop waits for "
        "no audio after its own; fewer blocks per second wake the daemon less often.",
    )

    def check(self) -> None:
        if self.kind == "file" and not self.path:
            raise ConfigError("source.path: a file source needs a path (--source file:PATH)")


@dataclass(frozen=True)
class ModelSettings:
    path: str = setting(
        "",
        "model file (.tflite with moodstream metadata), or a shipped one by its short name "
        "(`moodstream models` lists them); none = the default model",
        flag="--model",
        doc="The .tflite model file (its labels, features and window ride inside it), or a shipped model by "
        'its short name, such as "4class-musicnn-student" (angry, happy, sad, calm). `moodstream models` lists '
        "the shipped ones with their labels, costs and test figures, and marks the default; an empty string "
        "means the default (models/index.json names it).",
    )
    # the hop's level is read from the 30 s sample ring, and a hop needs at least a feature frame
    hop_seconds: float = setting(
        1.0,
        "seconds between classifications",
        flag="--hop",
        bounds=(MIN_HOP_SECONDS, RING_SECONDS),
        doc="Classify the latest window this often, in seconds: one event per hop.",
    )


@dataclass(frozen=True)
class SmoothingSettings:
    """The temporal model (streamer/core/temporal.py): how the shown mood follows the music."""

    mood_seconds: float = setting(
        300.0,
        "how long a mood lasts within one song, in s: longer = steadier, shorter = quicker",
        flag="--mood-seconds",
        bounds=(1, 86400),
        doc="How long a mood lasts within one song, on average, in seconds (a new song draws its mood afresh "
        "anyway). Longer keeps the shown mood steadier within a song; shorter follows a song that changes.",
    )
    evidence_weight: float = setting(
        0.3,
        "how much one hop counts as evidence (0-1]: more = quicker, jumpier",
        flag="--evidence-weight",
        bounds=Bounds(0, 1, lo_open=True),
        doc="How much one hop's model output counts as evidence (its calibrated probabilities are raised to "
        "this power): a hop's 3 s patch overlaps its neighbours', so a hop is worth less than an independent "
        "look at the music. More makes the shown mood quicker and jumpier.",
    )
    switch_confidence: float = setting(
        0.8,
        "a mood is shown once believed this much (a new one replaces the one shown)",
        flag="--switch-confidence",
        bounds=(0, 1),
        doc="A mood is shown once the temporal model believes it this much; then a new mood replaces it only "
        "when believed this much in turn, so the lamp changes once per change of music, not back and forth.",
    )
    min_confidence: float = setting(
        0.0,
        "the mood shown is held while believed at least this much; below, uncertain",
        flag="--min-confidence",
        bounds=(0, 1),
        doc="The mood shown is held while believed at least this much; below it, and until another mood is "
        'believed switch_confidence, the state is "uncertain" and no label is claimed.',
    )

    def check(self) -> None:
        if self.min_confidence > self.switch_confidence:
            raise ConfigError("smoothing.min_confidence: must not be above smoothing.switch_confidence")

    song_seconds: float = setting(
        180.0,
        "how long a song lasts on average, in s: the change detector's prior",
        flag="--song-seconds",
        bounds=(5, 86400),
        doc="How long one song lasts on average, in seconds: how often the change detector expects new music "
        "before it hears any. What it hears decides: a jump in timbre or level starts the belief afresh.",
    )


@dataclass(frozen=True)
class GateSettings:
    silence_dbfs: float = setting(
        -50.0,
        "hop RMS below this is silence: no emotion claimed",
        flag="--silence-dbfs",
        bounds=(-200, 0),
        doc='A hop quieter than this (RMS, dBFS) is reported as "silence" and no emotion is claimed.',
    )


@dataclass(frozen=True)
class OutputSettings:
    jsonl: str = setting(
        "",
        "write every event as a JSON line to PATH, or - for stdout",
        flag="--jsonl",
        doc='Append every event as one JSON line to this file ("-" for stdout). An empty string writes '
        "nothing per hop, so the SD card does not wear. The service may only write under "
        '/var/lib/moodstream, e.g. "/var/lib/moodstream/events.jsonl".',
    )
    dashboard: bool = setting(
        False,
        "show the live dashboard in the terminal",
        flag="--dashboard",
        doc="Show the terminal dashboard (for an interactive `moodstream run`; useless under systemd).",
    )
    log_level: str = setting(
        "info",
        "log level",
        flag="--log-level",
        choices=LOG_LEVELS,
        doc='Log level for the journal: "debug", "info", "warning" or "error". Repeated messages are '
        "rate-limited whatever the level.",
    )


@dataclass(frozen=True)
class ServerSettings:
    """The WebSocket broadcast and its web page; loopback only unless a host is given."""

    enabled: bool = setting(
        True,
        "start the WebSocket server",
        flag="--no-server",
        doc="Serve the events over WebSocket (and the web page) at ws://host:port/.",
    )
    host: str = setting(
        "127.0.0.1",
        "address to listen on (0.0.0.0 or :: = all)",
        flag="--host",
        doc='"127.0.0.1" = this machine only. "0.0.0.0" (or one of the Pi\'s addresses) lets the network '
        "in: then set a token too.",
    )
    port: int = setting(
        8765,
        "port of the WebSocket and the web page",
        flag="--port",
        bounds=(0, 65535),
        doc="The port of the WebSocket and the web page; 0 = any free port.",
    )
    token: str = setting(
        "",
        "clients must send this token (?token= or Bearer); or $MOODSTREAM_TOKEN; a flag shows in ps",
        flag="--token",
        doc='When set, clients must send it (?token=... in the URL, or an "Authorization: Bearer" header). '
        "moodstream watch and mark read it from here too. $MOODSTREAM_TOKEN sets it without this file.",
    )
    allowed_origins: tuple[str, ...] = setting(
        (),
        "allow browser pages from this Origin (repeatable; none = any on loopback, beyond it the own page only)",
        flag="--origin",
        doc="Browser pages from these origins may connect besides the server's own page, "
        'e.g. ["http://lights.local:8080"]. An empty list lets any page connect while the server listens '
        "on loopback; beyond loopback, only the daemon's own page (see public_names).",
    )
    max_clients: int = setting(
        64,
        "refuse clients beyond this many",
        flag="--max-clients",
        bounds=(1, 10000),
        doc="At most this many clients at once; more are refused.",
    )
    max_message_bytes: int = setting(
        4096,
        "a larger client frame closes its connection (1009)",
        bounds=(64, 1024 * 1024),
        doc="A client message larger than this many bytes closes its connection.",
    )
    client_queue: int = setting(
        64,
        "messages a client may lag behind before it is dropped (4000)",
        bounds=(1, 100_000),
        doc="Messages a client may lag behind before it is dropped (a slow client never slows the daemon).",
    )
    ping_interval: float = setting(
        20.0,
        "seconds between keepalive pings; a peer silent for as long again is closed",
        bounds=(0.1, 3600),
    )
    public_names: tuple[str, ...] = setting(
        (),
        "a host name the page is opened by, e.g. moodstream.local (repeatable; for the Origin check)",
        flag="--public-name",
        doc='Host names the web page is opened by (e.g. ["moodstream.local"]): a browser page from one of '
        "them counts as the server's own page. This machine's name and NAME.local always do.",
    )
    requests_per_second: float = setting(
        10.0,
        'frames per second per client, bursts of 2 s worth; beyond: error "rate_limited", then 4000',
        bounds=(0.1, 10_000),
        doc="Frames (requests, pings) one client may send per second, in bursts of twice as many; beyond "
        'that it gets an error "rate_limited" and is closed (4000). No client can delay a hop.',
    )
    max_clients_per_address: int = setting(
        8,
        "connections one address may hold, open or handshaking; more are cut",
        flag="--max-clients-per-address",
        bounds=(1, 10_000),
        doc="Connections one address may hold at once, open or still handshaking; more are cut at once.",
    )
    handshake_timeout: float = setting(
        5.0,
        "seconds a new connection has to send its whole HTTP request",
        bounds=(0.1, 600),
        doc="Seconds a new connection has to send its whole HTTP request; a slower one is cut.",
    )
    mdns: bool = setting(
        True,
        "advertise the server over mDNS (_moodstream._tcp) when it listens beyond loopback",
        flag="--no-mdns",
        doc="When listening beyond this machine (host is not 127.0.0.1), advertise the server over mDNS as "
        "_moodstream._tcp, so that apps on the network find it; false keeps it quiet.",
    )

    def check(self) -> None:
        if not self.host:
            raise ConfigError("server.host: must not be empty (127.0.0.1 = this machine only)")
        for origin in self.allowed_origins:
            if not _is_origin(origin):
                raise ConfigError(
                    f"server.allowed_origins: {origin!r} is not an origin: give scheme://host[:port] of a page, "
                    'e.g. "https://lights.example:8080" (no path; "*" and "null" are not accepted)'
                )


def _is_origin(text: str) -> bool:
    """An http(s) Origin as a browser sends it: scheme, host and perhaps a port, nothing else."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        return False
    plain = not (parts.path or parts.query or parts.fragment or parts.username or parts.password)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and plain and text == text.strip()


@dataclass(frozen=True)
class LivenessSettings:
    """When a live input counts as lost, and how patiently it is reopened."""

    stall_seconds: float = setting(
        5.0,
        "a live input silent this long is reopened",
        flag="--stall-seconds",
        bounds=(0.1, 3600),
        doc="A live input that delivers no audio for this many seconds counts as lost: it is closed and "
        "reopened (found again by name), and a status event tells the clients. The service never exits "
        "for a lost device.",
    )
    digital_silence_is_loss: bool = setting(
        False,
        "only exact zeros for stall_seconds also counts as lost",
        doc="Also count exact digital silence (all-zero samples) for stall_seconds as lost; some USB "
        "devices deliver zeros when they fail instead of stopping.",
    )
    backoff_initial_s: float = backoff_initial(0.5, "reopening", "to reopen a lost input")
    backoff_max_s: float = backoff_max(30.0)

    def check(self) -> None:
        check_backoff("liveness", self.backoff_initial_s, self.backoff_max_s)


MQTT_PASSWORD_ENV = "MOODSTREAM_MQTT_PASSWORD"  # the broker password without a file (never a flag)
MQTT_PUBLISH = ("change", "hop")
MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}


@dataclass(frozen=True)
class MqttSettings:
    """The MQTT sink (Home Assistant discovery); off unless ``url`` is set (``--mqtt URL``)."""

    url: str = setting(
        "",
        'mqtt://HOST[:PORT] or mqtts://HOST[:PORT] to publish to; "" = no MQTT',
        flag="--mqtt",
        doc="Publish to an MQTT broker (Home Assistant discovery, docs/home-assistant.md): "
        '"mqtt://HOST[:PORT]" or "mqtts://HOST[:PORT]" for TLS. An empty string means no MQTT.',
    )
    username: str = setting(
        "",
        f"broker user; the password: mqtt.password or ${MQTT_PASSWORD_ENV}",
        flag="--mqtt-username",
        doc="The broker's user name, if it requires one.",
    )
    password: str = setting(
        "",
        f"or ${MQTT_PASSWORD_ENV}; never a flag (ps shows flags)",
        doc="Its password. This file is installed with mode 640 (root and the moodstream group); the daemon "
        "refuses a file that every user can read while it holds a password. The password may instead come "
        f"from the environment variable {MQTT_PASSWORD_ENV} (never from a flag: ps shows flags).",
    )
    ca_file: str = setting(
        "",
        'CA certificate for mqtts://; "" = the system CAs',
        flag="--mqtt-ca-file",
        doc="CA certificate (PEM) that signed the broker's certificate, for mqtts://; an empty string means "
        "the system's CAs.",
    )
    client_id: str = setting(
        "",
        'client id, also the device id; "" = the host name',
        flag="--mqtt-client-id",
        doc="Client id at the broker, and this device's id in topics and Home Assistant; an empty string "
        "means the host name. Give every room its own.",
    )
    base_topic: str = setting(
        "",
        'topic prefix; "" = moodstream/<device id>',
        flag="--mqtt-base-topic",
        doc='Topic prefix; an empty string means "moodstream/<device id>" (which `moodstream watch '
        "mqtt://BROKER` lists).",
    )
    discovery_prefix: str = setting(
        "homeassistant",
        'Home Assistant discovery prefix; "" = no discovery',
        doc="Home Assistant's discovery prefix; an empty string means no discovery messages.",
    )
    publish: str = setting(
        "change",
        "change (when the shown mood or state changes, and every interval_s) | hop",
        flag="--mqtt-publish",
        choices=MQTT_PUBLISH,
        doc='"change" = the state and attributes when the shown mood or state changes, and as a heartbeat at '
        'least every interval_s (Home Assistant records a row per update: see docs/home-assistant.md); "hop" = '
        "at every hop (for a light that follows every hop's colour)...",
    )
    interval_s: float = setting(
        30.0,
        'with publish = "change": republish at least this often (the heartbeat)',
        bounds=(0.1, 86400),
        doc='...and, with "change", at least every this many seconds.',
    )
    qos: int = setting(
        0,
        "MQTT quality of service of every message",
        flag="--mqtt-qos",
        bounds=(0, 2),
        doc="MQTT quality of service of every message (0 = at most once, 1 = at least once, 2 = exactly once).",
    )
    queue: int = setting(
        1000,
        "outgoing messages held; the oldest are dropped beyond",
        bounds=(1, 1_000_000),
        doc="Messages held while the broker is slow or away; beyond this the oldest are dropped (and counted).",
    )
    keepalive_s: int = setting(
        30,
        "the broker says offline (last will) about 1.5x this after silence",
        bounds=(5, 65535),
        doc='Keepalive in seconds: the broker publishes the last will ("offline") about 1.5x this after the '
        "daemon goes silent without saying goodbye.",
    )
    backoff_initial_s: float = backoff_initial(1.0, "reconnecting", "to reconnect to the broker")
    backoff_max_s: float = backoff_max(10.0, ": a returning broker is found within 10 s")

    def check(self) -> None:
        check_backoff("mqtt", self.backoff_initial_s, self.backoff_max_s)
        if not self.url:
            return
        mqtt_endpoint(self.url)
        if self.password and not self.username:
            raise ConfigError("mqtt.password: set mqtt.username too")
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ConfigError(f"mqtt.ca_file: {self.ca_file} is not a readable file")
        for key in ("base_topic", "discovery_prefix"):
            topic = getattr(self, key)
            if any(c in topic for c in "+#\0") or topic.startswith("/") or topic.endswith("/"):
                raise ConfigError(f"mqtt.{key}: not a topic prefix (no + # or leading/trailing /): {topic!r}")

    @property
    def device_id(self) -> str:
        """The device's name in topics and unique ids: the client id, made topic-safe."""
        return re.sub(r"[^a-z0-9_-]+", "_", (self.client_id or socket.gethostname()).lower()).strip("_") or "moodstream"

    @property
    def topic(self) -> str:
        return self.base_topic or f"moodstream/{self.device_id}"


def mqtt_endpoint(url: str) -> tuple[str, str, int]:
    """``mqtt(s)://HOST[:PORT]`` -> (scheme, host, port); credentials in the URL are refused (they would
    show in ps and in the daemon's snapshot)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"mqtt.url: not an MQTT URL: {url!r}: {exc}") from None
    if parts.scheme not in MQTT_SCHEMES or not parts.hostname:
        raise ConfigError(f"mqtt.url: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"mqtt.url: no credentials in the URL; use mqtt.username and mqtt.password (or ${MQTT_PASSWORD_ENV})"
        )
    if parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"mqtt.url: expected only a host and a port, got {url!r}")
    return parts.scheme, parts.hostname, port or MQTT_SCHEMES[parts.scheme]


@dataclass(frozen=True)
class HistorySettings:
    """The mood history in SQLite (opt-in); see streamer/sinks/history.py."""

    path: str = setting(
        "",
        'keep the mood history in this SQLite file; "" = none',
        flag="--history",
        doc="Keep the mood history (every hop, status events and session marks) in this SQLite file, for "
        "`moodstream history` and the web page's history view. An empty string means no history (the page's "
        "last-hour strip then comes from memory). The service may write under /var/lib/moodstream, e.g. "
        '"/var/lib/moodstream/history.sqlite".',
    )
    flush_seconds: float = setting(
        60.0,
        "write the hops in one transaction this often (and at shutdown)",
        bounds=(0.1, 86400),
        doc="Hops are written in one transaction this often, in seconds, and at shutdown (sparing the SD "
        "card; a crash loses at most this much).",
    )
    retention_days: float = setting(
        30.0,
        "delete rows older than this many days; 0 = keep everything",
        bounds=(0, 36500),
        doc="Rows older than this many days are deleted; 0 keeps everything.",
    )

    def check(self) -> None:
        if self.path and Path(self.path).is_dir():
            raise ConfigError(
                f"history.path: {self.path} is a folder; name the database file in it, "
                f"e.g. {Path(self.path) / 'history.sqlite'}"
            )


@dataclass(frozen=True)
class Settings:
    source: SourceSettings = field(default_factory=SourceSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    smoothing: SmoothingSettings = field(default_factory=SmoothingSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    liveness: LivenessSettings = field(default_factory=LivenessSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    history: HistorySettings = field(default_factory=HistorySettings)

    def validate(self) -> Settings:
        """Every value within its declaration's bounds and choices, then each section's own checks."""
        for section_field in dataclasses.fields(self):
            section = getattr(self, section_field.name)
            for f in dataclasses.fields(section):
                _check_declared(f"{section_field.name}.{f.name}", f, getattr(section, f.name))
            if hasattr(section, "check"):
                section.check()
        block = block_seconds_for(self)
        if self.liveness.stall_seconds <= block:  # a healthy input delivers a block that often
            raise ConfigError(
                f"liveness.stall_seconds: must be longer than a capture block ({block:g} s; "
                "see source.block_seconds and model.hop_seconds)"
            )
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


def declared() -> list[tuple[str, Any, dataclasses.Field[Any]]]:
    """Every setting as (section, its type, field), in the order of the sections and their fields."""
    out = []
    for section in dataclasses.fields(Settings):
        cls = _type_of(Settings, section.name)
        out += [(section.name, _type_of(cls, f.name), f) for f in dataclasses.fields(cls)]
    return out


def block_seconds_for(settings: Settings) -> float:
    """The capture block: each hop split into equal blocks no longer than source.block_seconds.

    Every hop then ends where a block ends, so no hop waits for the rest of a block to arrive; and
    the fewer blocks per second, the less the daemon wakes. The whole daemon on a paced file (hop
    1 s, medians of 3 interleaved runs on a loaded 2-core x86_64, 2026-11-30): 0.54% of a core in
    0.25 s blocks, 0.35% in 0.5 s blocks, 0.31% in 1 s blocks (one per hop, the default)."""
    hop = settings.model.hop_seconds
    return hop / max(1, math.ceil(hop / settings.source.block_seconds - 1e-9))


def add_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] = ()) -> None:
    """The flags of the declared settings (all, or the ``section.key`` names in ``only``), grouped by
    section. Their defaults are None, meaning 'not given' (see :func:`overrides_from_args`)."""
    groups: dict[str, Any] = {}
    for section, kind, f in declared():
        key = f"{section}.{f.name}"
        flag = f.metadata.get("flag")
        if not flag or (only and key not in only):
            continue
        if section not in groups:
            groups[section] = parser.add_argument_group(f"[{section}] settings (the flags override the config file)")
        kwargs: dict[str, Any] = {"dest": _dest(key), "default": None}
        if kind is bool:  # the flag sets the other value: --realtime, --no-server
            kwargs["action"] = "store_false" if f.default else "store_true"
            help_text = ("do not " if f.default else "") + f.metadata["help"]
        else:
            kwargs.update(_flag_kind(kind, f))
            help_text = f"{f.metadata['help']} ({_help_default(f)})"
        groups[section].add_argument(flag, help=help_text.replace("%", "%%") + f" [{key}]", **kwargs)


def _dest(key: str) -> str:
    return key.replace(".", "__")


def _flag_kind(kind: Any, f: dataclasses.Field[Any]) -> dict[str, Any]:
    if kind is tuple or typing.get_origin(kind) is tuple:
        return {"action": "append", "metavar": f.name.upper().removeprefix("ALLOWED_").rstrip("S")}
    if f.metadata["choices"]:
        return {"choices": f.metadata["choices"]}
    return {"type": kind, "metavar": f.name.upper()} if kind in (int, float) else {"metavar": f.name.upper()}


def _help_default(f: dataclasses.Field[Any]) -> str:
    default = f.default
    text = f"default: {default!r}" if isinstance(default, str) else f"default: {default}"
    if default in ("", ()):
        text = "default: none"
    if f.metadata["bounds"] is not None:
        text += f"; {f.metadata['bounds']}"
    return text


TOKEN_ENV = "MOODSTREAM_TOKEN"  # the WebSocket token without a flag, for the daemon and its clients alike
# environment variable -> (section, key): secrets that must not be flags (ps shows those)
ENVIRONMENT: dict[str, tuple[str, str]] = {MQTT_PASSWORD_ENV: ("mqtt", "password"), TOKEN_ENV: ("server", "token")}


def add_config_flag(parser: argparse.ArgumentParser) -> None:
    """``--config``, the same for every command."""
    parser.add_argument("--config", type=Path, help=f"TOML settings (default: {SYSTEM_CONFIG} if it exists)")


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None, client: bool = False) -> Settings:
    """Every command's settings, one way: its ``--config`` file (else SYSTEM_CONFIG when it exists),
    then the environment (ENVIRONMENT; ``os.environ`` by default), then the flags it has. A client of
    the daemon (``client``: watch, mark) may run as a user who cannot read the service's config:
    then it goes on without it, saying so, since the daemon's port and token are in it."""
    path = getattr(args, "config", None)
    system = True
    if client and path is None and SYSTEM_CONFIG.exists() and not os.access(SYSTEM_CONFIG, os.R_OK):
        log.warning(
            "moodstream: %s is not readable by this user, so the daemon's port and token in it are not used: "
            "run with sudo, join its group (sudo adduser $USER moodstream, then log in again), or set $%s",
            SYSTEM_CONFIG,
            TOKEN_ENV,
        )
        system = False
    return load(path, overrides_from_args(args), os.environ if environ is None else environ, system=system)


def load(
    path: Path | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
    system: bool = True,
) -> Settings:
    """Settings from a TOML file (or, with ``system``, /etc/moodstream/config.toml when it exists),
    then the secrets in ``environ`` (see ENVIRONMENT), then overrides."""
    data: dict[str, Any] = {}
    if path is None and system and SYSTEM_CONFIG.exists():
        path = SYSTEM_CONFIG
    if path is not None:
        try:
            data = _parse(Path(path))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
        _check_secret_file(Path(path), data)
    for name, (section, key) in ENVIRONMENT.items():
        if value := (environ or {}).get(name):
            table = data.setdefault(section, {})
            if isinstance(table, dict):  # else from_dict names the section
                table[key] = value
    for section, values in (overrides or {}).items():
        if not isinstance(data.setdefault(section, {}), dict):
            raise ConfigError(f"[{section}] must be a table")
        data[section].update(values)
    return from_dict(data).validate()


def _check_secret_file(path: Path, data: dict[str, Any]) -> None:
    """A config file that holds the broker password must not be readable by every user (640, not 644)."""
    mqtt = data.get("mqtt")
    if isinstance(mqtt, dict) and mqtt.get("password") and os.stat(path).st_mode & 0o004:
        raise ConfigError(
            f"config file {path} holds mqtt.password but every user can read it: chmod 640 {path} "
            f"(or pass the password in ${MQTT_PASSWORD_ENV})"
        )


def _parse(path: Path) -> dict[str, Any]:
    """The TOML of ``path``, refusing what no settings file needs: more than MAX_CONFIG_BYTES, or
    nesting deep enough to exhaust the parser's recursion."""
    with path.open("rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a settings file")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None


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
    """The settings that flags set explicitly (their argparse defaults are None: 'not given')."""
    out: dict[str, dict[str, Any]] = {}
    for section, _, f in declared():
        value = getattr(args, _dest(f"{section}.{f.name}"), None)
        if value is not None:
            out.setdefault(section, {})[f.name] = value
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
    return _type_hints(cls)[name]


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a settings class (slow to compute: about 1 ms each)."""
    return typing.get_type_hints(cls)


def _check_declared(key: str, f: dataclasses.Field[Any], value: Any) -> None:
    bounds, choices = f.metadata.get("bounds"), f.metadata.get("choices")
    if bounds is not None and not (isinstance(value, (int, float)) and bounds.contains(value)):
        raise ConfigError(f"{key}: must be {bounds}, got {value!r}")
    if choices and value not in choices:
        raise ConfigError(f"{key}: must be one of {', '.join(choices)}, got {value!r}")


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
