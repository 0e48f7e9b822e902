"""Hostile clients for the adversarial suite (tests/test_adversarial.py), run in a process of their
own (``python -m tests.hostile KIND HOST PORT SECONDS``) so that the attacker's CPU is not the
bystander's. They connect from ATTACKER (127.0.0.2, still loopback) so that the bystander, on
127.0.0.1, is another address, as a LAN attacker would be. Each prints one JSON line of counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import time
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

ATTACKER = "127.0.0.2"
FLOOD_CONNECTIONS = 8  # parallel flooding connections (each reconnects when closed)
BURST = 500  # requests written before reading replies


async def flood(host: str, port: int, seconds: float, request: str) -> dict[str, Any]:
    """Bursts of ``request`` on several connections, reading the replies; reconnect when closed."""
    counts = {"requests": 0, "replies": 0, "closed_4000": 0, "refused": 0, "connections": 0}
    deadline = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < deadline:
            try:
                async with connect(
                    f"ws://{host}:{port}/", local_addr=(ATTACKER, 0), open_timeout=5, max_queue=None
                ) as ws:
                    counts["connections"] += 1
                    while time.monotonic() < deadline:
                        for _ in range(BURST):
                            await ws.send(request)
                        counts["requests"] += BURST
                        async with asyncio.timeout(1):
                            for _ in range(BURST):
                                await ws.recv()
                                counts["replies"] += 1
            except ConnectionClosed as exc:
                counts["closed_4000"] += exc.rcvd is not None and exc.rcvd.code == 4000
            except (InvalidHandshake, OSError, TimeoutError):
                counts["refused"] += 1
                await asyncio.sleep(0.01)

    await asyncio.gather(*(one() for _ in range(FLOOD_CONNECTIONS)))
    return counts


def _socket(host: str, port: int, source: str = ATTACKER) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    sock.bind((source, 0))
    with contextlib.suppress(BlockingIOError):
        sock.connect((host, port))
    return sock


async def headers(host: str, port: int, seconds: float, connections: int = 150) -> dict[str, Any]:
    """``connections`` connections, each from an address of its own (127.0.1.k: the per-address
    limit does not stop them) sending up to 1 MiB of a request whose headers never end."""
    loop = asyncio.get_running_loop()
    line = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    counts = {"connections": connections, "bytes_sent": 0, "cut": 0}

    async def one(k: int) -> None:
        sock = _socket(host, port, f"127.0.{1 + k // 250}.{1 + k % 250}")
        try:
            await loop.sock_sendall(sock, b"GET / HTTP/1.1\r\nHost: x\r\n")
            for _ in range(1024):
                await loop.sock_sendall(sock, line)
                counts["bytes_sent"] += len(line)
            # the kernel takes a whole MiB on loopback before the daemon reads any: did it cut us?
            cut = await asyncio.wait_for(loop.sock_recv(sock, 1), seconds) == b""
        except OSError:
            cut = True
        except TimeoutError:
            cut = False
        finally:
            sock.close()
        counts["cut"] += cut

    await asyncio.wait_for(asyncio.gather(*(one(k) for k in range(connections))), seconds + 10)
    return counts


async def idle(host: str, port: int, seconds: float, connections: int = 150) -> dict[str, Any]:
    """``connections`` idle connections: half send a partial request, half complete the handshake."""
    counts = {"tcp_open": 0, "websocket_open": 0, "refused": 0}
    held: list[Any] = []
    for k in range(connections):
        if k % 2:
            try:
                held.append(
                    await connect(f"ws://{host}:{port}/", local_addr=(ATTACKER, 0), open_timeout=5, ping_interval=None)
                )
                counts["websocket_open"] += 1
            except (InvalidHandshake, OSError, TimeoutError, ConnectionClosed):
                counts["refused"] += 1
        else:
            sock = _socket(host, port)
            try:
                await asyncio.get_running_loop().sock_sendall(sock, b"GET / HTTP/1.1\r\n")
                counts["tcp_open"] += 1
            except OSError:
                counts["refused"] += 1
            held.append(sock)
    await asyncio.sleep(seconds)
    for item in held:
        if isinstance(item, socket.socket):
            item.close()
        else:  # it stopped reading long ago: a close handshake would wait for nothing
            item.transport.abort()
    return counts


ATTACKS = {
    "get_state": lambda h, p, s: flood(h, p, s, '{"type":"get_state","id":1}'),
    "ping": lambda h, p, s: flood(h, p, s, '{"type":"ping","id":1}'),
    "headers": headers,
    "idle": idle,
}

if __name__ == "__main__":
    kind, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(asyncio.run(ATTACKS[kind](host, port, seconds))), flush=True)
