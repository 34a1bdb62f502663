"""Audit log retention: entries older than their log's retention period are deleted, and the
log never holds more than a bounded number of entries (the _Default bucket's go first). Periods follow Google's defaults
(https://cloud.google.com/logging/quotas#logs_retention_periods): Admin Activity and System
Event (the _Required bucket) 400 days, Data Access and the entries written with entries.write
(the _Default bucket; issue #20) 30 days; each is configurable (keyless.config.Settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import delete, func, or_, select

from keyless.audit.log import ACTIVITY, SYSTEM_EVENT
from keyless.config import Settings
from keyless.store.db import Database
from keyless.store.models import AuditEntry

BATCH = 5_000  # rows per delete transaction: the audit writer is never held up for long
REQUIRED_SUFFIXES = tuple("/logs/" + quote(log, safe="") for log in (ACTIVITY, SYSTEM_EVENT))


@dataclass(frozen=True)
class Retention:
    days: int = 400  # Admin Activity and System Event
    data_access_days: int = 30  # every other log: Data Access, and written entries
    max_entries: int = 10_000_000  # 0: no bound

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        return cls(settings.audit_retention_days, settings.audit_data_access_retention_days,
                   settings.audit_max_entries)


def prune(db: Database, now: datetime, retention: Retention | None = None) -> int:
    """Delete what is past retention (and the oldest entries beyond the size bound); how many."""
    r = retention or Retention()
    deleted = 0
    required = or_(*[AuditEntry.log_name.endswith(suffix, autoescape=True) for suffix in REQUIRED_SUFFIXES])
    if r.data_access_days > 0:
        deleted += _delete(db, ~required, AuditEntry.timestamp < now - timedelta(days=r.data_access_days))
    if r.days > 0:
        deleted += _delete(db, required, AuditEntry.timestamp < now - timedelta(days=r.days))
    if r.max_entries > 0:
        deleted += _bound(db, r.max_entries, required)
    return deleted


def _bound(db: Database, max_entries: int, required: Any) -> int:
    """The oldest entries beyond `max_entries` deleted: the _Default bucket's first (Data Access,
    written entries, pods' stdout and stderr), so that a flood of written entries (a pod writing
    without pause, issue #20) never pushes the _Required bucket's audit trail out; the oldest
    _Required entries only when they alone exceed the bound."""
    with db.read() as s:
        # The id of the newest entry beyond the bound (ids grow with arrival).
        cutoff = s.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).offset(max_entries).limit(1))
        if cutoff is None:
            return 0
        excess = int(s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.id <= cutoff)) or 0)
        last = s.scalar(select(AuditEntry.id).where(~required).order_by(AuditEntry.id).offset(excess - 1).limit(1))
    if last is not None:
        return _delete(db, ~required, AuditEntry.id <= last)
    deleted = _delete(db, ~required)
    with db.read() as s:
        cutoff = s.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc()).offset(max_entries).limit(1))
    if cutoff is not None:
        deleted += _delete(db, AuditEntry.id <= cutoff)
    return deleted


def _delete(db: Database, *conditions: object) -> int:
    total = 0
    while True:
        with db.write(bump=False) as s:
            ids = s.scalars(select(AuditEntry.id).where(*conditions).limit(BATCH)).all()  # type: ignore[arg-type]
            if ids:
                s.execute(delete(AuditEntry).where(AuditEntry.id.in_(ids)))
        total += len(ids)
        if len(ids) < BATCH:
            return total


def count(db: Database) -> int:
    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)
