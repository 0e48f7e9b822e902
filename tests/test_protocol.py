"""Building and parsing protocol messages; every server message obeys the JSON Schema."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soxr

from streamer.core.events import EventBus, StatusKind
from streamer.core.pipeline import FLOOR_DBFS, level_of
from streamer.sinks import protocol
from tests.wire import VALIDATOR, describe_for, emotion, status, valid

ROOT = Path(__file__).resolve().parent.parent
SERVER = {"clients": 0, "dropped_clients": 0, "max_clients": 64, "missed_events": 0}


def _state() -> dict:
    return protocol.snapshot("state", describe_for(EventBus())(), SERVER)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"type": "ping"}', "pong"),
        ('{"type": "ping", "id": "a"}', "pong"),
        ('{"type": "get_state", "id": 3}', "state"),
        ("nonsense", "error"),
        ("", "error"),
        ("null", "error"),
        ('{"type": 5}', "error"),
        ('{"type": "shutdown"}', "error"),
        ('{"type": "ping", "id": true}', "error"),
        ('{"type": "ping", "id": [1]}', "error"),
    ],
)
def test_every_request_gets_a_valid_reply(text: str, expected: str) -> None:
    reply = valid(json.loads(protocol.encode(protocol.reply(text, _state))))
    assert reply["type"] == expected
    request = json.loads(text) if expected != "error" else None
    if request and "id" in request:
        assert reply["id"] == request["id"]


def test_event_messages_are_the_events_wire_form() -> None:
    bus = EventBus()
    bus.publish(emotion(9, "angry"))
    for event in (emotion(1), emotion(2, state="silence"), emotion(3, state="warming_up"), status("overflow")):
        valid(json.loads(protocol.encode(protocol.event_message(event))))
    hello = valid(json.loads(protocol.encode(protocol.snapshot("hello", describe_for(bus)(), SERVER))))
    assert hello["protocol"] == protocol.PROTOCOL_VERSION and hello["state"]["seq"] == 9


def test_non_finite_numbers_become_null_not_invalid_json() -> None:
    message = protocol.event_message(emotion(1))
    message["level"]["rms_dbfs"] = float("-inf")
    message["level"]["peak_dbfs"] = float("nan")
    text = protocol.encode(message)
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text)["level"] == {"rms_dbfs": None, "peak_dbfs": None, "clipped": False}


def test_levels_from_silence_to_resampled_clipping_fit_the_schema() -> None:
    """Digital silence reads the floor; clipped audio that soxr resampled overshoots 0 dBFS."""
    square = 0.999 * np.sign(np.sin(2 * np.pi * 441 * np.arange(48000) / 48000))
    resampled = soxr.resample(square, 48000, 16000)
    for samples in (np.zeros(16000), resampled):
        level = level_of(samples)
        event = dataclasses.replace(emotion(1), level=level)
        valid(json.loads(protocol.encode(protocol.event_message(event))))
    assert level_of(np.zeros(16000)).peak_dbfs == FLOOR_DBFS
    assert level_of(resampled).peak_dbfs > 0 and level_of(resampled).clipped


def test_the_schema_rejects_what_the_protocol_forbids() -> None:
    event = protocol.event_message(emotion(1))
    for broken in (
        {**event, "label": None},
        {**event, "seq": -1},
        {**event, "extra": 1},
        {"type": "emotion"},
        {"type": "hello"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(broken)
    leaky = _state()
    leaky["config"] = {"server": {"token": "secret"}}
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(leaky)


def test_decode_errors_are_protocol_errors() -> None:
    deep = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError, not ValueError
    for text, code in [
        (b"\xff", "invalid_json"),
        ("1", "not_an_object"),
        ("{}", "missing_type"),
        (deep, "invalid_json"),
    ]:
        with pytest.raises(protocol.ProtocolError) as info:
            protocol.decode(text)
        assert info.value.code == code


def test_label_colours_are_stable_hex_for_any_label() -> None:
    assert protocol.label_color("happy") == protocol.PALETTE["happy"]
    # Labels outside the palette get a hue from crc32 of the name: the same in every process and
    # version (Python's hash() would not be), so a client can rely on these exact values.
    expected = {"euphoric": "#e65078", "tense": "#50e6e3", "x": "#5850e6"}
    assert {label: protocol.label_color(label) for label in expected} == expected


def test_status_kinds_are_the_ones_the_schema_and_the_docs_list() -> None:
    """events.StatusKind is the one list; the schema and docs/protocol.md name exactly those kinds."""
    kinds = list(typing.get_args(StatusKind))
    schema = json.loads((ROOT / "streamer/sinks/schema/protocol.schema.json").read_text())
    described = schema["$defs"]["status"]["properties"]["kind"]["description"]
    assert described == " | ".join([*kinds, "..."])
    docs = (ROOT / "docs/protocol.md").read_text()
    paragraph = docs.split("`kind` is one of", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"`([a-z_]+)`", paragraph) == kinds
