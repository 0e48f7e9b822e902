"""Text from outside cannot drive the terminal that prints it (issue 27, defect 5): an escape sequence
in a mark, a label, a status message, an MQTT payload or a device name comes out escaped from the
dashboard (drawn and plain), the fleet view and `moodstream history`; a mark holding one is refused
at the door."""

from __future__ import annotations

import asyncio
import io
import json

from rich.console import Console
from websockets.asyncio.client import connect

from streamer.commands import fleet
from streamer.commands.history import report
from streamer.core.events import EventBus
from streamer.sinks import protocol
from streamer.sinks.dashboard import Dashboard, Fleet, Screen, plain_line
from streamer.util import terminal
from tests.wire import describe_for, serving, url

EVIL = "zz\x1b[5;31mBLINK\x1b]0;PWNED\x07\x9b2J\u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def clean(text: str) -> bool:
    return not any(c in text for c in RAW)


def test_safe_escapes_controls_and_keeps_text() -> None:
    assert terminal.safe(EVIL) == "zz\\x1b[5;31mBLINK\\x1b]0;PWNED\\x07\\x9b2J\\u202eevil"
    assert terminal.safe("happy · ünïcode 😀") == "happy · ünïcode 😀"
    assert terminal.safe("x" * 500, limit=10) == "x" * 10 + "..."
    assert terminal.safe_tree({"a\x1b": ["\x1b", 1, None]}) == {"a\\x1b": ["\\x1b", 1, None]}


def test_status_messages_and_labels_are_escaped_in_plain_lines_and_on_the_dashboard() -> None:
    mark = {"type": "status", "kind": "mark", "message": EVIL, "timestamp": 1.0, "details": {"text": EVIL}}
    line = plain_line(mark)
    assert line is not None and clean(line) and "PWNED" in line
    hello = protocol.snapshot("hello", describe_for(EventBus())(), {"clients": 0})
    hello["model"]["labels"] = [EVIL, "sad"]
    hello["model"]["name"] = EVIL
    event = {
        "type": "emotion", "seq": 1, "timestamp": 1.0, "stream_time": 1.0, "state": "emotion", "label": EVIL,
        "confidence": 0.9, "probabilities": {EVIL: 0.9, "sad": 0.1}, "raw": {EVIL: 0.9, "sad": 0.1},
        "level": {"rms_dbfs": -20.0, "peak_dbfs": -3.0, "clipped": False}, "processing_ms": 1.0, "model": EVIL,
    }  # fmt: skip
    assert clean(plain_line(event) or "")
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system="truecolor")
    with Screen(Dashboard("ws://x/"), console, print) as screen:
        for message in (hello, event, mark):
            screen.show(message)
        screen.connection(f"closed (1000 {EVIL})", ok=False)
    drawn = out.getvalue()
    assert "PWNED" in drawn and "\x1b]0;" not in drawn and "\x07" not in drawn and "\x1b[5;31m" not in drawn
    assert "90%" in drawn  # the escaped label still finds its probability


def test_the_fleet_view_escapes_retained_payloads_and_ignores_huge_ones() -> None:
    attributes = json.dumps({"state": "emotion", "label": EVIL, "confidence": 0.5, "level_dbfs": -20})
    shown = fleet.device_message(f"moodstream/{EVIL}/attributes", attributes.encode())
    assert shown is not None
    assert clean(plain_line(shown) or "")
    view = Fleet("mqtt://broker")
    view.apply(shown)
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=160).print(view.render())
    assert "PWNED" in out.getvalue() and "\x1b]0;" not in out.getvalue() and "\x07" not in out.getvalue()
    huge = json.dumps({"label": "x" * (fleet.MAX_PAYLOAD_BYTES + 1)}).encode()
    assert fleet.device_message("moodstream/room/attributes", huge) is None


def test_history_report_escapes_labels() -> None:
    summary = {"hops": 1, "from": 0.0, "to": 1.0, "minutes": {EVIL: 1.0}, "other_minutes": {}, "switches": 0,
               "longest": {EVIL: {"seconds": 1.0, "from": 0.0, "to": 1.0}}}  # fmt: skip
    assert clean(report(summary, "today"))


def test_a_mark_with_control_characters_is_refused_at_the_door() -> None:
    async def main() -> None:
        async with serving(EventBus()) as server, connect(url(server)) as ws:
            await ws.recv()  # hello
            await ws.send(json.dumps({"type": "mark", "text": EVIL, "id": 1}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["type"] == "error" and reply["code"] == "bad_request" and "control" in reply["message"]
            await ws.send(json.dumps({"type": "mark", "text": "session\t1  start", "id": 2}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            while reply["type"] == "status":
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply == {**reply, "type": "marked", "text": "session 1 start"}

    asyncio.run(main())
