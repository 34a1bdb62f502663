"""What the hostile suite sends and measures: raw HTTP/1.1 over a socket (so a body or header can be
larger than any client would build in memory, and be cut off as soon as the server answers), and the
server process's peak resident memory (VmHWM in /proc/PID/status, proc(5))."""

from __future__ import annotations

import select
import socket
import ssl
import time
from pathlib import Path

MB = 1024 * 1024


def peak_rss(pid: int) -> int:
    """The process's peak resident set size so far, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def _answered(sock: socket.socket) -> bytes | None:
    """What the server has sent so far, without waiting; None if nothing (a TLS 1.3 session ticket
    makes the socket readable without any application data)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return None
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return None
    except OSError:
        return b""
    finally:
        sock.setblocking(True)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), None)
    return length is not None and len(body) >= length


def _response(sock: socket.socket, deadline: float, data: bytes = b"") -> tuple[int, bytes]:
    """Read one response (head and, with Content-Length, body) or what arrived before the close."""
    while not _complete(data) and time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except OSError:  # reset, timed out, or the TLS close
            break
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 "), f"no HTTP response: {data[:200]!r}"
    return int(data[9:12]), data.partition(b"\r\n\r\n")[2]


def send(port: int, head: bytes, *, stream: int = 0, filler: bytes = b"a", chunked: bool = False,
         timeout: float = 20.0, tls: ssl.SSLContext | None = None) -> tuple[int, bytes, int, float]:
    """Send `head`, then up to `stream` bytes of `filler` (as HTTP chunks when `chunked`), stopping as
    soon as the server answers. Returns (status, body, bytes of the stream sent, seconds taken)."""
    start = time.monotonic()
    deadline = start + timeout
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock: socket.socket = tls.wrap_socket(raw, server_hostname="localhost") if tls else raw
    sent, early = 0, b""
    with sock:
        sock.sendall(head)
        piece = filler * (MB // len(filler))
        while sent < stream and time.monotonic() < deadline:
            answer = _answered(sock)
            if answer is not None:
                early = answer
                break
            n = min(len(piece), stream - sent)
            data = piece[:n]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (n, data) if chunked else data)
            except OSError:  # the server answered and closed (a TLS close arrives as SSLEOFError)
                break
            sent += n
        if chunked and sent >= stream:
            try:
                sock.sendall(b"0\r\n\r\n")
            except OSError:
                pass
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        status, body = _response(sock, deadline, early)
    return status, body, sent, time.monotonic() - start
