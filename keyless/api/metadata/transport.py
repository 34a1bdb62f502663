"""HTTP/1.1 (RFC 9112) for the metadata server: an asyncio protocol over httptools' parser (llhttp)
that answers each request synchronously and writes status line, headers and body in one send.

Why not uvicorn + ASGI: a cached `/token` is a few dict lookups, and uvicorn spent most of the
time around it (a task, timers and middleware per request, then headers and body as two sends,
i.e. two packets through the node's bridge and two wake-ups of the pod). docs/performance.md.

One pod must not silence the node (issue #23): each client address (a pod's IP, anti-spoofed by
the node, keyless/gke/netns.py) holds at most MAX_PER_CLIENT connections (a new one past that
closes the client's longest-idle one, or is answered 429 if none is idle), all clients together
at most what the file limit leaves after a reserve (503 past that), and connections idle for
IDLE_TIMEOUT, or holding a request unfinished for REQUEST_TIMEOUT, are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import resource
import socket
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

from keyless.api.metadata.server import MetadataServer

MAX_HEAD = 16 * 1024  # request line + headers; beyond it: 431, as uvicorn's h11 limit
MAX_HEADERS = 100
MAX_BODY = 64 * 1024  # GETs carry none; a client streaming one is cut off
IDLE_TIMEOUT = 30.0  # a kept-alive connection with no request: clients reconnect in a millisecond
REQUEST_TIMEOUT = 10.0  # a request started and not finished (slowloris)
SWEEP_EVERY = 1.0
MAX_PER_CLIENT = 64  # google-auth's pool holds 10, gcloud a few
FD_RESERVE = 256  # descriptors kept for the store, logs, the node's commands and its relays' own limit
log = logging.getLogger(__name__)


_serials = itertools.count()


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


STATUS_LINES = {code: b"HTTP/1.1 %d %s\r\n" % (code, _reason(code)) for code in
                (200, 301, 400, 403, 404, 405, 413, 429, 431, 500, 503)}


def status_line(status: int) -> bytes:
    return STATUS_LINES.get(status) or b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))


class MetadataProtocol(asyncio.Protocol):
    """One pod connection. `by_destination`: identify the caller by the local address the
    connection arrived on (loopback pods, keyless/gke/loopback.py) instead of its source."""

    def __init__(self, app: MetadataServer, by_destination: bool, connections: Connections) -> None:
        self.app = app
        self.by_destination = by_destination
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.ip = ""
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.head = 0
        self.body = 0
        self.closing = False
        self.last = 0.0
        self.started = 0.0  # when the request being read began (0: none pending)
        self.serial = next(_serials)

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's is no asyncio subclass)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        address = transport.get_extra_info("sockname" if self.by_destination else "peername")
        self.ip = address[0] if isinstance(address, tuple) else ""
        self.last = asyncio.get_running_loop().time()
        refusal = self.connections.admit(self)
        if refusal:
            self._fail(refusal)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last = asyncio.get_running_loop().time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            self._fail(error.__context__.status if isinstance(error.__context__, _TooLarge) else 400)
        except httptools.HttpParserError:
            self._fail(400)
        except httptools.HttpParserUpgrade:  # raised once the request is answered: no protocol switch here
            if self.transport is not None:
                self.transport.close()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, status: int) -> None:
        body = _reason(status) + b"\n"
        self._write(status, [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
                    body, close=True)

    def _write(self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes, *, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        parts = [status_line(status)]
        for name, value in headers:
            parts += [name, b": ", value, b"\r\n"]
        if close:
            parts.append(b"connection: close\r\n")
        parts += [b"\r\n", body]
        self.transport.write(b"".join(parts))  # one send: one packet, one wake-up of the pod
        if close:
            self.closing = True
            self.transport.close()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url, self.headers, self.head, self.body = b"", {}, 0, 0
        self.started = self.last

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        if len(self.headers) >= MAX_HEADERS:
            raise _TooLarge(431)
        # A repeated header keeps its first value; X-Forwarded-For is refused whatever it says.
        self.headers.setdefault(name.lower(), value)

    def on_body(self, body: bytes) -> None:
        self.body += len(body)
        if self.body > MAX_BODY:
            raise _TooLarge(413)

    def _count(self, n: int) -> None:
        self.head += n
        if self.head > MAX_HEAD:
            raise _TooLarge(431)

    def on_message_complete(self) -> None:
        self.started = 0.0
        if self.closing:
            return
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method().decode("ascii", "replace")
        try:
            url = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            self._fail(400)
            return
        raw = (url.path or b"/").decode("latin-1")
        path = unquote(raw) if "%" in raw else raw
        try:
            status, headers, body = self.app.respond(method, path, url.query or b"", self.headers, self.ip)
        except Exception:  # an answer that failed must not take the server (and the node's pods) down
            log.exception("metadata request %s %s failed", method, path)
            self._fail(500)
            return
        if method == "HEAD":
            body = b""
        self._write(status, headers, body, close=not keep_alive)


class Connections:
    """The open connections, per client address, and the limits on them."""

    def __init__(self, limit: int, per_client: int = MAX_PER_CLIENT) -> None:
        self.limit = limit
        self.per_client = per_client
        self.all: set[MetadataProtocol] = set()
        self.by_client: dict[str, set[MetadataProtocol]] = {}
        self.refused = 0  # connections answered 429/503 at once
        self.evicted = 0  # idle connections closed to make room for their client's new one

    def __len__(self) -> int:
        return len(self.all)

    def admit(self, conn: MetadataProtocol) -> int:
        """Count `conn` in, or return the status to refuse it with (0: admitted)."""
        mine = self.by_client.setdefault(conn.ip, set())
        if len(mine) >= self.per_client:
            idle = [c for c in mine if not c.started and not c.closing]
            if not idle:
                self.refused += 1
                return 429
            oldest = min(idle, key=lambda c: (c.last, c.serial))  # the loop's clock ticks in ms: ties
            self.evicted += 1
            oldest.close()
        if len(self.all) >= self.limit:
            self.refused += 1
            return 503
        mine.add(conn)
        self.all.add(conn)
        return 0

    def discard(self, conn: MetadataProtocol) -> None:
        self.all.discard(conn)
        mine = self.by_client.get(conn.ip)
        if mine is not None:
            mine.discard(conn)
            if not mine:
                del self.by_client[conn.ip]

    def sweep(self, now: float) -> None:
        """Close connections idle too long, or too long on one request."""
        for conn in list(self.all):
            if (conn.started and now - conn.started > REQUEST_TIMEOUT) or now - conn.last > IDLE_TIMEOUT:
                conn.close()


def raise_file_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_limit(reserve: int = FD_RESERVE) -> int:
    """How many connections the file limit leaves room for, `reserve` descriptors kept back."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft - reserve)


