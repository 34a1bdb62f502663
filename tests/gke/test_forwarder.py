"""The node's relay to Keyless (keyless/gke/forwarder.py) on loopback: bytes pass unchanged both
ways for many connections at once, a half-close reaches the server, the connection limit
refuses at once, one source address (one pod) cannot take the whole relay, and a missing upstream resets the client instead of leaving it hanging."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from keyless.gke.forwarder import Forwarder, Route, parse_upstream


async def _until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Reads everything until the client's half-close, then sends it all back and closes: only
    a relay that passes EOF on (and keeps the other direction open) gets an answer."""
    data = await reader.read()
    writer.write(data)
    await writer.drain()
    writer.close()


@pytest.fixture
def upstream() -> Iterator[tuple[str, int]]:
    """An asyncio server in its own thread (it accepts as fast as uvicorn, Keyless's server, does)."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(asyncio.start_server(_until_eof, "127.0.0.1", 0, backlog=1024))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.sockets[0].getsockname()[:2]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    server.close()
    loop.close()


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    return sock


@pytest.fixture
def relay(upstream: tuple[str, int]) -> Iterator[tuple[Forwarder, int]]:
    sock = _listener()
    forwarder = Forwarder([Route(sock, upstream)], limit=300)
    forwarder.start()
    yield forwarder, sock.getsockname()[1]
    forwarder.stop()


def _round_trip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def test_many_connections_relay_bytes_both_ways_and_pass_the_half_close(relay: tuple[Forwarder, int]) -> None:
    forwarder, port = relay
    payloads = [os.urandom(64 * 1024 + i) for i in range(200)]
    with ThreadPoolExecutor(200) as pool:
        answers = list(pool.map(lambda p: _round_trip(port, p), payloads))
    assert answers == payloads
    deadline = time.monotonic() + 5
    while forwarder.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert forwarder.active == 0 and forwarder.refused == 0  # every connection closed on both sides


def test_the_connection_limit_refuses_at_once(upstream: tuple[str, int]) -> None:
    sock = _listener()
    forwarder = Forwarder([Route(sock, upstream)], limit=2)
    forwarder.start()
    port = sock.getsockname()[1]
    try:
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
        for s in held:
            s.sendall(b"x")
        deadline = time.monotonic() + 5
        while forwarder.active < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(ConnectionResetError):  # the reset may already reach connect()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as third:
                third.sendall(b"y")
                third.recv(1)
                third.recv(1)
        assert time.monotonic() - started < 1
        assert forwarder.refused == 1
        held[0].shutdown(socket.SHUT_WR)
        assert held[0].recv(10) == b"x"
        held[0].close()
        deadline = time.monotonic() + 5
        while forwarder.active > 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _round_trip(port, b"again") == b"again"  # room again once one has closed
        held[1].close()
    finally:
        forwarder.stop()


def test_one_pod_cannot_take_the_whole_relay(upstream: tuple[str, int]) -> None:
    """Issue #23: a pod opening connections without end is refused alone; another source address
    (another pod on the node) is still relayed while the first holds its share."""
    sock = _listener()
    forwarder = Forwarder([Route(sock, upstream)], limit=10, per_peer_limit=3)
    forwarder.start()
    port = sock.getsockname()[1]

    def connect(source: str) -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))

    try:
        held = [connect("127.0.0.1") for _ in range(3)]
        for s in held:
            s.sendall(b"x")
        deadline = time.monotonic() + 5
        while forwarder.active < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ConnectionResetError):
            with connect("127.0.0.1") as fourth:
                fourth.sendall(b"y")
                fourth.recv(1)
                fourth.recv(1)
        assert forwarder.refused == 1 and forwarder.by_peer == {"127.0.0.1": 3}
        with connect("127.0.0.2") as neighbour:  # total 4 of 10: the neighbour is relayed
            neighbour.sendall(b"hello")
            neighbour.shutdown(socket.SHUT_WR)
            assert neighbour.recv(10) == b"hello"
        for s in held:
            s.close()
        deadline = time.monotonic() + 5
        while forwarder.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert forwarder.by_peer == {}  # released as they close: the pod may connect again
        assert _round_trip(port, b"again") == b"again"
    finally:
        forwarder.stop()


def test_an_unreachable_upstream_resets_the_client() -> None:
    closed = _listener()
    dead = closed.getsockname()[:2]
    closed.close()  # nothing listens there now
    sock = _listener()
    forwarder = Forwarder([Route(sock, dead)])
    forwarder.start()
    try:
        # The reset reaches the client at recv(), or already at connect() when the forwarder
        # accepts, fails upstream and resets before the connecting thread runs again (CI saw it).
        with pytest.raises(ConnectionResetError), \
                socket.create_connection(("127.0.0.1", sock.getsockname()[1]), timeout=5) as s:
            s.recv(1)
    finally:
        forwarder.stop()


def test_parse_upstream() -> None:
    assert parse_upstream("127.0.0.1:8443") == ("127.0.0.1", 8443)
    assert parse_upstream("[::1]:443") == ("::1", 443)
    for bad in ("127.0.0.1", "host:0", ":443", "host:port"):
        with pytest.raises(ValueError):
            parse_upstream(bad)
