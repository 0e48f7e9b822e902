"""WebSocket broadcast of the daemon's events, and the live web page on the same port.

One subscription to the EventBus is fanned out: each event is encoded once and written to every
client's transport at once (websockets' ``broadcast``: no task or await per client, so the last of
100 clients is not a queue of task switches behind the first). The audio path never waits for a
client: a client whose unsent backlog in the daemon exceeds ``client_queue`` messages (it stopped
reading, or reads slower than the hops come) is closed with code 4000 and counted. Handshakes are
checked in ``process_request``: token (HTTP 401), Origin allow-list (403), client limit (503); a
plain GET of ``/`` gets the page. Protocol details: docs/protocol.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import logging
import socket
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamer import protocol, urls
from streamer.config import ServerSettings
from streamer.events import EventBus

log = logging.getLogger(__name__)

FANOUT_QUEUE = 1024  # events the fan-out task may lag behind the bus (it never should)
CLOSE_TIMEOUT_S = 5.0  # wait this long for a closing peer's close frame, then cut the TCP connection
DRAIN_S = 1.0  # at stop, how long queued messages may take to go out before clients are closed
SEND_BUFFER_BYTES = 16384  # kernel send buffer per client (Linux doubles it): about 70 messages
WRITE_LIMIT_BYTES = 8192  # user-space buffer before websockets' own sends (pings, close) wait
PAGE_PATHS = ("/", "/index.html")
PAGE_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self' ws: wss:; img-src data:"
    ),
}


class ServerError(RuntimeError):
    """The server could not start (for example, the port is taken)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``run`` flags of the [server] section (defaults None = 'not given', see config.FLAGS)."""
    group = parser.add_argument_group("WebSocket server")
    group.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 = all)")
    group.add_argument("--port", type=int, help="port of the WebSocket and the web page (8765)")
    group.add_argument(
        "--token",
        help="require this token from clients (?token= or Bearer); "
        "flags show in ps: prefer server.token in the config file",
    )
    group.add_argument(
        "--origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser pages from this Origin (repeatable; default: any)",
    )
    group.add_argument("--max-clients", type=int, help="refuse clients beyond this many (64)")
    group.add_argument(
        "--no-server",
        dest="server_enabled",
        action="store_false",
        default=None,
        help="do not start the WebSocket server",
    )


class Server:
    """The broadcast; ``describe`` is the daemon's snapshot (model, config, state, counters)."""

    def __init__(self, settings: ServerSettings, bus: EventBus, describe: Callable[[], dict[str, Any]]) -> None:
        self._settings = settings
        self._bus = bus
        self._describe = describe
        self._clients: set[ServerConnection] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._page = resources.files("streamer").joinpath("web/index.html").read_bytes()
        self._missed = 0
        self.dropped_clients = 0
        self.port: int | None = None  # the bound port once listening (settings.port may be 0)
        self.listening = asyncio.Event()

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def stats(self) -> dict[str, Any]:
        return {
            "clients": self.client_count,
            "dropped_clients": self.dropped_clients,
            "max_clients": self._settings.max_clients,
            "missed_events": self._missed,
        }

    def snapshot(self, kind: str = "state") -> protocol.Message:
        return protocol.snapshot(kind, self._describe(), self.stats())

    async def run(self, stop: asyncio.Event) -> None:
        """Listen and broadcast until ``stop`` is set; then close every client with 1001."""
        s = self._settings
        subscription = self._bus.subscribe(FANOUT_QUEUE)
        try:
            server = await serve(
                self._handle,
                s.host,
                s.port,
                process_request=self._check_request,
                compression=None,  # per-client deflate costs CPU per message on a Pi
                max_size=s.max_message_bytes,
                ping_interval=s.ping_interval,
                ping_timeout=s.ping_interval,
                # a peer that did not answer a ping will not answer a close frame either
                close_timeout=min(CLOSE_TIMEOUT_S, s.ping_interval),
                write_limit=WRITE_LIMIT_BYTES,
                server_header=None,
            )
        except OSError as exc:
            subscription.close()
            raise ServerError(f"cannot listen on {s.host}:{s.port}: {exc.strerror or exc}") from exc
        self.port = server.sockets[0].getsockname()[1]
        log.info("%s", urls.where_to_look(s.host, self.port, bool(s.token)))
        self.listening.set()
        fanout = asyncio.create_task(self._fanout(subscription))
        try:
            await stop.wait()
            await self._drain(subscription)
        finally:
            fanout.cancel()
            subscription.close()
            server.close(close_connections=True, code=protocol.CLOSE_GOING_AWAY, reason="stopping")
            await server.wait_closed()
            self.listening.clear()

    async def _drain(self, subscription: Any) -> None:
        """Deliver, briefly, what is already queued: the daemon's last events ("stopped")."""
        deadline = asyncio.get_running_loop().time() + DRAIN_S
        while subscription.pending() or any(_backlog(ws) for ws in self._clients):
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.01)

    async def _fanout(self, subscription: Any) -> None:
        async for event in subscription:
            self._missed = subscription.dropped
            text = protocol.encode(protocol.event_message(event))
            self._send(list(self._clients), text)

    def _send(self, clients: list[ServerConnection], text: str) -> None:
        """Write ``text`` to each client now; drop those already ``client_queue`` messages behind."""
        limit = self._settings.client_queue * len(text)
        for ws in [ws for ws in clients if _backlog(ws) >= limit]:
            self._drop(ws)
        broadcast([ws for ws in clients if ws in self._clients], text)

    def _drop(self, ws: ServerConnection) -> None:
        if ws not in self._clients:
            return
        self._clients.discard(ws)
        self.dropped_clients += 1
        log.warning(
            "dropping WebSocket client %s: more than %d messages behind", ws.remote_address, self._settings.client_queue
        )
        task = asyncio.create_task(ws.close(protocol.CLOSE_TOO_SLOW, "client too slow"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _handle(self, ws: ServerConnection) -> None:
        if self.client_count >= self._settings.max_clients:
            await ws.close(protocol.CLOSE_TRY_AGAIN_LATER, "too many clients")
            return
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:  # bound what a stalled peer can pin in the kernel (Linux doubles it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._clients.add(ws)  # hello is written before any event: no await in between
        self._send([ws], protocol.encode(self.snapshot("hello")))
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self._clients.discard(ws)
                    await ws.close(protocol.CLOSE_UNSUPPORTED_DATA, "binary frames are not supported")
                    break
                self._send([ws], protocol.encode(protocol.reply(message, self.snapshot)))
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(ws)

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse at the handshake (401 token, 403 origin, 503 full); serve the page on plain GET."""
        s = self._settings
        url = urlsplit(request.path)
        if s.token and not _token_ok(s.token, request.headers, url.query):
            response = connection.respond(401, "a valid token is required\n")
            response.headers["WWW-Authenticate"] = 'Bearer realm="moodstream"'
            return response
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            if url.path not in PAGE_PATHS:
                return connection.respond(404, "not found\n")
            return _page_response(connection, self._page)
        if url.path != "/":
            return connection.respond(404, "the WebSocket is at /\n")
        if not _origin_ok(s.allowed_origins, request.headers):
            return connection.respond(403, "this Origin is not allowed\n")
        if self.client_count >= s.max_clients:
            return connection.respond(503, "too many clients\n")
        return None


def _backlog(ws: ServerConnection) -> int:
    """Bytes written for this client that its socket has not taken yet."""
    return ws.transport.get_write_buffer_size()


def _token_ok(token: str, headers: Headers, query: str) -> bool:
    """Constant-time check of ?token= or ``Authorization: Bearer``."""
    offered = parse_qs(query).get("token", [])
    auth = headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        offered.append(auth[7:].strip())
    expected = token.encode()
    return any(hmac.compare_digest(o.encode(), expected) for o in offered)


def _origin_ok(allowed: tuple[str, ...], headers: Headers) -> bool:
    """No list: any Origin. With a list: listed Origins, the page's own, and non-browsers."""
    origin = headers.get("Origin")
    if not allowed or origin is None:
        return True
    own = urlsplit(origin).netloc == headers.get("Host", "")
    return own or origin in allowed


def _page_response(connection: ServerConnection, page: bytes) -> Response:
    """The page as a complete HTTP response (``respond`` makes only text/plain ones)."""
    response = connection.respond(200, "")
    kept = ("content-type", "content-length")
    headers = Headers([(k, v) for k, v in response.headers.raw_items() if k.lower() not in kept])
    headers.update({**PAGE_HEADERS, "Content-Length": str(len(page))})
    return dataclasses.replace(response, headers=headers, body=page)
