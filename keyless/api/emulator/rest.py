"""Keyless's own emulator controls (not a Google API), for test isolation (issue #22):
`POST /keyless/v1/state:reset` (a new server's store: the bootstrap owner's grants, no projects),
`POST /keyless/v1/state:snapshot` (`{"snapshotId"?}` -> the snapshot), `POST /keyless/v1/state:restore`
(`{"snapshot": "snapshots/ID"}`), `GET /keyless/v1/snapshots`, `DELETE /keyless/v1/snapshots/ID`.
The bootstrap owner only: a reset deletes every project's policies, so no IAM role short of the
server's own owner can grant it. Signing keys survive, so tokens minted before stay valid.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from keyless.api.http import Call, route, string_field
from keyless.errors import InvalidArgument, PermissionDenied
from keyless.state import ServerState
from keyless.storage.blobs import BlobStore
from keyless.store import snapshots
from keyless.store.models import StateSnapshot


def _owner_only(call: Call) -> None:
    if call.principal.member != call.state.owner.member:
        raise PermissionDenied("Only the bootstrap owner may reset, snapshot or restore Keyless's state.")


def _snapshot_json(row: StateSnapshot) -> dict[str, Any]:
    return {"name": f"snapshots/{row.snapshot_id}", "createTime": row.create_time.isoformat().replace("+00:00", "Z"),
            "sizeBytes": str(row.size_bytes)}


def routes(state: ServerState) -> list[Route]:
    blobs = BlobStore(state.settings.data_dir, root=state.settings.blob_dir)

    def reset(call: Call) -> dict[str, Any]:
        _owner_only(call)
        with call.state.db.write() as s:
            orphans = snapshots.clear(s)
            call.state.bootstrap_in(s)
        for blob_id in orphans:
            blobs.delete(blob_id)
        return {}

    def snapshot(call: Call) -> dict[str, Any]:
        _owner_only(call)
        snapshot_id = string_field(call.body, "snapshotId", "") or None
        with call.state.db.write(bump=False) as s:
            return _snapshot_json(snapshots.create_snapshot(s, blobs.root, snapshot_id))

    def restore(call: Call) -> dict[str, Any]:
        _owner_only(call)
        name = string_field(call.body, "snapshot", "")
        if not name.startswith("snapshots/"):
            raise InvalidArgument("snapshot must be snapshots/ID.")
        with call.state.db.write() as s:
            orphans = snapshots.restore(s, blobs.root, name.removeprefix("snapshots/"))
        for blob_id in orphans:
            blobs.delete(blob_id)
        return {}

    def list_snapshots(call: Call) -> dict[str, Any]:
        _owner_only(call)
        from sqlalchemy import select

        with call.read() as s:
            rows = s.scalars(select(StateSnapshot).order_by(StateSnapshot.create_time)).all()
            return {"snapshots": [_snapshot_json(r) for r in rows]} if rows else {}

    def delete_snapshot(call: Call) -> dict[str, Any]:
        _owner_only(call)
        with call.state.db.write(bump=False) as s:
            snapshots.delete_snapshot(s, blobs.root, call.params["snapshot"])
        return {}

    def r(method: str, path: str, handler: Any) -> Route:
        return route(state, method, path, handler, audited=False)

    return [
        r("POST", "/v1/state:reset", reset),
        r("POST", "/v1/state:snapshot", snapshot),
        r("POST", "/v1/state:restore", restore),
        r("GET", "/v1/snapshots", list_snapshots),
        r("DELETE", "/v1/snapshots/{snapshot}", delete_snapshot),
    ]
