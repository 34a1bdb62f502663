"""What each cluster's Kubernetes API serves, as kubectl discovers it: the resources (their
kinds, verbs, short names and GKE's IAM permission names), /version, the legacy discovery
documents (/api, /apis, /api/v1, /apis/apps/v1), OpenAPI v3's index and per-group-version
documents, OpenAPI v2 for kubectl 1.27/1.28 (keyless.api.kubernetes.protobuf), and the Table
columns of `kubectl get` (https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from keyless.api.kubernetes import protobuf
from keyless.gke import clusters


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    name: str  # plural, as in URLs
    kind: str
    namespaced: bool
    permission: str  # container.PERMISSION.verb
    short: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


RESOURCES = [
    Resource("", "v1", "namespaces", "Namespace", False, "namespaces", ("ns",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, "serviceAccounts", ("sa",)),
    Resource("", "v1", "pods", "Pod", True, "pods", ("po",), ("all",)),
    Resource("apps", "v1", "deployments", "Deployment", True, "deployments", ("deploy",), ("all",)),
]
BY_PATH = {(r.group_version, r.name): r for r in RESOURCES}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
# (resource, subresource) -> (kind, verbs, permission verb, group/version when not the parent's)
SUBRESOURCES: dict[tuple[str, str], tuple[str, list[str], str, str]] = {
    ("serviceaccounts", "token"): ("TokenRequest", ["create"], "createToken", "authentication.k8s.io/v1"),
    ("pods", "exec"): ("PodExecOptions", ["create", "get"], "exec", ""),
    ("pods", "attach"): ("PodAttachOptions", ["create", "get"], "attach", ""),
    ("pods", "log"): ("Pod", ["get"], "getLogs", ""),
    ("pods", "status"): ("Pod", ["get", "patch", "update"], "getStatus", ""),
    ("deployments", "status"): ("Deployment", ["get", "patch", "update"], "getStatus", ""),
}

def version() -> dict[str, Any]:
    major, minor = clusters.VERSION.split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": f"v{clusters.VERSION}",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2024-10-01T00:00:00Z", "goVersion": "go1.22.7", "compiler": "gc",
            "platform": "linux/amd64"}


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}]}


def api_groups() -> dict[str, Any]:
    groups = []
    for group in ("apps",):
        gv = {"groupVersion": f"{group}/v1", "version": "v1"}
        groups.append({"name": group, "versions": [gv], "preferredVersion": gv})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(group_version: str) -> dict[str, Any] | None:
    entries: list[dict[str, Any]] = []
    for r in RESOURCES:
        if r.group_version != group_version:
            continue
        entry: dict[str, Any] = {"name": r.name, "singularName": r.kind.lower(), "namespaced": r.namespaced,
                                 "kind": r.kind, "verbs": VERBS}
        if r.short:
            entry["shortNames"] = list(r.short)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for (parent, sub), (kind, verbs, _, gv) in SUBRESOURCES.items():
            if parent == r.name:
                item: dict[str, Any] = {"name": f"{parent}/{sub}", "singularName": "", "namespaced": True,
                                        "kind": kind, "verbs": verbs}
                if gv:
                    item["group"], item["version"] = gv.split("/")
                entries.append(item)
    if not entries:
        return None
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}


def openapi_v3(parts: list[str], base: str) -> dict[str, Any] | None:
    """OpenAPI v3 as far as kubectl reads it: the index of group-versions (their URLs are
    server-relative, so they carry the cluster's path prefix) and, per group-version, the PATCH
    operations declaring the `fieldValidation` parameter, which tells kubectl apply/create to let
    the server validate (instead of downloading schemas). Without a strategic-merge request body
    kubectl computes apply's patches from its built-in types, as it does for any server."""
    versions = sorted({r.group_version for r in RESOURCES})
    if parts == ["openapi", "v3"]:
        return {"paths": {_openapi_key(gv): {"serverRelativeURL": f"{base}/openapi/v3/{_openapi_key(gv)}?hash={HASH}"}
                          for gv in versions}}
    key = "/".join(parts[2:])
    gv = next((v for v in versions if _openapi_key(v) == key), None) if parts[:2] == ["openapi", "v3"] else None
    if gv is None:
        return None
    paths: dict[str, Any] = {}
    for r in RESOURCES:
        if r.group_version != gv:
            continue
        scope = "/namespaces/{namespace}" if r.namespaced else ""
        path = f"/{_openapi_key(gv)}{scope}/{r.name}/{{name}}"
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                  for n in QUERY_PARAMETERS]
        paths[path] = {"patch": {"operationId": f"patch{r.kind}", "x-kubernetes-action": "patch",
                                 "x-kubernetes-group-version-kind": gvk, "parameters": params,
                                 "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": f"v{clusters.VERSION}"},
            "paths": paths, "components": {"schemas": {}}}


