"""A node's TCP relay to Keyless: pods reach Google's API hosts (mapped to their node's gateway by
/etc/netns/NAME/hosts) and the node relays each connection, bytes unchanged (TLS, HTTP/2, gRPC),
to the Keyless server on the host's loopback, as kube-proxy relays a Service to its endpoints.

Each accepted connection is one upstream connection; EOF is passed on as a half-close (so a
client's shutdown(SHUT_WR) reaches the server), and at most `limit` connections are relayed at
once: beyond that a new connection is closed at once rather than left waiting. One pod (one
source address) holds at most `per_peer_limit` of them, so a pod that opens connections without
end is refused alone while its neighbours on the node still reach Keyless (issue #23: the
metadata server bounds each pod the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import struct
import threading
from dataclasses import dataclass

CHUNK = 256 * 1024  # bytes read per step: whole TLS records, few wake-ups on bulk downloads
CONNECT_TIMEOUT = 10.0
DEFAULT_LIMIT = 1024
DEFAULT_PER_PEER_LIMIT = 256  # a quarter of the node's relay for one pod
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """One listening socket (made inside the node's namespace) and where its connections go."""

    sock: socket.socket
    upstream: tuple[str, int]


class Forwarder:
    """Relays every connection of its routes to their upstream, in an event loop of its own
    thread, so bulk transfers never queue behind (or ahead of) the metadata server's answers."""

    def __init__(self, routes: list[Route], limit: int = DEFAULT_LIMIT,
                 per_peer_limit: int = DEFAULT_PER_PEER_LIMIT) -> None:
        self.routes = routes
        self.limit = limit
        self.per_peer_limit = per_peer_limit
        self.active = 0  # connections being relayed now
        self.by_peer: dict[str, int] = {}  # of them, per source address (one pod each)
        self.refused = 0  # connections closed because the limit was reached
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        # The loop holds tasks weakly: a relay whose sockets are both idle in the selector (one
        # side at EOF, the other waiting) would otherwise be collected, closing the pod's socket.
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="keyless-forwarder", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self.serve())

    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        servers = []
        for route in self.routes:
            route.sock.setblocking(False)
            servers.append(await asyncio.start_server(
                functools.partial(self._relay, upstream=route.upstream), sock=route.sock, limit=CHUNK))
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            for server in servers:
                server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- one connection ------------------------------------------------------------------------

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                     upstream: tuple[str, int]) -> None:
        peername = client_w.get_extra_info("peername")
        peer = str(peername[0]) if peername else ""
        if self.active >= self.limit or self.by_peer.get(peer, 0) >= self.per_peer_limit:
            self.refused += 1
            _abort(client_w)
            return
        self.active += 1
        self.by_peer[peer] = self.by_peer.get(peer, 0) + 1
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            try:
                server_r, server_w = await asyncio.wait_for(
                    asyncio.open_connection(*upstream, limit=CHUNK), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as error:
                log.warning("relay to %s:%s failed: %r", *upstream, error)
                _abort(client_w)  # the pod sees a reset, as when a Service has no endpoint
                return
            _nodelay(client_w)
            _nodelay(server_w)
            try:
                await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
            except asyncio.CancelledError:  # the node is stopping: reset both ends, end quietly
                _abort(client_w)
                _abort(server_w)
                return
            for w in (client_w, server_w):
                w.close()
            for w in (client_w, server_w):
                with contextlib.suppress(OSError):
                    await w.wait_closed()
        finally:
            self.active -= 1
            if (left := self.by_peer[peer] - 1) > 0:
                self.by_peer[peer] = left
            else:
                del self.by_peer[peer]
            if task is not None:
                self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side; a reset on either side ends both."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()  # back-pressure: a slow reader slows its writer, memory stays bounded
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        _abort(writer)


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (SO_LINGER 0), so the peer sees ECONNRESET at once, not a clean EOF
    it could mistake for a complete answer."""
    transport = writer.transport
    if transport.is_closing():
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def parse_upstream(value: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[V6]:PORT`) as given on the command line."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


__all__ = ["DEFAULT_LIMIT", "DEFAULT_PER_PEER_LIMIT", "Forwarder", "Route", "parse_upstream"]
