"""Data Access entries that cannot be dropped (issue #23 item 5). Before: on PostgreSQL one entry
whose resource name passed 500 characters (an ordinary object name: Google allows 1,024 bytes)
failed its whole batch, so 40 of 300 acknowledged reads left no entry; and SIGKILL lost the last
~50 ms of queued entries."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import quote

import google.oauth2.credentials
import httpx
import pytest
from google.cloud import storage
from sqlalchemy import func, select

from keyless.audit.journal import Journal
from keyless.audit.sink import AuditSink
from keyless.audit.writer import append, rows
from keyless.state import user_principal
from keyless.store.db import open_database
from keyless.store.models import AuditEntry
from tests.api.helpers import audit_data_access, server_state
from tests.audit.test_sink import _record
from tests.conftest import KeylessServer, fresh_database_url

PROJECT = "my-project"
LONG_NAME = "reports/" + "r" * 1000 + ".csv"  # 1,012 characters: within Google's 1,024 bytes


def _count(db, **where: str) -> int:  # type: ignore[no-untyped-def]
    query = select(func.count()).select_from(AuditEntry)
    for column, value in where.items():
        query = query.where(getattr(AuditEntry, column) == value)
    with db.read() as s:
        return s.scalar(query) or 0


def test_a_bad_entry_costs_only_itself(tmp_path: Path) -> None:
    db = open_database(fresh_database_url(), tmp_path)
    try:
        item = (*vars(_record(1)).values(), "a@example.com", "user:a@example.com", "", "", None, time.time())
        values = rows([(*item[:-1], item[-1] + i, f"{i:016x}") for i in range(40)])
        assert append(db, values[:1]) == 0
        # The first entry again (same insertId: refused) among 39 new ones: only it is not written.
        assert append(db, values) == 0  # a replayed duplicate is skipped, not counted as dropped
        assert _count(db) == 40
        values = rows([(*item[:-1], item[-1], f"{i:016x}") for i in range(40, 80)])
        values[7]["timestamp"] = "not a time"  # a row the database refuses on its own
        assert append(db, values) == 1
        assert _count(db) == 79
    finally:
        db.dispose()


def test_long_names_nul_characters_and_long_project_ids_fit(tmp_path: Path) -> None:
    db = open_database(fresh_database_url(), tmp_path)
    sink = AuditSink(db, interval=0.01, batch=50)
    try:
        alice = user_principal("alice@example.com")
        for i in range(60):
            record = _record(i)
            if i == 10:
                record.resource_name = f"projects/_/buckets/my-bucket/objects/{LONG_NAME}"
            if i == 20:
                record.resource_name = "projects/_/buckets/my-bucket/objects/a\x00b"
            if i == 30:
                record.project_id = "p" * 200
            sink.submit(record, alice)
        sink.flush()
        assert _count(db) == 60
        assert _count(db, resource_name=f"projects/_/buckets/my-bucket/objects/{LONG_NAME}") == 1
        with db.read() as s:
            row = s.scalars(select(AuditEntry).where(AuditEntry.resource_name.like("%/objects/a_b"))).one()
        assert row.entry["protoPayload"]["resourceName"] == "projects/_/buckets/my-bucket/objects/a\x00b"
    finally:
        sink.close()
        db.dispose()


KILLED = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from keyless.audit.sink import AuditSink
    from keyless.state import user_principal
    from keyless.store.db import Database
    from tests.audit.test_sink import _record

    sink = AuditSink(Database(sys.argv[1]), interval=60, journal=Path(sys.argv[2]))  # never sent on its own
    alice = user_principal("alice@example.com")
    for i in range(int(sys.argv[3])):
        sink.submit(_record(i), alice)
    print("submitted", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_entries_of_a_killed_process_are_replayed(tmp_path: Path) -> None:
    db = open_database(fresh_database_url(), tmp_path / "db")
    try:
        journal = tmp_path / "audit-journal"
        done = subprocess.run([sys.executable, "-c", KILLED, db.url, str(journal), "500"], capture_output=True,
                              text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == -signal.SIGKILL and done.stdout == "submitted\n", done.stderr
        assert _count(db) == 0
        sink = AuditSink(db, journal=journal)
        assert sink.recover() == 500
        assert AuditSink(db, journal=journal).recover() == 0  # the entries have one owner now
        sink.flush()
        assert _count(db) == 500
        sink.close()
        assert list(journal.iterdir()) == []  # all committed: nothing left to replay
    finally:
        db.dispose()


def test_acknowledged_reads_keep_their_entries_through_sigkill(server: KeylessServer) -> None:
    """Object reads, the long-named object's among them, by 4 clients; SIGKILL while they read; every
    read answered 200 before the kill has its entry (found by its User-Agent) once the server is back."""
    srv = server
    assert srv.keyless("projects", "create", PROJECT, "--number", "123456789012").returncode == 0
    client = storage.Client(project=PROJECT, credentials=google.oauth2.credentials.Credentials(srv.owner_token),
                            client_options={"api_endpoint": srv.base_url})
    bucket = client.create_bucket("my-bucket")
    names = [f"obj-{i}.txt" for i in range(9)] + [LONG_NAME]
    for name in names:
        bucket.blob(name).upload_from_string(b"data")
    audit_data_access(srv, PROJECT, {"storage.googleapis.com": ["DATA_READ"]})
    acknowledged: dict[str, str] = {}  # User-Agent -> object name
    stop = threading.Event()

    def reader(k: int) -> None:
        headers = {"Authorization": f"Bearer {srv.owner_token}"}
        with httpx.Client(base_url=srv.base_url, headers=headers) as http:
            for i in range(100_000):
                name = names[(k + i) % len(names)]
                agent = f"reader-{k}-{i}"
                try:
                    r = http.get(f"/storage/v1/b/my-bucket/o/{quote(name, safe='')}", params={"alt": "media"},
                                 headers={"User-Agent": agent})
                except httpx.HTTPError:
                    return  # the kill
                if r.status_code == 200:
                    acknowledged[agent] = name
                if stop.is_set():
                    return

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    stop.set()
    for t in threads:
        t.join()
    srv.log.close()
    srv.start()
    assert len(acknowledged) > 100
    state = server_state(srv)
    deadline = time.monotonic() + 20
    written: dict[str, str] = {}
    while time.monotonic() < deadline:
        with state.db.read() as s:
            found = s.scalars(select(AuditEntry).where(AuditEntry.method_name == "storage.objects.get")).all()
            written = {e.entry["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"]: e.resource_name
                       for e in found}
        if set(acknowledged) <= set(written):
            break
        time.sleep(0.2)
    missing = set(acknowledged) - set(written)
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged reads have no entry"
    for agent, name in acknowledged.items():
        assert written[agent] == f"projects/_/buckets/my-bucket/objects/{name}"


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    srv = KeylessServer(tmp_path / "data", fresh_database_url())
    yield srv
    srv.stop()


def test_a_journal_spans_segments_and_replays_them_in_order(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    entries = [f"{i:06d}".encode() * 170 for i in range(10_000)]  # ~10 MB: three 4 MB segments
    for entry in entries:
        first.append(entry)
    assert len(first.rotate()) == 3
    first.append(b"after the rotate")
    first.close(remove=False)  # as a killed process leaves it: files kept, lock released
    second = Journal(tmp_path)
    assert second.recover() == [*entries, b"after the rotate"]
    assert Journal(tmp_path).recover() == []  # the second journal (alive) owns them now


def test_a_torn_entry_is_not_replayed(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    first.append(b"whole")
    segment = first.rotate()[0]
    first.close(remove=False)
    data = bytearray(segment.read_bytes())
    data[13:20] = b"partial"  # the bytes of an entry whose length the kill did not let be written
    segment.write_bytes(bytes(data))
    assert Journal(tmp_path).recover() == [b"whole"]