class _TooLarge(Exception):
    """Raised from a parser callback: parsing stops; the connection is answered and closed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def serve(app: MetadataServer, socks: list[socket.socket], stop: asyncio.Event, *,
                by_destination: bool = False, ready: Callable[[], None] | None = None,
                connections: Connections | None = None) -> None:
    """Serve the metadata API on listening sockets until `stop` is set. `connections` carries
    the limits (default: MAX_PER_CLIENT per client, all that the file limit leaves)."""
    loop = asyncio.get_running_loop()
    if connections is None:
        connections = Connections(connection_limit())
    conns = connections
    servers = []
    for sock in socks:
        sock.setblocking(False)
        servers.append(await loop.create_server(lambda: MetadataProtocol(app, by_destination, conns), sock=sock))
    if ready is not None:
        ready()

    async def close_idle() -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            conns.sweep(loop.time())

    sweeper = loop.create_task(close_idle())
    try:
        await stop.wait()
    finally:
        sweeper.cancel()
        for server in servers:
            server.close()
        for conn in list(conns.all):
            conn.close()


def run(main: Any) -> None:
    """Run a coroutine on uvloop where it is installed (uvicorn[standard] brings it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


__all__ = ["Connections", "MetadataProtocol", "connection_limit", "raise_file_limit", "run", "serve"]
