"""objects.bulkRestore (https://cloud.google.com/storage/docs/json_api/v1/objects/bulkRestore,
https://cloud.google.com/storage/docs/use-soft-deleted-objects#restore-bulk): the soft-deleted
objects of a bucket that match the request's globs and time bounds made live again, each as
objects.restore would, under a long-running operation `projects/_/buckets/B/operations/ID`
that buckets.operations.get/list answer.

Of several soft-deleted generations of one name only the most recently created is restored, as
Google does. A name with a live object is skipped unless `allowOverwrite`; one whose live object
a hold or retention policy keeps is not restored and fails the operation, with the names it
could not restore in the operation's error. Keyless restores before it answers: the operation is
born done.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import InvalidArgument, KeylessError, NotFound
from keyless.storage import objects
from keyless.storage.buckets import bucket_resource
from keyless.storage.globs import Glob, compile_glob
from keyless.store.models import Operation, StorageObjectVersion

FIELDS = {"allowOverwrite", "copySourceAcl", "matchGlobs", "softDeletedAfterTime", "softDeletedBeforeTime",
          "createdAfterTime", "createdBeforeTime"}
MAX_GLOBS = 100
METADATA_TYPE = "type.googleapis.com/google.storage.v2.BulkRestoreObjectsMetadata"
OPERATION_TYPE = "bulk-restore-objects"
MAX_LIST = 100  # operations.list answers at most this many per page, as Google


def operation_prefix(bucket: str) -> str:
    return f"{bucket_resource(bucket)}/operations/"


def _time(body: dict[str, Any], key: str) -> datetime | None:
    raw = body.get(key)
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(str(raw)[:64].replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgument(f"Invalid value for {key}: '{str(raw)[:64]}' is not an RFC 3339 time.") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class Request:
    """A BulkRestoreObjectsRequest, checked."""

    def __init__(self, body: dict[str, Any]) -> None:
        unknown = set(body) - FIELDS
        if unknown:
            raise InvalidArgument(f"Invalid argument: unknown field '{sorted(unknown)[0][:64]}'.")
        for key in ("allowOverwrite", "copySourceAcl"):
            if not isinstance(body.get(key, False), bool):
                raise InvalidArgument(f"Invalid value for {key}: expected a boolean.")
        raw_globs = body.get("matchGlobs") or []
        if not isinstance(raw_globs, list) or len(raw_globs) > MAX_GLOBS:
            raise InvalidArgument(f"Invalid value for matchGlobs: expected at most {MAX_GLOBS} globs.")
        self.allow_overwrite: bool = body.get("allowOverwrite", False)
        self.globs: list[Glob] = [compile_glob(g) for g in raw_globs]
        self.deleted_after, self.deleted_before = (_time(body, "softDeletedAfterTime"),
                                                   _time(body, "softDeletedBeforeTime"))
        self.created_after, self.created_before = _time(body, "createdAfterTime"), _time(body, "createdBeforeTime")

    def wants(self, row: StorageObjectVersion) -> bool:
        deleted, created = _aware(row.soft_delete_time), _aware(row.create_time)
        return (not self.globs or any(g.matches(row.name) for g in self.globs)) \
            and (self.deleted_after is None or deleted > self.deleted_after) \
            and (self.deleted_before is None or deleted < self.deleted_before) \
            and (self.created_after is None or created > self.created_after) \
            and (self.created_before is None or created < self.created_before)


def _aware(when: datetime | None) -> datetime:
    assert when is not None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def restore(s: Session, bucket: str, request: Request) -> tuple[int, int, list[str], list[str]]:
    """Restore what `request` selects: (restored, skipped, names that failed, blobs to delete)."""
    now = datetime.now(UTC)
    rows = s.scalars(select(StorageObjectVersion).where(
        StorageObjectVersion.bucket == bucket, StorageObjectVersion.soft_delete_time.is_not(None),
        StorageObjectVersion.hard_delete_time > now)).all()
    newest: dict[str, StorageObjectVersion] = {}
    for row in rows:
        if request.wants(row) and (row.name not in newest or row.generation > newest[row.name].generation):
            newest[row.name] = row
    restored, skipped, failed, blobs = 0, 0, [], []
    for name in sorted(newest, key=lambda n: n.encode()):
        if objects.find_object(s, bucket, name) is not None and not request.allow_overwrite:
            skipped += 1
            continue
        try:  # refused before anything changes
            _, replaced = objects.restore_object(s, bucket, name, newest[name].generation, objects.Preconditions())
        except KeylessError:  # a hold or retention policy keeps the live object
            failed.append(name)
            continue
        restored += 1
        if replaced:
            blobs.append(replaced)
    return restored, skipped, failed, blobs


def record(s: Session, bucket: str, operation_id: str, created: datetime, restored: int, skipped: int,
           failed: list[str]) -> dict[str, Any]:
    """Store the finished operation; return its body."""
    now = rfc3339(datetime.now(UTC))
    body: dict[str, Any] = {
        "kind": "storage#operation", "name": operation_prefix(bucket) + operation_id, "done": True,
        "metadata": {"@type": METADATA_TYPE, "commonMetadata": {
            "createTime": rfc3339(created), "endTime": now, "updateTime": now, "type": OPERATION_TYPE,
            "requestedCancellation": False, "progressPercent": 100}},
    }
    if failed:
        shown = ", ".join(failed[:10]) + (f" and {len(failed) - 10} more" if len(failed) > 10 else "")
        body["error"] = {"code": 9, "message": f"{len(failed)} of {len(failed) + restored + skipped} objects could "
                                               f"not be restored (a hold or retention policy keeps the live "
                                               f"object): {shown}"}
    else:
        body["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
    s.add(Operation(name=body["name"], body=body, create_time=created))
    return body


def get_operation(s: Session, bucket: str, operation_id: str) -> dict[str, Any]:
    row = s.get(Operation, operation_prefix(bucket) + operation_id)
    if row is None:
        raise NotFound(f"Operation {operation_id} not found in bucket {bucket}.")
    return dict(row.body)


def list_operations(s: Session, bucket: str, page_size: int, after: str | None) -> tuple[list[dict[str, Any]], bool]:
    """One page of the bucket's operations by name, and whether more follow."""
    q = select(Operation).where(Operation.name.startswith(operation_prefix(bucket), autoescape=True))
    if after:
        q = q.where(Operation.name > operation_prefix(bucket) + after)
    found = s.scalars(q.order_by(Operation.name).limit(page_size + 1)).all()
    return [dict(r.body) for r in found[:page_size]], len(found) > page_size

