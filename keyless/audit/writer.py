"""The audit writer process: receives batches of queued entries from `keyless.audit.sink` over a
pipe, renders each as a LogEntry (`keyless.audit.log.entry_row`) and appends the batch in one
transaction that bumps no revision (no cache depends on audit entries) and takes no write lock
(appends from several servers' writers never queue behind each other or behind IAM writes).

One bad entry never costs another (issue #23 item 5): each row is made to fit its columns first
(`fit`: strings cut to the column's length, NUL characters replaced, as PostgreSQL refuses both;
the LogEntry JSON keeps every value whole), and a batch that still fails is written again in halves,
down to single entries, so only an entry that fails on its own is dropped (and logged). An entry
whose insertId is already stored was replayed from a journal after it had been committed
(keyless.audit.journal): it is skipped."""

from __future__ import annotations

import logging
import marshal
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import String, insert
from sqlalchemy.exc import IntegrityError

from keyless.audit import log as audit
from keyless.store.db import Database, is_unavailable
from keyless.store.models import AuditEntry

logger = logging.getLogger("keyless.audit")
CALLER_FIELDS = 7  # after the record's fields: email, subject, IP, user agent, error, time, insertId


_LENGTHS = {c.name: c.type.length for c in AuditEntry.__table__.columns
            if isinstance(c.type, String) and c.type.length is not None}
"""Each bounded string column and its length."""


def fit(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its string columns cut to their declared lengths and NULs replaced (U+FFFD)."""
    for name, value in row.items():
        if isinstance(value, str):
            if "\x00" in value:
                value = row[name] = value.replace("\x00", "\ufffd")
            limit = _LENGTHS.get(name)
            if limit is not None and len(value) > limit:
                row[name] = value[:limit]
    return row


def rows(batch: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The column values of each queued entry (see sink.Pending for the tuple's layout)."""
    out = []
    for item in batch:
        # counted from the end: an entry journaled before AuditRecord gained a field lacks it (its default)
        record = audit.AuditRecord(*item[:-CALLER_FIELDS])
        email, subject, caller_ip, user_agent, error, at, insert_id = item[-CALLER_FIELDS:]
        out.append(fit(audit.entry_row(record, email, subject, caller_ip=caller_ip, user_agent=user_agent,
                                       error=error, at=datetime.fromtimestamp(at, UTC), insert_id=insert_id)))
    return out


def append(db: Database, values: list[dict[str, Any]]) -> int:
    """Insert `values` in one transaction; if that fails, each half again, down to single entries
    (a bad entry costs log2(batch) extra transactions). Returns how many entries were dropped, each
    logged; raises only when the database is unavailable (nothing of the batch is then dropped)."""
    try:
        with db.append() as s:
            s.execute(insert(AuditEntry), values)
        return 0
    except Exception as exc:
        if is_unavailable(exc):
            raise
        if len(values) == 1:
            if isinstance(exc, IntegrityError) and "insert_id" in str(exc.orig):
                return 0  # replayed from a journal, and committed before the server stopped
            logger.exception("dropped an audit entry the database refuses: %s", _summary(values[0]))
            return 1
    half = len(values) // 2
    return append(db, values[:half]) + append(db, values[half:])


def _summary(row: dict[str, Any]) -> str:
    return f"{row.get('method_name')} on {str(row.get('resource_name'))[:200]!r} at {row.get('timestamp')}"


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
                    append(db, rows(batch))
                if wait:
                    conn.send(("ok", len(batch)))
            except Exception as exc:
                logger.exception("could not write %d audit entries", len(batch))
                if wait:
                    conn.send(("error", repr(exc)))
    finally:
        db.dispose()
