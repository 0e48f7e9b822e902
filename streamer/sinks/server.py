"""WebSocket broadcast of the daemon's events, and the live web page on the same port.

One subscription to the EventBus is fanned out: each event is encoded once and written to every
client's transport at once (websockets' ``broadcast``: no task or await per client, so the last of
100 clients is not a queue of task switches behind the first). The audio path never waits for a
client: a client whose unsent backlog in the daemon exceeds ``client_queue`` messages (it stopped
reading, or reads slower than the hops come) is closed with code 4000 and counted. Handshakes are
checked in ``process_request``: method (405), token (HTTP 401, 429 after repeated failures),
Origin (403), client limit (503); a GET of ``/`` gets the page.

Nothing a client does may delay a hop, so everything one client can make the server do is O(1)
and bounded (docs/protocol.md, "Limits"): before the handshake, at most ``MAX_REQUEST_BYTES`` of
request and ``handshake_timeout`` seconds, and ``max_clients_per_address`` connections per
address; after it, ``requests_per_second`` frames (a token bucket: beyond it an error message,
then close 4000), each answered from a state snapshot that is encoded once and reused.
Protocol details: docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from streamer.config import ServerSettings
from streamer.core.events import EventBus, StatusEvent
from streamer.sinks import protocol, urls
from streamer.sinks.ratelimit import AddressBuckets, TokenBucket, address_key

log = logging.getLogger(__name__)

FANOUT_QUEUE = 1024  # events the fan-out task may lag behind the bus (it never should)
CLOSE_TIMEOUT_S = 5.0  # wait this long for a closing peer's close frame, then cut the TCP connection
DRAIN_S = 1.0  # at stop, how long queued messages may take to go out before clients are closed
SEND_BUFFER_BYTES = 16384  # kernel send buffer per client (Linux doubles it): about 70 messages
WRITE_LIMIT_BYTES = 8192  # user-space buffer before websockets' own sends (pings, close) wait
MAX_REQUEST_BYTES = 16384  # request line and headers together (a browser sends under 2 KiB)
MAX_HEADERS = 64  # header lines in one request (a browser sends about 15)
BURST_SECONDS = 2.0  # a client's token bucket holds this many seconds' worth of requests
RATE_LIMIT_LINGER_S = 1.0  # a rate-limited client's connection is cut this long after its close frame
STATE_TTL_S = 0.25  # the encoded state is reused this long (and renewed with every event)
FAILED_TOKENS_BURST = 10  # wrong tokens one address may offer at once...
FAILED_TOKENS_PER_S = 0.2  # ...and then one per 5 s; beyond that HTTP 429 without checking
HANDSHAKES_PER_S = 5.0  # requests (page or WebSocket) one address may make per second, in bursts
# of twice max_clients_per_address; beyond that HTTP 429
CONNECTIONS_PER_CLIENT_SLOT = 2  # TCP connections (handshaking or open) allowed per max_clients
PAGE_PATHS = ("/", "/index.html")
PAGE_METHODS = ("GET", "HEAD")
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
        self._clients: set[_Connection] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self._page = resources.files("streamer.sinks").joinpath("web/index.html").read_bytes()
        self._missed = 0
        self._state: str | None = None  # the encoded state message, reused until STATE_TTL_S
        self._state_at = 0.0
        self._per_address: dict[str, int] = {}  # TCP connections (any stage) per address
        self._connections = 0
        self._failed_tokens = AddressBuckets(FAILED_TOKENS_PER_S, FAILED_TOKENS_BURST)
        self._handshakes = AddressBuckets(HANDSHAKES_PER_S, 2 * settings.max_clients_per_address)
        self._restricted = bool(settings.allowed_origins) or not urls.is_loopback(settings.host)
        self._own_names = _own_names(settings)
        self.dropped_clients = 0
        self.rate_limited = 0  # clients closed for sending too fast
        self.refused_connections = 0  # TCP connections cut at once (address or server full)
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
            "rate_limited": self.rate_limited,
            "refused_connections": self.refused_connections,
        }

    def snapshot(self, kind: str = "state") -> protocol.Message:
        return protocol.snapshot(kind, self._describe(), self.stats())

    def state_text(self) -> str:
        """The encoded ``state`` message, built at most once per STATE_TTL_S or event."""
        now = asyncio.get_running_loop().time()
        if self._state is None or now - self._state_at >= STATE_TTL_S:
            self._state, self._state_at = protocol.encode(self.snapshot()), now
        return self._state

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
                create_connection=cast(Any, self._connection),
                compression=None,  # per-client deflate costs CPU per message on a Pi
                max_size=s.max_message_bytes,
                open_timeout=s.handshake_timeout,
                ping_interval=s.ping_interval,
                ping_timeout=s.ping_interval,
                # a peer that did not answer a ping will not answer a close frame either
                close_timeout=min(CLOSE_TIMEOUT_S, s.ping_interval),
                write_limit=WRITE_LIMIT_BYTES,
                server_header=None,
            )
        except OSError as exc:
            subscription.close()
            raise ServerError(f"cannot listen on {urls.host_port(s.host, s.port)}: {exc.strerror or exc}") from exc
        self.port = server.sockets[0].getsockname()[1]
        log.info("%s", urls.where_to_look(s.host, self.port, bool(s.token)))
        if not urls.is_loopback(s.host) and not s.token:
            log.warning(
                "listening on %s, beyond this machine, without a token: anyone on the network can connect "
                "(set server.token)",
                s.host,
            )
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
        while subscription.pending() or any(ws.transport.get_write_buffer_size() for ws in self._clients):
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.01)

    async def _fanout(self, subscription: Any) -> None:
        async for event in subscription:
            self._missed = subscription.dropped
            self._state = None  # the next get_state sees this event
            text = protocol.encode(protocol.event_message(event))
            self._send(list(self._clients), text)

    def _send(self, clients: list[_Connection], text: str) -> None:
        """Write ``text`` to each client now; drop those already ``client_queue`` messages behind."""
        limit = self._settings.client_queue
        for ws in [ws for ws in clients if ws.backlog() >= limit]:
            self._drop(ws)
        targets = [ws for ws in clients if ws in self._clients]
        before = [ws.transport.get_write_buffer_size() for ws in targets]
        broadcast(targets, text)
        for ws, size in zip(targets, before, strict=True):
            ws.wrote(size)

    def _drop(self, ws: _Connection) -> None:
        if ws not in self._clients:
            return
        self._clients.discard(ws)
        self.dropped_clients += 1
        log.warning(
            "dropping WebSocket client %s: more than %d messages behind",
            ws.peer,
            self._settings.client_queue,
        )
        self._close_later(ws, protocol.CLOSE_TOO_SLOW, "client too slow")

    def _close_later(self, ws: ServerConnection, code: int, reason: str) -> None:
        task = asyncio.create_task(ws.close(code, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _rate_limited(self, ws: _Connection) -> None:
        """A client over its request rate: one error message and close 4000, written at once; its
        frames are not read any more, and its TCP connection is cut after RATE_LIMIT_LINGER_S."""
        self._clients.discard(ws)
        self.rate_limited += 1
        log.warning(
            "closing WebSocket client %s: more than %g requests per second",
            ws.peer,
            self._settings.requests_per_second,
        )
        rate = self._settings.requests_per_second
        message = protocol.error("rate_limited", f"more than {rate:g} requests per second")
        ws.transport.pause_reading()
        try:
            ws.protocol.send_text(protocol.encode(message).encode())
            ws.protocol.send_close(protocol.CLOSE_TOO_SLOW, "too many requests")
            ws.send_data()
        except Exception as exc:  # the connection is closing anyway
            log.debug("rate-limited client: %s", exc)
        asyncio.get_running_loop().call_later(RATE_LIMIT_LINGER_S, ws.transport.abort)

    async def _handle(self, ws: ServerConnection) -> None:
        conn = cast(_Connection, ws)
        if self.client_count >= self._settings.max_clients:
            await ws.close(protocol.CLOSE_TRY_AGAIN_LATER, "too many clients")
            return
        if conn.limited:
            return
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:  # bound what a stalled peer can pin in the kernel (Linux doubles it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._clients.add(conn)  # hello is written before any event: no await in between
        self._send([conn], protocol.encode(self.snapshot("hello")))
        try:
            async for message in ws:
                if conn.limited:
                    break
                if isinstance(message, bytes):
                    self._clients.discard(conn)
                    await ws.close(protocol.CLOSE_UNSUPPORTED_DATA, "binary frames are not supported")
                    break
                if conn in self._clients:
                    self._send([conn], await self._reply(message))
                # frames already buffered are returned without a pause: let the hops in between
                await asyncio.sleep(0)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(conn)

    # connections before the handshake

    def _connection(self, *args: Any, **kwargs: Any) -> _Connection:
        return _Connection(self, *args, **kwargs)

    def _admit(self, address: str) -> bool:
        """A new TCP connection from ``address``: within the per-address and total limits?"""
        s = self._settings
        if (
            self._per_address.get(address, 0) >= s.max_clients_per_address
            or self._connections >= CONNECTIONS_PER_CLIENT_SLOT * s.max_clients
        ):
            self.refused_connections += 1
            return False
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self._connections += 1
        return True

    def _release(self, address: str) -> None:
        self._connections -= 1
        left = self._per_address.get(address, 1) - 1
        if left > 0:
            self._per_address[address] = left
        else:
            self._per_address.pop(address, None)

    async def _reply(self, text: str) -> str:
        """The encoded reply to one text frame: a registered request's handler (mark, get_history),
        else protocol.reply_text (ping, get_state from the cached state, errors)."""
        request = protocol.request_of(text)
        handler = self.requests.get(request["type"]) if request is not None else None
        if request is None or handler is None:
            return protocol.reply_text(text, self.state_text)
        try:
            return protocol.encode(protocol.with_id(await handler(request), request.get("id")))
        except ValueError as exc:  # ProtocolError included
            return protocol.encode(protocol.error(getattr(exc, "code", "bad_request"), str(exc), request.get("id")))

    async def _mark(self, request: protocol.Message) -> protocol.Message:
        """A session mark: published to every sink (history, JSONL, clients) as a status event."""
        text = protocol.mark_text(request)
        event = StatusEvent("mark", text, details={"text": text})
        assert self._bus is not None  # requests arrive only while run() serves
        self._bus.publish(event)
        return {"type": "marked", "text": text, "timestamp": event.timestamp}

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse at the handshake (429 too often, 405 method, 431 headers, 401/429 token, 403 origin, 503 full);
        serve the page on GET (HEAD: its headers)."""
        s = self._settings
        conn = cast(_Connection, connection)
        if not self._handshakes.take(conn.address):
            self.refused_connections += 1
            return connection.respond(429, "too many requests from this address; wait\n")
        method = getattr(request, "method", "GET")  # websockets < 15 parses GET only
        if method not in PAGE_METHODS:
            response = connection.respond(405, "only GET (and HEAD for the page)\n")
            response.headers["Allow"] = ", ".join(PAGE_METHODS)
            return response
        if sum(1 for _ in request.headers.raw_items()) > MAX_HEADERS:
            return connection.respond(431, "too many header lines\n")
        url = urlsplit(request.path)
        if s.token:
            refused = self._check_token(conn, request.headers, url.query)
            page = url.path in PAGE_PATHS and "websocket" not in request.headers.get("Upgrade", "").lower()
            if refused is not None and refused.status_code == 401 and page:
                # the page itself, with status 401: it asks for the token and keeps it
                response = _page_response(connection, self._page, 401, head=method == "HEAD")
                response.headers["WWW-Authenticate"] = 'Bearer realm="moodstream"'
                return response
            if refused is not None:
                return refused
        if "websocket" not in request.headers.get("Upgrade", "").lower():
            if url.path not in PAGE_PATHS:
                return connection.respond(404, "not found\n")
            return _page_response(connection, self._page, head=method == "HEAD")
        if method != "GET" or url.path != "/":
            return connection.respond(404, "the WebSocket is at / (GET)\n")
        if not self._origin_ok(conn, request.headers.get_all("Origin")):
            return connection.respond(403, "this Origin is not allowed\n")
        if self.client_count >= s.max_clients:
            return connection.respond(503, "too many clients\n")
        return None

    def _check_token(self, conn: _Connection, headers: Headers, query: str) -> Response | None:
        """One token per request, compared in constant time; an address that keeps offering wrong
        ones is refused (429) without a check until its failure bucket refills."""
        offered = _offered_tokens(headers, query)
        if len(offered) > 1:
            return conn.respond(400, "offer one token per request\n")
        if offered and hmac.compare_digest(offered[0].encode(), self._settings.token.encode()):
            return None
        if offered and not self._failed_tokens.take(conn.address):
            return conn.respond(429, "too many wrong tokens from this address; wait\n")
        response = conn.respond(401, "a valid token is required\n")
        response.headers["WWW-Authenticate"] = 'Bearer realm="moodstream"'
        return response

    def _origin_ok(self, conn: _Connection, origins: list[str]) -> bool:
        """No Origin (a program, not a browser): allowed. Listening on loopback with no allow-list:
        any Origin. Otherwise: a listed Origin, or the daemon's own page, recognised by the address
        the connection arrived at or a configured public name, never by the client's Host header.
        ``null`` and non-http(s) Origins are refused then."""
        if not origins:
            return True
        if len(origins) > 1:
            return False
        if not self._restricted:
            return True
        origin = origins[0]
        parts = _origin_parts(origin)
        if parts is None:
            return False
        if origin in self._settings.allowed_origins:
            return True
        host, port = parts
        local = conn.transport.get_extra_info("sockname")
        if not local or port != local[1]:
            return False
        names = {_normal_host(local[0]), *self._own_names}
        if urls.is_loopback(local[0]):
            names.add("localhost")
        return host in names


