"""Kubernetes objects of a cluster, loaded from the user's own manifests (Namespace,
ServiceAccount, Pod, Deployment) the way `kubectl apply` treats them, for what Workload Identity
reads: namespaces, KSAs and their `iam.gke.io/gcp-service-account` annotation
(https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity), pods and their
`serviceAccountName` (`default` when absent, as Kubernetes fills it). A Deployment makes its
replicas as Pods. Every namespace has a `default` ServiceAccount; the `default` namespace exists.
"""

from __future__ import annotations

import copy
import hashlib
import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from keyless.gke import patches
from keyless.gke.issuer import ksa_uid
from keyless.store.models import GkeCluster, K8sObject

ANNOTATION = "iam.gke.io/gcp-service-account"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
NAMESPACED = {"ServiceAccount", "Pod", "Deployment", "ConfigMap", "Secret", "Service"}
KINDS = NAMESPACED | {"Namespace"}
MAX_REPLICAS = 50
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")  # kube-system last: made last


def get_object(s: Session, cluster_id: str, kind: str, namespace: str, name: str) -> K8sObject | None:
    return s.scalar(select(K8sObject).where(K8sObject.cluster_id == cluster_id, K8sObject.kind == kind,
                                            K8sObject.namespace == namespace, K8sObject.name == name))


def list_objects(s: Session, cluster_id: str, kind: str, namespace: str | None = None) -> list[K8sObject]:
    q = select(K8sObject).where(K8sObject.cluster_id == cluster_id, K8sObject.kind == kind)
    if namespace is not None:
        q = q.where(K8sObject.namespace == namespace)
    return list(s.scalars(q.order_by(K8sObject.namespace, K8sObject.name)).all())


