"""Hypothesis fuzz of what clients send the WebSocket server: thousands of frames, from well-formed
messages with odd content down to hand-made frames that break the protocol. The server must answer
every text message per the schema, close bad connections with a code, never crash, and forget every
client: its client count and its tasks return to where they were."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import example as known
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from streamer.core.events import EventBus
from streamer.sinks import protocol
from tests.wire import emotion, serving, status, url, valid

pytestmark = pytest.mark.slow

MAX_BYTES = 1024  # server.max_message_bytes for the fuzz: small, so oversized frames are cheap
REPLIES = {"pong", "state", "error", "marked"}
# No shrinking: a failure prints its example at once instead of minutes later.
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)

# message-level: frames a real client library can send

# Found by this test: an id beside a non-JSON constant; the reply is an error without the id
INFINITY = [("text", '{"type": "get_state", "id": "x", "extra": [1.25, Infinity]}')]
# Found by CI: a drawn request whose JSON escapes push it over the size limit, with frames after it
ESCAPED = [("text", json.dumps({"type": "ping", "id": ["\U0001f600" * 20] * 5})), ("text", '{"type": "ping"}')]

json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
request = st.fixed_dictionaries(
    {"type": st.sampled_from(["ping", "get_state"]) | st.text(max_size=12) | json_value},
    optional={"id": json_value, "extra": json_value},
)
printable = st.characters(blacklist_categories=("Cs",))  # lone surrogates cannot be UTF-8
text_frame = (
    request.map(json.dumps)
    | json_value.map(json.dumps)
    | st.text(printable, max_size=200)
    | st.sampled_from(['{"type": "ping"', "null", "{}", '{"type": 1e999}', "\x00", "[" * 500])
)
closing_frame = st.binary(max_size=64).map(lambda b: ("binary", b)) | st.integers(MAX_BYTES + 1, 4 * MAX_BYTES).map(
    lambda n: ("text", "x" * n)
)
# a session: text frames, sometimes ended by one that closes the connection
session = st.tuples(
    st.lists(text_frame.map(lambda t: ("text", t)), min_size=1, max_size=20),
    st.none() | closing_frame,
).map(lambda s: s[0] + ([s[1]] if s[1] else []))

# frame-level: raw bytes on the socket after a real handshake


def raw_frame(opcode: int, payload: bytes, fin: bool, rsv: int, masked: bool) -> bytes:
    """One WebSocket frame as RFC 6455 lays it out (clients must mask; we sometimes do not)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


raw = st.builds(
    raw_frame,
    opcode=st.sampled_from([0, 1, 2, 8, 9, 10]) | st.integers(0, 15),
    payload=st.binary(max_size=200)
    | st.just(b'{"type": "ping"}')
    | st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", b"\x03\xe8bye", b"\x00"]),
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0, 0, 1, 4, 7]),
    masked=st.booleans() | st.just(True),
)
raw_session = st.tuples(st.lists(raw, min_size=1, max_size=8), st.integers(0, 12))  # + cut bytes


class Harness:
    """A real server on a loopback port, events flowing, and the leak checks."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.examples = 0  # sessions run
        self.drawn = 0  # frames the sessions asked for
        self.frames = 0  # frames sent before the connection ended

    def run(self, coro: Awaitable[Any]) -> Any:
        return self.loop.run_until_complete(coro)

    async def settle(self, server: Any, baseline: int) -> None:
        """The server forgets the client: no entry, no task left behind."""
        async with asyncio.timeout(5):
            while server.client_count or len(asyncio.all_tasks() - {asyncio.current_task()}) > baseline:
                await asyncio.sleep(0.005)


async def talk(server: Any, frames: list[tuple[str, Any]]) -> int:
    """Send frames one by one with a real client; check each reply. Returns frames sent."""
    sent = 0
    async with connect(url(server), max_size=None) as ws:
        hello = valid(json.loads(await asyncio.wait_for(ws.recv(), 5)))
        assert hello["type"] == "hello"
        for kind, data in frames:
            try:
                await ws.send(data)
            except ConnectionClosed:
                break
            sent += 1
            if closes(kind, data):
                with pytest.raises(ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
                expected = protocol.CLOSE_UNSUPPORTED_DATA if kind == "binary" else 1009
                assert ws.close_code == expected, (kind, ws.close_code)
                break
            while True:  # events may come first; the reply to this frame follows
                message = valid(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                if message["type"] in REPLIES:
                    break
            request_obj = _as_object(data)
            if message["type"] == "error":
                assert message["code"] and message["message"]
            else:
                assert request_obj is not None and request_obj.get("type") in ("ping", "get_state", "mark")
            # a valid id (a string or a number) of a request with a string type comes back; no other
            rid = request_obj.get("id") if request_obj is not None else None
            if (
                request_obj is not None
                and isinstance(request_obj.get("type"), str)
                and isinstance(rid, (str, int, float))
                and not isinstance(rid, bool)
            ):
                assert message.get("id") == rid
            else:
                assert "id" not in message
    return sent


def closes(kind: str, data: Any) -> bool:
    """A frame the server must answer by closing: binary, or text over the size limit (a JSON dump
    of non-ASCII text escapes each character to 6 or 12 bytes, so a drawn request can be one too)."""
    return kind == "binary" or len(data.encode()) > MAX_BYTES


def to_send(frames: list[tuple[str, Any]]) -> int:
    """How many frames a session sends: all of them, or up to the first that closes the connection."""
    return next((i + 1 for i, (kind, data) in enumerate(frames) if closes(kind, data)), len(frames))


def _as_object(text: str) -> dict[str, Any] | None:
    """The request as a strict JSON parser reads it: NaN and Infinity are Python's, not JSON's."""
    try:
        value = json.loads(text, parse_constant=_reject)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _reject(name: str) -> None:
    raise ValueError(name)


async def bang(server: Any, frames: list[bytes], cut: int) -> int:
    """A handshake by hand, then raw frames (the last one cut short), then an abrupt close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    data = b"".join(frames)
    writer.write(data[: len(data) - cut] if cut < len(data) else data)
    try:
        await writer.drain()
        async with asyncio.timeout(0.2):  # read what it says (a close frame, events) for a moment
            while await reader.read(65536):
                pass
    except (TimeoutError, ConnectionError):
        pass
    writer.transport.abort()
    return len(frames)


