"""One TLS port, two protocols, chosen by ALPN (RFC 7301): gRPC clients offer "grpc-exp" (gRPC
C-core, which Python's grpcio is) or only "h2"; those connections are relayed to the in-process
gRPC server's private socket. Clients that offer "http/1.1" (curl and browsers offer h2 too) get
it, and uvicorn's HTTP/1.1 protocol: the server picks the first of ALPN_PROTOCOLS the client offers.

asyncio calls `connection_made` once the handshake is done, so the negotiated protocol is
known there and the transport can be given to the protocol that speaks it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

GRPC_PROTOCOLS = ("grpc-exp", "h2")
ALPN_PROTOCOLS = ["grpc-exp", "http/1.1", "h2"]


class Peers:
    """Relay connections to the gRPC server, each from a socket bound to a name of its own, so
    the gRPC side can tell which client (address, port) a call comes from (its `peer()`)."""

    def __init__(self, directory: Path, target: str,
                 start: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        self.directory, self.target = directory, target
        self._clients: dict[str, tuple[str, int]] = {}
        self._ids = itertools.count()
        self._start = start
        self._started: asyncio.Task[None] | None = None

    async def connect(self, client: tuple[str, int] | None) -> socket.socket:
        if self._start is not None:  # the gRPC server, started by the first connection that needs it
            if self._started is None:
                self._started = asyncio.get_running_loop().create_task(self._start())
            try:
                await asyncio.shield(self._started)
            except Exception as exc:  # this connection is closed; the next one tries again
                self._started = None
                raise OSError(f"the gRPC server did not start: {exc!r}") from exc
        path = str(self.directory / f"c{next(self._ids)}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind(path)
            if client is not None:
                self._clients[path] = client
            await asyncio.get_running_loop().sock_connect(sock, self.target)
        except BaseException:
            self.release(path)
            sock.close()
            raise
        return sock

    def release(self, path: str) -> None:
        self._clients.pop(path, None)
        try:
            os.unlink(path)
        except OSError:
            pass

    def client(self, grpc_peer: str) -> tuple[str, int] | None:
        """The TLS client behind a gRPC `context.peer()` ("unix:/path" of our relay socket)."""
        return self._clients.get(grpc_peer.removeprefix("unix:"))


class _Upstream(asyncio.Protocol):
    """The relay's side towards the gRPC server: what it sends goes back to the TLS client."""

    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def eof_received(self) -> bool:
        self.client.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()

    def pause_writing(self) -> None:  # the gRPC server reads slowly: stop reading the client
        self.client.pause_reading()

    def resume_writing(self) -> None:
        self.client.resume_reading()


class _GrpcRelay(asyncio.Protocol):
    """The TLS client's side of an "h2" connection: bytes both ways, with back-pressure."""

    def __init__(self, peers: Peers) -> None:
        self.peers = peers
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.path = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        assert self.transport is not None
        client = self.transport.get_extra_info("peername")
        try:
            sock = await self.peers.connect(tuple(client[:2]) if client else None)
            self.path = sock.getsockname()
            transport, _ = await asyncio.get_running_loop().create_unix_connection(
                lambda: _Upstream(self.transport), sock=sock)  # type: ignore[arg-type]
        except OSError:
            self.transport.close()
            return
        if self.transport.is_closing():
            transport.close()
            return
        self.upstream = transport
        for data in self.pending:
            transport.write(data)
        self.pending.clear()
        self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.write(data)

    def eof_received(self) -> bool:
        if self.upstream is not None and self.upstream.can_write_eof():
            self.upstream.write_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.close()
        if self.path:
            self.peers.release(self.path)

    def pause_writing(self) -> None:  # the TLS client reads slowly: stop reading the gRPC server
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()


class AlpnSwitch(asyncio.Protocol):
    """The protocol a TLS connection starts with; it hands the connection over at once."""

    def __init__(self, http: Callable[[], asyncio.Protocol], peers: Peers) -> None:
        self.http, self.peers = http, peers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object: Any = transport.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        protocol = _GrpcRelay(self.peers) if chosen in GRPC_PROTOCOLS else self.http()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
