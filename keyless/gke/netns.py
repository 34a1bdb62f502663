"""Linux network namespaces for nodes and pods (ip-netns(8), veth(4), Linux bridge).

A node is a namespace `kl-n-*` holding a bridge (the pod CIDR's gateway) and the link-local
metadata address 169.254.169.254, where GKE's metadata server answers
(https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity#metadata_server).
A pod is a namespace `kl-p-*` whose `eth0` is a veth port of its node's bridge; its only
routes are its subnet and 169.254.169.254 (none outward), and /etc/netns/NAME/hosts makes
`metadata.google.internal` resolve there. Every namespace has an owner record (pids) in
RUN_DIR, written before the namespace exists, so a later start sweeps what a killed owner left.

The metadata server knows a pod by its source address alone, so the node's bridge checks every
frame a pod sends (nftables, bridge family, hook prerouting; nft(8)): its port admits only the
pod's own MAC, IPv4 from the pod's own IP and ARP whose sender is that IP and MAC, and nothing
else (no IPv6, no VLAN tags). A second address, a forged ARP reply or a changed MAC gets
nothing through (issue #23); the node's neighbour entries for its pods are also static.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from keyless.errors import FailedPrecondition

PREFIX = "kl-"
NODE_PREFIX = "kl-n-"
POD_PREFIX = "kl-p-"
METADATA_IP = "169.254.169.254"
METADATA_HOSTS = ("metadata.google.internal", "metadata.goog", "metadata")
# The same names written fully qualified: google-cloud-logging asks for `metadata.google.internal.`
# (its resource detection, google/cloud/logging_v2/_helpers.py METADATA_URL), which GKE's DNS
# answers and glibc's hosts file matches only as written (issue #20).
METADATA_NAMES = (*METADATA_HOSTS, *(f"{name}." for name in METADATA_HOSTS if "." in name))
BRIDGE = "br0"
VETH_PREFIX = "klv"
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")
CLONE_NEWNET = 0x40000000
IDLE_CHECKS = 3  # a node whose bridge stayed empty this many seconds is removed by its server
WATCHER_NAME = b"kl-idle-watch"
PR_SET_NAME = 15
log = logging.getLogger(__name__)


def run_dir() -> Path:
    """Where owner records and node locks live (machine-wide: namespace names are)."""
    path = Path(os.environ.get("KEYLESS_RUN_DIR", "/run/keyless"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def unavailable_reason() -> str | None:
    """Why this machine cannot create network namespaces, or None if it can."""
    if os.geteuid() != 0:
        return ("keyless pod run needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create a network namespace "
                "per pod; run it with sudo, or as root in CI")
    if shutil.which("ip") is None:
        return "keyless pod run needs iproute2's `ip` command (apt-get install iproute2)"
    if shutil.which("nft") is None:
        return ("keyless pod run needs nftables' `nft` command for the node's anti-spoofing rules "
                "(apt-get install nftables)")
    if not _unshare_permitted():
        return ("keyless pod run cannot create a network namespace here: unshare(CLONE_NEWNET) is not permitted "
                "(a container without CAP_SYS_ADMIN, or a seccomp policy)")
    return None


def _unshare_permitted() -> bool:
    """Root is not enough in some containers: try it (util-linux unshare(1), in a child)."""
    if shutil.which("unshare") is None:
        return True  # cannot tell: `ip netns add` will say
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def require_available() -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise FailedPrecondition(reason)


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", *(("-n", netns) if netns else ()), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise FailedPrecondition(f"`{' '.join(cmd)}` failed: {result.stderr.strip()}")
    return result.stdout


def nft(netns: str, script: str) -> None:
    """Apply an nftables script inside a namespace (nft -f -: one transaction, all or nothing)."""
    result = subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=script, capture_output=True,
                            text=True, timeout=30)
    if result.returncode != 0:
        raise FailedPrecondition(f"nft in {netns} failed: {result.stderr.strip()}")


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def namespaces(prefix: str = PREFIX) -> list[str]:
    """Keyless's namespaces on this machine (by naming convention)."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


# -- owner records -----------------------------------------------------------------------------

def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time, guards against pid reuse


def owner(pid: int) -> list[Any]:
    return [pid, _start_time(pid)]


def alive(entry: list[Any]) -> bool:
    pid, started = entry
    return started is not None and _start_time(int(pid)) == started


def record_path(name: str) -> Path:
    return run_dir() / f"{name}.json"