def run_fuzz(body: Callable[[Harness, Any, int], None]) -> Harness:
    loop = asyncio.new_event_loop()
    harness = Harness(loop)
    try:

        async def start() -> tuple[Any, Any, asyncio.Event]:
            bus = EventBus()
            # one fuzzer makes thousands of connections and frames from 127.0.0.1: the per-address
            # and per-client rate limits (tests/test_adversarial.py) would refuse most of them
            context = serving(
                bus,
                max_message_bytes=MAX_BYTES,
                ping_interval=60.0,
                max_clients_per_address=100_000,
                requests_per_second=1e6,
            )
            server = await context.__aenter__()
            stop = asyncio.Event()

            async def publish() -> None:  # events keep flowing while clients misbehave
                seq = 0
                while not stop.is_set():
                    bus.publish(emotion(seq) if seq % 7 else status("source_lost"))
                    seq += 1
                    await asyncio.sleep(0.01)

            publisher = asyncio.create_task(publish())
            return context, server, stop, publisher

        context, server, stop, publisher = harness.run(start())
        baseline = len(asyncio.all_tasks(loop))
        body(harness, server, baseline)

        async def finish() -> None:
            # still alive and serving after all of it
            async with connect(url(server)) as ws:
                assert valid(json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] == "hello"
                await ws.send('{"type": "ping", "id": "last"}')
                while (reply := json.loads(await asyncio.wait_for(ws.recv(), 5)))["type"] != "pong":
                    pass
                assert reply["id"] == "last"
            await harness.settle(server, baseline)
            stop.set()
            await publisher
            await context.__aexit__(None, None, None)

        harness.run(finish())
    finally:
        loop.close()
    return harness


def test_fuzz_client_messages() -> None:
    def body(h: Harness, server: Any, baseline: int) -> None:
        @FUZZ
        @given(session)
        @known(INFINITY)
        @known(ESCAPED)
        def example(frames: list[tuple[str, Any]]) -> None:
            h.examples += 1
            h.drawn += to_send(frames)
            h.frames += h.run(talk(server, frames))
            h.run(h.settle(server, baseline))

        example()

    harness = run_fuzz(body)
    print(f"{harness.examples} sessions, {harness.frames} frames")
    # what the test controls, whatever hypothesis draws: every session ran, and each sent every frame
    # up to the first that closes the connection, none lost to an early close
    assert harness.examples == FUZZ.max_examples + 2  # and the two known cases
    assert harness.frames == harness.drawn


def test_fuzz_raw_frames() -> None:
    def body(h: Harness, server: Any, baseline: int) -> None:
        @FUZZ
        @given(raw_session)
        def example(session: tuple[list[bytes], int]) -> None:
            frames, cut = session
            h.examples += 1
            h.frames += h.run(bang(server, frames, cut))
            h.run(h.settle(server, baseline))

        example()

    harness = run_fuzz(body)
    print(f"{harness.examples} sessions, {harness.frames} frames")
    assert harness.examples == FUZZ.max_examples


@FUZZ
@given(st.binary(min_size=1, max_size=600))
def test_fuzz_handshake_junk(junk: bytes) -> None:
    """Garbage instead of an HTTP request: refused or dropped, and nobody is left connected."""

    async def main() -> None:
        bus = EventBus()
        async with serving(bus) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(junk + b"\r\n\r\n")
            reply = b""
            try:
                await writer.drain()
                async with asyncio.timeout(10):  # the server must close the connection by itself
                    while chunk := await reader.read(65536):
                        reply += chunk
            except ConnectionError:  # dropped: as good as closed
                pass
            writer.transport.abort()
            assert reply == b"" or reply.startswith(b"HTTP/1.1 "), reply[:80]
            assert server.client_count == 0
            async with connect(url(server)) as ws:  # and it still serves real clients
                assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "hello"

    asyncio.run(main())
