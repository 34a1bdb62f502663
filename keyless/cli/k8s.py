"""`keyless k8s`: kubectl's syntax for what the seeds do with Kubernetes objects — apply manifests
(files or directories of multi-document YAML), annotate a ServiceAccount, create a namespace or
ServiceAccount, get pods/serviceaccounts/namespaces (`-o yaml|json|name|custom-columns=...`),
delete — acting on the cluster's objects in the store (keyless.gke.kubernetes)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keyless.config import Settings
from keyless.errors import NotFound

KIND_ALIASES = {"pod": "Pod", "pods": "Pod", "po": "Pod", "serviceaccount": "ServiceAccount",
                "serviceaccounts": "ServiceAccount", "sa": "ServiceAccount", "namespace": "Namespace",
                "namespaces": "Namespace", "ns": "Namespace", "deployment": "Deployment",
                "deployments": "Deployment", "deploy": "Deployment"}


def _kind(text: str) -> str:
    kind = KIND_ALIASES.get(text.lower())
    if kind is None:
        raise ValueError(f'the server doesn\'t have a resource type "{text}"')
    return kind


def _cluster(state: Any, args: argparse.Namespace) -> Any:
    from sqlalchemy import select

    from keyless.gke.clusters import find_cluster
    from keyless.store.models import GkeCluster

    with state.db.read() as s:
        if args.project:
            cluster = find_cluster(s, args.project, args.cluster, args.location)
        else:
            q = select(GkeCluster).where(GkeCluster.name == args.cluster)
            if args.location:
                q = q.where(GkeCluster.location == args.location)
            rows = s.scalars(q).all()
            cluster = rows[0] if len(rows) == 1 else None
    if cluster is None:
        raise NotFound(f"cluster {args.cluster!r} not found (or ambiguous: give --project and --location)")
    return cluster


def _documents(paths: list[str]) -> list[Any]:
    import yaml  # here, not at the top: every `keyless` command imports this module to build its parser

    docs: list[Any] = []
    for p in paths:
        path = Path(p)
        files = sorted(f for f in path.rglob("*") if f.suffix in (".yaml", ".yml", ".json")) if path.is_dir() \
            else [path]
        for f in files:
            try:
                docs += [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
            except yaml.YAMLError as exc:
                raise ValueError(f"error parsing {f}: {exc}") from exc
    return docs


def _columns(spec: str, items: list[dict[str, Any]]) -> str:
    cols = [c.split(":", 1) for c in spec.split(",")]

    def get(obj: Any, path: str) -> str:
        for part in path.lstrip(".").split("."):
            obj = obj.get(part) if isinstance(obj, dict) else None
        return "<none>" if obj is None else str(obj)

    rows = [[name for name, _ in cols]] + [[get(i, path) for _, path in cols] for i in items]
    widths = [max(len(r[k]) for r in rows) for k in range(len(cols))]
    return "\n".join("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def cmd(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from keyless.gke import kubernetes
    from keyless.state import ServerState

    state = ServerState(settings)
    cluster = _cluster(state, args)
    out: list[str] = []
    if args.k8s_command == "apply":
        docs = _documents(args.filename)
        with state.db.write() as s:
            for doc in docs:
                out += kubernetes.apply_manifest(s, cluster, doc, args.namespace or "default")
    elif args.k8s_command == "annotate":
        kind = _kind(args.kind)
        for pair in args.annotations:
            key, eq, value = pair.partition("=")
            remove = not eq and key.endswith("-")
            with state.db.write() as s:
                out.append(kubernetes.annotate(s, cluster, kind, args.namespace or "default", args.name,
                                               key[:-1] if remove else key, None if remove else value,
                                               args.overwrite))
    elif args.k8s_command == "create":
        kind = _kind(args.kind)
        doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": args.name}}
        with state.db.write() as s:
            if kubernetes.get_object(s, cluster.id, kind, "" if kind == "Namespace" else args.namespace or "default",
                                     args.name) is not None:
                raise ValueError(f'{kubernetes.resource_of(kind)} "{args.name}" already exists')
            out += kubernetes.apply_manifest(s, cluster, doc, args.namespace or "default")
    elif args.k8s_command == "delete":
        with state.db.write() as s:
            out.append(kubernetes.delete_object(s, cluster, _kind(args.kind), args.namespace or "default", args.name))
    elif args.k8s_command == "get":
        kind = _kind(args.kind)
        with state.db.read() as s:
            ns = None if args.all_namespaces or kind == "Namespace" else (args.namespace or "default")
            items = [o.body for o in kubernetes.list_objects(s, cluster.id, kind, ns)]
        if args.name:
            items = [i for i in items if i.get("metadata", {}).get("name") == args.name]
            if not items:
                raise kubernetes.not_found(kind, args.name)
        fmt = args.output or ""
        if fmt == "json":
            print(json.dumps(items[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": items}, indent=2))
        elif fmt == "yaml":
            print(yaml.safe_dump(items[0] if args.name else {"apiVersion": "v1", "kind": "List", "items": items},
                                 sort_keys=False), end="")
        elif fmt == "name":
            out += [f"{kind.lower()}/{i['metadata']['name']}" for i in items]
        elif fmt.startswith("custom-columns="):
            print(_columns(fmt.split("=", 1)[1], items))
        else:
            default = "NAMESPACE:.metadata.namespace,NAME:.metadata.name" if ns is None and kind != "Namespace" \
                else "NAME:.metadata.name"
            print(_columns(default, items) if items else "No resources found")
    for line in out:
        print(line)
    sys.stdout.flush()
    return 0


def register(sub: Any, store_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    k8s = sub.add_parser("k8s", help="kubectl's syntax for a cluster's Kubernetes objects (apply, annotate, get, ...)")
    ksub = k8s.add_subparsers(dest="k8s_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cluster", required=True)
        p.add_argument("--project", help="the cluster's project (when the cluster name is ambiguous)")
        p.add_argument("--location", help="the cluster's region or zone")
        p.add_argument("--namespace", "-n", help="namespace (default: default)")
        store_flags(p)
        p.set_defaults(func=lambda a: cmd(a, settings_of(a)))

    apply = ksub.add_parser("apply", help="apply manifests: keyless k8s apply -f FILE_OR_DIR --cluster C")
    apply.add_argument("-f", "--filename", action="append", required=True)
    common(apply)
    ann = ksub.add_parser("annotate", help="keyless k8s annotate serviceaccount KSA -n NS KEY=VALUE [--overwrite]")
    ann.add_argument("kind")
    ann.add_argument("name")
    ann.add_argument("annotations", nargs="+", help="KEY=VALUE, or KEY- to remove")
    ann.add_argument("--overwrite", action="store_true")
    common(ann)
    create = ksub.add_parser("create", help="keyless k8s create namespace|serviceaccount NAME")
    create.add_argument("kind")
    create.add_argument("name")
    common(create)
    delete = ksub.add_parser("delete", help="keyless k8s delete KIND NAME")
    delete.add_argument("kind")
    delete.add_argument("name")
    common(delete)
    get = ksub.add_parser("get", help="keyless k8s get pods|serviceaccounts|namespaces [NAME] [-A] [-o ...]")
    get.add_argument("kind")
    get.add_argument("name", nargs="?")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-o", "--output", help="yaml, json, name or custom-columns=NAME:.path,...")
    common(get)
