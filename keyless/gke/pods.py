"""Running a command as a pod of a GKE cluster, in its own network namespace on one of its nodes.

Like the kubelet, `run_pod` places the pod on a node (the node's namespace and metadata server
are made on first use), gives it an IP, records it (K8sObject.pod_ip, status.podIP), runs the
command with `ip netns exec` in a sandbox (keyless/gke/sandbox.py: its own mount, PID and UTS
namespaces, the host's filesystem read-only with Keyless's data hidden, no capabilities, uid
65534 unless securityContext.runAsUser says otherwise), and tears everything down when the
command ends. With a TLS port, the pod also reaches Keyless as Google's API hosts (relayed by its node, keyless/gke/forwarder.py)
and trusts Keyless's CA through the clients' CA variables. A reaper forked
before anything exists performs the same tear-down if the runner is killed, even by SIGKILL;
owner records let the next start sweep whatever a killed reaper left (keyless/gke/netns.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select

from keyless.api.hosts import hostnames
from keyless.config import Settings
from keyless.errors import FailedPrecondition, InvalidArgument, NotFound
from keyless.gke import logging_agent, loopback, netns
from keyless.store.db import Database, open_database
from keyless.store.models import GkeCluster, GkeNode, GkeNodePool, K8sObject

SERVER_START_TIMEOUT = 30.0
NOBODY = 65534  # a pod's uid and gid unless its securityContext names others
SANDBOX = Path(__file__).with_name("sandbox.py")
PR_SET_PDEATHSIG = 1
# The variables each client reads for its CA bundle (research/google-auth-clients.md), as `keyless env`.
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
                "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", "NODE_EXTRA_CA_CERTS")


@dataclass
class PodSpec:
    """What `keyless pod run` was asked for."""

    cluster: str
    command: list[str]
    namespace: str = "default"
    service_account: str | None = None  # None: the pod's own, else `default`
    pod: str | None = None  # run an existing Pod object (e.g. one of a Deployment's replicas)
    name: str | None = None
    node_pool: str | None = None
    project: str | None = None
    location: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    metadata_egress: bool = True  # False: as under a default-deny egress NetworkPolicy
    server: str | None = None  # Keyless's URL as the host reaches it (default: the settings' base URL)
    network: str = "namespace"  # or "loopback" (keyless/gke/loopback.py): no namespace, no root needed
    run_as_user: int | None = None  # securityContext.runAsUser of a new pod (default: NOBODY)
    run_as_group: int | None = None
    container_logs: bool = True  # False for `kubectl exec`: its output is not the container's log


@dataclass
class Placement:
    cluster_id: str
    node_name: str
    node_ip: str
    node_ns: str
    gateway: str
    pod_name: str
    pod_uid: str
    ephemeral: bool  # made for this run (kubectl run --rm): deleted at the end
    env: dict[str, str]
    uid: int = NOBODY
    gid: int = NOBODY


def _db_identity(settings: Settings) -> str:
    return settings.database_url or str(settings.data_dir.resolve())


def node_namespace(settings: Settings, node_name: str) -> tuple[str, str]:
    """The node's namespace name and its pod subnet's gateway (a /24 of 10.64.0.0/10)."""
    digest = hashlib.sha256(f"{_db_identity(settings)}|{node_name}".encode()).digest()
    return netns.NODE_PREFIX + digest.hex()[:10], f"10.{64 + digest[10] % 64}.{digest[11]}.1"


def _cluster(s: Any, spec: PodSpec) -> GkeCluster:
    q = select(GkeCluster).where(GkeCluster.name == spec.cluster)
    if spec.project:
        q = q.where(GkeCluster.project_id == spec.project)
    if spec.location:
        q = q.where(GkeCluster.location == spec.location)
    rows = s.scalars(q).all()
    if not rows:
        raise NotFound(f'cluster "{spec.cluster}" not found')
    if len(rows) > 1:
        raise InvalidArgument(f'more than one cluster is named "{spec.cluster}": pass --project and --location')
    cluster: GkeCluster = rows[0]
    return cluster


def _place(s: Any, settings: Settings, spec: PodSpec) -> tuple[Placement, dict[str, Any] | None]:
    """Choose the node and the Pod object; returns the placement and, for a new pod, its body."""
    cluster = _cluster(s, spec)
    if spec.namespace != "default" and s.scalars(select(K8sObject.id).where(
            K8sObject.cluster_id == cluster.id, K8sObject.kind == "Namespace", K8sObject.name == spec.namespace)).first() \
            is None:
        raise NotFound(f'namespaces "{spec.namespace}" not found')  # Kubernetes' wording
    existing: K8sObject | None = None
    if spec.pod:
        existing = s.scalars(select(K8sObject).where(
            K8sObject.cluster_id == cluster.id, K8sObject.kind == "Pod", K8sObject.namespace == spec.namespace,
            K8sObject.name == spec.pod)).first()
        if existing is None:
            raise NotFound(f'pods "{spec.pod}" not found')  # Kubernetes' wording
    pod_spec = dict((existing.body.get("spec") or {}) if existing else {})
    ksa = spec.service_account or pod_spec.get("serviceAccountName") or "default"
    if ksa != "default" and s.scalars(select(K8sObject.id).where(
            K8sObject.cluster_id == cluster.id, K8sObject.kind == "ServiceAccount",
            K8sObject.namespace == spec.namespace, K8sObject.name == ksa)).first() is None:
        raise FailedPrecondition(f'pods is forbidden: error looking up service account {spec.namespace}/{ksa}: '
                                 f'serviceaccount "{ksa}" not found')
    nodes = s.scalars(select(GkeNode).where(GkeNode.cluster_id == cluster.id).order_by(GkeNode.name)).all()
    if spec.node_pool:
        pool = s.scalars(select(GkeNodePool).where(GkeNodePool.cluster_id == cluster.id,
                                                   GkeNodePool.name == spec.node_pool)).first()
        if pool is None:
            raise NotFound(f'node pool "{spec.node_pool}" not found in cluster "{cluster.name}"')
        nodes = [n for n in nodes if n.node_pool_id == pool.id]
    elif pod_spec.get("nodeName"):
        nodes = [n for n in nodes if n.name == pod_spec["nodeName"]] or nodes
    elif isinstance(pod_spec.get("nodeSelector"), dict) and pod_spec["nodeSelector"]:
        nodes = _selected(s, cluster, nodes, pod_spec["nodeSelector"])
    if not nodes:
        raise FailedPrecondition(f'cluster "{cluster.name}" has no nodes to run the pod on')
    node = nodes[0]
    node_ns, gateway = node_namespace(settings, node.name)
    env: dict[str, str] = {}
    for container in (pod_spec.get("containers") or [])[:1]:
        for item in container.get("env") or []:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str):
                env[item["name"]] = item["value"]
    if existing is not None:
        return Placement(cluster.id, node.name, node.internal_ip, node_ns, gateway, existing.name, existing.uid,
                         False, env, *run_as(pod_spec, spec)), None
    name = spec.name or f"pod-run-{secrets.token_hex(3)}"
    if s.scalars(select(K8sObject.id).where(K8sObject.cluster_id == cluster.id, K8sObject.kind == "Pod",
                                            K8sObject.namespace == spec.namespace, K8sObject.name == name)).first():
        raise FailedPrecondition(f'pods "{name}" already exists')
    uid = str(uuid.uuid4())
    pod_body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": spec.namespace, "uid": uid, "labels": {"run": name}},
        "spec": {"serviceAccountName": ksa, "nodeName": node.name,
                 "containers": [{"name": name, "command": spec.command}]},
    }
    context = {key: value for key, value in (("runAsUser", spec.run_as_user), ("runAsGroup", spec.run_as_group))
               if value is not None}
    if context:
        pod_body["spec"]["securityContext"] = context
    return Placement(cluster.id, node.name, node.internal_ip, node_ns, gateway, name, uid, True, env,
                     *run_as(pod_body["spec"], spec)), pod_body


def run_as(pod_spec: dict[str, Any], spec: PodSpec) -> tuple[int, int]:
    """The pod's uid and gid: the first container's securityContext, else the pod's, else the run's
    flags, else NOBODY (a container runtime would take the image's USER; Keyless has no image).
    Without runAsGroup, root keeps group 0 and any other uid gets NOBODY's group."""
    contexts = [((pod_spec.get("containers") or [{}])[0] or {}).get("securityContext"), pod_spec.get("securityContext"),
                {"runAsUser": spec.run_as_user, "runAsGroup": spec.run_as_group}]
    found: dict[str, int] = {}
    for key in ("runAsUser", "runAsGroup"):
        for context in contexts:
            value = context.get(key) if isinstance(context, dict) else None
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 2:
                raise InvalidArgument(f"securityContext.{key} must be an integer from 0 to 2147483646, got {value!r}")
            found[key] = value
            break
    uid = found.get("runAsUser", NOBODY)
    return uid, found.get("runAsGroup", 0 if uid == 0 else NOBODY)


def _selected(s: Any, cluster: GkeCluster, nodes: list[GkeNode], selector: dict[str, Any]) -> list[GkeNode]:
    """The nodes whose labels match a pod's nodeSelector: GKE labels nodes of GKE_METADATA pools
    `iam.gke.io/gke-metadata-server-enabled: "true"` and every node with its pool's name."""
    pools = {p.id: p for p in s.scalars(select(GkeNodePool).where(GkeNodePool.cluster_id == cluster.id)).all()}

    def labels(node: GkeNode) -> dict[str, str]:
        pool = pools.get(node.node_pool_id)
        out = {"kubernetes.io/hostname": node.name}
        if pool is not None:
            out["cloud.google.com/gke-nodepool"] = pool.name
            if pool.workload_metadata_mode == "GKE_METADATA":
                out["iam.gke.io/gke-metadata-server-enabled"] = "true"
        return out

    chosen = [n for n in nodes if all(labels(n).get(k) == v for k, v in selector.items())]
    if not chosen:
        raise FailedPrecondition(f"0/{len(nodes)} nodes are available: {len(nodes)} node(s) didn't match Pod's "
                                 f"node affinity/selector ({', '.join(f'{k}={v}' for k, v in selector.items())})")
    return chosen


# -- node set-up ---------------------------------------------------------------------------------

def relays_for(settings: Settings, server: str | None) -> dict[str, str]:
    """What the node's gateway relays to Keyless: {port on the gateway: upstream HOST:PORT}. Port
    443 goes to `keyless serve --tls-port`, 80 to its HTTP port; none without a TLS port (then
    pods reach the metadata server only, as before)."""
    if not settings.tls_port:
        return {}
    url = urlsplit(server or settings.base_url)
    host = url.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::", "localhost"):
        host = "127.0.0.1"  # a wildcard bind is reached on loopback
    upstream = f"[{host}]" if ":" in host else host
    relays = {"443": f"{upstream}:{settings.tls_port}"}
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError as error:
        raise InvalidArgument(f"--server: {error}") from error
    if url.scheme == "http":
        relays["80"] = f"{upstream}:{port}"
    return relays


def ca_bundle(settings: Settings) -> Path:
    """The bundle Keyless's TLS port is trusted through (the system's roots plus Keyless's CA)."""
    bundle = settings.data_dir / "tls" / "bundle.pem"
    if not bundle.is_file():
        raise FailedPrecondition(f"{bundle} does not exist: start `keyless serve` (without --tls-port off) with "
                                 "this data directory first (it creates Keyless's CA)")
    return bundle


def _server_alive(node_ns: str) -> bool:
    rec = netns.read_record(node_ns) or {}
    server = rec.get("server")
    return isinstance(server, list) and netns.alive(server) and bool(rec.get("ready"))


def ensure_node(settings: Settings, place: Placement, relays: dict[str, str] | None = None) -> None:
    """The node's namespace, metadata server and relays, made if missing (caller holds the node lock)."""
    relays = relays or {}
    if not netns.exists(place.node_ns):
        netns.write_record(place.node_ns, {"kind": "node", "node": place.node_name, "owners": [netns.owner(os.getpid())]})
        netns.create_node(place.node_ns, place.gateway)
    if _server_alive(place.node_ns):
        running = (netns.read_record(place.node_ns) or {}).get("relays") or {}
        if relays and running != relays:
            raise FailedPrecondition(
                f"node {place.node_name} relays Google's API hosts to {running or 'nowhere'}, not {relays}: its "
                "pods started with other --server/--tls-port settings; run this pod once they have ended")
        return
    log_dir = settings.data_dir / "gke"
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "keyless.cli.main", "pod", "metadata-server", "--node", place.node_name,
           "--netns", place.node_ns, "--data-dir", str(settings.data_dir)]
    if settings.database_url:
        cmd += ["--database", settings.database_url]
    if relays:
        cmd += ["--gateway", place.gateway]
        for port, upstream in relays.items():
            cmd += ["--relay", f"{port}={upstream}"]
    with open(log_dir / f"{place.node_ns}.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if _server_alive(place.node_ns):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise FailedPrecondition(f"the metadata server of node {place.node_name} did not start; see "
                             f"{log_dir / (place.node_ns + '.log')}")


