"""The metadata server's own HTTP/1.1 layer (keyless/api/metadata/transport.py) against hostile and
unusual input, over a real socket, with the real MetadataServer on a real store (no pod is
registered, so a flavoured request is answered "Unable to find the pod")."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from keyless.api.metadata import transport
from keyless.api.metadata.server import MetadataServer
from keyless.api.metadata.transport import (
    MAX_HEAD,
    Connections,
    connection_limit,
    raise_file_limit,
    run,
    serve,
)
from keyless.state import ServerState


@contextlib.contextmanager
def serving(state: ServerState, connections: Connections | None = None) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
        await serve(MetadataServer(state, "no-such-node"), [sock], holder["stop"],  # type: ignore[arg-type]
                    ready=ready.set, connections=connections)

    thread = threading.Thread(target=run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield sock.getsockname()[1]
    holder["loop"].call_soon_threadsafe(holder["stop"].set)  # type: ignore[attr-defined]
    thread.join(10)


@pytest.fixture
def port(state: ServerState) -> Iterator[int]:
    with serving(state) as port:
        yield port


def exchange(port: int, data: bytes, wait: float = 0.5) -> tuple[bytes, bool]:
    """Everything the server sends back, and whether it closed the connection."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(data)
        conn.settimeout(wait)
        out = b""
        try:
            while chunk := conn.recv(65536):
                out += chunk
        except TimeoutError:
            return out, False
        return out, True


def test_keep_alive_pipelining_and_close(port: int) -> None:
    out, closed = exchange(port, b"GET / HTTP/1.1\r\nHost: m\r\n\r\n"
                                 b"GET /computeMetadata/v1/ HTTP/1.1\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n"
                                 b"GET / HTTP/1.1\r\n\r\n")
    first, second = out.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 OK\r\n") and b"metadata-flavor: Google\r\n" in first
    assert first.endswith(b"\r\n\r\ncomputeMetadata/\n")
    assert second.startswith(b"404 ") and b"Unable to find the pod with IP 127.0.0.1" in second
    assert closed  # after the answer to the request that asked for it; the third is not answered


def test_head_has_no_body_and_http_1_0_closes(port: int) -> None:
    out, closed = exchange(port, b"HEAD / HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 17\r\n" in out and out.endswith(b"\r\n\r\n")
    assert not closed
    out, closed = exchange(port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.endswith(b"computeMetadata/\n") and closed


def test_checks_hold_on_this_transport(port: int) -> None:
    out, _ = exchange(port, b"GET /computeMetadata/v1/project/project-id HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403 Forbidden") and b'Missing required header "Metadata-Flavor"' in out
    out, _ = exchange(port, b"GET / HTTP/1.1\r\nMetadata-Flavor: Google\r\nX-Forwarded-For: 10.0.0.9\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 403 Forbidden") and b"X-Forwarded-For header are not accepted" in out
    out, _ = exchange(port, b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
    assert out.startswith(b"HTTP/1.1 405 ")


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET / HTTP/1.1\r\nX-A: " + b"a" * (MAX_HEAD + 1) + b"\r\n\r\n", b"431"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(150)) + b"\r\n", b"431"),
    (b"GET /" + b"a" * (MAX_HEAD + 1) + b" HTTP/1.1\r\n\r\n", b"431"),
    (b"NOT HTTP AT ALL\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
])
def test_malformed_or_oversized_requests_are_answered_and_closed(port: int, request_bytes: bytes,
                                                                   status: bytes) -> None:
    out, closed = exchange(port, request_bytes)
    assert out.startswith(b"HTTP/1.1 " + status + b" ") and b"connection: close\r\n" in out
    assert closed
    # The server is still there for the next client.
    assert exchange(port, b"GET / HTTP/1.0\r\n\r\n")[0].endswith(b"computeMetadata/\n")


# -- one client must not silence the server (issue #23) --------------------------------------------

def _connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port))
    conn.settimeout(5)
    return conn


def _answer(conn: socket.socket) -> bytes:
    out = b""
    with contextlib.suppress(TimeoutError):
        while chunk := conn.recv(65536):
            out += chunk
            if out.endswith(b"computeMetadata/\n") or b"connection: close" in out:
                break
    return out


def test_a_client_past_its_limit_loses_its_idle_connections_or_gets_429(state: ServerState) -> None:
    connections = Connections(limit=100, per_client=3)
    with serving(state, connections) as port:
        first, second, third = (_connect(port) for _ in range(3))
        time.sleep(0.2)
        fourth = _connect(port)  # the client's longest-idle connection makes room
        assert first.recv(100) == b""
        fourth.sendall(b"GET / HTTP/1.1\r\n\r\n")
        assert _answer(fourth).endswith(b"computeMetadata/\n")
        for conn in (second, third, fourth):  # each in the middle of a request: none is idle
            conn.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.2)
        fifth = _connect(port)
        assert fifth.recv(1000).startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
        assert connections.refused == 1 and connections.evicted == 1 and len(connections) == 3
        for conn in (first, second, third, fourth, fifth):
            conn.close()


def test_past_the_servers_limit_new_connections_get_503(state: ServerState) -> None:
    connections = Connections(limit=2, per_client=100)
    with serving(state, connections) as port:
        held = [_connect(port), _connect(port)]
        time.sleep(0.2)
        extra = _connect(port)
        assert extra.recv(1000).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        held[0].sendall(b"GET / HTTP/1.1\r\n\r\n")  # those admitted are served as before
        assert _answer(held[0]).endswith(b"computeMetadata/\n")
        for conn in [*held, extra]:
            conn.close()


def test_idle_and_unfinished_connections_are_closed(state: ServerState, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "IDLE_TIMEOUT", 0.5)
    monkeypatch.setattr(transport, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(transport, "SWEEP_EVERY", 0.1)
    with serving(state) as port:
        idle, slow, busy = _connect(port), _connect(port), _connect(port)
        slow.sendall(b"GET / HTTP/1.1\r\nX-A: ")  # a request begun, never finished (slowloris)
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # a client that keeps asking stays connected
            busy.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert _answer(busy).endswith(b"computeMetadata/\n")
            time.sleep(0.2)
        assert idle.recv(100) == b"" and slow.recv(100) == b""
        for conn in (idle, slow, busy):
            conn.close()


def test_file_limit_is_raised_and_a_reserve_kept() -> None:
    soft = raise_file_limit()
    assert soft == resource.getrlimit(resource.RLIMIT_NOFILE)[1] or resource.getrlimit(resource.RLIMIT_NOFILE)[1] == -1
    assert connection_limit(reserve=256) == soft - 256
