"""A project's logs: projects.logs.list and projects.logs.delete
(https://cloud.google.com/logging/docs/reference/v2/rest/v2/projects.logs). Deleting a log removes
its entries (written ones, and Data Access audit entries, which Google keeps in the _Default
bucket); the Admin Activity and System Event audit logs live in the _Required bucket, which
cannot be deleted. A log reappears when it receives new entries. logs.delete is an Admin
Activity (`google.logging.v2.LoggingServiceV2.DeleteLog`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from keyless.api.http import Call
from keyless.api.logging.common import project_of
from keyless.api.logging.entries import readable_project
from keyless.audit import query
from keyless.audit.log import ACTIVITY, SYSTEM_EVENT
from keyless.cloudlogging import entries as written
from keyless.cloudlogging.names import LOG_ID, MAX_LOG_ID
from keyless.errors import FailedPrecondition, InvalidArgument, NotFound


def list_logs(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project_id, _ = readable_project(call, s, call.params["project"], "logging.logs.list")
        names = query.log_names(s, project_id)
    items, token = call.page(names)
    out: dict[str, Any] = {}
    if items:
        out["logNames"] = items
    if token:
        out["nextPageToken"] = token
    return out


def delete_log(call: Call) -> dict[str, Any]:
    log_id = call.params["log"]  # the path is decoded: %2F arrived as /
    if len(log_id) > MAX_LOG_ID or not LOG_ID.match(log_id):
        raise InvalidArgument(f"Invalid log id '{log_id[:300]}': less than 512 letters, digits, forward-slashes, "
                              "underscores, hyphens and periods.")
    encoded = quote(log_id, safe="")
    with call.write() as s:
        project = project_of(call, s, "logging.logs.delete", resource=f"projects/{{project}}/logs/{encoded}")
        name = f"projects/{project.project_id}/logs/{encoded}"
        if log_id in (ACTIVITY, SYSTEM_EVENT):
            raise FailedPrecondition(f"Log {name} is in the _Required log bucket, whose logs cannot be deleted.")
        if not written.delete_log(s, project.project_id, name):
            raise NotFound(f"Log {name} does not exist")
    return {}
