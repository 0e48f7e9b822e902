"""The server's bounds in isolation (issue 17): token buckets, per-client rate limit (error, then
4000), message-counted client queue, the Origin rule beyond loopback, IPv6 in logs and URLs."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from streamer.core.events import EventBus
from streamer.sinks import urls
from streamer.sinks.ratelimit import AddressBuckets, TokenBucket, address_key
from tests.wire import emotion, serving, url, valid


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=20, clock=clock)
    assert sum(bucket.take() for _ in range(50)) == 20
    clock.now += 0.5  # five tokens back
    assert sum(bucket.take() for _ in range(50)) == 5
    clock.now += 100
    assert bucket.full()


def test_address_buckets_stay_bounded_however_many_addresses() -> None:
    buckets = AddressBuckets(rate=1, burst=1, max_addresses=100, clock=Clock())
    for k in range(1000):
        assert buckets.take(f"10.0.{k // 250}.{k % 250}")
    assert len(buckets) == 100


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        (("192.168.1.5", 5000), "192.168.1.5"),
        (("::ffff:192.168.1.5", 5000, 0, 0), "192.168.1.5"),
        (("2001:db8::1:2:3:4", 5000, 0, 0), "2001:db8::/64"),
        (("fe80::1%eth0", 5000, 0, 2), "fe80::/64"),
    ],
)
def test_limits_apply_per_address_and_ipv6_per_64(peer: tuple, key: str) -> None:
    assert address_key(peer) == key


def test_ipv6_hosts_are_bracketed_in_urls_and_logs() -> None:
    assert urls.host_port("::", 8765) == "[::]:8765"
    assert urls.host_port("0.0.0.0", 8765) == "0.0.0.0:8765"


def test_a_client_over_its_rate_gets_an_error_then_4000() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, requests_per_second=5.0) as server, connect(url(server)) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            for k in range(30):
                await ws.send(json.dumps({"type": "ping", "id": k}))
            seen = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    seen.append(valid(json.loads(await asyncio.wait_for(ws.recv(), 5))))
            assert seen[-1]["type"] == "error" and seen[-1]["code"] == "rate_limited"
            assert len(seen) <= 10 + 1  # at most the burst (2 s worth) was answered
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
            assert server.stats()["rate_limited"] == 1
        # within the rate nothing happens
        async with serving(bus, requests_per_second=50.0) as server, connect(url(server)) as ws:
            await ws.recv()
            for k in range(20):
                await ws.send(json.dumps({"type": "get_state", "id": k}))
                reply = valid(json.loads(await asyncio.wait_for(ws.recv(), 5)))
                assert reply["type"] == "state" and reply["id"] == k

    asyncio.run(main())


def test_the_client_queue_counts_messages_not_bytes() -> None:
    async def main() -> None:
        bus = EventBus()
        async with serving(bus, client_queue=8) as server:
            ws = await connect(url(server), max_queue=1)
            await ws.recv()
            ws.transport.pause_reading()  # a client that stopped reading
            conn = next(iter(server._clients))
            backlogs = []
            for seq in range(5000):
                bus.publish(emotion(seq))
                for _ in range(3):
                    await asyncio.sleep(0)  # the fan-out writes it
                if conn not in server._clients:
                    break
                backlogs.append(conn.backlog())
                if backlogs[-1] == 1:  # three replies four times an event's size join the backlog
                    for k in range(3):
                        await ws.send(json.dumps({"type": "get_state", "id": k}))
                    for _ in range(50):
                        await asyncio.sleep(0.001)
                    backlogs.append(conn.backlog())
            # once the kernel's buffers are full, each message is one more held for the client,
            # and it is dropped when that count reaches client_queue, whatever the sizes
            assert server.dropped_clients == 1
            assert backlogs[-6:] == [1, 4, 5, 6, 7, 8], backlogs[-12:]
            ws.transport.abort()

    asyncio.run(main())


def test_beyond_loopback_only_the_own_page_is_allowed_and_a_missing_token_is_warned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        with caplog.at_level(logging.WARNING, logger="streamer.sinks.server"):
            async with serving(EventBus(), host="0.0.0.0") as server:
                assert server.port is not None
                own = {"Origin": f"http://127.0.0.1:{server.port}"}
                async with connect(url(server), additional_headers=own) as ws:
                    assert json.loads(await ws.recv())["type"] == "hello"
                for origin in (f"http://evil.example:{server.port}", "null", f"http://127.0.0.1:{server.port + 1}"):
                    with pytest.raises(InvalidStatus) as refused:
                        await connect(url(server), additional_headers={"Origin": origin})
                    assert refused.value.response.status_code == 403
        assert any("without a token" in r.getMessage() for r in caplog.records)

    asyncio.run(main())


def test_an_ipv6_listener_is_logged_with_brackets_and_serves(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")

    async def main() -> None:
        with caplog.at_level(logging.INFO, logger="streamer.sinks.server"):
            async with serving(EventBus(), host="::1") as server:
                own = {"Origin": f"http://[::1]:{server.port}"}
                async with connect(f"ws://[::1]:{server.port}/", additional_headers=own) as ws:
                    assert json.loads(await ws.recv())["type"] == "hello"
        assert any(f"http://[::1]:{server.port}/" in r.getMessage() for r in caplog.records)

    asyncio.run(main())
