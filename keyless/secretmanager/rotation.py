"""Rotation schedules (https://cloud.google.com/secret-manager/docs/secret-rotation, issue #20):
when a secret's `rotation.nextRotationTime` passes, Secret Manager publishes SECRET_ROTATE to
the secret's topics (keyless.secretmanager.notifications) and advances `nextRotationTime` by
`rotationPeriod`; a schedule without a period fires once and its `nextRotationTime` is cleared.
A server that was down past several rotation times sends one message and moves to the next
time still ahead, as Google sends one notification per due rotation check.

The check runs in a thread of the serving process (like Cloud Logging's sink routing,
keyless.cloudlogging.export); each due secret is re-read for update in its own transaction, so
two workers (or a worker and a restart) never send the same rotation twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from keyless.background import Worker
from keyless.clock import parse_duration, rfc3339
from keyless.iam.evaluate import Authorizer
from keyless.pubsub import notify as pubsub_notify
from keyless.secretmanager import notifications
from keyless.secretmanager.secrets import new_etag, secret_json
from keyless.store.db import Database
from keyless.store.models import SmSecret

logger = logging.getLogger("keyless.secretmanager")
CHECK_SECONDS = 10.0  # rotation times are at least 5 minutes ahead when set: this is punctual enough


def _due_at(body: dict[str, Any] | None) -> datetime | None:
    text = ((body or {}).get("rotation") or {}).get("nextRotationTime")
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def advance(rotation: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The rotation policy after a rotation at `now`."""
    out = dict(rotation)
    at = _due_at({"rotation": rotation})
    period = rotation.get("rotationPeriod")
    if at is None or not period:
        out.pop("nextRotationTime", None)
        return out
    step = timedelta(seconds=parse_duration(period, "secret.rotation.rotation_period"))
    missed = max(0, int((now - at) / step))  # rotation times that passed while no one checked
    at += step * (missed + 1)
    out["nextRotationTime"] = rfc3339(at)
    return out


def rotate_due(db: Database, authz: Authorizer, now: datetime | None = None) -> int:
    """Send SECRET_ROTATE for every secret whose rotation time has passed; how many were sent."""
    now = now or datetime.now(UTC)
    with db.read() as s:
        due = [uid for uid, body in s.execute(select(SmSecret.uid, SmSecret.body))
               if (at := _due_at(body)) is not None and at <= now]
    sent = 0
    for uid in due:
        try:
            sent += _rotate(db, authz, uid, now)
        except Exception:
            logger.exception("could not rotate secret %s", uid)
    if sent:
        pubsub_notify.published()  # committed: this process's streaming pulls look at once
    return sent


def _rotate(db: Database, authz: Authorizer, uid: str, now: datetime) -> int:
    with db.write() as s:
        row = s.get(SmSecret, uid, with_for_update=True)
        at = _due_at(row.body) if row is not None else None
        if row is None or at is None or at > now:
            return 0  # another worker rotated it first
        published = notifications.publish(s, authz, row, notifications.SECRET_ROTATE, secret_json(row), when=now)
        body = dict(row.body or {})
        rotation = advance(body["rotation"], now)
        if rotation:
            body["rotation"] = rotation
        else:
            body.pop("rotation", None)
        row.body = body
        row.etag = new_etag()
    return 1 if published else 0


class Rotator(Worker):
    """The rotation thread of one serving process."""

    def __init__(self, db: Database, authz: Authorizer, *, interval: float = CHECK_SECONDS) -> None:
        super().__init__(interval, name="keyless-secret-rotation", logger=logger, failure="secret rotation check failed")
        self._db, self._authz = db, authz

    def round(self) -> None:
        rotate_due(self._db, self._authz)
