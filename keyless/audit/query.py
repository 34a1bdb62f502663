"""Reading audit entries with a Logging filter, as entries.list does
(https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list): `orderBy` on
timestamp, pageSize/pageToken over a keyset cursor (stable while entries keep arriving).

The store narrows first: top-level ANDed comparisons on indexed columns become SQL conditions
each entry matching the filter also meets; every candidate is then checked against the whole
filter in Python, so narrowing can never change an answer, only how many rows are read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from keyless.audit import filter as lq
from keyless.audit.log import DATA_ACCESS, entry_of
from keyless.errors import InvalidArgument
from keyless.store.models import AuditEntry

MAX_PAGE_SIZE = 1000  # entries.list caps pageSize at 1000
SCAN_BATCH = 500
SCAN_LIMIT = 50_000  # rows examined per call; past it the page may come back short, with a token
PRIVATE_SUFFIX = "/logs/" + quote(DATA_ACCESS, safe="")

# LogEntry paths whose value is copied verbatim into an indexed column of AuditEntry. (Not insertId:
# a written entry's row is keyed by its project, timestamp and insertId together; keyless.cloudlogging.)
COLUMNS: dict[tuple[str, ...], InstrumentedAttribute[Any]] = {
    ("resource", "type"): AuditEntry.resource_type,
    ("protoPayload", "methodName"): AuditEntry.method_name,
    ("protoPayload", "serviceName"): AuditEntry.service_name,
    ("protoPayload", "resourceName"): AuditEntry.resource_name,
    ("protoPayload", "authenticationInfo", "principalEmail"): AuditEntry.principal_email,
    ("protoPayload", "authenticationInfo", "principalSubject"): AuditEntry.principal_subject,
    ("logName",): AuditEntry.log_name,
}


@dataclass
class Page:
    entries: list[dict[str, Any]]
    next_page_token: str | None


def parse_order(order_by: str) -> bool:
    """True for descending. Google accepts `timestamp asc` (the default) and `timestamp desc`."""
    text = " ".join(order_by.split()).lower()
    if text in ("", "timestamp", "timestamp asc"):
        return False
    if text == "timestamp desc":
        return True
    raise InvalidArgument(f"Invalid orderBy: '{order_by[:200]}'. Only 'timestamp asc' and 'timestamp desc' "
                          "are supported.")


def list_entries(s: Session, projects: Sequence[str], filter_text: str, *, order_by: str = "",
                 page_size: int = 0, page_token: str = "", private: Collection[str] = (),
                 scan_limit: int = SCAN_LIMIT) -> Page:
    """One page of the entries of `projects` that match the filter. Data Access entries are
    returned only for the projects in `private` (the caller may read private logs there)."""
    tree = lq.parse(filter_text)
    descending = parse_order(order_by)
    if page_size < 0:
        raise InvalidArgument("pageSize must not be negative.")
    size = min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE)
    fingerprint = _fingerprint(projects, filter_text, descending)
    cursor = _decode_token(page_token, fingerprint) if page_token else None

    conditions = _where(tree, projects, private)
    order = (AuditEntry.timestamp.desc(), AuditEntry.id.desc()) if descending else \
        (AuditEntry.timestamp.asc(), AuditEntry.id.asc())

    found: list[dict[str, Any]] = []
    scanned = 0
    while True:
        stmt = select(AuditEntry).where(*conditions)
        if cursor is not None:
            stmt = stmt.where(_after(cursor, descending))
        rows = s.scalars(stmt.order_by(*order).limit(SCAN_BATCH)).all()
        for row in rows:
            scanned += 1
            cursor = (_utc(row.timestamp), row.id)
            entry = entry_of(row)
            if lq.matches(tree, entry):
                found.append(entry)
                if len(found) == size:
                    return Page(found, _encode_token(cursor, fingerprint))
        if len(rows) < SCAN_BATCH:
            return Page(found, None)
        if scanned >= scan_limit:  # Google too answers short (even empty) pages with a token
            assert cursor is not None
            return Page(found, _encode_token(cursor, fingerprint))


def _where(tree: lq.Node, projects: Sequence[str], private: Collection[str]) -> list[ColumnElement[bool]]:
    """The rows a filter may match: the projects', narrowed by the filter, Data Access entries only
    where the caller may read them."""
    conditions = [AuditEntry.project_id.in_(list(projects)), *_narrowing(tree, projects)]
    public = [p for p in projects if p not in private]
    if public:  # Data Access logs are private: only roles/logging.privateLogViewer reads them
        conditions.append(or_(AuditEntry.project_id.in_([p for p in projects if p in private]),
                              ~AuditEntry.log_name.endswith(PRIVATE_SUFFIX, autoescape=True)))
    return conditions


WARNING_AND_ABOVE = frozenset(n for n, r in lq.SEVERITIES.items() if r >= lq.SEVERITIES["WARNING"])


@dataclass
class Histogram:
    start: datetime
    end: datetime
    counts: list[tuple[int, int]]  # per bucket, oldest first: (WARNING and above, the rest)
    scanned: int
    stopped_at: datetime | None  # the scan cap was hit: entries before this were not counted


def histogram(s: Session, projects: Sequence[str], filter_text: str, *, start: datetime | None, end: datetime,
              buckets: int, private: Collection[str] = (), scan_limit: int = SCAN_LIMIT) -> Histogram:
    """The entries matching a filter in [start, end), counted per equal time bucket and by severity
    (Logs Explorer's histogram counts the whole range, not the entries loaded). Newest first, at most
    `scan_limit` rows read: past it `stopped_at` says from where on older entries were not counted.
    `start` None is the oldest matching row's time."""
    tree = lq.parse(filter_text)
    conditions = [*_where(tree, projects, private), AuditEntry.timestamp < end]
    if start is None:
        oldest = s.scalars(select(AuditEntry.timestamp).where(*conditions)
                           .order_by(AuditEntry.timestamp.asc()).limit(1)).first()
        start = _utc(oldest) if oldest is not None else end
    conditions.append(AuditEntry.timestamp >= start)
    span = max((end - start).total_seconds(), 1e-6) / buckets
    counts = [[0, 0] for _ in range(buckets)]
    cursor: tuple[datetime, int] | None = None
    scanned = 0
    while True:
        stmt = select(AuditEntry).where(*conditions)
        if cursor is not None:
            stmt = stmt.where(_after(cursor, True))
        rows = s.scalars(stmt.order_by(AuditEntry.timestamp.desc(), AuditEntry.id.desc()).limit(SCAN_BATCH)).all()
        for row in rows:
            scanned += 1
            cursor = (_utc(row.timestamp), row.id)
            entry = entry_of(row)
            if lq.matches(tree, entry):
                i = min(buckets - 1, max(0, int((cursor[0] - start).total_seconds() / span)))
                counts[i][0 if entry.get("severity") in WARNING_AND_ABOVE else 1] += 1
        if len(rows) < SCAN_BATCH:
            return Histogram(start, end, [(a, b) for a, b in counts], scanned, None)
        if scanned >= scan_limit:
            assert cursor is not None
            return Histogram(start, end, [(a, b) for a, b in counts], scanned, cursor[0])


def log_names(s: Session, project_id: str) -> list[str]:
    """The names of the logs that hold entries of a project (projects.logs.list)."""
    stmt = select(AuditEntry.log_name).where(AuditEntry.project_id == project_id).distinct()
    return sorted(s.scalars(stmt).all())


def _narrowing(tree: lq.Node, projects: Sequence[str]) -> list[ColumnElement[bool]]:
    """SQL conditions implied by the filter's top-level terms (only ever necessary ones)."""
    out: list[ColumnElement[bool]] = []
    for term in lq.conjuncts(tree):
        cond = _condition(term, projects)
        if cond is not None:
            out.append(cond)
    return out


def _condition(term: lq.Node, projects: Sequence[str]) -> ColumnElement[bool] | None:
    if isinstance(term, lq.LogId):
        return AuditEntry.log_name.in_([f"projects/{p}/logs/{quote(term.log_id, safe='')}" for p in projects])
    if isinstance(term, lq.Or):  # field = ("a" OR "b"), or the same spelled out: IN (...)
        parts = [_condition(item, projects) for item in term.items]
        if any(p is None for p in parts):
            return None
        return or_(*[p for p in parts if p is not None])
    if not isinstance(term, lq.Compare):
        return None
    path, op, value = term.path, term.op, term.value
    if path == ("timestamp",) and op in ("<", "<=", ">", ">=", "="):
        when = lq.parse_timestamp(value)
        if when is None:
            return false() if op == "=" else None
        col = AuditEntry.timestamp
        return {"<": col < when, "<=": col <= when, ">": col > when, ">=": col >= when, "=": col == when}[op]
    if path == ("severity",) and op in ("<", "<=", ">", ">=", "="):
        wanted = lq.severity_rank(value)
        names = [n for n, r in lq.SEVERITIES.items()
                 if wanted is not None and {"<": r < wanted, "<=": r <= wanted, ">": r > wanted,
                                            ">=": r >= wanted, "=": r == wanted}[op]]
        return AuditEntry.severity.in_(names) if names else false()
    column = COLUMNS.get(path)
    if column is not None and op == "=":
        return column == (lq.normalize_log_name(value) if path == ("logName",) else value)
    return None


def _after(cursor: tuple[datetime, int], descending: bool) -> ColumnElement[bool]:
    when, row_id = cursor
    if descending:
        return or_(AuditEntry.timestamp < when, and_(AuditEntry.timestamp == when, AuditEntry.id < row_id))
    return or_(AuditEntry.timestamp > when, and_(AuditEntry.timestamp == when, AuditEntry.id > row_id))


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


# -- page tokens: the position reached, bound to the query that reached it ------------------------


def _fingerprint(projects: Sequence[str], filter_text: str, descending: bool) -> str:
    raw = json.dumps([sorted(projects), filter_text, descending]).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _encode_token(cursor: tuple[datetime, int], fingerprint: str) -> str:
    body = json.dumps({"t": cursor[0].isoformat(), "i": cursor[1], "q": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> tuple[datetime, int]:
    bad = InvalidArgument("Invalid page token: it does not belong to this query.")
    if len(token) > 500:
        raise bad
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        when = _utc(datetime.fromisoformat(body["t"]))
        row_id = body["i"]
        if body["q"] != fingerprint or not isinstance(row_id, int) or isinstance(row_id, bool):
            raise bad
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise bad from exc
    return when, row_id
