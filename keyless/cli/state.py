"""`keyless reset`, `keyless snapshot [ID]`, `keyless restore ID`, `keyless snapshots`: the running
server's emulator controls (keyless.api.emulator), as its bootstrap owner; `keyless apply -f
world.yaml [--dry-run]` and `keyless export` (keyless.world), and `keyless serve --state FILE`'s
apply, made in-process before the server listens."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyless.cli.quickstart import Api
from keyless.config import Settings

if TYPE_CHECKING:
    from keyless.state import ServerState


def _api(settings: Settings) -> Api:
    api = Api(settings)
    api.wait_until_serving()
    return api


def cmd_reset(args: argparse.Namespace, settings: Settings) -> int:
    _api(settings).call("POST", "/keyless/v1/state:reset", {})
    print(f"Reset {settings.base_url}: no projects, the bootstrap owner's grants only.")
    return 0


def cmd_snapshot(args: argparse.Namespace, settings: Settings) -> int:
    body = {"snapshotId": args.snapshot_id} if args.snapshot_id else {}
    print(json.dumps(_api(settings).call("POST", "/keyless/v1/state:snapshot", body), indent=2))
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    name = args.snapshot if args.snapshot.startswith("snapshots/") else f"snapshots/{args.snapshot}"
    _api(settings).call("POST", "/keyless/v1/state:restore", {"snapshot": name})
    print(f"Restored {name} on {settings.base_url}.")
    return 0


def cmd_snapshots(args: argparse.Namespace, settings: Settings) -> int:
    for snap in _api(settings).call("GET", "/keyless/v1/snapshots").get("snapshots", []):
        print(f"{snap['name']}\t{snap['createTime']}\t{snap['sizeBytes']} bytes")
    return 0


def _project_creator(settings: Settings) -> Callable[[str, str | None, str | None], None]:
    """Projects with their numbers, which no Google API sets: through the store, as
    `keyless projects create --number` (the owner then holds roles/owner on them)."""

    def create(project_id: str, number: str | None, name: str | None) -> None:
        from keyless.state import ServerState

        state = ServerState(settings)
        try:
            state.create_owned_project(project_id, name=name, number=number)
        finally:
            state.db.dispose()

    return create


def _read_world(path: str) -> dict[str, Any]:
    import yaml

    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    world = yaml.safe_load(text) or {}
    if not isinstance(world, dict):
        raise ValueError(f"{path}: a world file is a mapping with `projects:`")
    return world


def apply_world(api: Api, world: dict[str, Any], create_project: Callable[[str, str | None, str | None], None], *,
                dry_run: bool = False, out: Any = sys.stdout) -> int:
    """Print the plan, then (unless `dry_run`) make it; the number of changes."""
    from keyless import world as world_module

    changes = world_module.plan(api, world, create_project)
    for change in changes:
        print(change.summary, file=out)
    if not changes:
        print("No changes: the server already holds this world.", file=out)
    elif dry_run:
        print(f"{len(changes)} change(s) planned; --dry-run: nothing was changed.", file=out)
    else:
        world_module.apply(api, changes)
        print(f"{len(changes)} change(s) made.", file=out)
    return len(changes)


def cmd_apply(args: argparse.Namespace, settings: Settings) -> int:
    apply_world(_api(settings), _read_world(args.file), _project_creator(settings), dry_run=args.dry_run)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from keyless import world as world_module

    print(yaml.safe_dump(world_module.export(_api(settings)), sort_keys=False, default_flow_style=False), end="")
    return 0


def _json_file(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from keyless.gcloud_import import build_world

    sa_policies = {}
    for item in args.service_account_policy or []:
        email, sep, path = item.partition("=")
        if not sep or not email or not path:
            raise ValueError(f"--service-account-policy takes EMAIL=FILE, not {item!r}")
        sa_policies[email] = _json_file(path)
    world, notes = build_world(
        args.project, server_url=settings.base_url, project_number=args.project_number,
        iam_policy=_json_file(args.iam_policy) if args.iam_policy else None,
        service_accounts=_json_file(args.service_accounts) if args.service_accounts else None,
        service_account_policies=sa_policies, roles=_json_file(args.roles) if args.roles else None,
        pools=_json_file(args.pools) if args.pools else None,
        providers=[_json_file(p) for p in args.providers or []],
        clusters=[_json_file(c) for c in args.cluster or []],
        org_policies=[_json_file(o) for o in args.org_policy or []])
    for note in notes:
        print(note)
    if args.output:
        Path(args.output).write_text(yaml.safe_dump(world, sort_keys=False))
        print(f"wrote {args.output}: apply it with keyless apply -f {args.output}")
        return 0
    apply_world(_api(settings), world, _project_creator(settings), dry_run=args.dry_run)
    return 0


def apply_state_at_start(state: ServerState, path: str) -> None:
    """`keyless serve --state FILE`: the world made through the app's own routes, in-process,
    before the server takes its first request."""
    from starlette.testclient import TestClient

    from keyless.app import build_app

    client = TestClient(build_app(state, refresh_owner_token=False), base_url=state.settings.base_url)
    token = state.tokens.mint(state.owner, ["https://www.googleapis.com/auth/cloud-platform"], 600).token

    def create(project_id: str, number: str | None, name: str | None) -> None:
        state.create_owned_project(project_id, name=name, number=number)

    # No `with client`: that would run the app's lifespan, whose end closes the audit sink.
    apply_world(Api(state.settings, http=client, token=token), _read_world(path), create)


def register(sub: Any, store_flags: Callable[[argparse.ArgumentParser], None],
             settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    reset = sub.add_parser("reset", help="reset the running server's store to a new server's (keeps its keys)")
    store_flags(reset)
    reset.set_defaults(func=lambda a: cmd_reset(a, settings_of(a)))
    snap = sub.add_parser("snapshot", help="snapshot the running server's whole store")
    snap.add_argument("snapshot_id", nargs="?", help="a name (letters, digits, hyphens); default a random id")
    store_flags(snap)
    snap.set_defaults(func=lambda a: cmd_snapshot(a, settings_of(a)))
    restore = sub.add_parser("restore", help="replace the running server's store with a snapshot")
    restore.add_argument("snapshot", help="snapshots/ID or ID")
    store_flags(restore)
    restore.set_defaults(func=lambda a: cmd_restore(a, settings_of(a)))
    ap = sub.add_parser("apply", help="make the running server hold a world file's projects, IAM policies, "
                                      "roles, accounts, pools, providers, buckets, secrets and clusters")
    ap.add_argument("-f", "--file", required=True, help="the world file (YAML; - for standard input)")
    ap.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    store_flags(ap)
    ap.set_defaults(func=lambda a: cmd_apply(a, settings_of(a)))
    ex = sub.add_parser("export", help="print the running server's world as a world file (YAML)")
    store_flags(ex)
    ex.set_defaults(func=lambda a: cmd_export(a, settings_of(a)))
    im = sub.add_parser("import", help="rebuild a real project from what gcloud exports (--format=json files; "
                                       "Keyless never calls Google)")
    im.add_argument("--project", required=True, help="the project ID the files come from")
    im.add_argument("--project-number", help="its number (else read from the pools' or providers' names)")
    im.add_argument("--iam-policy", help="gcloud projects get-iam-policy P --format=json")
    im.add_argument("--service-accounts", help="gcloud iam service-accounts list --format=json")
    im.add_argument("--service-account-policy", action="append", metavar="EMAIL=FILE",
                    help="gcloud iam service-accounts get-iam-policy EMAIL --format=json (repeatable)")
    im.add_argument("--roles", help="gcloud iam roles list --project P --format=json")
    im.add_argument("--pools", help="gcloud iam workload-identity-pools list --location=global --format=json")
    im.add_argument("--providers", action="append", metavar="FILE",
                    help="gcloud iam workload-identity-pools providers list --workload-identity-pool=POOL "
                         "--location=global --format=json (repeatable, one per pool)")
    im.add_argument("--cluster", action="append", metavar="FILE",
                    help="gcloud container clusters describe C --location=L --format=json (repeatable)")
    im.add_argument("--org-policy", action="append", metavar="FILE",
                    help="gcloud resource-manager org-policies describe CONSTRAINT --project P --format=json")
    im.add_argument("--output", "-o", help="write the world file here instead of applying it")
    im.add_argument("--dry-run", action="store_true", help="print the changes, make none")
    store_flags(im)
    im.set_defaults(func=lambda a: cmd_import(a, settings_of(a)))
    listing = sub.add_parser("snapshots", help="list the running server's snapshots")
    store_flags(listing)
    listing.set_defaults(func=lambda a: cmd_snapshots(a, settings_of(a)))
