"""Cloud Logging API v2 (logging.googleapis.com), the read side of Cloud Audit Logs:
entries.list (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list) and
projects.logs.list. Reading needs `logging.logEntries.list` on each project; Data Access
entries are private logs, returned only where the caller also holds
`logging.privateLogEntries.list` (https://cloud.google.com/logging/docs/access-control).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.routing import Route

from keyless import projects
from keyless.api.http import Call, allowed_fields, route, string_field
from keyless.audit import query
from keyless.errors import InvalidArgument, NotFound
from keyless.state import ServerState

MAX_RESOURCE_NAMES = 100
# projects/P, or one of its log views (projects/P/locations/L/buckets/B/views/V): both read P's entries.
RESOURCE_NAME = re.compile(r"^projects/([a-z0-9][a-z0-9-]{0,62})(?:/locations/[^/]{1,63}/buckets/[^/]{1,100}"
                           r"/views/[^/]{1,100})?$")


def _project(call: Call, s: Any, id_or_number: str, permission: str) -> tuple[str, bool]:
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
            project_id, can_read_private = _project(call, s, pid, "logging.logEntries.list")
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


def list_logs(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project_id, _ = _project(call, s, call.params["project"], "logging.logs.list")
        names = query.log_names(s, project_id)
    items, token = call.page(names)
    out: dict[str, Any] = {}
    if items:
        out["logNames"] = items
    if token:
        out["nextPageToken"] = token
    return out


def routes(state: ServerState) -> list[Route]:
    return [
        route(state, "POST", "/v2/entries:list", list_entries, audited=False),
        route(state, "GET", "/v2/projects/{project}/logs", list_logs, audited=False),
    ]