def _allocate(node_ns: str, gateway: str) -> str:
    base = gateway.rsplit(".", 1)[0]
    used = {rec.get("ip") for rec in netns.records().values() if rec.get("node") == node_ns}
    for host in range(2, 255):
        address = f"{base}.{host}"
        if address not in used:
            return address
    raise FailedPrecondition("the node has no free pod IP (253 pods running)")


# -- recording the pod ---------------------------------------------------------------------------

def _record_running(db: Database, place: Placement, body: dict[str, Any] | None,
                    address: str | Callable[[Any], str]) -> str:
    """Record the pod as running at `address` (or at the one `address(session)` allocates)."""
    now = datetime.now(UTC)
    with db.write() as s:
        if callable(address):
            address = address(s)
        for stale in s.scalars(select(K8sObject).where(K8sObject.cluster_id == place.cluster_id,
                                                       K8sObject.pod_ip == address)).all():
            stale.pod_ip = None  # a pod whose runner died without clearing its address
        if body is not None:
            row = K8sObject(cluster_id=place.cluster_id, kind="Pod", namespace=body["metadata"]["namespace"],
                            name=place.pod_name, uid=place.pod_uid, create_time=now, body=body)
            s.add(row)
        else:
            row = s.scalars(select(K8sObject).where(K8sObject.uid == place.pod_uid)).one()
        new = dict(row.body)
        new["spec"] = {**(new.get("spec") or {}), "nodeName": place.node_name}
        new["status"] = {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}], "hostIP": place.node_ip,
                         "startTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
        row.body = new
        row.pod_ip = address
    return address


