"""The audit writer process: receives batches of queued entries from `keyless.audit.sink` over a
pipe, renders each as a LogEntry (`keyless.audit.log.entry_row`) and appends the batch in one
transaction that bumps no revision (no cache depends on audit entries) and takes no write lock
(appends from several servers' writers never queue behind each other or behind IAM writes)."""

from __future__ import annotations

import logging
import marshal
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import insert

from keyless.audit import log as audit
from keyless.store.db import Database
from keyless.store.models import AuditEntry

logger = logging.getLogger("keyless.audit")
RECORD_FIELDS = len(audit.AuditRecord.__dataclass_fields__)


def rows(batch: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The column values of each queued entry (see sink.Pending for the tuple's layout)."""
    out = []
    for item in batch:
        record = audit.AuditRecord(*item[:RECORD_FIELDS])
        email, subject, caller_ip, user_agent, error, at = item[RECORD_FIELDS:]
        out.append(audit.entry_row(record, email, subject, caller_ip=caller_ip, user_agent=user_agent,
                                   error=error, at=datetime.fromtimestamp(at, UTC)))
    return out


def main(conn: Connection, url: str) -> None:
    db = Database(url)
    try:
        while True:
            try:
                kind, wait, entries = marshal.loads(conn.recv_bytes())
                batch = [marshal.loads(entry) for entry in entries]
            except EOFError:
                return  # the serving process went away
            try:
                if kind == "write" and batch:
                    with db.append() as s:
                        s.execute(insert(AuditEntry), rows(batch))
                if wait:
                    conn.send(("ok", len(batch)))
            except Exception as exc:
                logger.exception("could not write %d audit entries", len(batch))
                if wait:
                    conn.send(("error", repr(exc)))
    finally:
        db.dispose()
