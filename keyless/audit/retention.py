"""Audit log retention: entries older than their log's retention period are deleted, and the
log never holds more than a bounded number of entries. Periods follow Google's defaults
(https://cloud.google.com/logging/quotas#logs_retention_periods): Admin Activity and System
Event 400 days, Data Access 30 days; each is configurable (keyless.config.Settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote

from sqlalchemy import delete, func, select

from keyless.audit.log import DATA_ACCESS
from keyless.config import Settings
from keyless.store.db import Database
from keyless.store.models import AuditEntry

BATCH = 5_000  # rows per delete transaction: the audit writer is never held up for long
PRIVATE_SUFFIX = "/logs/" + quote(DATA_ACCESS, safe="")


@dataclass(frozen=True)
class Retention:
    days: int = 400  # every log but Data Access
    data_access_days: int = 30
    max_entries: int = 10_000_000  # 0: no bound

    @classmethod
    def from_settings(cls, settings: Settings) -> Retention:
        return cls(settings.audit_retention_days, settings.audit_data_access_retention_days,
                   settings.audit_max_entries)


def prune(db: Database, now: datetime, retention: Retention | None = None) -> int:
    """Delete what is past retention (and the oldest entries beyond the size bound); how many."""
    r = retention or Retention()
    deleted = 0
    data_access = AuditEntry.log_name.endswith(PRIVATE_SUFFIX, autoescape=True)
    if r.data_access_days > 0:
        deleted += _delete(db, data_access, AuditEntry.timestamp < now - timedelta(days=r.data_access_days))
    if r.days > 0:
        deleted += _delete(db, ~data_access, AuditEntry.timestamp < now - timedelta(days=r.days))
    if r.max_entries > 0:
        with db.read() as s:
            # The id of the newest entry beyond the bound (ids grow with arrival).
            cutoff = s.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc())
                              .offset(r.max_entries).limit(1))
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