def write_record(name: str, record: dict[str, Any]) -> None:
    path = record_path(name)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def read_record(name: str) -> dict[str, Any] | None:
    try:
        value = json.loads(record_path(name).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def records() -> dict[str, dict[str, Any]]:
    out = {}
    for path in run_dir().glob(f"{PREFIX}*.json"):
        rec = read_record(path.stem)
        if rec is not None:
            out[path.stem] = rec
    return out


def owned(name: str) -> bool:
    rec = read_record(name)
    return rec is not None and any(alive(o) for o in rec.get("owners", []))


@contextlib.contextmanager
def node_lock(node_ns: str) -> Iterator[None]:
    """Serialises node set-up, IP allocation and node tear-down between processes."""
    path = run_dir() / f"{node_ns}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break  # still the live lock file (delete_node unlinks it under the lock)
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


# -- nodes -------------------------------------------------------------------------------------

def create_node(name: str, gateway: str) -> None:
    """The node namespace: a bridge holding the pod subnet's gateway and 169.254.169.254."""
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)
    # A fixed address: a bridge otherwise takes the lowest MAC of its ports, so each pod joining
    # or leaving could change the gateway's MAC under the other pods' ARP caches, and their
    # packets to the metadata server went nowhere until the neighbour entry expired (TCP's
    # retransmission back-off made that a 6-100 s stall).
    ip("link", "add", BRIDGE, "address", bridge_mac(name), "type", "bridge", netns=name)
    ip("addr", "add", f"{gateway}/24", "dev", BRIDGE, netns=name)
    ip("addr", "add", f"{METADATA_IP}/32", "dev", BRIDGE, netns=name)
    # Each pod's port jumps to its own chain (added with the pod); a port without one drops all.
    nft(name, f"""table bridge keyless {{
  map ports {{ type ifname : verdict; }}
  chain prerouting {{ type filter hook prerouting priority -300; policy accept;
    iifname vmap @ports
    iifname "{VETH_PREFIX}*" drop
  }}
}}
""")
    ip("link", "set", BRIDGE, "up", netns=name)


def bridge_mac(node_ns: str) -> str:
    """A locally administered unicast MAC for the node's bridge, stable for the namespace."""
    digest = hashlib.sha256(node_ns.encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def bridge_ports(node_ns: str) -> int:
    if not exists(node_ns):
        return 0
    out = ip("-o", "link", "show", "master", BRIDGE, netns=node_ns, check=False)
    return len([line for line in out.splitlines() if line.strip()])


def delete_node(name: str) -> None:
    rec = read_record(name) or {}
    pid = rec.get("server")
    if pid and alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid[0]), signal.SIGTERM)
    _delete(name)


# -- pods --------------------------------------------------------------------------------------

def create_pod(name: str, node_ns: str, veth: str, address: str, gateway: str, *, metadata_egress: bool,
               api_hosts: Sequence[str] = ()) -> None:
    """The pod namespace, its eth0 on the node's bridge, and its /etc/netns files. Without
    `metadata_egress` (a default-deny egress policy) neither the route nor the name exists.
    `api_hosts` (Google's API hosts Keyless implements) resolve to the gateway, where the
    node relays them to Keyless (keyless/gke/forwarder.py); every other name fails at once."""
    etc = ETC_NETNS / name
    etc.mkdir(parents=True, exist_ok=True)
    hosts = ["127.0.0.1\tlocalhost", f"{address}\t{name}"]
    if metadata_egress:
        hosts.append(f"{METADATA_IP}\t{' '.join(METADATA_NAMES)}")
    hosts += [f"{gateway}\t{host}" for host in api_hosts]
    (etc / "hosts").write_text("\n".join(hosts) + "\n")
    # No DNS server is reachable from a pod: the pod's own loopback answers a query with ICMP
    # port-unreachable, so a name outside the hosts file fails in about a millisecond (glibc
    # gives up on a refused server at once) instead of timing out; nothing is sent off the pod.
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    mac = pod_mac(address)
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)
    ip("link", "add", veth, "netns", node_ns, "type", "veth", "peer", "name", "eth0", "address", mac, "netns", name)
    guard_port(node_ns, veth, address, mac)  # before the port joins the bridge: no frame passes unchecked
    ip("neigh", "replace", address, "lladdr", mac, "dev", BRIDGE, "nud", "permanent", netns=node_ns)
    ip("link", "set", veth, "master", BRIDGE, "up", netns=node_ns)
    ip("addr", "add", f"{address}/24", "dev", "eth0", netns=name)
    ip("link", "set", "eth0", "up", netns=name)
    if metadata_egress:
        ip("route", "add", f"{METADATA_IP}/32", "via", gateway, "dev", "eth0", netns=name)


def pod_mac(address: str) -> str:
    """The pod's eth0 MAC: 0a:58 and its IPv4 address, as Kubernetes' bridge plugins derive it."""
    return "0a:58:" + ":".join(f"{int(part):02x}" for part in address.split("."))


def guard_port(node_ns: str, veth: str, address: str, mac: str) -> None:
    """The bridge port's anti-spoofing chain: the pod's own MAC, IPv4 from its own IP, ARP as itself."""
    chain = _chain(veth)
    nft(node_ns, f"""add chain bridge keyless {chain}
add rule bridge keyless {chain} ether saddr != {mac} drop
add rule bridge keyless {chain} ether type arp arp saddr ether != {mac} drop
add rule bridge keyless {chain} ether type arp arp saddr ip != {address} drop
add rule bridge keyless {chain} ether type ip ip saddr != {address} drop
add rule bridge keyless {chain} ether type != {{ ip, arp }} drop
add rule bridge keyless {chain} accept
add element bridge keyless ports {{ "{veth}" : goto {chain} }}
""")