def service_account_annotation(obj: K8sObject) -> str | None:
    """The GSA a KSA is annotated with (exact key: a misspelt key is no annotation, as on GKE)."""
    value = ((obj.body.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    return value if isinstance(value, str) else None


def _put(s: Session, cluster: GkeCluster, kind: str, namespace: str, name: str, body: dict[str, Any]) -> str:
    """Create or replace (kubectl apply's outcome for a whole manifest); 'created' or 'configured'."""
    row = get_object(s, cluster.id, kind, namespace, name)
    meta = body.setdefault("metadata", {})
    if namespace:
        meta["namespace"] = namespace
    meta["resourceVersion"] = _next_version()
    if row is None:
        # A KSA's uid is the one its tokens carry (keyless.gke.issuer.ksa_uid), as on Kubernetes.
        meta["uid"] = ksa_uid(cluster, namespace, name) if kind == "ServiceAccount" else str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(datetime.now(UTC)).split(".")[0] + "Z"
        s.add(K8sObject(cluster_id=cluster.id, kind=kind, namespace=namespace, name=name, uid=meta["uid"],
                        create_time=datetime.now(UTC), body=body))
        s.flush()
        return "created"
    meta["uid"] = row.uid
    meta["creationTimestamp"] = (row.body.get("metadata") or {}).get("creationTimestamp")
    if kind == "Pod" and "status" in row.body:
        body["status"] = row.body["status"]
    unchanged = {**row.body, "metadata": {**(row.body.get("metadata") or {}), "resourceVersion": None}} == \
        {**body, "metadata": {**meta, "resourceVersion": None}}
    if unchanged:
        meta["resourceVersion"] = (row.body.get("metadata") or {}).get("resourceVersion") or meta["resourceVersion"]
    row.body = body
    return "unchanged" if unchanged else "configured"


def ensure_namespace(s: Session, cluster: GkeCluster, name: str) -> None:
    """The namespace and its `default` ServiceAccount (the `default` namespace always exists)."""
    if get_object(s, cluster.id, "Namespace", "", name) is None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        _fill(s, cluster, "Namespace", body)
        _put(s, cluster, "Namespace", "", name, body)
    if get_object(s, cluster.id, "ServiceAccount", name, "default") is None:
        _put(s, cluster, "ServiceAccount", name, "default",
             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})


def ensure_cluster_namespaces(s: Session, cluster: GkeCluster) -> None:
    """What a new cluster has: the `default`, `kube-system`, `kube-public` and `kube-node-lease`
    namespaces, each with its `default` ServiceAccount (made with the cluster; clusters stored
    before these existed get them on their first write)."""
    if get_object(s, cluster.id, "Namespace", "", SYSTEM_NAMESPACES[-1]) is not None:
        return
    for name in SYSTEM_NAMESPACES:
        ensure_namespace(s, cluster, name)


def _namespace_of(s: Session, cluster: GkeCluster, doc: dict[str, Any], default_ns: str) -> str:
    ns = (doc.get("metadata") or {}).get("namespace") or default_ns
    if not isinstance(ns, str) or not DNS_LABEL.match(ns):
        raise InvalidArgument(f"invalid namespace {str(ns)[:64]!r}")
    if ns != "default" and get_object(s, cluster.id, "Namespace", "", ns) is None:
        raise not_found("Namespace", ns)
    return ns


def _pod_template(spec: dict[str, Any]) -> dict[str, Any]:
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"  # as Kubernetes fills it
    return spec


def apply_manifest(s: Session, cluster: GkeCluster, doc: Any, default_ns: str = "default") -> list[str]:
    """Apply one manifest document; lines like kubectl's (`serviceaccount/my-app-ksa created`)."""
    if doc is None:
        return []
    if not isinstance(doc, dict):
        raise InvalidArgument("a manifest document must be a mapping")
    kind, meta = doc.get("kind"), doc.get("metadata")
    if kind == "List":
        return [line for item in doc.get("items") or [] for line in apply_manifest(s, cluster, item, default_ns)]
    if kind not in KINDS:
        raise InvalidArgument(f"Keyless does not model kind {str(kind)[:64]!r} (it models "
                              f"{', '.join(sorted(KINDS))})")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise InvalidArgument(f"{kind}: metadata.name is required")
    name = meta["name"]
    if not (DNS_LABEL if kind == "Namespace" else DNS_SUBDOMAIN).match(name):
        raise InvalidArgument(f"{kind} name {name[:64]!r} is not a valid DNS name")
    ensure_cluster_namespaces(s, cluster)
    body = copy.deepcopy(doc)
    if kind == "Namespace":
        _fill(s, cluster, kind, body)
        outcome = _put(s, cluster, kind, "", name, body)
        ensure_namespace(s, cluster, name)
        return [f"namespace/{name} {outcome}"]
    ns = _namespace_of(s, cluster, doc, default_ns)
    if kind == "Pod":
        _pod_template(body.setdefault("spec", {}))
    lines = [f"{kind.lower()}/{name} {_put(s, cluster, kind, ns, name, body)}"]
    if kind == "Deployment":
        lines += _replicas(s, cluster, ns, name, body)
    return lines


def _replicas(s: Session, cluster: GkeCluster, ns: str, name: str, deployment: dict[str, Any]) -> list[str]:
    """The Deployment's pods, named NAME-<template hash>-<random> as its ReplicaSet names them."""
    spec = deployment.get("spec") or {}
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or not 0 <= replicas <= MAX_REPLICAS:
        raise InvalidArgument(f"spec.replicas must be between 0 and {MAX_REPLICAS}")
    template = spec.get("template") or {}
    pod_spec = _pod_template(copy.deepcopy(template.get("spec") or {}))
    template_hash = hashlib.sha256(repr(sorted(pod_spec.items())).encode()).hexdigest()[:10]
    prefix = f"{name}-"
    for old in list_objects(s, cluster.id, "Pod", ns):
        owner = (old.body.get("metadata") or {}).get("labels", {}).get("keyless.dev/deployment")
        if owner == name and not old.name.startswith(f"{name}-{template_hash}-"):
            s.delete(old)  # a new template replaces the old pods, as a rollout does
    current = [p for p in list_objects(s, cluster.id, "Pod", ns) if p.name.startswith(f"{prefix}{template_hash}-")]
    lines = []
    for _ in range(replicas - len(current)):
        pod_name = f"{name}-{template_hash}-{secrets.token_hex(3)[:5]}"
        labels = {**((template.get("metadata") or {}).get("labels") or {}), "keyless.dev/deployment": name}
        _put(s, cluster, "Pod", ns, pod_name, {"apiVersion": "v1", "kind": "Pod",
                                                "metadata": {"name": pod_name, "labels": labels},
                                                "spec": copy.deepcopy(pod_spec), "status": {"phase": "Pending"}})
        lines.append(f"pod/{pod_name} created")
    for extra in current[replicas:]:
        s.delete(extra)
    return lines


def annotate(s: Session, cluster: GkeCluster, kind: str, namespace: str, name: str, key: str, value: str | None,
             overwrite: bool = False) -> str:
    """`kubectl annotate KIND NAME KEY=VALUE` (or `KEY-` to remove, value None)."""
    row = get_object(s, cluster.id, kind, namespace if kind in NAMESPACED else "", name)
    if row is None:
        raise not_found(kind, name)
    body = copy.deepcopy(row.body)
    annotations = body.setdefault("metadata", {}).setdefault("annotations", {})
    if value is None:
        annotations.pop(key, None)
    else:
        if key in annotations and annotations[key] != value and not overwrite:
            raise AlreadyExists(f"--overwrite is false but found the following declared annotation(s): "
                                f"'{key}' already has a value ({annotations[key]})")
        annotations[key] = value
    row.body = body
    return f"{kind.lower()}/{name} annotated"


def delete_object(s: Session, cluster: GkeCluster, kind: str, namespace: str, name: str) -> str:
    row = get_object(s, cluster.id, kind, namespace if kind in NAMESPACED else "", name)
    if row is None:
        raise not_found(kind, name)
    s.delete(row)
    if kind == "Namespace":
        for obj in s.scalars(select(K8sObject).where(K8sObject.cluster_id == cluster.id,
                                                     K8sObject.namespace == name)).all():
            s.delete(obj)
    return f'{kind.lower()} "{name}" deleted'


# -- the Kubernetes API's operations (keyless.api.kubernetes renders them) -------------------------------

SUBDOMAIN_MESSAGE = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                     "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                     "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MESSAGE = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
                 "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
PLURALS = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Pod": "pods",
           "Deployment": "deployments", "ConfigMap": "configmaps", "Secret": "secrets", "Service": "services"}