def _record_ended(db: Database, pod_uid: str, ephemeral: bool, returncode: int | None) -> None:
    with db.write() as s:
        row = s.scalars(select(K8sObject).where(K8sObject.uid == pod_uid)).first()
        if row is None:
            return
        if ephemeral:
            s.delete(row)
            return
        new = dict(row.body)
        status = dict(new.get("status") or {})
        status.pop("podIP", None)
        status.pop("podIPs", None)
        status["phase"] = "Succeeded" if returncode == 0 else "Failed"
        new["status"] = status
        row.body = new
        row.pod_ip = None


# -- tear-down (runner or reaper) ----------------------------------------------------------------

def teardown(info: dict[str, Any], db: Database | None, returncode: int | None) -> None:
    """Delete the pod's namespace, forget its IP, and remove the node if it was the last pod.
    A loopback pod: kill its process group, forget its address, remove its HOME."""
    if info.get("network") == "loopback":
        if info.get("pgid"):
            loopback.kill_group(info["pgid"], info.get("pgid_started"))
        if db is not None:
            with contextlib.suppress(Exception):
                _record_ended(db, info["pod_uid"], info["ephemeral"], returncode)
        shutil.rmtree(info["home"], ignore_errors=True)
        return
    netns.delete_pod(info["pod_ns"], info["node_ns"])
    if db is not None:
        with contextlib.suppress(Exception):  # the store may be gone (test ended): the kernel state matters most
            _record_ended(db, info["pod_uid"], info["ephemeral"], returncode)
    node_ns = info["node_ns"]
    with netns.node_lock(node_ns):
        if netns.bridge_ports(node_ns) == 0 and not any(
                r.get("node") == node_ns and r.get("kind") == "pod" for r in netns.records().values()):
            netns.delete_node(node_ns)


