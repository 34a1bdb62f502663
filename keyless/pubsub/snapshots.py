"""Snapshots and seek (https://cloud.google.com/pubsub/docs/replay-overview): a snapshot keeps
the unacked messages of a subscription when it was taken; seeking a subscription to it (or to a
time) makes those messages, and those published since, unacked again, and acks the rest. A
snapshot expires seven days after its oldest unacked message was published, as on Google.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyless.clock import now as clock_now
from keyless.clock import rfc3339
from keyless.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from keyless.iam.policy import get_policy_row
from keyless.pubsub import names
from keyless.pubsub.labels import validate_labels
from keyless.pubsub.messages import _utc, redeliver_from, unacked_message_ids
from keyless.store.models import PsMessage, PsSnapshot, PsSubscription

LIFETIME = timedelta(days=7)


def find_snapshot(s: Session, project_id: str, snapshot_id: str) -> PsSnapshot | None:
    return s.scalars(select(PsSnapshot).where(PsSnapshot.project_id == project_id,
                                              PsSnapshot.snapshot_id == snapshot_id)).first()


def get_snapshot(s: Session, project_id: str, snapshot_id: str) -> PsSnapshot:
    row = find_snapshot(s, project_id, snapshot_id)
    if row is None or _utc(row.expire_time) <= clock_now():
        raise names.not_found(snapshot_id)
    return row


def create_snapshot(s: Session, project_id: str, snapshot_id: str, sub: PsSubscription,
                    body: dict[str, Any]) -> PsSnapshot:
    for k in body:
        if k not in ("subscription", "labels", "tags"):
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{k[:100]}\": Cannot find field.")
    labels = validate_labels(body.get("labels"), "snapshot")
    if sub.topic_uid is None:
        raise FailedPrecondition("The subscription's topic has been deleted: it cannot be snapshotted.")
    if find_snapshot(s, project_id, snapshot_id) is not None:
        raise AlreadyExists(f"Resource already exists in the project (resource={snapshot_id}).")
    when = clock_now()
    unacked = unacked_message_ids(s, sub)
    oldest = s.scalar(select(PsMessage.publish_time).where(PsMessage.id.in_(unacked))
                      .order_by(PsMessage.publish_time).limit(1)) if unacked else None
    row = PsSnapshot(uid=str(uuid.uuid4()), project_id=project_id, snapshot_id=snapshot_id, topic=sub.topic,
                     topic_uid=sub.topic_uid, expire_time=_utc(oldest or when) + LIFETIME, labels=labels,
                     unacked=unacked, taken_at=when)
    s.add(row)
    try:
        s.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"Resource already exists in the project (resource={snapshot_id}).") from exc
    return row


def list_snapshots(s: Session, project_id: str) -> list[PsSnapshot]:
    when = clock_now()
    rows = s.scalars(select(PsSnapshot).where(PsSnapshot.project_id == project_id).order_by(PsSnapshot.snapshot_id))
    return [r for r in rows if _utc(r.expire_time) > when]


def topic_snapshots(s: Session, topic_uid: str) -> list[PsSnapshot]:
    when = clock_now()
    rows = s.scalars(select(PsSnapshot).where(PsSnapshot.topic_uid == topic_uid)
                     .order_by(PsSnapshot.project_id, PsSnapshot.snapshot_id))
    return [r for r in rows if _utc(r.expire_time) > when]


def update_snapshot(row: PsSnapshot, body: dict[str, Any], mask: list[str] | None) -> PsSnapshot:
    if not mask:
        raise InvalidArgument("The update_mask in the UpdateSnapshotRequest must be set, and must contain a non-empty "
                              "paths list.")
    for p in mask:
        if p not in ("labels", "expire_time", "expireTime"):
            raise InvalidArgument(f"Invalid update_mask provided in the UpdateSnapshotRequest: the field "
                                  f"'{p[:100]}' cannot be updated.")
    if "labels" in mask:
        row.labels = validate_labels(body.get("labels"), "snapshot")
    return row


def delete_snapshot(s: Session, row: PsSnapshot) -> None:
    policy = get_policy_row(s, names.policy_resource(row.project_id, "snapshots", row.snapshot_id))
    if policy is not None:
        s.delete(policy)
    s.delete(row)


def seek_to_snapshot(s: Session, sub: PsSubscription, snapshot: PsSnapshot) -> None:
    if snapshot.topic_uid != sub.topic_uid:
        raise FailedPrecondition("The subscription's topic differs from that of the snapshot.")
    redeliver_from(s, sub, {int(i) for i in snapshot.unacked or []}, _utc(snapshot.taken_at))


def seek_to_time(s: Session, sub: PsSubscription, when: datetime) -> None:
    redeliver_from(s, sub, set(), when)


def snapshot_json(row: PsSnapshot) -> dict[str, Any]:
    body: dict[str, Any] = {"name": names.name(row.project_id, "snapshots", row.snapshot_id), "topic": row.topic,
                            "expireTime": rfc3339(_utc(row.expire_time))}
    if row.labels:
        body["labels"] = row.labels
    return body
