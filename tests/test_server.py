"""The WebSocket server with real websockets clients, fed through a real EventBus."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamer.config import ServerSettings
from streamer.core.events import EventBus
from streamer.sinks import protocol
from streamer.sinks.server import Server, ServerError
from tests.wire import describe_for, emotion, serving, status, url, valid


async def _recv(ws) -> dict:
    return valid(json.loads(await asyncio.wait_for(ws.recv(), 5)))


def test_hello_first_then_every_event_in_order() -> None:
    async def main() -> None:
        bus = EventBus()
        bus.publish(emotion(0, "sad"))
        async with serving(bus) as server, connect(url(server)) as ws:
            hello = await _recv(ws)
            assert hello["type"] == "hello" and hello["protocol"] == protocol.PROTOCOL_VERSION
            assert hello["model"]["labels"] == ["angry", "happy", "sad"]
            assert hello["model"]["colors"]["sad"] == protocol.PALETTE["sad"]
            assert hello["state"]["seq"] == 0 and hello["state"]["label"] == "sad"
            assert hello["server"]["clients"] == 1
            for seq in range(1, 101):  # bursts of 10 hops, within the client queue (64)
                bus.publish(emotion(seq, "happy" if seq % 3 else "angry"))
                if seq % 10 == 0:
                    await asyncio.sleep(0)
            bus.publish(status("source_lost"))
            received = [await _recv(ws) for _ in range(101)]
            seqs = [m["seq"] for m in received if m["type"] == "emotion"]
            assert seqs == list(range(1, 101))
            assert received[-1]["type"] == "status" and received[-1]["kind"] == "source_lost"
            assert received[2]["label"] == "angry"  # seq 3

    asyncio.run(main())


def test_a_stalled_client_is_dropped_while_a_fast_one_gets_everything() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, client_queue=8) as server:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.setblocking(False)
            async with connect(url(server), sock=sock, max_queue=1) as stalled, connect(url(server)) as fast:
                got: list[int] = []

                async def read_fast() -> None:
                    async for text in fast:
                        message = valid(json.loads(text))
                        if message["type"] == "emotion":
                            got.append(message["seq"])

                reader = asyncio.create_task(read_fast())
                seq = 0
                while server.dropped_clients == 0 and seq < 5000:
                    bus.publish(emotion(seq))
                    seq += 1
                    await asyncio.sleep(0.0005)
                assert server.dropped_clients == 1, "the stalled client was never dropped"
                for _ in range(20):
                    bus.publish(emotion(seq))
                    seq += 1
                    await asyncio.sleep(0.001)
                async with asyncio.timeout(10):
                    while len(got) < seq:
                        await asyncio.sleep(0.01)
                assert got == list(range(seq))
                assert server.client_count == 1
                with pytest.raises(ConnectionClosed):  # the close frame after what was queued
                    async with asyncio.timeout(10):
                        while True:
                            await stalled.recv()
                assert stalled.close_code == protocol.CLOSE_TOO_SLOW
                reader.cancel()

    asyncio.run(main())


@pytest.mark.parametrize(
    "query, headers, ok",
    [
        ("", {}, False),
        ("?token=wrong", {}, False),
        ("", {"Authorization": "Bearer wrong"}, False),
        ("?token=s3cret", {}, True),
        ("", {"Authorization": "Bearer s3cret"}, True),
    ],
)
def test_token_is_required_when_set(query: str, headers: dict, ok: bool) -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, token="s3cret") as server:
            if ok:
                async with connect(url(server, query), additional_headers=headers) as ws:
                    hello = await _recv(ws)
                    assert hello["type"] == "hello"  # (that no message leaks the token: test_server_daemon)
            else:
                with pytest.raises(InvalidStatus) as info:
                    async with connect(url(server, query), additional_headers=headers):
                        pass
                assert info.value.response.status_code == 401
                assert server.client_count == 0

    asyncio.run(main())


def test_junk_text_gets_an_error_and_the_connection_stays_open() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus) as server, connect(url(server)) as ws:
            await _recv(ws)
            for junk, code in [
                ("{not json", "invalid_json"),
                ("[1, 2]", "not_an_object"),
                ('{"kind": "ping"}', "missing_type"),
                ('{"type": "subscribe"}', "unknown_type"),
                ('{"type": "ping", "id": {"a": 1}}', "bad_id"),
            ]:
                await ws.send(junk)
                reply = await _recv(ws)
                assert reply["type"] == "error" and reply["code"] == code, junk
            await ws.send('{"type": "ping", "id": 7}')
            pong = await _recv(ws)
            assert pong["type"] == "pong" and pong["id"] == 7
            bus.publish(emotion(41, "angry"))
            assert (await _recv(ws))["seq"] == 41
            await ws.send('{"type": "get_state", "id": "s"}')
            state = await _recv(ws)
            assert state["type"] == "state" and state["id"] == "s"
            assert state["state"]["seq"] == 41 and state["counters"]["hops"] == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    "frame, code",
    [
        (b"\x00binary", protocol.CLOSE_UNSUPPORTED_DATA),
        ("x" * 5000, 1009),
    ],
)
def test_binary_and_oversized_frames_close_with_the_proper_code(frame, code: int) -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, max_message_bytes=4096) as server, connect(url(server)) as ws:
            await _recv(ws)
            await ws.send(frame)
            with pytest.raises(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == code
            assert server.client_count == 0

    asyncio.run(main())


def test_client_limit_refuses_with_503() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, max_clients=2) as server:
            async with connect(url(server)) as a, connect(url(server)) as b:
                await _recv(a), await _recv(b)
                with pytest.raises(InvalidStatus) as info:
                    async with connect(url(server)):
                        pass
                assert info.value.response.status_code == 503
            async with asyncio.timeout(5):
                while server.client_count:
                    await asyncio.sleep(0.01)
            async with connect(url(server)) as c:  # room again once they left
                assert (await _recv(c))["type"] == "hello"

    asyncio.run(main())


@pytest.mark.parametrize(
    "origin, ok",
    [
        ("https://lights.example", True),
        ("https://evil.example", False),
        (None, True),
    ],
)
def test_origin_allow_list(origin: str | None, ok: bool) -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, allowed_origins=("https://lights.example",)) as server:
            headers = {"Origin": origin} if origin else {}
            if ok:
                async with connect(url(server), additional_headers=headers) as ws:
                    assert (await _recv(ws))["type"] == "hello"
            else:
                with pytest.raises(InvalidStatus) as info:
                    async with connect(url(server), additional_headers=headers):
                        pass
                assert info.value.response.status_code == 403
            # The daemon's own page is always allowed.
            own = {"Origin": f"http://127.0.0.1:{server.port}"}
            async with connect(url(server), additional_headers=own) as ws:
                assert (await _recv(ws))["type"] == "hello"

    asyncio.run(main())


def _http_get(address: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(address, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_page_is_served_on_the_same_port_and_needs_the_token() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, token="t0k") as server:
            base = f"http://127.0.0.1:{server.port}"
            code, ctype, body = await asyncio.to_thread(_http_get, base + "/?token=t0k")
            assert code == 200 and ctype.startswith("text/html") and "new WebSocket" in body
            assert (await asyncio.to_thread(_http_get, base + "/"))[0] == 401
            assert (await asyncio.to_thread(_http_get, base + "/nope?token=t0k"))[0] == 404

    asyncio.run(main())


def test_stopping_closes_clients_with_going_away() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus) as server:
            ws = await connect(url(server))
            await _recv(ws)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == protocol.CLOSE_GOING_AWAY

    asyncio.run(main())


def test_port_in_use_is_a_clear_error() -> None:
    async def main() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            bus = EventBus()
            server = Server(ServerSettings(port=port), describe_for(bus))
            with pytest.raises(ServerError, match=f"cannot listen on 127.0.0.1:{port}"):
                await server.run(bus, asyncio.Event())
            assert bus.subscriber_count == 0

    asyncio.run(main())


def test_keepalive_closes_a_peer_that_stopped_answering() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, ping_interval=0.2) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            assert (await reader.readline()).startswith(b"HTTP/1.1 101")
            assert server.client_count == 1
            # A dead peer: it never reads, so it never answers the server's pings.
            async with asyncio.timeout(5):
                while server.client_count:
                    await asyncio.sleep(0.05)
            writer.close()

    asyncio.run(main())


def test_run_flags_set_the_server_section(tmp_path) -> None:
    from streamer import cli, config

    args = cli.build_parser().parse_args(
        [
            "run",
            "--host",
            "0.0.0.0",
            "--port",
            "9000",
            "--token",
            "x",
            "--origin",
            "http://a",
            "--origin",
            "http://b",
            "--max-clients",
            "3",
            "--no-server",
        ]
    )
    (tmp_path / "empty.toml").write_text("")
    settings = config.load(tmp_path / "empty.toml", config.overrides_from_args(args))
    assert settings.server == ServerSettings(
        enabled=False,
        host="0.0.0.0",
        port=9000,
        token="x",
        allowed_origins=("http://a", "http://b"),
        max_clients=3,
    )
    default = config.load(tmp_path / "empty.toml", config.overrides_from_args(cli.build_parser().parse_args(["run"])))
    assert default.server.host == "127.0.0.1" and default.server.enabled
    with pytest.raises(config.ConfigError, match=r"server\.port"):
        config.load(tmp_path / "empty.toml", {"server": {"port": 70000}})


def test_a_mark_is_published_to_every_client_and_acknowledged() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus) as server, connect(url(server)) as marker, connect(url(server)) as other:
            await _recv(marker), await _recv(other)
            await marker.send(json.dumps({"type": "mark", "text": "  session 12\n start ", "id": 4}))
            got = [await _recv(marker), await _recv(marker)]
            reply = next(m for m in got if m["type"] == "marked")
            assert reply["id"] == 4 and reply["text"] == "session 12 start"
            event = await _recv(other)  # the other client sees it as a status event
            assert (event["type"], event["kind"], event["message"]) == ("status", "mark", "session 12 start")
            for bad in ({"type": "mark"}, {"type": "mark", "text": " "}, {"type": "mark", "text": "x" * 201}):
                await marker.send(json.dumps(bad))
                error = await _recv(marker)
                assert error["type"] == "error" and error["code"] == "bad_request"

    asyncio.run(main())


def test_get_history_without_a_handler_is_an_unknown_type() -> None:
    async def main() -> None:
        async with serving(EventBus()) as server, connect(url(server)) as ws:
            await _recv(ws)
            await ws.send('{"type": "get_history"}')
            error = await _recv(ws)
            assert error["code"] == "unknown_type" and "get_history" in error["message"]

    asyncio.run(main())