def _fork_reaper() -> tuple[int, int]:
    """A process in its own session that tears the pod down if the runner dies first. It is
    forked before any thread or connection exists; the runner tells it the pod (one JSON line)
    and then `done` once it has torn down itself."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write_fd)
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        lines = b""
        while True:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            lines += chunk
        status = 0
        try:
            messages = [json.loads(line) for line in lines.splitlines() if line.strip()]
            if messages and messages[-1] != "done":
                info = messages[-1]
                db = None
                with contextlib.suppress(Exception):
                    db = open_database(info["database_url"], __import__("pathlib").Path(info["data_dir"]))
                teardown(info, db, None)
        except Exception:
            status = 1
        os._exit(status)
    os.close(read_fd)
    return pid, write_fd


def _release_reaper(to_reaper: int, reaper: int) -> None:
    """Tell the reaper the runner cleaned up itself (so it does nothing), and wait for it."""
    with contextlib.suppress(OSError):
        os.write(to_reaper, b'"done"\n')
    os.close(to_reaper)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(reaper, 0)


def _wait_forwarding_signals(proc: subprocess.Popen[bytes]) -> int:
    """Wait for the pod's command, passing it the TERM/INT/HUP this runner receives meanwhile."""
    forward = lambda signum, _frame: proc.send_signal(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _pdeathsig(runner: int) -> None:
    """In the pod's process: die with the runner (a SIGKILLed runner leaves no orphan pod), also
    when it died between fork and prctl (then the parent is no longer the runner)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != runner:
        os._exit(137)


def pod_environment(place: Placement, spec: PodSpec, bundle: Path | None = None,
                    extra: dict[str, str] | None = None) -> dict[str, str]:
    """A container's environment: PATH and HOME, the pod's name, the CA bundle variables (as a
    cloud-sdk image's trust store would hold Google's roots), `extra` (a loopback pod's HOME and
    metadata variables), the manifest's env, then --env.
    Nothing of the caller's credentials or Keyless settings leaks in."""
    env = {"PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
           "HOME": "/root", "HOSTNAME": place.pod_name}
    for key in ("LANG", "TERM", "TZ"):
        if key in os.environ:
            env[key] = os.environ[key]
    if bundle is not None:
        env.update(dict.fromkeys(CA_VARIABLES, str(bundle)))
    env.update(extra or {})
    env.update(place.env)
    env.update(spec.env)
    return env


def sandbox_config(settings: Settings, place: Placement, bundle: Path | None) -> dict[str, Any]:
    """What keyless/gke/sandbox.py hides from the pod and what it keeps visible: hidden are /run
    (other pods' namespaces and records, sockets), /etc/netns, Keyless's data dir, the runner's
    HOME and /home; the pod's own HOME (/root) and /tmp are empty tmpfs. The Python installation
    this runner uses stays visible read-only (the pod's tools run with it), and so does the CA bundle."""
    data_dir = settings.data_dir.resolve()
    hide = {"/run", "/home", str(netns.ETC_NETNS), str(netns.run_dir().resolve()), str(data_dir),
            str(settings.data_dir.absolute()), str(Path.home().resolve())}
    hide.discard("/root")  # the pod's HOME: a tmpfs of its own, made separately
    keep = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    return {"hostname": place.pod_name[:63], "uid": place.uid, "gid": place.gid, "home": "/root",
            "hide": sorted(hide), "keep": sorted(keep),
            "files": [str(bundle)] if bundle is not None else []}


def agent_log(settings: Settings) -> Path:
    """Where the nodes' logging agent logs what it refused or dropped (not the pod's output)."""
    return settings.data_dir / "gke" / "logging-agent.log"


class ContainerLogs:
    """The pod's stdout and stderr as its node's logging agent sees them (keyless/gke/logging_agent.py):
    pipes the runner reads, passes on to its own stdout and stderr, and ships to Cloud Logging."""

    def __init__(self, settings: Settings, db: Database, place: Placement, spec: PodSpec) -> None:
        self.agent: logging_agent.NodeLoggingAgent | None = None
        self._pipes: list[tuple[int, int]] = []
        if not spec.container_logs or os.isatty(1) or os.isatty(2):
            return  # a pod run in a terminal keeps it (a shell stays interactive): its output is not shipped
        with db.read() as s:
            ref = logging_agent.container_ref(s, place.node_name, place.pod_uid)
        if ref is None:
            return
        from keyless.state import ServerState  # the store, IAM and key ring the agent writes with

        self.agent = logging_agent.NodeLoggingAgent(ServerState(settings, db), ref, logging_agent.ContainerOutput())
        self._pipes = [os.pipe(), os.pipe()]
        self._log = logging_agent.log_to(agent_log(settings))

    def popen_arguments(self) -> dict[str, Any]:
        """Popen's stdout and stderr for the pod (nothing: the runner's own, when not shipped)."""
        if not self._pipes:
            return {}
        return {"stdout": self._pipes[0][1], "stderr": self._pipes[1][1]}

    def started(self) -> None:
        """The pod holds the write ends: follow the read ends and start the agent."""
        if self.agent is None:
            return
        for (read_fd, write_fd), stream, echo in zip(self._pipes, ("stdout", "stderr"), (1, 2), strict=True):
            os.close(write_fd)
            self.agent.output.follow(stream, read_fd, echo)
        self._pipes = []
        self.agent.start()

    def close(self) -> None:
        """After the pod ended: its last lines read (the pipes close with its processes) and shipped."""
        for read_fd, write_fd in self._pipes:  # the pod never started
            os.close(read_fd)
            os.close(write_fd)
        self._pipes = []
        if self.agent is not None:
            self.agent.output.join(10)
            self.agent.finish()
            logging_agent.stop_logging(self._log)


def run_pod(settings: Settings, spec: PodSpec) -> int:
    """Run `spec.command` as a pod until it ends; its exit status is returned."""
    if spec.network not in loopback.NETWORKS:
        raise InvalidArgument(f"--network must be one of {', '.join(loopback.NETWORKS)}, got {spec.network!r}")
    if not spec.command:
        raise InvalidArgument("a command to run is required (after --)")
    if spec.network == "loopback":
        return _run_loopback(settings, spec)
    reason = netns.unavailable_reason()
    if reason is not None:
        raise FailedPrecondition(f"{reason}. {loopback.LOOPBACK_OFFER}.")
    relays = relays_for(settings, spec.server)
    bundle = ca_bundle(settings) if relays else None
    api_hosts = hostnames(settings.universe_domain) if relays else []
    reaper, to_reaper = _fork_reaper()
    db = open_database(settings.database_url, settings.data_dir)
    info: dict[str, Any] | None = None
    returncode: int | None = None
    logs: ContainerLogs | None = None
    try:
        netns.sweep()
        with db.read() as s:
            place, body = _place(s, settings, spec)
        with netns.node_lock(place.node_ns):
            ensure_node(settings, place, relays)
            address = _allocate(place.node_ns, place.gateway)
            pod_ns = netns.POD_PREFIX + secrets.token_hex(5)
            info = {"pod_ns": pod_ns, "node_ns": place.node_ns, "pod_uid": place.pod_uid,
                    "ephemeral": place.ephemeral, "database_url": settings.database_url,
                    "data_dir": str(settings.data_dir)}
            netns.write_record(pod_ns, {"kind": "pod", "node": place.node_ns, "ip": address, "pod": place.pod_name,
                                        "owners": [netns.owner(os.getpid()), netns.owner(reaper)]})
            os.write(to_reaper, json.dumps(info).encode() + b"\n")
            netns.create_pod(pod_ns, place.node_ns, netns.veth_name(pod_ns), address, place.gateway,
                             metadata_egress=spec.metadata_egress, api_hosts=api_hosts)
            _record_running(db, place, body, address)
        config = json.dumps(sandbox_config(settings, place, bundle))
        runner = os.getpid()
        logs = ContainerLogs(settings, db, place, spec)
        proc = subprocess.Popen(["ip", "netns", "exec", pod_ns, sys.executable, "-I", "-S", str(SANDBOX), config,
                                 "--", *spec.command], env=pod_environment(place, spec, bundle),
                                preexec_fn=lambda: _pdeathsig(runner), **logs.popen_arguments())
        logs.started()
        returncode = _wait_forwarding_signals(proc)
        return returncode
    finally:
        try:
            if logs is not None:
                logs.close()
            if info is not None:
                teardown(info, db, returncode)
        finally:
            _release_reaper(to_reaper, reaper)
            db.dispose()


def _run_loopback(settings: Settings, spec: PodSpec) -> int:
    """The pod without a namespace: its own 127.x address, its metadata server on a thread of
    this runner, COMMAND in a process group of its own (killed at the end, as a pod's containers)."""
    if not spec.metadata_egress:
        raise InvalidArgument("--deny-metadata-egress needs --network namespace: a loopback pod shares the "
                              "machine's network, nothing can block its metadata endpoint")
    if relays_for(settings, spec.server):
        raise InvalidArgument("--tls-port needs --network namespace (a pod's own hosts file); a loopback pod "
                              "shares the machine's network: use the variables of `keyless env` instead")
    reaper, to_reaper = _fork_reaper()
    db = open_database(settings.database_url, settings.data_dir)
    info: dict[str, Any] | None = None
    returncode: int | None = None
    endpoint: loopback.PodEndpoint | None = None
    previous_tty: int | None = None
    logs: ContainerLogs | None = None
    try:
        with db.read() as s:
            place, body = _place(s, settings, spec)
        home = tempfile.mkdtemp(prefix=f"keyless-pod-{place.pod_name}-")  # the container's own, empty HOME
        info = {"network": "loopback", "pod_uid": place.pod_uid, "ephemeral": place.ephemeral, "home": home,
                "database_url": settings.database_url, "data_dir": str(settings.data_dir)}
        os.write(to_reaper, json.dumps(info).encode() + b"\n")
        prefix = loopback.block(settings, place.node_name)
        address = _record_running(db, place, body, lambda s: loopback.allocate(s, prefix))
        endpoint = loopback.PodEndpoint(settings, db, place.node_name, loopback.listen(address))
        endpoint.start()
        extra = {"HOME": home, **loopback.environment(endpoint.sock)}
        loopback.adopt_orphans()
        told, runner = info, os.getpid()

        def in_the_pod() -> None:
            # Runs in the pod's process before it execs COMMAND: the reaper learns the pod's group
            # before anything of the pod runs, so a runner SIGKILLed at once still has it killed
            # (told from the runner after Popen, a pod could start children in between).
            _pdeathsig(runner)
            me = netns.owner(os.getpid())
            os.write(to_reaper, json.dumps({**told, "pgid": me[0], "pgid_started": me[1]}).encode() + b"\n")

        logs = ContainerLogs(settings, db, place, spec)
        proc = subprocess.Popen(spec.command, env=pod_environment(place, spec, None, extra), cwd=home,
                                preexec_fn=in_the_pod, process_group=0, **logs.popen_arguments())
        logs.started()
        info = {**info, "pgid": proc.pid, "pgid_started": netns.owner(proc.pid)[1]}
        previous_tty = loopback.foreground(proc.pid)
        returncode = _wait_forwarding_signals(proc)
        return returncode
    finally:
        try:
            loopback.give_back(previous_tty)
            if endpoint is not None:
                endpoint.stop()  # the address answers nothing from here on
            if info is not None:
                teardown(info, db, returncode)
            loopback.kill_descendants(keep=reaper)  # what left the process group
            if logs is not None:
                logs.close()
        finally:
            _release_reaper(to_reaper, reaper)
            db.dispose()


__all__ = ["CA_VARIABLES", "PodSpec", "node_namespace", "relays_for", "run_pod", "teardown"]
