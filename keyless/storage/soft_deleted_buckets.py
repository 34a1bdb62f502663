"""Bucket soft delete (https://cloud.google.com/storage/docs/soft-delete,
https://cloud.google.com/storage/docs/use-soft-deleted-buckets): buckets.delete of a bucket whose
soft delete policy keeps deletes a while parks it; buckets.list/get with `softDeleted=true` see
it, buckets.restore brings it back.

As on Google: a soft-deleted bucket is known by name and generation, its hard delete time is its
retention after the delete but no earlier than its last soft-deleted object's; its name is free at
once for a new bucket, and restore then fails (409) until that bucket is gone. Restore brings back
the bucket's metadata and IAM policy but not its managed folders (nor its long-running
operations); its objects stay soft-deleted, for objects.restore or bulkRestore to bring back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import NotFound
from keyless.storage.buckets import (
    ConflictError,
    bucket_generation,
    bucket_json,
    bucket_resource,
    check_deletable,
    drop_bucket,
    get_bucket,
    soft_delete_seconds,
)
from keyless.store.models import IamPolicy, StorageBucket, StorageObjectVersion, StorageSoftDeletedBucket

SOFT_DELETED_NOT_FOUND = "The specified bucket does not exist."  # Google's words for a live bucket too
NAME_IN_USE = ("A live bucket with the same name already exists: the soft-deleted bucket can be restored "
               "only after it is deleted.")


def parked_key(row: StorageSoftDeletedBucket) -> str:
    """The bucket key its object versions keep while it is soft-deleted: no bucket name has `~`."""
    return f"~{row.id}"


def delete_bucket(s: Session, name: str, if_metageneration_match: int | None, now: datetime) -> list[str]:
    """buckets.delete: refused unless empty; soft-deleted under a soft delete policy, else gone with
    its soft-deleted objects. Returns the blobs to delete (those of buckets whose time is up too)."""
    row = get_bucket(s, name)
    check_deletable(s, row, if_metageneration_match)
    blobs = purge_expired(s, now)
    seconds = soft_delete_seconds(row)
    if not seconds:
        blobs += s.scalars(select(StorageObjectVersion.blob_id).where(StorageObjectVersion.bucket == name)).all()
        s.execute(delete(StorageObjectVersion).where(StorageObjectVersion.bucket == name))
        drop_bucket(s, row)
        return blobs
    policy = s.get(IamPolicy, bucket_resource(name))
    latest = s.scalar(select(func.max(StorageObjectVersion.hard_delete_time)).where(
        StorageObjectVersion.bucket == name))
    hard = now + timedelta(seconds=seconds)
    if latest is not None:
        hard = max(hard, latest if latest.tzinfo else latest.replace(tzinfo=UTC))
    parked = StorageSoftDeletedBucket(
        name=name, generation=bucket_generation(row), project_id=row.project_id, project_number=row.project_number,
        location=row.location, storage_class=row.storage_class, metageneration=row.metageneration,
        create_time=row.create_time, update_time=row.update_time, labels=dict(row.labels or {}),
        body=dict(row.body or {}), soft_delete_time=now, hard_delete_time=hard,
        policy={"version": policy.version, "bindings": list(policy.bindings),
                "audit_configs": list(policy.audit_configs), "etag": policy.etag} if policy is not None else {})
    s.add(parked)
    s.flush()
    s.execute(update(StorageObjectVersion).where(StorageObjectVersion.bucket == name).values(
        bucket=parked_key(parked)))
    drop_bucket(s, row)
    return blobs


def purge_expired(s: Session, now: datetime) -> list[str]:
    """Delete for good the soft-deleted buckets whose hard delete time has come; their blobs."""
    blobs: list[str] = []
    for row in s.scalars(select(StorageSoftDeletedBucket).where(StorageSoftDeletedBucket.hard_delete_time <= now)):
        key = parked_key(row)
        blobs += s.scalars(select(StorageObjectVersion.blob_id).where(StorageObjectVersion.bucket == key)).all()
        s.execute(delete(StorageObjectVersion).where(StorageObjectVersion.bucket == key))
        s.delete(row)
    return blobs


def get_soft_deleted(s: Session, name: str, generation: int) -> StorageSoftDeletedBucket:
    row = s.scalars(select(StorageSoftDeletedBucket).where(
        StorageSoftDeletedBucket.name == name, StorageSoftDeletedBucket.generation == generation,
        StorageSoftDeletedBucket.hard_delete_time > datetime.now(UTC))).first()
    if row is None:
        raise NotFound(SOFT_DELETED_NOT_FOUND)
    return row


def list_soft_deleted(s: Session, project_id: str, prefix: str = "") -> list[StorageSoftDeletedBucket]:
    """The project's soft-deleted buckets not yet hard-deleted, by name then generation."""
    q = select(StorageSoftDeletedBucket).where(
        StorageSoftDeletedBucket.project_id == project_id, StorageSoftDeletedBucket.hard_delete_time > datetime.now(UTC)
    ).order_by(StorageSoftDeletedBucket.name, StorageSoftDeletedBucket.generation)
    return [b for b in s.scalars(q).all() if b.name.startswith(prefix)]


def restore_bucket(s: Session, name: str, generation: int) -> StorageBucket:
    """buckets.restore: the soft-deleted bucket live again, with its IAM policy; 409 while a live
    bucket has its name. Its objects come back soft-deleted."""
    row = get_soft_deleted(s, name, generation)
    if s.get(StorageBucket, name) is not None:
        raise ConflictError(NAME_IN_USE)
    live = as_bucket(row)
    s.add(live)
    if row.policy:
        s.add(IamPolicy(resource=bucket_resource(name), version=row.policy["version"],
                        bindings=row.policy["bindings"], audit_configs=row.policy["audit_configs"],
                        etag=row.policy["etag"], update_time=datetime.now(UTC)))
    s.execute(update(StorageObjectVersion).where(StorageObjectVersion.bucket == parked_key(row)).values(bucket=name))
    s.delete(row)
    return live


def as_bucket(row: StorageSoftDeletedBucket) -> StorageBucket:
    """The bucket as it was when deleted (a row outside any session, for rendering and audit labels)."""
    return StorageBucket(name=row.name, generation=row.generation, project_id=row.project_id,
                         project_number=row.project_number, location=row.location, storage_class=row.storage_class,
                         metageneration=row.metageneration, create_time=row.create_time, update_time=row.update_time,
                         labels=dict(row.labels or {}), body=dict(row.body or {}))


def soft_deleted_json(row: StorageSoftDeletedBucket, base_url: str) -> dict[str, Any]:
    """The Bucket resource of a soft-deleted bucket: as it was, with softDeleteTime and hardDeleteTime."""
    return {**bucket_json(as_bucket(row), base_url), "softDeleteTime": rfc3339(row.soft_delete_time),
            "hardDeleteTime": rfc3339(row.hard_delete_time)}
