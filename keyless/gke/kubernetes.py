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
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import AlreadyExists, InvalidArgument, NotFound
from keyless.store.models import GkeCluster, K8sObject

ANNOTATION = "iam.gke.io/gcp-service-account"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
NAMESPACED = {"ServiceAccount", "Pod", "Deployment", "ConfigMap", "Secret", "Service"}
KINDS = NAMESPACED | {"Namespace"}
MAX_REPLICAS = 50


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
    if row is None:
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(datetime.now(UTC)).split(".")[0] + "Z"
        s.add(K8sObject(cluster_id=cluster.id, kind=kind, namespace=namespace, name=name, uid=meta["uid"],
                        create_time=datetime.now(UTC), body=body))
        s.flush()
        return "created"
    meta["uid"] = row.uid
    meta["creationTimestamp"] = (row.body.get("metadata") or {}).get("creationTimestamp")
    if kind == "Pod" and "status" in row.body:
        body["status"] = row.body["status"]
    unchanged = row.body == body
    row.body = body
    return "unchanged" if unchanged else "configured"


def ensure_namespace(s: Session, cluster: GkeCluster, name: str) -> None:
    """The namespace and its `default` ServiceAccount (the `default` namespace always exists)."""
    if get_object(s, cluster.id, "Namespace", "", name) is None:
        _put(s, cluster, "Namespace", "", name, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    if get_object(s, cluster.id, "ServiceAccount", name, "default") is None:
        _put(s, cluster, "ServiceAccount", name, "default",
             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})


def _namespace_of(s: Session, cluster: GkeCluster, doc: dict[str, Any], default_ns: str) -> str:
    ns = (doc.get("metadata") or {}).get("namespace") or default_ns
    if not isinstance(ns, str) or not DNS_LABEL.match(ns):
        raise InvalidArgument(f"invalid namespace {str(ns)[:64]!r}")
    if ns != "default" and get_object(s, cluster.id, "Namespace", "", ns) is None:
        raise NotFound(f'namespaces "{ns}" not found')
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
    ensure_namespace(s, cluster, "default")
    body = copy.deepcopy(doc)
    if kind == "Namespace":
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
                                                "spec": copy.deepcopy(pod_spec)})
        lines.append(f"pod/{pod_name} created")
    for extra in current[replicas:]:
        s.delete(extra)
    return lines


def annotate(s: Session, cluster: GkeCluster, kind: str, namespace: str, name: str, key: str, value: str | None,
             overwrite: bool = False) -> str:
    """`kubectl annotate KIND NAME KEY=VALUE` (or `KEY-` to remove, value None)."""
    row = get_object(s, cluster.id, kind, namespace if kind in NAMESPACED else "", name)
    if row is None:
        raise NotFound(f'{kind.lower()}s "{name}" not found')
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
        raise NotFound(f'{kind.lower()}s "{name}" not found')
    s.delete(row)
    if kind == "Namespace":
        for obj in s.scalars(select(K8sObject).where(K8sObject.cluster_id == cluster.id,
                                                     K8sObject.namespace == name)).all():
            s.delete(obj)
    return f'{kind.lower()} "{name}" deleted'