QUERY_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation", "force")


def openapi_v2_document() -> bytes:
    """/openapi/v2 for kubectl 1.27 and 1.28, which learn from it (in protobuf) that the server
    takes `fieldValidation`; the same PATCH operations as openapi_v3's, without schemas."""
    operations = []
    for r in RESOURCES:
        scope = "/namespaces/{namespace}" if r.namespaced else ""
        operations.append((f"/{_openapi_key(r.group_version)}{scope}/{r.name}/{{name}}", f"patch{r.kind}",
                           {"group": r.group, "kind": r.kind, "version": r.version}, list(QUERY_PARAMETERS)))
    return protobuf.openapi_v2(operations)


def _openapi_key(group_version: str) -> str:
    return f"apis/{group_version}" if "/" in group_version else f"api/{group_version}"


HASH = "4B3A6E2F1C0D9E8A7B6C5D4E3F2A1B0C"  # changes only with the OpenAPI documents above


def discovery(parts: list[str]) -> dict[str, Any] | None:
    if parts == ["version"]:
        return version()
    if parts == ["api"]:
        return api_versions()
    if parts == ["apis"]:
        return api_groups()
    if parts == ["api", "v1"]:
        return resource_list("v1")
    if len(parts) == 3 and parts[0] == "apis":
        return resource_list(f"{parts[1]}/{parts[2]}")
    return None


# -- Table output (kubectl get's columns) ----------------------------------------------------------

def _age(obj: dict[str, Any]) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    try:
        seconds = int(time.time() - datetime.strptime(str(created), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
                      .timestamp())
    except ValueError:
        return "<unknown>"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


COLUMNS: dict[str, list[tuple[str, str, Callable[[dict[str, Any]], Any]]]] = {
    "Namespace": [("Status", "string", lambda o: (o.get("status") or {}).get("phase", "Active"))],
    "ServiceAccount": [("Secrets", "integer", lambda o: len(o.get("secrets") or []))],
    "Pod": [("Ready", "string", lambda o: "1/1" if (o.get("status") or {}).get("phase") == "Running" else
             f"0/{len((o.get('spec') or {}).get('containers') or [None])}"),
            ("Status", "string", lambda o: (o.get("status") or {}).get("phase", "Pending")),
            ("Restarts", "string", lambda o: "0")],
    "Deployment": [("Ready", "string", lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                                                 f"{(o.get('spec') or {}).get('replicas', 1)}"),
                   ("Up-to-date", "integer", lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
                   ("Available", "integer", lambda o: (o.get("status") or {}).get("availableReplicas", 0))],
}


# Priority 1: the columns `kubectl get -o wide` adds, as the API server's pod printer defines them
# (kubernetes/pkg/printers/internalversion/printers.go).
WIDE: dict[str, list[tuple[str, str, Callable[[dict[str, Any]], Any]]]] = {
    "Pod": [("IP", "string", lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
            ("Node", "string", lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
            ("Nominated Node", "string", lambda o: (o.get("status") or {}).get("nominatedNodeName") or "<none>"),
            ("Readiness Gates", "string", lambda o: "<none>")],
}


def table(r: Resource, items: list[dict[str, Any]]) -> dict[str, Any]:
    columns = [("Name", "string", lambda o: o["metadata"]["name"], 0),
               *((n, t, f, 0) for n, t, f in COLUMNS.get(r.kind, [])), ("Age", "string", _age, 0),
               *((n, t, f, 1) for n, t, f in WIDE.get(r.kind, []))]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": [{"name": n, "type": t, "format": "name" if n == "Name" else "", "description": n,
                                   "priority": p} for n, t, _, p in columns],
            "rows": [{"cells": [f(o) for _, _, f, _ in columns],
                      "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                 "metadata": o.get("metadata") or {}}} for o in items]}


