"""Loopback pods (`keyless pod run --network loopback`), for machines where network namespaces
cannot be made (no root): each pod gets its own 127.x.y.z address with a metadata server there.

The server identifies the pod by the local address its connection arrived at (each address is
one pod's), then answers exactly as the node's server does (keyless/gke/metadata.py). Clients
find it through the variables they read instead of metadata.google.internal: GCE_METADATA_HOST
(google-auth, cloud.google.com/go/compute/metadata, google-auth-library-java and -nodejs),
GCE_METADATA_IP (google-auth's probe) and GCE_METADATA_ROOT (gcloud,
googlecloudsdk/core/credentials/gce_read.py). No isolation: any local process can connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import os
import signal
import socket
import threading
from typing import Any

from sqlalchemy import select

from keyless.config import Settings
from keyless.errors import FailedPrecondition
from keyless.gke import netns
from keyless.store.db import Database
from keyless.store.models import K8sObject

NETWORKS = ("namespace", "loopback")
METADATA_VARIABLES = ("GCE_METADATA_HOST", "GCE_METADATA_IP", "GCE_METADATA_ROOT")
LOOPBACK_OFFER = (
    "Pass --network loopback to run the pod without a network namespace instead: it gets its own 127.x.y.z "
    "address with a metadata server listening there, which clients find through GCE_METADATA_HOST, "
    "GCE_METADATA_IP and GCE_METADATA_ROOT (metadata.google.internal and 169.254.169.254 do not reach it). "
    "That mode gives up isolation: any local process can reach a pod's metadata endpoint and receive the "
    "pod's tokens, since the pod is identified by the 127.x address it was given (the address a connection "
    "arrives at), not by its source address; and --deny-metadata-egress and --tls-port are not available")


def block(settings: Settings, node_name: str) -> str:
    """The node's /24 of 127.64.0.0/10, e.g. `127.93.17.` (per store and node, as its netns subnet)."""
    identity = settings.database_url or str(settings.data_dir.resolve())
    digest = hashlib.sha256(f"{identity}|{node_name}|loopback".encode()).digest()
    return f"127.{64 + digest[0] % 64}.{digest[1]}."


def allocate(s: Any, prefix: str) -> str:
    """A free address of the block (inside the write transaction that records it, so two
    runners never take the same one)."""
    used = set(s.scalars(select(K8sObject.pod_ip).where(K8sObject.pod_ip.like(prefix + "%"))).all())
    for host in range(2, 255):
        if f"{prefix}{host}" not in used:
            return f"{prefix}{host}"
    raise FailedPrecondition("the node has no free loopback pod address (253 pods running)")


def listen(address: str) -> socket.socket:
    """The pod's metadata socket: port 80 where this user may bind it (root, or
    net.ipv4.ip_unprivileged_port_start <= 80), else a port the kernel chooses."""
    for port in (80, 0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(1024)
            return sock
        except OSError:
            sock.close()
            if port == 0:
                raise
    raise AssertionError("unreachable")


def environment(sock: socket.socket) -> dict[str, str]:
    address, port = sock.getsockname()[:2]
    host = address if port == 80 else f"{address}:{port}"
    return dict.fromkeys(METADATA_VARIABLES, host)


class PodEndpoint:
    """The pod's metadata server, on a thread of `keyless pod run` itself: it ends with the runner,
    even a killed one (the kernel closes the socket)."""

    def __init__(self, settings: Settings, db: Database, node_name: str, sock: socket.socket) -> None:
        from keyless.api.metadata.server import MetadataServer
        from keyless.state import ServerState

        self.state = ServerState(settings, db)
        self.app = MetadataServer(self.state, node_name)
        self.sock = sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keyless-pod-metadata", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise FailedPrecondition("the pod's metadata server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.sock.close()
        self.state.audit.close()

    def _run(self) -> None:
        from keyless.api.metadata.transport import run, serve

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.app, [self.sock], self._stop, by_destination=True, ready=self._ready.set)

        run(main())


# -- the pod's processes -------------------------------------------------------------------------

def kill_group(pgid: int, started: str | None) -> None:
    """SIGKILL the pod's process group (its command and everything it started), as Kubernetes
    kills a deleted pod's containers. Only while the group id cannot have been reused: its leader
    is the same process, or no process holds that id (so no new group can have taken it)."""
    now = netns.owner(pgid)[1]
    if now is not None and now != started:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


PR_SET_CHILD_SUBREAPER = 36  # prctl(2)


def adopt_orphans() -> None:
    """Make this runner the subreaper of the pod's processes (prctl(2) PR_SET_CHILD_SUBREAPER): a
    process that left the pod's group (setsid, a double-forked daemon) and lost its parent is
    re-parented to the runner instead of init, so `kill_descendants` still finds it."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    stack = [pid]
    while stack:
        parent = stack.pop()
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with contextlib.suppress(OSError), open(f"/proc/{parent}/task/{task}/children") as f:
                    for child in map(int, f.read().split()):
                        if child not in found:
                            found.add(child)
                            stack.append(child)
    return found


def kill_descendants(keep: int) -> None:
    """SIGKILL every process below this runner except `keep` (the reaper), and reap them: what
    Kubernetes does to a container's processes, wherever they moved in the process tree. Killing a
    parent re-parents its children here (see `adopt_orphans`), so look again until none is left."""
    netns.kill_until_gone(lambda: _descendants(os.getpid()) - {keep}, seconds=5.0, reap=True)


def foreground(pgid: int) -> int | None:
    """Give the terminal to the pod's process group (as a shell does for a job), so an
    interactive command reads it; returns the group to give it back to."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    try:
        previous = os.tcgetpgrp(fd)
        if previous != os.getpgrp():
            return None  # we are not in the foreground ourselves
        handler = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(fd, pgid)
        finally:
            signal.signal(signal.SIGTTOU, handler)
        return previous
    except OSError:
        return None
    finally:
        os.close(fd)


def give_back(previous: int | None) -> None:
    if previous is None:
        return
    with contextlib.suppress(OSError):
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        handler = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(fd, previous)
        finally:
            signal.signal(signal.SIGTTOU, handler)
            os.close(fd)


__all__ = ["LOOPBACK_OFFER", "METADATA_VARIABLES", "NETWORKS", "PodEndpoint", "allocate", "block", "environment",
           "adopt_orphans", "foreground", "give_back", "kill_descendants", "kill_group", "listen"]
