"""Cloud Logging API v2 (logging.googleapis.com), mounted at /logging: entries.list over the audit
log and written entries, entries.write, projects.logs list/delete, projects.sinks and
projects.exclusions (https://cloud.google.com/logging/docs/reference/v2/rest; issue #20).
Behaviour and what Keyless leaves out: docs/audit-logs.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.routing import Route

from keyless.api.http import Call, route
from keyless.api.logging import exclusions, logs, sinks
from keyless.api.logging.common import CONFIG, LOGGING, data_access, router_of
from keyless.api.logging.entries import list_entries, write_entries
from keyless.cloudlogging.names import SERVICE
from keyless.state import ServerState

__all__ = ["list_entries", "router_of", "routes"]


def routes(state: ServerState) -> list[Route]:
    def admin(http_method: str, path: str, handler: Callable[[Call], Any], method: str) -> Route:
        return route(state, http_method, path, handler, service=SERVICE, method=method)

    def read(http_method: str, path: str, handler: Callable[[Call], Any], method: str) -> Route:
        return route(state, http_method, path, data_access(method, handler), audited=False)

    project = "/v2/projects/{project}"
    sink = project + "/sinks/{sink}"
    exclusion = project + "/exclusions/{exclusion}"
    return [
        route(state, "POST", "/v2/entries:list", list_entries, audited=False),
        route(state, "POST", "/v2/entries:write", write_entries, audited=False),  # Google audits no writes
        route(state, "GET", project + "/logs", logs.list_logs, audited=False),
        admin("DELETE", project + "/logs/{log:path}", logs.delete_log, LOGGING + "DeleteLog"),
        read("GET", project + "/sinks", sinks.list_sinks, CONFIG + "ListSinks"),
        admin("POST", project + "/sinks", sinks.create_sink, CONFIG + "CreateSink"),
        read("GET", sink, sinks.get_sink, CONFIG + "GetSink"),
        admin("PUT", sink, sinks.update_sink, CONFIG + "UpdateSink"),
        admin("PATCH", sink, sinks.update_sink, CONFIG + "UpdateSink"),
        admin("DELETE", sink, sinks.delete_sink, CONFIG + "DeleteSink"),
        read("GET", project + "/exclusions", exclusions.list_exclusions, CONFIG + "ListExclusions"),
        admin("POST", project + "/exclusions", exclusions.create_exclusion, CONFIG + "CreateExclusion"),
        read("GET", exclusion, exclusions.get_exclusion, CONFIG + "GetExclusion"),
        admin("PATCH", exclusion, exclusions.patch_exclusion, CONFIG + "UpdateExclusion"),
        admin("DELETE", exclusion, exclusions.delete_exclusion, CONFIG + "DeleteExclusion"),
    ]
