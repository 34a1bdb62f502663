"""The whole store at once: reset it to a new server's, snapshot it, restore a snapshot (issue #22),
for test isolation in milliseconds, as LocalStack's state reset gives its users.

Each is one write transaction over every table of the schema (so a table added later is covered
without a line here), except what is the server's rather than the world's: the revision counter,
the signing keys (tokens minted before a restore stay verifiable, the owner's among them), console
sessions and sign-in codes (a restore must not revive what a sign-out ended) and the snapshots. The write bumps the revision, so every process, on every server sharing the
database, drops its caches as after any other write. Object bytes live in files
(keyless.storage.blobs): a snapshot hard-links the blobs its objects name, and a restore links back
any that were deleted since.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, LargeBinary, Table, delete, insert, select
from sqlalchemy.orm import Session

from keyless.errors import InvalidArgument, NotFound
from keyless.store.models import Base, StateSnapshot, StorageObject, StorageObjectVersion

# The server's own, not the world's: restoring them would undo a sign-out or make a spent one-time
# sign-in link work again (console sessions and the link codes kept in `settings`).
KEPT = frozenset({"revision", "signing_keys", "state_snapshots", "console_sessions", "settings"})
FORMAT = 1


def world_tables() -> list[Table]:
    """The tables a reset clears, in an order that inserts parents before children."""
    return [t for t in Base.metadata.sorted_tables if t.name not in KEPT]


def _encode(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column in table.columns:
        value = row[column.name]
        if value is not None and isinstance(column.type, DateTime):
            value = value.isoformat()
        elif value is not None and isinstance(column.type, LargeBinary):
            value = base64.b64encode(value).decode()
        out[column.name] = value
    return out


def _decode(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for column in table.columns:
        if column.name not in row:
            continue  # a column added after the snapshot: its default
        value = row[column.name]
        if value is not None and isinstance(column.type, DateTime):
            value = datetime.fromisoformat(value)
        elif value is not None and isinstance(column.type, LargeBinary):
            value = base64.b64decode(value)
        out[column.name] = value
    return out


def blob_ids(s: Session) -> set[str]:
    return set(s.scalars(select(StorageObject.blob_id)).all()) | set(
        s.scalars(select(StorageObjectVersion.blob_id)).all())


def clear(s: Session) -> set[str]:
    """Delete every row of the world; return the blob ids its objects named."""
    named = blob_ids(s)
    for table in reversed(world_tables()):
        s.execute(delete(table))
    return named


def capture(s: Session) -> dict[str, Any]:
    tables = {}
    for table in world_tables():
        tables[table.name] = [_encode(table, dict(r._mapping)) for r in s.execute(select(table))]
    return {"format": FORMAT, "tables": tables}


def create_snapshot(s: Session, blob_root: Path, snapshot_id: str | None = None) -> StateSnapshot:
    snapshot_id = snapshot_id or secrets.token_hex(8)
    if not snapshot_id.replace("-", "").isalnum() or len(snapshot_id) > 63:
        raise InvalidArgument("A snapshot id is 1-63 letters, digits and hyphens.")
    if s.get(StateSnapshot, snapshot_id) is not None:
        raise InvalidArgument(f"Snapshot {snapshot_id} already exists.")
    data = capture(s)
    _keep_blobs(blob_root, snapshot_id, blob_ids(s))
    body = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 1)
    row = StateSnapshot(snapshot_id=snapshot_id, create_time=datetime.now(UTC), body=body,
                        size_bytes=len(body))
    s.add(row)
    return row


def restore(s: Session, blob_root: Path, snapshot_id: str) -> set[str]:
    """Replace the world with the snapshot's; return the blob ids no object names any more."""
    row = s.get(StateSnapshot, snapshot_id)
    if row is None:
        raise NotFound(f"Snapshot {snapshot_id} not found.")
    data = json.loads(zlib.decompress(row.body))
    if data.get("format") != FORMAT:
        raise InvalidArgument(f"Snapshot {snapshot_id} has an unknown format.")
    before = clear(s)
    known = {t.name: t for t in world_tables()}
    for name, table in known.items():
        rows = [_decode(table, r) for r in data["tables"].get(name, [])]
        if rows:
            s.execute(insert(table), rows)
    after = blob_ids(s)
    _relink_blobs(blob_root, snapshot_id, after)
    return before - after


def delete_snapshot(s: Session, blob_root: Path, snapshot_id: str) -> None:
    row = s.get(StateSnapshot, snapshot_id)
    if row is None:
        raise NotFound(f"Snapshot {snapshot_id} not found.")
    s.delete(row)
    folder = _snapshot_dir(blob_root, snapshot_id)
    if folder.exists():
        for p in folder.iterdir():
            p.unlink(missing_ok=True)
        folder.rmdir()


def _snapshot_dir(blob_root: Path, snapshot_id: str) -> Path:
    return blob_root / "snapshots" / snapshot_id


def _blob_path(blob_root: Path, blob_id: str) -> Path:
    return blob_root / "blobs" / blob_id[:2] / blob_id


def _keep_blobs(blob_root: Path, snapshot_id: str, ids: set[str]) -> None:
    """Hard links: a snapshot's bytes cost nothing until the live object is deleted."""
    folder = _snapshot_dir(blob_root, snapshot_id)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for blob_id in ids:
        try:
            os.link(_blob_path(blob_root, blob_id), folder / blob_id)
        except FileExistsError:
            pass
        except FileNotFoundError:
            pass  # an object whose bytes are already gone: nothing to keep


def _relink_blobs(blob_root: Path, snapshot_id: str, ids: set[str]) -> None:
    folder = _snapshot_dir(blob_root, snapshot_id)
    for blob_id in ids:
        target = _blob_path(blob_root, blob_id)
        if not target.exists() and (folder / blob_id).exists():
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                os.link(folder / blob_id, target)
            except FileExistsError:
                pass
