"""entries.list over the store (keyless.audit.query): SQL narrowing never changes an answer,
paging is stable, private logs stay private, and a seed query over a large log stays fast.
Retention (keyless.audit.retention) deletes by log and age and bounds the size."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from keyless.audit import filter as lq
from keyless.audit import log as audit
from keyless.audit import query
from keyless.audit.retention import Retention, count, prune
from keyless.clock import rfc3339
from keyless.errors import InvalidArgument
from keyless.state import ServerState
from keyless.store.models import AuditEntry

T0 = datetime(2026, 11, 1, tzinfo=UTC)
METHODS = ["GenerateAccessToken", "SetIamPolicy", "google.iam.admin.v1.CreateServiceAccount", "storage.objects.get"]
TYPES = ["service_account", "project", "gcs_bucket"]
SUBJECTS = ["principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/github-pool/subject/"
            "repo:my-org/my-repo:ref:refs/heads/main", "user:alice@example.com", ""]


def rows(n: int, *, seed: int = 1, projects: tuple[str, ...] = ("my-project", "other-project"),
         start: datetime = T0, step: timedelta = timedelta(seconds=1)) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        log = rnd.choice([audit.ACTIVITY, audit.DATA_ACCESS, audit.SYSTEM_EVENT])
        record = audit.AuditRecord(service="iam.googleapis.com", method=rnd.choice(METHODS), log=log,
                                   project_id=rnd.choice(projects), resource_name=f"r/{rnd.randint(0, 9)}",
                                   resource_type=rnd.choice(TYPES))
        email = rnd.choice(["deploy-sa@my-project.iam.gserviceaccount.com", "alice@example.com", ""])
        error = ("PERMISSION_DENIED", "Denied") if rnd.random() < 0.1 else None
        # several entries share a timestamp: paging must still be exact
        out.append(audit.entry_row(record, email, rnd.choice(SUBJECTS), error=error, at=start + step * (i // 3)))
    return out


def load(state: ServerState, data: list[dict[str, Any]]) -> None:
    for i in range(0, len(data), 5000):
        with state.db.write(bump=False) as s:
            s.execute(insert(AuditEntry), data[i:i + 5000])


def run(state: ServerState, projects: list[str], text: str, **kw: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    token = ""
    while True:
        with state.db.read() as s:
            page = query.list_entries(s, projects, text, page_token=token, **kw)
        out += page.entries
        if not page.next_page_token:
            return out
        token = page.next_page_token


FILTERS = [
    "",
    'resource.type="service_account" protoPayload.methodName="GenerateAccessToken"',
    'protoPayload.methodName=("SetIamPolicy" OR "GenerateAccessToken") severity>=NOTICE',
    'log_id("cloudaudit.googleapis.com/activity") OR severity=ERROR',
    'NOT protoPayload.methodName="SetIamPolicy" AND resource.type!="project"',
    'protoPayload.authenticationInfo.principalEmail="alice@example.com" timestamp>="2026-11-01T00:00:30Z"',
    'timestamp<"2026-11-01T00:00:40Z" timestamp>"2026-11-01T00:00:10.000001Z"',
    'timestamp="2026-11-01T00:00:05Z"',
    'protoPayload.authenticationInfo.principalSubject=~"repo:my-org/my-repo" severity<ERROR',
    'logName="projects/my-project/logs/cloudaudit.googleapis.com/data_access"',
    'protoPayload.resourceName="r/3" OR protoPayload.resourceName="r/4"',
    "alice",
    'severity>WARNING insertId:"a"',
]


@pytest.mark.parametrize("text", FILTERS)
def test_narrowing_never_changes_the_answer(state: ServerState, text: str) -> None:
    load(state, rows(400))
    with state.db.read() as s:
        everything = [audit.entry_of(r) for r in s.query(AuditEntry).order_by(AuditEntry.timestamp, AuditEntry.id)]
    tree = lq.parse(text)
    mine = [e for e in everything if e["resource"]["labels"]["project_id"] == "my-project"]
    want = [e["insertId"] for e in mine if lq.matches(tree, e)]
    got = run(state, ["my-project"], text, page_size=7, private={"my-project"})
    assert [e["insertId"] for e in got] == want
    down = run(state, ["my-project"], text, page_size=5, order_by="timestamp desc", private={"my-project"})
    assert [e["insertId"] for e in down] == want[::-1]


def test_private_logs_need_their_own_permission(state: ServerState) -> None:
    load(state, rows(200))
    both = run(state, ["my-project", "other-project"], "", private={"other-project"})
    assert any("data_access" in e["logName"] for e in both)
    assert not any("data_access" in e["logName"] and "my-project/" in e["logName"] for e in both)
    assert all(e["resource"]["labels"]["project_id"] in ("my-project", "other-project") for e in both)


def test_page_tokens_are_bound_to_their_query(state: ServerState) -> None:
    load(state, rows(50))
    with state.db.read() as s:
        page = query.list_entries(s, ["my-project"], "", page_size=2)
        assert page.next_page_token
        with pytest.raises(InvalidArgument, match="page token"):
            query.list_entries(s, ["my-project"], "severity>=ERROR", page_size=2, page_token=page.next_page_token)
        with pytest.raises(InvalidArgument, match="page token"):
            query.list_entries(s, ["my-project"], "", page_token="x" * 600)
        with pytest.raises(InvalidArgument, match="orderBy"):
            query.list_entries(s, ["my-project"], "", order_by="severity")


def test_a_sparse_match_over_a_large_log_comes_back_in_short_pages(state: ServerState) -> None:
    load(state, rows(6000))
    with state.db.read() as s:
        page = query.list_entries(s, ["my-project"], "unicorn", scan_limit=1000, private={"my-project"})
    assert page.entries == [] and page.next_page_token  # as Google: an empty page, keep paging


def test_seed_query_over_a_large_log(state: ServerState) -> None:
    """Seed 001's query and a principalEmail one over a log of three projects: the newest 20 matches,
    in order. How long they take on 60,000 entries is measured by bench/audit_query.py."""
    data = rows(6_000, projects=("my-project", "other-project", "third-project"), seed=7)
    load(state, data)
    seed = ('resource.type="service_account" protoPayload.methodName="GenerateAccessToken" '
            'protoPayload.authenticationInfo.principalSubject=~"repo:my-org/my-repo"')
    with state.db.read() as s:
        page = query.list_entries(s, ["my-project"], seed, order_by="timestamp desc", page_size=20,
                                  private={"my-project"})
    assert len(page.entries) == 20
    assert all(e["protoPayload"]["methodName"] == "GenerateAccessToken" for e in page.entries)
    stamps = [e["timestamp"] for e in page.entries]
    assert stamps == sorted(stamps, reverse=True)
    email = 'protoPayload.authenticationInfo.principalEmail="deploy-sa@my-project.iam.gserviceaccount.com"'
    with state.db.read() as s:
        page = query.list_entries(s, ["my-project"], email, order_by="timestamp desc", page_size=20)
    assert len(page.entries) == 20
    assert {e["protoPayload"]["authenticationInfo"]["principalEmail"] for e in page.entries} == {
        "deploy-sa@my-project.iam.gserviceaccount.com"}


def test_retention_by_log_and_age_and_size(state: ServerState) -> None:
    now = T0 + timedelta(days=500)
    old = rows(300, start=now - timedelta(days=450), step=timedelta(hours=1), seed=2)  # ~4 days of entries
    mid = rows(300, start=now - timedelta(days=60), step=timedelta(hours=1), seed=3)
    new = rows(300, start=now - timedelta(days=1), step=timedelta(minutes=1), seed=4)
    # entries.write's entries live in the _Default bucket with Data Access: 30 days (issue #20)
    written = [{**r, "insert_id": f"w{i}", "log_name": "projects/my-project/logs/app"} for i, r in enumerate(mid[:10])]
    load(state, old + mid + new + written)
    mid_kept = [r for r in mid if not r["log_name"].endswith("%2Fdata_access")]
    assert prune(state.db, now) == 300 + (300 - len(mid_kept)) + len(written)
    with state.db.read() as s:
        left = {r.insert_id for r in s.query(AuditEntry)}
    assert left == {r["insert_id"] for r in mid_kept + new}
    assert prune(state.db, now) == 0
    assert prune(state.db, now, Retention(max_entries=420)) == len(left) - 420
    assert count(state.db) == 420
    # Beyond the bound the _Default bucket's oldest go first: the _Required audit trail is kept
    # whole while the other entries alone make up the excess (a pod flooding its stdout, issue #20).
    arrival = mid_kept + new
    default = [r["insert_id"] for r in arrival if r["log_name"].endswith("%2Fdata_access")]
    assert len(default) >= len(left) - 420
    with state.db.read() as s:
        kept = {r.insert_id for r in s.query(AuditEntry)}
    assert kept == {r["insert_id"] for r in arrival} - set(default[:len(left) - 420])
    # when the _Required entries alone exceed it, the newest of them are kept
    assert prune(state.db, now, Retention(max_entries=100)) == 320
    with state.db.read() as s:
        kept = {r.insert_id for r in s.query(AuditEntry)}
    required = [r["insert_id"] for r in arrival if not r["log_name"].endswith("%2Fdata_access")]
    assert kept == set(required[-100:])


def test_the_histogram_counts_the_whole_range_as_entries_list_finds_it(state: ServerState) -> None:
    """The console's histogram (issue #21): every entries.list match in [start, end) counted in its
    bucket and by severity, private logs only where readable; capped, it says from where it stopped."""
    load(state, rows(1500))  # 500 seconds of entries, three per second
    start, end = T0 + timedelta(seconds=60), T0 + timedelta(seconds=460)
    bounds = f'timestamp>="{rfc3339(start)}" AND timestamp<"{rfc3339(end)}"'
    totals = {}
    for text in ("", 'protoPayload.methodName="SetIamPolicy" OR severity>=ERROR'):
        for private in ({"my-project"}, set()):
            found = run(state, ["my-project"], f"({text}) AND {bounds}" if text else bounds, private=private)
            want = [[0, 0] for _ in range(40)]
            for e in found:
                at = lq.parse_timestamp(e["timestamp"])
                assert at is not None
                want[int((at - start).total_seconds() // 10)][0 if e["severity"] in ("WARNING", "ERROR") else 1] += 1
            with state.db.read() as s:
                h = query.histogram(s, ["my-project"], text, start=start, end=end, buckets=40, private=private)
            assert [list(c) for c in h.counts] == want and h.stopped_at is None
            assert any(bad for bad, _ in h.counts) and sum(a + b for a, b in h.counts) > 100
            totals[(text, bool(private))] = len(found)
    assert totals[("", True)] > totals[("", False)]  # Data Access entries count only for a private-log reader
    # no start: from the oldest match; a cap: the newest `scan_limit` rows, and where it stopped
    with state.db.read() as s:
        h = query.histogram(s, ["my-project"], "", start=None, end=end, buckets=100, private={"my-project"},
                            scan_limit=500)
    everything = run(state, ["my-project"], f'timestamp<"{rfc3339(end)}"', private={"my-project"})
    assert rfc3339(h.start) == everything[0]["timestamp"]
    assert h.stopped_at is not None and h.scanned == 500 and sum(a + b for a, b in h.counts) == 500
    assert all(lq.parse_timestamp(e["timestamp"]) >= h.stopped_at for e in everything[-500:])
