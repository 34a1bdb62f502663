"""GKE's node logging agent for Keyless's pods (issue #20): what Fluent Bit does on a GKE node with
"system and workload logs" on (https://cloud.google.com/kubernetes-engine/docs/concepts/about-logs).
Each line a container writes to stdout or stderr becomes an entry of `projects/P/logs/stdout` or
`.../stderr` under the `k8s_container` monitored resource, written as the NODE's service account
(it needs roles/logging.logWriter; roles/container.defaultNodeServiceAccount holds it), never as
the pod's identity. A line that is one JSON object is a jsonPayload, its special fields lifted into
the LogEntry as https://cloud.google.com/logging/docs/structured-logging lists them; any other line
is a textPayload. Entries go through the same checks and store as entries.write
(keyless.cloudlogging.entries).

Bounded, as a node's agent must be against a pod that floods: a line is read up to 256 KiB (Cloud
Logging's entry limit; the rest of a longer line is skipped and the line dropped, as Fluent Bit's
`Skip_Long_Lines`), at most BUFFER_LINES lines / BUFFER_BYTES wait per pod (more are dropped and
counted), and each round writes at most ROUND_ENTRIES entries / ROUND_BYTES. The pod's pipes are
always drained, so a pod is never blocked by its logging, and each pod's budget is its own.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from keyless import projects
from keyless.background import Worker
from keyless.cloudlogging import config
from keyless.cloudlogging import entries as written
from keyless.errors import InvalidArgument
from keyless.gke.clusters import node_service_account, oauth_scopes
from keyless.iam.members import member_keys_for_service_account
from keyless.iam.principal import Principal, service_account_principal
from keyless.store.models import GkeCluster, GkeNode, GkeNodePool, K8sObject

if TYPE_CHECKING:
    from keyless.state import ServerState

log = logging.getLogger("keyless.gke.logging_agent")

MAX_LINE_BYTES = written.MAX_ENTRY_BYTES
BUFFER_LINES = 5_000  # per pod, waiting for the agent
BUFFER_BYTES = 8 * 1024 * 1024
ROUND_ENTRIES = 500  # per pod and round (ROUND_SECONDS): at most 1,000 entries and 2 MiB a second
ROUND_BYTES = 1024 * 1024
ROUND_SECONDS = 0.5
READ_CHUNK = 64 * 1024
WRITE_PERMISSION = "logging.logEntries.create"
WORKLOADS = "WORKLOADS"
POD_LABELS = 32  # of an entry's 64 labels: the rest are the line's own
LOGGING_SCOPES = {"https://www.googleapis.com/auth/logging.write", "https://www.googleapis.com/auth/logging.admin",
                  "https://www.googleapis.com/auth/cloud-platform"}
# Google's structured-logging fields: JSON key -> LogEntry field (the rest stays in jsonPayload).
SPECIAL = {"severity": "severity", "httpRequest": "httpRequest",
           "logging.googleapis.com/insertId": "insertId", "logging.googleapis.com/labels": "labels",
           "logging.googleapis.com/operation": "operation",
           "logging.googleapis.com/sourceLocation": "sourceLocation",
           "logging.googleapis.com/spanId": "spanId", "logging.googleapis.com/trace": "trace",
           "logging.googleapis.com/trace_sampled": "traceSampled"}
TIME_FIELDS = ("timestamp", "time")
# The agent matches common severity spellings, beside the LogSeverity names.
SEVERITY_ALIASES = {"WARN": "WARNING", "ERR": "ERROR", "FATAL": "CRITICAL", "TRACE": "DEBUG", "I": "INFO",
                    "W": "WARNING", "E": "ERROR", "D": "DEBUG"}


def log_to(path: Path) -> logging.Handler:
    """The agent's own log (refusals, dropped lines) appended to `path`, as GKE's agent logs on its
    node, not in the pod's output; remove the handler with `stop_logging`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.propagate = False
    return handler


def stop_logging(handler: logging.Handler) -> None:
    log.removeHandler(handler)
    handler.close()


def workload_logging(cluster: GkeCluster) -> bool:
    """Whether the cluster ships its workloads' logs: loggingService not "none", and a
    loggingConfig (when given) whose componentConfig.enableComponents names WORKLOADS."""
    body = cluster.body or {}
    if body.get("loggingService") == "none":
        return False
    components = ((body.get("loggingConfig") or {}).get("componentConfig") or {}).get("enableComponents")
    return components is None or WORKLOADS in components


