"""`keyless reset`, `keyless snapshot [ID]`, `keyless restore ID`, `keyless snapshots`: the running
server's emulator controls (keyless.api.emulator), as its bootstrap owner."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from keyless.cli.quickstart import Api
from keyless.config import Settings


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
    listing = sub.add_parser("snapshots", help="list the running server's snapshots")
    store_flags(listing)
    listing.set_defaults(func=lambda a: cmd_snapshots(a, settings_of(a)))
