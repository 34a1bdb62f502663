"""Cloud Logging's entries: entries.list
(https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list) over the audit log and
the entries written with entries.write
(https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/write).

Reading needs `logging.logEntries.list` on each project; Data Access entries are private logs,
returned only where the caller also holds `logging.privateLogEntries.list`
(https://cloud.google.com/logging/docs/access-control). Writing needs `logging.logEntries.create`
(roles/logging.logWriter) on the project of each entry's logName, and is not audited (Google
writes no audit entry for entries.write).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from keyless import projects
from keyless.api.http import Call, allowed_fields, string_field
from keyless.api.logging.common import router_of
from keyless.audit import query
from keyless.audit.log import RPC_CODES
from keyless.cloudlogging import config
from keyless.cloudlogging import entries as written
from keyless.cloudlogging.names import camel, parse_log_name
from keyless.errors import InvalidArgument, KeylessError, NotFound
from keyless.iam.evaluate import permission_denied

MAX_RESOURCE_NAMES = 100
# projects/P, or one of its log views (projects/P/locations/L/buckets/B/views/V): both read P's entries.
RESOURCE_NAME = re.compile(r"^projects/([a-z0-9][a-z0-9-]{0,62})(?:/locations/[^/]{1,63}/buckets/[^/]{1,100}"
                           r"/views/[^/]{1,100})?$")


def readable_project(call: Call, s: Any, id_or_number: str, permission: str) -> tuple[str, bool]:
    """The project's id after authorising `permission`; and whether private logs are readable."""
    row = projects.find_project(s, id_or_number, include_deleted=False)
    chain = projects.project_chain(row.project_id) if row else [projects.project_resource(id_or_number),
                                                                projects.ROOT]
    call.require(permission, chain, f"projects/{id_or_number}")
    if row is None:
        raise NotFound(f"Project '{id_or_number}' not found.")
    private = call.state.authz.check(call.principal, "logging.privateLogEntries.list", chain).granted
    return row.project_id, private


def _page_size(body: dict[str, Any]) -> int:
    raw = body.get("pageSize", 0)
    if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0 or raw > 2**31 - 1:
        raise InvalidArgument(f"Invalid value at 'page_size' (TYPE_INT32), {json.dumps(raw)[:100]}")
    return raw


def list_entries(call: Call) -> dict[str, Any]:
    body = call.body
    allowed_fields(body, {"resourceNames", "projectIds", "filter", "orderBy", "pageSize", "pageToken"}, "")
    names = body.get("resourceNames") or []
    ids = body.get("projectIds") or []  # deprecated, still accepted by Google
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidArgument("Invalid value at 'resource_names' (TYPE_STRING): expected a list of strings.")
    if not isinstance(ids, list) or not all(isinstance(n, str) for n in ids):
        raise InvalidArgument("Invalid value at 'project_ids' (TYPE_STRING): expected a list of strings.")
    names = names + [f"projects/{p}" for p in ids]
    if not names:
        raise InvalidArgument("resourceNames is required: name at least one project, e.g. projects/my-project.")
    if len(names) > MAX_RESOURCE_NAMES:
        raise InvalidArgument(f"At most {MAX_RESOURCE_NAMES} resourceNames can be given.")
    filter_text = string_field(body, "filter", "")
    order_by = string_field(body, "orderBy", "")
    token = string_field(body, "pageToken", "")
    size = _page_size(body)
    wanted: list[str] = []
    for name in names:
        m = RESOURCE_NAME.match(name)
        if m is None:
            raise InvalidArgument(f"Invalid resource name: '{name[:200]}'. Keyless keeps logs in projects: "
                                  "use projects/PROJECT_ID.")
        wanted.append(m.group(1))
    query.parse_order(order_by)
    # Read your own writes: entries this process queued (exchanges, impersonations) are committed
    # first. (Google's own log is eventually consistent; being sooner breaks no client.)
    call.state.audit.flush()
    with call.read() as s:
        readable: list[str] = []
        private: set[str] = set()
        for pid in dict.fromkeys(wanted):
            project_id, can_read_private = readable_project(call, s, pid, "logging.logEntries.list")
            readable.append(project_id)
            if can_read_private:
                private.add(project_id)
        page = query.list_entries(s, readable, filter_text, order_by=order_by, page_size=size, page_token=token,
                                  private=private)
    out: dict[str, Any] = {}
    if page.entries:
        out["entries"] = page.entries
    if page.next_page_token:
        out["nextPageToken"] = page.next_page_token
    return out


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgument(f"Invalid value at '{name}' (TYPE_BOOL), {json.dumps(value)[:100]}")
    return value


def write_entries(call: Call) -> dict[str, Any]:
    """entries.write: every entry checked and authorised; all stored, or (partialSuccess) the valid
    ones, the failures then answered as WriteLogEntriesPartialErrors keyed by entry index."""
    body = camel(call.body)
    allowed_fields(body, {"logName", "resource", "labels", "entries", "partialSuccess", "dryRun"}, "")
    partial, dry_run = _flag(body, "partialSuccess"), _flag(body, "dryRun")
    raw = body.get("entries")
    if not isinstance(raw, list) or not raw:
        raise InvalidArgument("entries is required: at least one log entry to write.")
    if len(raw) > written.MAX_ENTRIES:
        raise InvalidArgument(f"Too many log entries in one request: at most {written.MAX_ENTRIES}.")
    log_name = body.get("logName")
    if log_name not in (None, ""):
        parse_log_name(log_name)
    resource = written.check_resource(body.get("resource"), "resource")
    labels = written.check_labels(body.get("labels"), "labels")
    now = datetime.now(UTC)
    checked: dict[int, written.Written] = {}
    errors: dict[int, KeylessError] = {}
    for i, item in enumerate(raw):
        try:
            checked[i] = written.check_entry(item, i, log_name=log_name, resource=resource, labels=labels, now=now)
        except InvalidArgument as exc:
            errors[i] = exc
    with call.read() as s:  # each project named once: its id, or the denial every entry of it gets
        allowed: dict[str, str | KeylessError] = {}
        for given in dict.fromkeys(w.log.project for w in checked.values()):
            row = projects.find_project(s, given, include_deleted=False)
            chain = projects.project_chain(row.project_id) if row else [projects.project_resource(given),
                                                                        projects.ROOT]
            decision = call.state.authz.check(call.principal, "logging.logEntries.create", chain)
            allowed[given] = row.project_id if row is not None and decision.granted else \
                permission_denied("logging.logEntries.create", f"projects/{given}")
    ready: list[tuple[written.Written, str]] = []
    for i, item in checked.items():
        outcome = allowed[item.log.project]
        if isinstance(outcome, KeylessError):
            errors[i] = outcome
        else:
            ready.append((item, outcome))
    if errors and not partial:
        raise errors[min(errors)]
    if ready and not dry_run:
        with call.read() as s:
            exclusions = config.active_exclusions(s, sorted({p for _, p in ready}))
        try:
            with call.state.db.append() as s:
                stored = written.store(s, ready, exclusions)
        except IntegrityError:  # a duplicate committed meanwhile by another request: check again
            with call.state.db.append() as s:
                stored = written.store(s, ready, exclusions)
        if stored:
            router_of(call.state).wake()
    if errors:
        first = errors[min(errors)]
        detail = {"@type": "type.googleapis.com/google.logging.v2.WriteLogEntriesPartialErrors",
                  "logEntryErrors": {str(i): {"code": RPC_CODES.get(e.status, 2), "message": e.message}
                                     for i, e in sorted(errors.items())}}
        raise type(first)(first.message, details=[*first.details, detail])
    return {}
