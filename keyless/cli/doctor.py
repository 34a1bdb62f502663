"""`keyless doctor lint` and `keyless doctor migrate`: check a federation setup (the store, plus
Kubernetes manifests) against the seeds' common mistakes, and plan the move off key files.
Acts on the store directly, like `keyless projects create`."""

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

    mig = dsub.add_parser("migrate", help="plan the move of key-file workloads to Workload Identity")
    mig.add_argument("-f", "--filename", action="append", required=True, metavar="MANIFEST_FILE_OR_DIR")
    mig.add_argument("--project", help="the project of the cluster and GSA (default PROJECT_ID)")
    mig.add_argument("--cluster", help="the cluster the workloads run in")
    mig.add_argument("--service-account", help="the GSA email to use (default WORKLOAD-gsa@PROJECT...)")
    mig.add_argument("--format", choices=("text", "json"), default="text")
    store_flags(mig)
    mig.set_defaults(func=lambda a: cmd_migrate(a, settings_of(a)))


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