class _Connection(ServerConnection):
    """One TCP connection, with the bounds that make it cheap whatever the peer does: the request
    it may send before the handshake (bytes), the connections its address may hold, and after the
    handshake the rate of its frames (charged as they are parsed, pings included)."""

    def __init__(self, owner: Server, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.address = ""
        self.peer = "?"
        self.admitted = False
        self.limited = False  # over its request rate: being closed
        self._request_bytes = 0
        rate = owner._settings.requests_per_second
        self._bucket = TokenBucket(rate, max(1.0, rate * BURST_SECONDS))
        self._written = 0  # bytes of our messages put in the transport's buffer
        self._marks: deque[int] = deque()  # where each buffered message of ours ends

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peername = transport.get_extra_info("peername")
        self.peer = urls.host_port(*peername[:2]) if peername else "?"  # for logs, kept after the close
        self.address = address_key(peername)
        self.admitted = self.owner._admit(self.address)
        if not self.admitted:
            cast(asyncio.Transport, transport).abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.admitted:
            self.admitted = False
            self.owner._release(self.address)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.protocol.state is State.CONNECTING:
            self._request_bytes += len(data)
            if self._request_bytes > MAX_REQUEST_BYTES:
                self.transport.abort()  # no reply: the peer is not a browser
                return
        elif self.limited:
            return  # being closed for its rate; what else it sends is not even parsed
        super().data_received(data)

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and event.opcode is not Opcode.CLOSE:
            if self.limited:
                return
            if not self._bucket.take():
                self.limited = True
                self.owner._rate_limited(self)
                return
        super().process_event(event)

    def backlog(self) -> int:
        """Messages written for this client that its socket has not taken yet."""
        buffered = self.transport.get_write_buffer_size()
        if buffered == 0:
            self._marks.clear()
            return 0
        sent = self._written - buffered  # an estimate: websockets' own pongs count as unsent
        while self._marks and self._marks[0] <= sent:
            self._marks.popleft()
        return len(self._marks)

    def wrote(self, before: int) -> None:
        """Record the message just written (``before``: the buffer's size before it)."""
        after = self.transport.get_write_buffer_size()
        self._written += max(0, after - before)
        if after:
            self._marks.append(self._written)


def _offered_tokens(headers: Headers, query: str) -> list[str]:
    offered = parse_qs(query).get("token", [])
    for auth in headers.get_all("Authorization"):
        if auth[:7].lower() == "bearer ":
            offered.append(auth[7:].strip())
    return offered


def _origin_parts(origin: str) -> tuple[str, int] | None:
    """(host, port) of an http(s) Origin; None for ``null``, other schemes, or nonsense."""
    try:
        url = urlsplit(origin)
        port = url.port
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.hostname or url.path or url.query or url.username:
        return None
    return _normal_host(url.hostname), port if port is not None else (443 if url.scheme == "https" else 80)


def _normal_host(host: str) -> str:
    """A host name lower-cased, an address in its canonical form (IPv4-mapped IPv6 as IPv4)."""
    host = host.strip("[]").lower()
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host.rstrip(".")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _own_names(settings: ServerSettings) -> set[str]:
    """Names the daemon's own page may be opened by, besides the address the client reached:
    the configured public names, the listen address when it is one, and this machine's name."""
    names = {_normal_host(n) for n in settings.public_names}
    if settings.host not in ("0.0.0.0", "::", ""):
        names.add(_normal_host(settings.host))
    hostname = socket.gethostname().lower()
    if hostname:
        names.update({hostname, f"{hostname}.local"})
    return names


def _page_response(connection: ServerConnection, page: bytes, status: int = 200, head: bool = False) -> Response:
    """The page as a complete HTTP response (``respond`` makes only text/plain ones); for HEAD
    the same headers without the body."""
    response = connection.respond(status, "")
    kept = ("content-type", "content-length")
    headers = Headers([(k, v) for k, v in response.headers.raw_items() if k.lower() not in kept])
    headers.update({**PAGE_HEADERS, "Content-Length": str(len(page))})
    return dataclasses.replace(response, headers=headers, body=b"" if head else page)
