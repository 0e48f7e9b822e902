"""Every request is checked against its schema before a handler sees it (issue 27, defect 2): a real
Server with the daemon's handlers gets each request type with every field of every wrong JSON
type, a missing required field and a field of its own; each gets an ``error`` reply with the
right code, and the connection stays open. The daemon's own check (streamer/sinks/validate.py)
agrees with jsonschema on every one of those requests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import pytest
from websockets.asyncio.client import connect

from streamer.config import HistorySettings
from streamer.core.events import EventBus
from streamer.sinks import protocol, validate
from streamer.sinks.history import HistorySink
from tests.wire import VALIDATOR, serving, url, valid

# one value of every JSON type, with edge cases of the numeric ones
SAMPLES: list[Any] = [None, True, False, 0, -1, 7, 2.5, 1e300, "", "x", "2026-11-30", [], [1], {}, {"a": 1}]
MINIMAL = {"ping": {}, "get_state": {}, "mark": {"text": "session 1 start"}, "get_history": {}}
DEFS = validate.SCHEMA["$defs"]


def jsonschema_ok(request: dict[str, Any]) -> bool:
    definition = {"$defs": DEFS, **DEFS[f"{request['type']}_request"]}
    return jsonschema.Draft202012Validator(definition).is_valid(request)


def cases() -> list[tuple[dict[str, Any], str]]:
    """(request, expected error code) for every field of every request given every wrong sample."""
    out: list[tuple[dict[str, Any], str]] = []
    for kind, fields in MINIMAL.items():
        base = {"type": kind, **fields}
        for name, schema in validate.REQUESTS[kind]["properties"].items():
            if name == "type":
                continue
            for sample in SAMPLES:
                request = {**base, name: sample}
                if validate.problem(sample, schema) is not None:
                    out.append((request, "bad_id" if name == "id" else "bad_request"))
        out.append(({**base, "extra": 1}, "bad_request"))
        for name in validate.REQUESTS[kind].get("required", ()):
            if name != "type":
                out.append(({k: v for k, v in base.items() if k != name}, "bad_request"))
    return out


def test_the_cases_cover_every_field_of_every_request_with_wrong_types() -> None:
    covered = {(r["type"], name) for r, _ in cases() for name in r}
    for kind in MINIMAL:
        for name in validate.REQUESTS[kind]["properties"]:
            assert (kind, name) in covered
    assert len(cases()) > 70


@pytest.mark.parametrize("request_, code", cases(), ids=lambda v: json.dumps(v) if isinstance(v, dict) else v)
def test_the_daemons_check_agrees_with_jsonschema(request_: dict[str, Any], code: str) -> None:
    assert validate.request_problem(request_) is not None
    assert not jsonschema_ok(request_)


def test_valid_requests_pass_both_checks() -> None:
    for request in (
        {"type": "ping", "id": 7},
        {"type": "get_state", "id": "a"},
        {"type": "mark", "text": "x" * 1000},
        {"type": "get_history", "from": 1.5, "to": 2, "bins": 2000.0, "id": 1},
    ):
        assert validate.request_problem(request) is None and jsonschema_ok(request), request


def test_non_finite_numbers_are_not_json() -> None:
    for text in ('{"type": "get_history", "from": NaN}', '{"type": "get_history", "to": -Infinity}'):
        with pytest.raises(protocol.ProtocolError) as info:
            protocol.parse_request(text)
        assert info.value.code == "invalid_json"


async def _exchange(ws: Any, text: str) -> dict[str, Any]:
    await ws.send(text)
    while True:
        reply = valid(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        if reply["type"] not in ("hello", "emotion", "status"):
            return reply


def test_every_wrong_field_gets_an_error_reply_and_the_connection_stays(tmp_path) -> None:
    issue = [
        ({"type": "get_history", "to": "x"}, "bad_request"),
        ({"type": "get_history", "to": None}, "bad_request"),
        ({"type": "get_history", "to": [1]}, "bad_request"),
        ({"type": "get_history", "from": None, "bins": 5}, "bad_request"),
    ]

    async def main() -> None:
        bus = EventBus()
        history = HistorySink(HistorySettings(), hop_seconds=1.0)
        async with serving(bus, requests_per_second=10_000) as server:
            server.requests["get_history"] = history.answer
            async with connect(url(server)) as ws:
                for request, code in [*issue, *cases()]:
                    request = {**request, "id": request.get("id", 99)} if code != "bad_id" else request
                    reply = await _exchange(ws, json.dumps(request))
                    assert reply["type"] == "error" and reply["code"] == code, (request, reply)
                    if code != "bad_id":
                        assert reply["id"] == request["id"]
                assert (await _exchange(ws, '{"type": "ping", "id": 1}'))["type"] == "pong"
                good = await _exchange(ws, '{"type": "get_history", "bins": 10, "id": 2}')
                assert good["type"] == "history" and good["id"] == 2
                assert ws.close_code is None

    asyncio.run(main())


def test_the_schema_still_describes_only_server_messages_at_its_top() -> None:
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate({"type": "ping"})
