"""The audit sink: entries submitted on the request path reach the store through the writer
process, none lost under concurrent submits, and a writer that dies is replaced."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import func, select

from keyless.audit.log import DATA_ACCESS, AuditRecord, entry_of
from keyless.audit.sink import AuditSink
from keyless.errors import PermissionDenied
from keyless.state import user_principal
from keyless.store.db import open_database
from keyless.store.models import AuditEntry
from tests.conftest import fresh_database_url


def _record(n: int) -> AuditRecord:
    record = AuditRecord(service="iam.googleapis.com", method="GenerateAccessToken", log=DATA_ACCESS,
                         project_id="my-project", resource_name=f"projects/-/serviceAccounts/{n}",
                         resource_type="service_account", resource_labels={"unique_id": str(n)})
    record.authorize(f"projects/-/serviceAccounts/{n}", "iam.serviceAccounts.getAccessToken", True)
    return record


def _count(db) -> int:  # type: ignore[no-untyped-def]
    with db.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEntry)) or 0


def test_concurrent_submits_are_all_written_and_rendered(tmp_path: Path) -> None:
    db = open_database(fresh_database_url(), tmp_path)
    sink = AuditSink(db, interval=0.01, batch=50)
    alice = user_principal("alice@example.com")

    def submit(offset: int) -> None:
        for i in range(500):
            sink.submit(_record(offset + i), alice, caller_ip="10.0.0.1", user_agent="test")

    threads = [threading.Thread(target=submit, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.flush()
    assert _count(db) == 2000
    with db.read() as s:
        row = s.scalars(select(AuditEntry).where(AuditEntry.resource_name == "projects/-/serviceAccounts/1234")).one()
    entry = entry_of(row)
    assert entry["logName"] == "projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access"
    assert entry["protoPayload"]["authenticationInfo"] == {"principalEmail": "alice@example.com",
                                                           "principalSubject": "user:alice@example.com"}
    assert entry["protoPayload"]["authorizationInfo"][0]["granted"] is True
    assert entry["severity"] == "INFO"
    sink.close()
    db.dispose()


def test_a_killed_writer_is_replaced_and_errors_are_kept(tmp_path: Path) -> None:
    db = open_database(fresh_database_url(), tmp_path)
    sink = AuditSink(db)
    sink.submit(_record(1), None)
    sink.flush()
    writer = sink._writer
    assert writer is not None and writer.is_alive()
    writer.kill()
    writer.join()
    sink.submit(_record(2), None, error=PermissionDenied("Permission 'x' denied."))
    sink.flush()
    assert sink._writer is not writer and sink._writer is not None and sink._writer.is_alive()
    with db.read() as s:
        row = s.scalars(select(AuditEntry).where(AuditEntry.resource_name == "projects/-/serviceAccounts/2")).one()
    entry = entry_of(row)
    assert entry["protoPayload"]["status"] == {"code": 7, "message": "Permission 'x' denied."}
    assert "principalEmail" not in entry["protoPayload"]["authenticationInfo"]
    assert row.severity == "ERROR"
    sink.close()
    assert sink._writer is None
    db.dispose()
