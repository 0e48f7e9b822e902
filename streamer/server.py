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

import asyncio
import dataclasses
import hmac
import logging
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamer import protocol
from streamer.config import ServerSettings
from streamer.events import EventBus, StatusEvent

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


Handler = Callable[[protocol.Message], Awaitable[protocol.Message]]


class ServerError(RuntimeError):
    """The server could not start (for example, the port is taken)."""


class Server:
    """The broadcast; ``describe`` is the daemon's snapshot (model, config, state, counters)."""

    name = "server"

    def __init__(self, settings: ServerSettings, describe: Callable[[], dict[str, Any]]) -> None:
        self._settings = settings
        self._describe = describe
        self._clients: set[ServerConnection] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._page = resources.files("streamer").joinpath("web/index.html").read_bytes()
        self._missed = 0
        self.dropped_clients = 0
        self.port: int | None = None  # the bound port once listening (settings.port may be 0)
        self.listening = asyncio.Event()
        self._bus: EventBus | None = None  # the bus being served (set by run): marks are published on it
        # client requests beyond ping and get_state: type -> handler (the daemon adds get_history)
        self.requests: dict[str, Handler] = {"mark": self._mark}

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def stats(self) -> dict[str, int]:
        return {
            "clients": self.client_count,
            "dropped_clients": self.dropped_clients,
            "max_clients": self._settings.max_clients,
            "missed_events": self._missed,
        }

    def snapshot(self, kind: str = "state") -> protocol.Message:
        return protocol.snapshot(kind, self._describe(), self.stats())

    async def run(self, bus: EventBus, stop: asyncio.Event) -> None:
        """Listen and broadcast until ``stop`` is set; then close every client with 1001."""
        s = self._settings
        subscription = bus.subscribe(FANOUT_QUEUE)
        self._bus = bus
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
        log.info("WebSocket and web page on http://%s:%d/%s", s.host, self.port, " (token required)" if s.token else "")
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
                self._send([ws], protocol.encode(await self._request(message)))
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(ws)

    async def _request(self, text: str) -> protocol.Message:
        """The reply to one text frame: a registered request's handler, else protocol.reply."""
        request = protocol.request_of(text)
        handler = self.requests.get(request["type"]) if request is not None else None
        if request is None or handler is None:
            return protocol.reply(text, self.snapshot)
        try:
            return protocol.with_id(await handler(request), request.get("id"))
        except ValueError as exc:  # ProtocolError included
            return protocol.error(getattr(exc, "code", "bad_request"), str(exc), request.get("id"))

    async def _mark(self, request: protocol.Message) -> protocol.Message:
        """A session mark: published to every sink (history, JSONL, clients) as a status event."""
        text = protocol.mark_text(request)
        event = StatusEvent("mark", text, details={"text": text})
        assert self._bus is not None  # requests arrive only while run() serves
        self._bus.publish(event)
        return {"type": "marked", "text": text, "timestamp": event.timestamp}

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse at the handshake (401 token, 403 origin, 503 full); serve the page on plain GET."""
        s = self._settings
        url = urlsplit(request.path)
        if s.token and not _token_ok(s.token, request.headers, url.query):
            if url.path in PAGE_PATHS and "websocket" not in request.headers.get("Upgrade", "").lower():
                response = _page_response(connection, self._page, 401)  # the page asks for the token itself
            else:
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


def _page_response(connection: ServerConnection, page: bytes, status: int = 200) -> Response:
    """The page as a complete HTTP response (``respond`` makes only text/plain ones)."""
    response = connection.respond(status, "")
    kept = ("content-type", "content-length")
    headers = Headers([(k, v) for k, v in response.headers.raw_items() if k.lower() not in kept])
    headers.update({**PAGE_HEADERS, "Content-Length": str(len(page))})
    return dataclasses.replace(response, headers=headers, body=page)
