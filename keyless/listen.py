"""Listening sockets shared by a server's worker processes through SO_REUSEPORT (socket(7)): each
worker opens its own socket on the same address and the kernel spreads new connections over them
evenly. One socket shared by all workers does not: asyncio accepts every pending connection at
once, so the worker that woke first took them all (2 workers served 2,176 exchanges/s, one
worker's rate; docs/performance.md). SO_REUSEPORT also lets another process of the same user bind
the port, as it does for any server using it.
"""

from __future__ import annotations

import socket
from typing import Any


def listening_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket on (host, port) that this server's other workers may open too."""
    family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)  # proto IPPROTO_TCP: asyncio then sets TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(2048)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(host: str, preferred: int) -> socket.socket:
    """A port for `keyless serve`'s TLS listeners, chosen once before its workers start and held
    until the server stops: `preferred` if it is free on `host`, else one the kernel says is free.
    Probed without SO_REUSEPORT, so a port another server listens on (even one of ours) counts as
    taken; then held by a bound, never listening SO_REUSEPORT socket (as WorkerSocket holds the
    HTTP port), which the workers' listeners join while no other program, nor the kernel's choice
    of a client connection's port, can take it in between (seconds, while the workers start)."""
    family, kind, proto, _, address = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    for port in ((preferred, 0) if 0 < preferred < 65536 else (0,)):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free
            try:
                probe.bind((address[0], port, *address[2:]))
            except OSError:
                continue
            port = int(probe.getsockname()[1])
        try:
            return listening_socket(host, port, listen=False)
        except OSError:
            continue  # taken in the microseconds between: try the next
    raise OSError(f"no free port on {host}")


class WorkerSocket(socket.socket):
    """The HTTP port as uvicorn's worker supervisor hands it to each worker: the supervisor holds
    it bound but not listening (so a port in use fails at once), and each worker process unpickles
    it as a listening socket of its own (`__reduce__`), restarted workers included."""

    def __init__(self, host: str, port: int) -> None:
        bound = listening_socket(host, port, listen=False)
        super().__init__(bound.family, bound.type, bound.proto, bound.detach())
        self.address = (host, port)

    def __reduce__(self) -> tuple[Any, ...]:
        return listening_socket, self.address