def structured(line: str) -> dict[str, Any]:
    """The LogEntry fields of one output line: a JSON object's special fields lifted, the rest in
    jsonPayload; any other line (or a special field of the wrong type) as textPayload."""
    try:
        parsed = json.loads(line)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return {"textPayload": line}
    entry: dict[str, Any] = {}
    payload = dict(parsed)
    for key, field_name in SPECIAL.items():
        if key in payload:
            value = payload.pop(key)
            if value not in (None, "", {}, False):  # as proto3 JSON: defaults are absent
                entry[field_name] = value
    if isinstance(entry.get("severity"), str):
        severity = entry["severity"].upper()
        entry["severity"] = SEVERITY_ALIASES.get(severity, severity)
    for key in TIME_FIELDS:
        if isinstance(payload.get(key), str):
            entry["timestamp"] = payload.pop(key)
            break
    seconds, nanos = payload.get("timestampSeconds"), payload.get("timestampNanos")
    if "timestamp" not in entry and isinstance(seconds, int) and not isinstance(seconds, bool):
        payload.pop("timestampSeconds")
        nanos = payload.pop("timestampNanos", 0) if isinstance(nanos, int) else 0
        entry["timestamp"] = datetime.fromtimestamp(seconds + nanos / 1e9, UTC).isoformat().replace("+00:00", "Z")
    entry["jsonPayload"] = payload
    return entry


@dataclass
class Line:
    stream: str  # "stdout" or "stderr"
    text: str
    at: datetime


