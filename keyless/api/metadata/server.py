"""The GKE metadata server's HTTP API (Compute Engine metadata v1, as GKE serves it to pods).

https://cloud.google.com/compute/docs/metadata/overview and
https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity#metadata_server.
Architecture: one server per node, started by `keyless pod run` (keyless/gke/pods.py) as its
own process, listening on 169.254.169.254:80 *inside the node's network namespace* (the socket
is made there with setns, the process stays in the host namespace so it still reaches the
store, SQLite or PostgreSQL) — like GKE's per-node gke-metadata-server DaemonSet. Pods reach it
over their veth, so the source address is the pod's own IP, the only thing it trusts.
Served by keyless/api/metadata/transport.py: every answer is a few dict lookups once a pod's identity
and token are cached. In loopback mode (keyless/gke/loopback.py) the caller is identified by the
127.x address its connection arrived at instead; the decision below is the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from keyless.api.forms import FormError, parse_form
from keyless.audit.token_entries import credentials_issued, token_exchanged
from keyless.errors import KeylessError
from keyless.gke.metadata import MetadataError, PodCredentials, PodDirectory, PodIdentity
from keyless.iam.directory import AccountInfo
from keyless.iam.principal import Principal
from keyless.state import ServerState

PREFIX = "/computeMetadata/v1/"
MISSING_FLAVOR = 'Missing required header "Metadata-Flavor": "Google"\n'
FORWARDED = "Request denied: requests with an X-Forwarded-For header are not accepted by the metadata server.\n"
GKE_SERVER = b"GKE Metadata Server"
GCE_SERVER = b"Metadata Server for VM"
USERINFO = "https://www.googleapis.com/auth/userinfo.email"
MAX_QUERY = 4096
Tree = dict[str, Any]  # a directory: names to sub-directories (dict), leaves (str/list) or Special
Special = Callable[["Request"], tuple[int, str, bytes]]


class Request:
    """What a handler needs of one metadata request."""

    def __init__(self, pod: PodIdentity, query: dict[str, str], ip: str, agent: str) -> None:
        self.pod = pod
        self.query = query
        self.ip = ip
        self.agent = agent


class _Auditor:
    """Audits what the metadata server issues the way STS and IAM Credentials do."""

    def __init__(self, state: ServerState, project_id: str, ip: str, agent: str) -> None:
        self._state, self._project_id, self._ip, self._agent = state, project_id, ip, agent

    def exchanged(self, form: dict[str, str], principal: Principal | None, error: KeylessError | None) -> None:
        token_exchanged(self._state, form, project_id=self._project_id, pool=form["audience"].split(":")[1],
                        principal=principal, caller_ip=self._ip, user_agent=self._agent, error=error)

    def impersonated(self, method: str, target: AccountInfo, principal: Principal,
                     error: KeylessError | None = None) -> None:
        credentials_issued(self._state, method, target, principal, caller_ip=self._ip, user_agent=self._agent,
                           error=error)


class MetadataServer:
    """The metadata API of one node."""

    def __init__(self, state: ServerState, node_name: str) -> None:
        self.state = state
        self.pods = PodDirectory(state, node_name)
        self.credentials = PodCredentials(state)
        self._trees: dict[int, tuple[PodIdentity, Tree]] = {}  # id(pod) -> the tree built for it

    # -- the tree ------------------------------------------------------------------------------

    def tree_of(self, pod: PodIdentity) -> Tree:
        """The pod's tree, built once per PodIdentity (the directory hands out the same object
        until the store changes), not once per request."""
        cached = self._trees.get(id(pod))
        if cached is not None and cached[0] is pod:
            return cached[1]
        if len(self._trees) > 4096:
            self._trees.clear()
        tree = self.tree(pod)
        self._trees[id(pod)] = (pod, tree)
        return tree

    def tree(self, pod: PodIdentity) -> Tree:
        accounts: dict[str, Any] = {"default": self._account(pod)}
        accounts[pod.email] = accounts["default"]
        attributes: dict[str, Any] = {"cluster-location": pod.location, "cluster-name": pod.cluster_name,
                                      "cluster-uid": pod.cluster_id}
        if not pod.gke_metadata:
            # GCE_METADATA exposes the node's own metadata: what GKE's server conceals.
            attributes["kube-env"] = (f"CLUSTER_NAME: {pod.cluster_name}\nENABLE_METADATA_CONCEALMENT: \"false\"\n"
                                      f"KUBERNETES_MASTER_NAME: {pod.cluster_name}-master\n")
            attributes["kube-labels"] = f"cloud.google.com/gke-nodepool={pod.node_name}"
        return {
            "instance": {
                "attributes": attributes,
                "hostname": f"{pod.node_name}.{pod.zone}.c.{pod.project_id}.internal",
                "id": pod.node_id,
                "name": pod.node_name,
                "service-accounts": accounts,
                "zone": f"projects/{pod.project_number}/zones/{pod.zone}",
            },
            "project": {"numeric-project-id": pod.project_number, "project-id": pod.project_id},
        }

    def _account(self, pod: PodIdentity) -> Tree:
        scopes = list(pod.node_scopes) if not pod.gke_metadata else ["https://www.googleapis.com/auth/cloud-platform",
                                                                      USERINFO]
        return {"aliases": ["default"], "email": pod.email, "identity": self._identity, "scopes": scopes,
                "token": self._token}

    def _token(self, req: Request) -> tuple[int, str, bytes]:
        raw = req.query.get("scopes", "")
        scopes = tuple(s for s in raw.replace(" ", ",").split(",") if s)[:32]
        token = self.credentials.access_token(req.pod, scopes, _Auditor(self.state, req.pod.project_id, req.ip, req.agent))
        body = f'{{"access_token":{json.dumps(token.token)},"expires_in":{token.expires_in},"token_type":"Bearer"}}'
        return 200, "application/json", body.encode()

    def _identity(self, req: Request) -> tuple[int, str, bytes]:
        audience = req.query.get("audience", "")
        if not audience:
            return 400, "text/plain", b"non-empty audience parameter required\n"
        if len(audience) > 2048:
            return 400, "text/plain", b"audience is too long\n"
        full = req.query.get("format", "standard") == "full"
        token = self.credentials.id_token(req.pod, audience, full, _Auditor(self.state, req.pod.project_id, req.ip, req.agent))
        return 200, "text/plain", token.encode()

    # -- HTTP (keyless/api/metadata/transport.py) -------------------------------------------------

    def respond(self, method: str, path: str, raw_query: bytes, headers: dict[bytes, bytes], ip: str
                ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """(status, response headers, body) for one request; `headers` has lower-case names."""
        status, ctype, body, extra, gke = self.answer(method, path, raw_query, headers, ip)
        out = [(b"metadata-flavor", b"Google"), (b"content-type", ctype.encode()),
               (b"server", GKE_SERVER if gke else GCE_SERVER), (b"content-length", str(len(body)).encode()), *extra]
        return status, out, body

    def answer(self, method: str, path: str, raw_query: bytes, headers: dict[bytes, bytes], ip: str
               ) -> tuple[int, str, bytes, list[tuple[bytes, bytes]], bool]:
        """(status, content type, body, extra headers, served-as-GKE) for one request."""
        text = "application/text"
        if method not in ("GET", "HEAD"):
            return 405, text, b"Method Not Allowed\n", [], True
        if b"x-forwarded-for" in headers:
            return 403, text, FORWARDED.encode(), [], True
        if path == "/":
            return 200, text, b"computeMetadata/\n", [], True
        if headers.get(b"metadata-flavor", b"") != b"Google":
            return 403, text, MISSING_FLAVOR.encode(), [], True
        if path in ("/computeMetadata", "/computeMetadata/"):
            return 200, text, b"v1/\n", [], True
        pod = self.pods.find(ip)
        if pod is None:
            return 404, text, f"Unable to find the pod with IP {ip} on this node.\n".encode(), [], True
        gke = pod.gke_metadata
        if len(raw_query) > MAX_QUERY or not path.startswith(PREFIX[:-1]):
            return 404, text, b"Not Found\n", [], gke
        try:
            query = parse_form(raw_query, max_fields=16) if raw_query else {}
        except FormError:
            return 400, text, b"Bad Request\n", [], gke
        req = Request(pod, query, ip, headers.get(b"user-agent", b"").decode("latin-1")[:512])
        try:
            return (*self._walk(path[len(PREFIX):], req), gke)
        except MetadataError as error:
            return error.status, text, error.message.encode(), [], gke

    def _walk(self, rest: str, req: Request) -> tuple[int, str, bytes, list[tuple[bytes, bytes]]]:
        text = "application/text"
        is_dir = rest == "" or rest.endswith("/")
        node: Any = self.tree_of(req.pod)
        for part in [p for p in rest.split("/") if p]:
            if not isinstance(node, dict) or part not in node:
                return 404, text, b"Not Found\n", []
            node = node[part]
        recursive = req.query.get("recursive", "").lower() == "true"
        alt = req.query.get("alt", "json" if recursive else "text")
        if callable(node):
            if is_dir:
                return 404, text, b"Not Found\n", []
            status, ctype, body = node(req)
            return status, ctype, body, []
        if isinstance(node, dict):
            if not is_dir and not recursive:
                return 301, "text/html", b"", [(b"location", f"{PREFIX}{rest}/".encode())]
            if recursive:
                value = _recursive(node)
                if alt == "text":
                    return 200, text, "".join(f"{k} {v}\n" for k, v in _flatten(value, "")).encode(), []
                return 200, "application/json", json.dumps(value, separators=(",", ":")).encode(), []
            names = [k + "/" if isinstance(v, dict) else k for k, v in node.items()]
            return 200, text, "".join(f"{n}\n" for n in names).encode(), []
        if is_dir and not isinstance(node, list):
            return 404, text, b"Not Found\n", []
        if isinstance(node, list):
            if alt == "json":
                return 200, "application/json", json.dumps(node).encode(), []
            return 200, text, "".join(f"{v}\n" for v in node).encode(), []
        if alt == "json":
            return 200, "application/json", json.dumps(node).encode(), []
        return 200, text, str(node).encode(), []


def _camel(name: str) -> str:
    head, *tail = name.split("-")
    return head + "".join(t.title() for t in tail)


def _recursive(node: Tree, attributes: bool = False) -> dict[str, Any]:
    """A directory as GCE's `?recursive=true` JSON: camelCase keys (attribute names kept as
    given), endpoints that mint tokens left out."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if callable(value):
            continue
        name = key if attributes or "@" in key else _camel(key)
        out[name] = _recursive(value, key == "attributes") if isinstance(value, dict) else value
    return out


def _flatten(value: Any, prefix: str) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flatten(v, f"{prefix}{k}/")]
    if isinstance(value, list):
        return [kv for i, v in enumerate(value) for kv in _flatten(v, f"{prefix}{i}/")]
    return [(prefix.rstrip("/"), str(value))]


__all__ = ["MetadataServer"]
