"""HTTP/1.1 (RFC 9112) for the metadata server: an asyncio protocol over httptools' parser (llhttp)
that answers each request synchronously and writes status line, headers and body in one send.

Why not uvicorn + ASGI: a cached `/token` is a few dict lookups, and uvicorn spent most of the
time around it (a task, timers and middleware per request, then headers and body as two sends,
i.e. two packets through the node's bridge and two wake-ups of the pod). docs/performance.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

from keyless.api.metadata import MetadataServer

MAX_HEAD = 16 * 1024  # request line + headers; beyond it: 431, as uvicorn's h11 limit
MAX_HEADERS = 100
MAX_BODY = 64 * 1024  # GETs carry none; a client streaming one is cut off
IDLE_TIMEOUT = 600.0  # pods keep their connection between token refreshes
log = logging.getLogger(__name__)


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

    def __init__(self, app: MetadataServer, by_destination: bool, connections: set[MetadataProtocol]) -> None:
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
        self.connections.add(self)

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


class _TooLarge(Exception):
    """Raised from a parser callback: parsing stops; the connection is answered and closed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def serve(app: MetadataServer, socks: list[socket.socket], stop: asyncio.Event, *,
                by_destination: bool = False, ready: Callable[[], None] | None = None) -> None:
    """Serve the metadata API on listening sockets until `stop` is set."""
    loop = asyncio.get_running_loop()
    connections: set[MetadataProtocol] = set()
    servers = []
    for sock in socks:
        sock.setblocking(False)
        servers.append(await loop.create_server(lambda: MetadataProtocol(app, by_destination, connections), sock=sock))
    if ready is not None:
        ready()

    async def close_idle() -> None:
        while True:
            await asyncio.sleep(IDLE_TIMEOUT / 10)
            now = loop.time()
            for conn in list(connections):
                if now - conn.last > IDLE_TIMEOUT and conn.transport is not None:
                    conn.transport.close()

    sweeper = loop.create_task(close_idle())
    try:
        await stop.wait()
    finally:
        sweeper.cancel()
        for server in servers:
            server.close()
        for conn in list(connections):
            if conn.transport is not None:
                conn.transport.close()


def run(main: Any) -> None:
    """Run a coroutine on uvloop where it is installed (uvicorn[standard] brings it), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


__all__ = ["MetadataProtocol", "run", "serve"]