GROUPS = {"Deployment": "apps"}


class Invalid(InvalidArgument):
    """Kubernetes' 422 Invalid: the object failed validation; `causes` name the fields."""

    http_status = 422

    def __init__(self, kind: str, name: str, causes: list[dict[str, str]]) -> None:
        summary = ", ".join(f"{c['field']}: {c['message']}" for c in causes)
        super().__init__(f'{kind} "{name}" is invalid: {summary}')
        self.kind, self.name, self.causes = kind, name, causes


def resource_of(kind: str) -> str:
    """`serviceaccounts`, `deployments.apps`: how Kubernetes names the resource in its messages."""
    plural = PLURALS.get(kind, kind.lower() + "s")
    return f"{plural}.{GROUPS[kind]}" if kind in GROUPS else plural


def not_found(kind: str, name: str) -> NotFound:
    return NotFound(f'{resource_of(kind)} "{name}" not found')


def _next_version() -> str:
    """resourceVersion: opaque to clients; microseconds, so later writes compare greater."""
    return str(time.time_ns() // 1000)


def validate(kind: str, body: dict[str, Any]) -> str:
    """The object's name, checked as the API server's validation does (422 with causes)."""
    meta = body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        raise Invalid(kind, "", [{"reason": "FieldValueRequired", "field": "metadata.name",
                                  "message": "Required value: name or generateName is required"}])
    label = kind == "Namespace"
    if not (DNS_LABEL if label else DNS_SUBDOMAIN).match(name) or ".." in name or ".-" in name or "-." in name:
        shown = name[:253]
        raise Invalid(kind, shown, [{"reason": "FieldValueInvalid", "field": "metadata.name",
                                     "message": f'Invalid value: "{shown}": '
                                                f"{LABEL_MESSAGE if label else SUBDOMAIN_MESSAGE}"}])
    for field in ("labels", "annotations"):
        value = meta.get(field) if isinstance(meta, dict) else None
        if value is not None and (not isinstance(value, dict) or
                                  not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise Invalid(kind, name, [{"reason": "FieldValueInvalid", "field": f"metadata.{field}",
                                        "message": "Invalid value: must be a map of strings"}])
    return name


def _require_namespace(s: Session, cluster: GkeCluster, namespace: str) -> None:
    if namespace != "default" and get_object(s, cluster.id, "Namespace", "", namespace) is None:
        raise not_found("Namespace", namespace)


def _fill(s: Session, cluster: GkeCluster, kind: str, body: dict[str, Any]) -> None:
    """What the API server and its controllers fill in for each kind."""
    if kind == "Namespace":
        meta = body.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta.get("name", "")}
        body["spec"] = {"finalizers": ["kubernetes"]}
        body["status"] = {"phase": "Active"}
    elif kind == "Pod":
        spec = _pod_template(body.setdefault("spec", {}))
        first = (spec.get("containers") or [{}])[0]
        if isinstance(first, dict) and first.get("stdin"):
            # `kubectl run -i`: the container waits for its attacher, whose attach starts its command
            # (keyless.api.kubernetes.exec); kubectl attaches once the pod is Running and Ready.
            body["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                              "containerStatuses": [{"name": first.get("name", ""), "ready": True, "restartCount": 0,
                                                     "state": {"running": {}}}]}
        else:
            body["status"] = {"phase": "Pending"}  # its processes run when exec'd (no image is pulled)


