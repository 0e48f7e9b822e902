"""The WebSocket protocol: building, encoding and parsing every message (docs/protocol.md).

Server -> client messages are JSON objects with a ``type``: ``hello`` (first, once), ``emotion`` and
``status`` (the events themselves, ``streamer.core.events.to_dict``), ``state`` (reply to get_state),
``pong`` and ``error``, ``marked`` and ``history``. Client -> server: ``{"type": "ping"}``,
``{"type": "get_state"}``, ``{"type": "mark", "text": ...}`` (a session mark) and
``{"type": "get_history", "from": ..., "to": ..., "bins": ...}``, each optionally with an ``id``
that the reply echoes. The server, ``watch`` and the tests all go through
this module so that there is one definition of the wire format.
"""

from __future__ import annotations

import colorsys
import json
import math
import time
import zlib
from collections.abc import Callable
from typing import Any

from streamer.core.events import Event, to_dict

PROTOCOL_VERSION = 1

# Close codes the server uses (besides websockets' own 1009 for oversized frames and 1011 for a
# keepalive timeout).
CLOSE_GOING_AWAY = 1001  # the daemon is stopping
CLOSE_UNSUPPORTED_DATA = 1003  # a binary frame
CLOSE_TRY_AGAIN_LATER = 1013  # too many clients (when the HTTP 503 check was raced)
CLOSE_TOO_SLOW = 4000  # the client fell behind by more than server.client_queue messages, or sent
# requests faster than server.requests_per_second (after an error message "rate_limited")

# Colours of the labels the shipped models use; other labels get a stable hue of their own.
# One palette for the dashboard, the web page and the lighting example (sent in hello).
PALETTE = {
    "angry": "#e53935",
    "happy": "#fdd835",
    "sad": "#1e88e5",
    "relaxed": "#43a047",
    "calm": "#43a047",
    "tender": "#ec407a",
    "fear": "#8e24aa",
    "neutral": "#9e9e9e",
}

Message = dict[str, Any]
MARK_MAX_CHARS = 200


class ProtocolError(ValueError):
    """A message that does not follow the protocol; ``code`` is what the error message carries."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def label_color(label: str) -> str:
    """``#rrggbb`` for a label: the palette's, else a hue derived from the name (stable)."""
    if label in PALETTE:
        return PALETTE[label]
    hue = (zlib.crc32(label.encode()) % 360) / 360.0
    r, g, b = (round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.65, 0.9))
    return f"#{r:02x}{g:02x}{b:02x}"


def snapshot(kind: str, info: dict[str, Any], server: dict[str, Any]) -> Message:
    """A ``hello`` or ``state`` message: the daemon's describe() plus server counters and colours."""
    model = dict(info.get("model") or {})
    model["colors"] = {label: label_color(label) for label in model.get("labels", ())}
    message: Message = {"type": kind}
    if kind == "hello":
        message["protocol"] = PROTOCOL_VERSION
    message.update(info)
    message["model"] = model
    message["server"] = server
    return message


def event_message(event: Event) -> Message:
    return to_dict(event)


def pong(request_id: Any = None) -> Message:
    return with_id({"type": "pong", "timestamp": time.time()}, request_id)


def error(code: str, message: str, request_id: Any = None) -> Message:
    return with_id({"type": "error", "code": code, "message": message}, request_id)


def with_id(message: Message, request_id: Any) -> Message:
    if request_id is not None:
        message["id"] = request_id
    return message


def reply(text: str, state: Callable[[], Message]) -> Message:
    """The answer to one client text frame: pong, state, or an error (never an exception)."""
    request = _request(text)
    if request["type"] == "error":
        return request
    if request["type"] == "get_state":
        return with_id(state(), request.get("id"))
    return _answer(request)


def reply_text(text: str, state: Callable[[], str]) -> str:
    """``reply`` encoded, with the state given already encoded: the server encodes its state once
    and reuses it, so that a get_state costs the same small amount however large the state is."""
    request = _request(text)
    if request["type"] == "get_state":
        request_id = request.get("id")
        encoded = state()
        if request_id is None:
            return encoded
        return f"{encoded[:-1]},{json.dumps('id')}:{encode(request_id)}}}"
    return encode(request if request["type"] == "error" else _answer(request))


def _request(text: str) -> Message:
    """The decoded request, or the error message that answers it."""
    try:
        request = decode(text)
    except ProtocolError as exc:
        return error(exc.code, str(exc))
    request_id = request.get("id")
    if not isinstance(request_id, (str, int, float, type(None))) or isinstance(request_id, bool):
        return error("bad_id", "id must be a string or a number")
    if request["type"] == "error":  # not a request a client may send
        return error(
            "unknown_type", "unknown message type 'error' (expected ping, get_state, mark or get_history)", request_id
        )
    return request


def _answer(request: Message) -> Message:
    request_id = request.get("id")
    kind = request["type"]
    if kind == "ping":
        return pong(request_id)
    return error(
        "unknown_type", f"unknown message type {kind!r} (expected ping, get_state, mark or get_history)", request_id
    )


def request_of(text: str | bytes) -> Message | None:
    """A well-formed request (JSON object, string type, valid id), or None (``reply`` says why)."""
    try:
        request = decode(text)
    except ProtocolError:
        return None
    request_id = request.get("id")
    if not isinstance(request_id, (str, int, float, type(None))) or isinstance(request_id, bool):
        return None
    return request


def mark_text(request: Message) -> str:
    """The text of a ``mark`` request: one line of 1 to 200 characters."""
    text = request.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("bad_request", 'a mark needs a non-empty string "text"')
    text = " ".join(text.split())
    if len(text) > MARK_MAX_CHARS:
        raise ProtocolError("bad_request", f"a mark's text is at most {MARK_MAX_CHARS} characters")
    return text


def decode(text: str | bytes) -> Message:
    """Parse one message (either direction): a JSON object with a string ``type``."""
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("invalid_json", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("invalid_json", "not valid JSON: nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError("not_an_object", "a message must be a JSON object")
    if not isinstance(message.get("type"), str):
        raise ProtocolError("missing_type", 'a message needs a string "type"')
    return message


def encode(message: Message) -> str:
    """Compact JSON. A non-finite number, which no message should carry (levels stop at a floor),
    becomes null rather than JSON that clients cannot parse."""
    return json.dumps(_finite(message), separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
