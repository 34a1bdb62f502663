"""`keyless doctor lint`, `explain`, `migrate` and `access`: check a federation setup (the store,
plus Kubernetes manifests) against the seeds' common mistakes, explain one access path step by
step, plan the move off key files, and say who has access to what. Acts on the store directly,
like `keyless projects create`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from keyless.config import Settings


def register(sub: Any, store_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    doctor = sub.add_parser("doctor", help="find the common Workload Identity mistakes; plan key migrations")
    dsub = doctor.add_subparsers(dest="doctor_command", required=True)

    lint = dsub.add_parser("lint", help="check pools, providers, bindings, keys, clusters and manifests")
    lint.add_argument("--project", help="only this project (also the workload pool of manifest KSAs)")
    lint.add_argument("-f", "--filename", action="append", default=[], metavar="MANIFEST_FILE_OR_DIR",
                      help="Kubernetes manifests to check too (repeatable; directories are searched)")
    lint.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    lint.add_argument("--max-key-age-days", type=int, default=90, help="older user-managed keys are flagged")
    store_flags(lint)
    lint.set_defaults(func=lambda a: cmd_lint(a, settings_of(a)))

    _explain_parser(dsub, store_flags, settings_of)

    mig = dsub.add_parser("migrate", help="plan the move of key-file workloads to Workload Identity")
    mig.add_argument("-f", "--filename", action="append", required=True, metavar="MANIFEST_FILE_OR_DIR")
    mig.add_argument("--project", help="the project of the cluster and GSA (default PROJECT_ID)")
    mig.add_argument("--cluster", help="the cluster the workloads run in")
    mig.add_argument("--service-account", help="the GSA email to use (default WORKLOAD-gsa@PROJECT...)")
    mig.add_argument("--format", choices=("text", "json"), default="text")
    store_flags(mig)
    mig.set_defaults(func=lambda a: cmd_migrate(a, settings_of(a)))

    acc = dsub.add_parser("access", help="who has access to what: an identity's reach, or a resource's identities")
    who = acc.add_mutually_exclusive_group(required=True)
    who.add_argument("--identity", metavar="MEMBER", help="user:, serviceAccount:, principal://…/subject/… or "
                                                          "PROJECT.svc.id.goog[NS/KSA]")
    who.add_argument("--pod", metavar="NAMESPACE/NAME", help="a pod (with --cluster): its KSA's reach")
    who.add_argument("--resource", help="projects/P, projects/P/serviceAccounts/EMAIL, gs://BUCKET, "
                                        "projects/P/secrets/S")
    acc.add_argument("--cluster", help="the pod's cluster")
    acc.add_argument("--permission", help="only this permission")
    acc.add_argument("--attribute", action="append", default=[], metavar="NAME=VALUE",
                     help="a federated principal's mapped attribute (for attribute principal sets; repeatable)")
    acc.add_argument("--group", action="append", default=[], help="a federated principal's group (repeatable)")
    acc.add_argument("--format", choices=("text", "json"), default="text")
    store_flags(acc)
    acc.set_defaults(func=lambda a: cmd_access(a, settings_of(a)))


def _explain_parser(dsub: Any, store_flags: Callable[[argparse.ArgumentParser], None],
                    settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    ex = dsub.add_parser("explain", help="walk one access path (pod, external token, principal or audit entry) "
                                         "step by step and name the first failing step, its cause and fix")
    ex.add_argument("--pod", metavar="NAMESPACE/NAME", help="a pod of a Keyless GKE cluster (with --cluster)")
    ex.add_argument("--cluster", help="the pod's cluster")
    ex.add_argument("--project", help="the cluster's project (when its name is ambiguous)")
    ex.add_argument("--location", help="the cluster's location")
    ex.add_argument("--token", metavar="FILE", help="an external credential (OIDC token, or AWS serialized request)")
    ex.add_argument("--provider", help="projects/N/locations/global/workloadIdentityPools/P/providers/X")
    ex.add_argument("--principal", metavar="MEMBER", help="serviceAccount:…, user:…, principal://…")
    ex.add_argument("--service-account", metavar="GSA_EMAIL",
                    help="with --token or --principal: the service account it impersonates")
    ex.add_argument("--permission", help="e.g. storage.objects.get")
    ex.add_argument("--resource", help="e.g. //storage.googleapis.com/projects/_/buckets/my-bucket")
    ex.add_argument("--audit-entry", metavar="INSERT_ID", help="explain the denial recorded in this audit entry")
    ex.add_argument("--allow-insecure-issuers", action="store_true",
                    help="fetch http:// OIDC issuers on loopback (local testing, as keyless serve)")
    ex.add_argument("--format", choices=("text", "json"), default="text")
    store_flags(ex)
    ex.set_defaults(func=lambda a: cmd_explain(a, settings_of(a)))


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from keyless.doctor import explain
    from keyless.state import ServerState

    state = ServerState(settings)
    try:
        summary = ""
        if args.audit_entry:
            if args.pod or args.token or args.principal:
                raise ValueError("--audit-entry names its own principal: drop --pod/--token/--principal")
            question, summary = explain.question_of_entry(state, args.audit_entry)
        else:
            if not args.permission or not args.resource:
                raise ValueError("--permission and --resource are required (or --audit-entry)")
            token = None
            if args.token:
                if not args.provider:
                    raise ValueError("--token needs --provider")
                token = Path(args.token).read_text()[:64 * 1024]
            question = explain.Question(permission=args.permission, resource=args.resource, pod=args.pod,
                                        cluster=args.cluster, project=args.project, location=args.location,
                                        token=token, provider=args.provider, principal=args.principal,
                                        service_account=args.service_account)
        result = explain.explain(state, question)
    finally:
        state.db.dispose()
    if summary:
        result.subject = summary
    sys.stdout.write(explain.render_json(result) + "\n" if args.format == "json" else explain.render_text(result))
    return explain.exit_status(result)


def cmd_lint(args: argparse.Namespace, settings: Settings) -> int:
    from keyless.doctor import lint, manifests, model, sarif
    from keyless.state import ServerState

    if args.max_key_age_days < 0:
        raise ValueError("--max-key-age-days must not be negative")
    docs = manifests.load(args.filename)
    state = ServerState(settings)
    try:
        setup = model.load(state, args.project, docs)
    finally:
        state.db.dispose()
    findings = lint.lint(setup, max_key_age_days=args.max_key_age_days)
    render = {"text": lint.render_text, "json": lint.render_json, "sarif": sarif.render_sarif}[args.format]
    sys.stdout.write(render(findings) + ("" if args.format == "text" else "\n"))
    return lint.exit_status(findings)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from keyless.doctor import manifests, migrate, model
    from keyless.state import ServerState

    docs = manifests.load(args.filename)
    state = ServerState(settings)
    try:
        setup = model.load(state, args.project)
    finally:
        state.db.dispose()
    plans = migrate.plan(setup, docs, project=args.project, cluster=args.cluster, gsa=args.service_account)
    sys.stdout.write(migrate.render_json(plans) + "\n" if args.format == "json" else migrate.render_text(plans))
    return 0


def cmd_access(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from keyless.doctor import access
    from keyless.state import ServerState

    attributes = {}
    for item in args.attribute:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--attribute takes NAME=VALUE, not {item!r}")
        attributes[name] = value
    state = ServerState(settings)
    try:
        setup, analysis = access.analyze(state, identity=args.identity, pod=args.pod, cluster=args.cluster,
                                         resource=args.resource, permission=args.permission,
                                         attributes=attributes, groups=tuple(args.group))
    finally:
        state.db.dispose()
    if args.format == "json":
        sys.stdout.write(json.dumps(analysis.as_json(setup), indent=2) + "\n")
    else:
        sys.stdout.write(access.render_text(setup, analysis))
    return 0
