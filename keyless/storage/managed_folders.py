"""Managed folders (https://cloud.google.com/storage/docs/managed-folders,
https://cloud.google.com/storage/docs/json_api/v1/managedFolders): named prefixes of a bucket
(`logs/`, `logs/2026/`) whose own IAM policies grant on the objects beneath them, nested
folders inheriting from their parents, all below the bucket's policy.

A folder's policy lives under `projects/_/buckets/B/managedFolders/NAME`; an object's IAM chain is
[innermost folder, ..., outermost folder, bucket, project, root].
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import AlreadyExists, InvalidArgument, NotFound
from keyless.iam.evaluate import ResourceContext
from keyless.storage.buckets import SERVICE, bucket_chain
from keyless.storage.errors import PRECONDITION_FAILED, PreconditionFailed
from keyless.storage.names import validate_object_name
from keyless.store.models import IamPolicy, StorageBucket, StorageManagedFolder, StorageObject

MANAGED_FOLDER_TYPE = "storage.googleapis.com/ManagedFolder"
NOT_EMPTY = "The managed folder you tried to delete is not empty."
MAX_DEPTH = 15  # Google allows managed folders nested 15 deep


def folder_name(raw: Any) -> str:
    """A managed folder's name: an object-name prefix ending in exactly one `/`."""
    name = validate_object_name(raw if isinstance(raw, str) else None)
    if not name.endswith("/"):
        name += "/"
    if "//" in name or name.startswith("/") or name.count("/") > MAX_DEPTH:
        raise InvalidArgument(f"Invalid managed folder name: '{name[:64]}'")
    return name


def folder_resource(bucket: str, name: str) -> str:
    return f"projects/_/buckets/{bucket}/managedFolders/{name}"


def folder_context(bucket: str, name: str) -> ResourceContext:
    return ResourceContext(folder_resource(bucket, name), MANAGED_FOLDER_TYPE, SERVICE)


def enclosing(s: Session, bucket: str, object_name: str) -> list[str]:
    """The managed folders holding `object_name` (or folder name), innermost first."""
    prefixes = [object_name[:i + 1] for i, c in enumerate(object_name) if c == "/"][:MAX_DEPTH]
    if not prefixes:
        return []
    found = set(s.scalars(select(StorageManagedFolder.name).where(
        StorageManagedFolder.bucket == bucket, StorageManagedFolder.name.in_(prefixes))).all())
    return [p for p in reversed(prefixes) if p in found]


def object_chain(s: Session, row: StorageBucket, object_name: str) -> list[str]:
    """The IAM chain of an object (or folder): its enclosing managed folders, then the bucket's."""
    return [folder_resource(row.name, f) for f in enclosing(s, row.name, object_name)] + bucket_chain(row)


def create(s: Session, bucket: str, name: str) -> StorageManagedFolder:
    if find(s, bucket, name) is not None:
        raise AlreadyExists(f"The managed folder {name} already exists.")
    now = datetime.now(UTC)
    row = StorageManagedFolder(bucket=bucket, name=name, metageneration=1, create_time=now, update_time=now)
    s.add(row)
    return row


def find(s: Session, bucket: str, name: str) -> StorageManagedFolder | None:
    return s.scalar(select(StorageManagedFolder).where(StorageManagedFolder.bucket == bucket,
                                                       StorageManagedFolder.name == name))


def get(s: Session, bucket: str, name: str) -> StorageManagedFolder:
    row = find(s, bucket, name)
    if row is None:
        raise NotFound(f"The managed folder {name} does not exist.")
    return row


def list_folders(s: Session, bucket: str, prefix: str, after: str, limit: int) -> list[StorageManagedFolder]:
    q = select(StorageManagedFolder).where(StorageManagedFolder.bucket == bucket)
    if prefix:
        q = q.where(StorageManagedFolder.name.startswith(prefix, autoescape=True))
    if after:
        q = q.where(StorageManagedFolder.name > after)
    return list(s.scalars(q.order_by(StorageManagedFolder.name).limit(limit)).all())


def delete_folder(s: Session, bucket: str, name: str, *, allow_non_empty: bool,
                  if_metageneration_match: int | None, if_metageneration_not_match: int | None) -> None:
    row = get(s, bucket, name)
    if (if_metageneration_match is not None and row.metageneration != if_metageneration_match) or \
            (if_metageneration_not_match is not None and row.metageneration == if_metageneration_not_match):
        raise PreconditionFailed(PRECONDITION_FAILED)
    if not allow_non_empty and s.scalar(select(StorageObject.id).where(
            StorageObject.bucket == bucket, StorageObject.name.startswith(name, autoescape=True)).limit(1)):
        raise FolderNotEmpty(NOT_EMPTY)
    s.delete(row)
    s.execute(delete(IamPolicy).where(IamPolicy.resource == folder_resource(bucket, name)))


class FolderNotEmpty(AlreadyExists):
    """409, as Cloud Storage answers a delete of a folder that still holds objects."""


def folder_json(row: StorageManagedFolder, base_url: str) -> dict[str, Any]:
    return {"kind": "storage#managedFolder", "id": f"{row.bucket}/{row.name}", "name": row.name,
            "bucket": row.bucket, "metageneration": str(row.metageneration),
            "selfLink": f"{base_url}/storage/v1/b/{row.bucket}/managedFolders/{quote(row.name, safe='')}",
            "createTime": rfc3339(row.create_time), "updateTime": rfc3339(row.update_time)}