def unguard_port(node_ns: str, veth: str) -> None:
    with contextlib.suppress(FailedPrecondition):
        nft(node_ns, f'delete element bridge keyless ports {{ "{veth}" }}\ndelete chain bridge keyless {_chain(veth)}\n')


def _chain(veth: str) -> str:
    return "port-" + veth


def kill_until_gone(find: Callable[[], set[int]], *, seconds: float = 1.0, reap: bool = False) -> None:
    """SIGKILL what `find` lists until it lists nothing (a process may fork while we kill its
    parent), for at most `seconds`. With `reap`, collect those that are the caller's children
    (zombies stay listed until then)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = find()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if reap:
            for pid in pids:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
        time.sleep(0.01)


def kill_processes(name: str) -> None:
    """End every process still inside the namespace (Kubernetes kills a deleted pod's containers)."""
    kill_until_gone(lambda: {int(p) for p in ip("netns", "pids", name, check=False).split() if p.isdigit()})


def veth_name(pod_ns: str) -> str:
    """The node-side end of a pod's eth0 (interface names have at most 15 characters)."""
    return VETH_PREFIX + pod_ns[len(POD_PREFIX):]


def delete_pod(name: str, node_ns: str | None = None) -> None:
    """Kill the pod's processes and remove its namespace. The veth pair is deleted explicitly:
    the kernel dismantles a deleted namespace asynchronously, seconds later under load."""
    kill_processes(name)
    if node_ns and exists(node_ns):
        ip("link", "del", veth_name(name), netns=node_ns, check=False)
        unguard_port(node_ns, veth_name(name))
    _delete(name)


def _delete(name: str) -> None:
    if exists(name):
        ip("netns", "del", name, check=False)
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)
    with contextlib.suppress(OSError):
        ETC_NETNS.rmdir()  # only if empty: /etc/netns may be someone else's too
    with contextlib.suppress(FileNotFoundError):
        record_path(name).unlink()
    if name.startswith(NODE_PREFIX):  # callers hold the node lock: waiters re-open a fresh file
        with contextlib.suppress(FileNotFoundError):
            (run_dir() / f"{name}.lock").unlink()


def sweep() -> list[str]:
    """Remove Keyless namespaces (and records) whose owners are all gone; pods first, so a
    node's bridge is empty when its turn comes. Returns what was removed."""
    removed = []
    recs = records()
    for name in sorted(set(namespaces()) | set(recs), key=lambda n: not n.startswith(POD_PREFIX)):
        rec = recs.get(name) or read_record(name)
        if rec is not None and any(alive(o) for o in rec.get("owners", [])):
            continue
        if name.startswith(NODE_PREFIX):
            with node_lock(name):
                if owned(name) or bridge_ports(name) > 0:
                    continue
                delete_node(name)
        else:
            delete_pod(name, (rec or {}).get("node"))
        removed.append(name)
    return removed


# -- sockets inside a namespace ----------------------------------------------------------------

# -- the node's idle watcher -------------------------------------------------------------------

def watch_idle_node(name: str, stopping: threading.Event, checks: int = IDLE_CHECKS, interval: float = 1.0) -> None:
    """Remove the node once its bridge stayed empty `checks` intervals (the runners remove an empty
    node; this covers runners and reapers that were killed), then set `stopping`. A failing check
    (EMFILE while pods hold every descriptor, a slow `ip`) is logged and retried: the watcher outlives it."""
    with contextlib.suppress(OSError, AttributeError):  # `ps -T`, /proc/PID/task/*/comm show it by name
        ctypes.CDLL(None).prctl(PR_SET_NAME, WATCHER_NAME, 0, 0, 0)
    empty = 0
    while not stopping.wait(interval):
        try:
            empty = empty + 1 if bridge_ports(name) == 0 else 0
            if empty >= checks or not exists(name):
                with node_lock(name):
                    if bridge_ports(name) == 0:
                        stopping.set()
                        record_path(name).unlink(missing_ok=True)
                        delete_node(name)
                        return
        except (OSError, FailedPrecondition, subprocess.SubprocessError) as error:
            empty = 0
            log.warning("node %s: idle check failed, retrying: %s", name, error)


def listen_in(name: str, host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket that lives in namespace `name`, made by this thread stepping in
    and back out with setns(2): the process stays in its own namespace (so it still reaches
    the store, e.g. PostgreSQL on loopback) while serving the node's address."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name} failed")
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted connections inherit it: headers and body leave at once (no Nagle +
            # delayed-ACK stall of 40 ms between them).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            sock.listen(backlog)
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back failed")
    finally:
        os.close(home)
        os.close(target)
    return sock


__all__ = ["METADATA_IP", "NODE_PREFIX", "POD_PREFIX", "create_node", "create_pod", "delete_node", "delete_pod",
           "listen_in", "namespaces", "node_lock", "owner", "sweep", "unavailable_reason"]