class ContainerOutput:
    """One container's stdout and stderr: read from the pod's pipes, passed on to the runner's own
    (kubectl exec and the terminal see them as before), and split into lines for the agent."""

    def __init__(self) -> None:
        self.lines: collections.deque[Line] = collections.deque()
        self.buffered = 0
        self.dropped = 0  # lines refused: the buffer full
        self.too_long = 0  # lines longer than MAX_LINE_BYTES
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []

    def follow(self, stream: str, read_fd: int, echo_fd: int | None) -> None:
        thread = threading.Thread(target=self._read, args=(stream, read_fd, echo_fd), daemon=True,
                                  name=f"pod-{stream}")
        self.threads.append(thread)
        thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def take(self, entries: int, size: int) -> list[Line]:
        """Up to `entries` lines of at most `size` bytes in all (one at least), oldest first."""
        out: list[Line] = []
        with self.lock:
            while self.lines and len(out) < entries:
                length = len(self.lines[0].text)
                if out and length > size:
                    break
                out.append(self.lines.popleft())
                self.buffered -= length
                size -= length
        return out

    def _add(self, stream: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if not text:
            return
        with self.lock:
            if len(self.lines) >= BUFFER_LINES or self.buffered + len(text) > BUFFER_BYTES:
                self.dropped += 1
                return
            self.lines.append(Line(stream, text, datetime.now(UTC)))
            self.buffered += len(text)

    def _read(self, stream: str, read_fd: int, echo_fd: int | None) -> None:
        pending = bytearray()
        skipping = False  # inside a line longer than MAX_LINE_BYTES: discarded up to its newline
        try:
            while True:
                chunk = os.read(read_fd, READ_CHUNK)
                if not chunk:
                    break
                if echo_fd is not None:
                    _write_all(echo_fd, chunk)
                start = 0
                while start < len(chunk):
                    end = chunk.find(b"\n", start)
                    piece = chunk[start:] if end < 0 else chunk[start:end]
                    if not skipping:
                        pending += piece
                        if len(pending) > MAX_LINE_BYTES:
                            self.too_long += 1
                            pending.clear()
                            skipping = True
                    if end < 0:
                        break
                    if not skipping:
                        self._add(stream, bytes(pending))
                    pending.clear()
                    skipping = False
                    start = end + 1
            if pending and not skipping:
                self._add(stream, bytes(pending))
        except OSError:
            pass
        finally:
            os.close(read_fd)


def _write_all(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        pass  # the runner's own output is gone: the pod's logs still reach the agent


@dataclass
class ContainerRef:
    """The `k8s_container` a pod's output belongs to, and whose account writes it."""

    project_id: str
    location: str
    cluster_name: str
    namespace: str
    pod_name: str
    container_name: str
    node_service_account: str
    enabled: bool  # the cluster's logging config ships workload logs
    scoped: bool  # the node's access scopes allow writing logs
    labels: dict[str, str] = field(default_factory=dict)  # every entry's: the node's name, the pod's labels

    def resource(self) -> dict[str, Any]:
        return {"type": "k8s_container", "labels": {
            "project_id": self.project_id, "location": self.location, "cluster_name": self.cluster_name,
            "namespace_name": self.namespace, "pod_name": self.pod_name, "container_name": self.container_name}}


def container_ref(s: Any, node_name: str, pod_uid: str) -> ContainerRef | None:
    """The pod's first container on `node_name` as the node's agent sees it, or None if the pod,
    its node or cluster is gone."""
    node = s.get(GkeNode, node_name)
    pod = s.scalars(select(K8sObject).where(K8sObject.uid == pod_uid)).first()
    if node is None or pod is None:
        return None
    cluster, pool = s.get(GkeCluster, node.cluster_id), s.get(GkeNodePool, node.node_pool_id)
    if cluster is None or pool is None:
        return None
    project = projects.find_project(s, cluster.project_id)
    containers = (pod.body.get("spec") or {}).get("containers") or [{}]
    config_ = (pool.body.get("config") or {}) if isinstance(pool.body, dict) else {}
    scopes = oauth_scopes(config_)
    # As GKE's agent: the node's name and the pod's labels (`k8s-pod/KEY`), up to POD_LABELS of them.
    labels = {"compute.googleapis.com/resource_name": node.name}
    pod_labels = (pod.body.get("metadata") or {}).get("labels") or {}
    for key, value in sorted(pod_labels.items())[:POD_LABELS] if isinstance(pod_labels, dict) else ():
        if isinstance(key, str) and isinstance(value, str) and len(key) < 256 and len(value) < 1024:
            labels[f"k8s-pod/{key}"] = value
    return ContainerRef(project_id=cluster.project_id, location=cluster.location, cluster_name=cluster.name,
                        namespace=pod.namespace, pod_name=pod.name,
                        container_name=str((containers[0] or {}).get("name") or pod.name),
                        node_service_account=node_service_account(pool, project.project_number if project else ""),
                        enabled=workload_logging(cluster), scoped=bool(set(scopes) & LOGGING_SCOPES),
                        labels=labels)


class NodeLoggingAgent(Worker):
    """Ships one pod's container output to Cloud Logging in rounds, as the node's service account."""

    def __init__(self, state: ServerState, container: ContainerRef, output: ContainerOutput) -> None:
        super().__init__(ROUND_SECONDS, name="node-logging-agent", logger=log,
                         failure="the node's logging agent failed a round")
        self.state, self.container, self.output = state, container, output
        self.stored = 0
        self.refused = 0  # entries the node's account may not write
        self.invalid = 0
        self._warned = False

    def principal(self) -> Principal:
        email = self.container.node_service_account
        account = self.state.directory.find(email)
        if account is not None and not account.disabled:
            return service_account_principal(account)
        return Principal(member=f"serviceAccount:{email}", member_keys=member_keys_for_service_account(email),
                         email=email, subject=f"serviceAccount:{email}")

    def round(self) -> float | None:
        self.ship(ROUND_ENTRIES, ROUND_BYTES)
        return None

    def ship(self, entries: int, size: int) -> int:
        """Write up to `entries` buffered lines (`size` bytes); how many were taken."""
        lines = self.output.take(entries, size)
        if not lines or not self.container.enabled:
            return len(lines)
        c = self.container
        with self.state.db.read() as s:
            row = projects.find_project(s, c.project_id, include_deleted=False)
            chain = projects.project_chain(row.project_id) if row else [projects.project_resource(c.project_id),
                                                                        projects.ROOT]
            granted = row is not None and c.scoped and \
                self.state.authz.check(self.principal(), WRITE_PERMISSION, chain).granted
        if not granted:
            self.refused += len(lines)
            if not self._warned:
                self._warned = True
                log.warning("Permission '%s' denied on resource 'projects/%s' for the node's service account %s: "
                            "the logs of pod %s/%s are not written (grant it roles/logging.logWriter, or "
                            "roles/container.defaultNodeServiceAccount, and the node pool the logging.write "
                            "scope)", WRITE_PERMISSION, c.project_id,
                            c.node_service_account, c.namespace, c.pod_name)
            return len(lines)
        now = datetime.now(UTC)
        ready: list[tuple[written.Written, str]] = []
        for i, line in enumerate(lines):
            raw = structured(line.text)
            raw.setdefault("timestamp", line.at.isoformat().replace("+00:00", "Z"))
            raw["logName"] = f"projects/{c.project_id}/logs/{line.stream}"
            try:
                ready.append((written.check_entry(raw, i, log_name=None, resource=c.resource(), labels=c.labels,
                                                  now=now), c.project_id))
            except InvalidArgument:
                try:  # a special field Google's schema refuses: the line is kept as text
                    ready.append((written.check_entry(
                        {"textPayload": line.text, "logName": raw["logName"], "timestamp": raw["timestamp"]}, i,
                        log_name=None, resource=c.resource(), labels=c.labels, now=now), c.project_id))
                except InvalidArgument:
                    self.invalid += 1
        if ready:
            with self.state.db.read() as s:
                exclusions = config.active_exclusions(s, [c.project_id])
            try:
                with self.state.db.append() as s:
                    self.stored += written.store(s, ready, exclusions)
            except IntegrityError:  # a duplicate insertId committed meanwhile: check again
                with self.state.db.append() as s:
                    self.stored += written.store(s, ready, exclusions)
        return len(lines)

    def finish(self) -> None:
        """After the pod ended: the rest of its buffer (bounded by BUFFER_LINES), then a line on
        what was dropped."""
        self.stop()
        self.join(ROUND_SECONDS * 20)
        while self.ship(ROUND_ENTRIES, ROUND_BYTES):
            pass
        o = self.output
        if o.dropped or o.too_long or self.invalid:
            log.warning("pod %s/%s: %d log lines dropped (the agent's buffer was full), %d longer than %d bytes, "
                        "%d not valid entries", self.container.namespace, self.container.pod_name, o.dropped,
                        o.too_long, MAX_LINE_BYTES, self.invalid)


__all__ = ["ContainerOutput", "ContainerRef", "container_ref", "log_to", "stop_logging", "NodeLoggingAgent", "structured", "workload_logging"]