def create(s: Session, cluster: GkeCluster, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST: a new object (409 AlreadyExists when one has its name)."""
    name = validate(kind, body)
    ensure_cluster_namespaces(s, cluster)
    ns = "" if kind == "Namespace" else namespace
    if ns:
        _require_namespace(s, cluster, ns)
    if get_object(s, cluster.id, kind, ns, name) is not None:
        raise AlreadyExists(f'{resource_of(kind)} "{name}" already exists')
    body = copy.deepcopy(body)
    meta = body["metadata"]
    for generated in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp"):
        meta.pop(generated, None)
    _fill(s, cluster, kind, body)
    _put(s, cluster, kind, ns, name, body)
    if kind == "Namespace":
        ensure_namespace(s, cluster, name)
    elif kind == "Deployment":
        _replicas(s, cluster, ns, name, body)
        _deployment_status(s, cluster, ns, name)
    return read(s, cluster, kind, ns, name)


def read(s: Session, cluster: GkeCluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    row = get_object(s, cluster.id, kind, "" if kind == "Namespace" else namespace, name)
    if row is None:
        raise not_found(kind, name)
    return copy.deepcopy(row.body)


def replace(s: Session, cluster: GkeCluster, kind: str, namespace: str, name: str,
            body: dict[str, Any]) -> dict[str, Any]:
    """PUT: the whole object, guarded by its resourceVersion when the caller sends one (409)."""
    if validate(kind, body) != name:
        raise InvalidArgument("the name of the object does not match the name on the URL")
    current = read(s, cluster, kind, namespace, name)
    given = (body.get("metadata") or {}).get("resourceVersion")
    if given and given != current["metadata"].get("resourceVersion"):
        raise conflict(kind, name)
    return _store(s, cluster, kind, namespace, name, current, copy.deepcopy(body))


def conflict(kind: str, name: str) -> Aborted:
    return Aborted(f'Operation cannot be fulfilled on {resource_of(kind)} "{name}": the object has been modified; '
                   "please apply your changes to the latest version and try again")


def patch(s: Session, cluster: GkeCluster, kind: str, namespace: str, name: str, patch_type: str,
          document: Any) -> dict[str, Any]:
    """PATCH with a merge, strategic merge or JSON patch (keyless.gke.patches)."""
    current = read(s, cluster, kind, namespace, name)
    if patch_type == "merge":
        new = patches.merge_patch(current, document)
    elif patch_type == "strategic":
        new = patches.strategic_merge_patch(current, document)
    else:
        new = patches.json_patch(current, document)
    if not isinstance(new, dict):
        raise InvalidArgument("the patched object is not an object")
    given = (new.get("metadata") or {}).get("resourceVersion")
    if given and given != current["metadata"].get("resourceVersion"):
        raise conflict(kind, name)
    if validate(kind, new) != name:
        raise InvalidArgument("the patch may not change the object's name")
    return _store(s, cluster, kind, namespace, name, current, new)


def _store(s: Session, cluster: GkeCluster, kind: str, namespace: str, name: str, current: dict[str, Any],
           new: dict[str, Any]) -> dict[str, Any]:
    new["apiVersion"], new["kind"] = current.get("apiVersion"), kind
    meta = new.setdefault("metadata", {})
    for kept in ("uid", "creationTimestamp", "namespace"):
        if kept in current["metadata"]:
            meta[kept] = current["metadata"][kept]
        else:
            meta.pop(kept, None)
    if kind in ("Namespace", "Pod") and "status" in current:
        new["status"] = current["status"]  # status is the system's (its own subresource)
    if kind == "Pod":
        _pod_template(new.setdefault("spec", {}))
    ns = "" if kind == "Namespace" else namespace
    _put(s, cluster, kind, ns, name, new)
    if kind == "Deployment":
        _replicas(s, cluster, ns, name, new)
        _deployment_status(s, cluster, ns, name)
    return read(s, cluster, kind, ns, name)


def _deployment_status(s: Session, cluster: GkeCluster, namespace: str, name: str) -> None:
    row = get_object(s, cluster.id, "Deployment", namespace, name)
    assert row is not None
    pods = [p for p in list_objects(s, cluster.id, "Pod", namespace)
            if ((p.body.get("metadata") or {}).get("labels") or {}).get("keyless.dev/deployment") == name]
    body = copy.deepcopy(row.body)
    running = sum(1 for p in pods if (p.body.get("status") or {}).get("phase") == "Running")
    body["status"] = {"observedGeneration": 1, "replicas": len(pods), "updatedReplicas": len(pods),
                      "readyReplicas": running, "availableReplicas": running}
    row.body = body


def remove(s: Session, cluster: GkeCluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    """DELETE: the object as it was (a namespace takes its objects with it; a Deployment its pods)."""
    current = read(s, cluster, kind, namespace, name)
    delete_object(s, cluster, kind, namespace, name)
    if kind == "Deployment":
        for pod in list_objects(s, cluster.id, "Pod", namespace):
            if ((pod.body.get("metadata") or {}).get("labels") or {}).get("keyless.dev/deployment") == name:
                s.delete(pod)
    return current


def listing(s: Session, cluster: GkeCluster, kind: str, namespace: str | None) -> list[dict[str, Any]]:
    ns = None if kind == "Namespace" and namespace is None else ("" if kind == "Namespace" else namespace)
    return [copy.deepcopy(o.body) for o in list_objects(s, cluster.id, kind, ns)]
