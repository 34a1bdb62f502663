"""A project's sinks and its _Default sink's exclusions: LogSink and LogExclusion as
https://cloud.google.com/logging/docs/reference/v2/rest/v2/projects.sinks and
https://cloud.google.com/logging/docs/reference/v2/rest/v2/projects.exclusions define them.
A sink routes only entries that arrive after it is created (its cursor starts at the newest)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from keyless.audit import filter as lq
from keyless.clock import rfc3339
from keyless.cloudlogging import names
from keyless.errors import AlreadyExists, InvalidArgument, NotFound
from keyless.store.models import AuditEntry, LoggingExclusion, LoggingSink, Project

MAX_FILTER = 20_000  # "Filters are limited to 20,000 characters"
MAX_DESCRIPTION = 8_000
MAX_SINK_EXCLUSIONS = 50
SINK_FIELDS = {"name", "destination", "filter", "description", "disabled", "exclusions", "includeChildren",
               "interceptChildren", "outputVersionFormat", "bigqueryOptions", "writerIdentity", "createTime",
               "updateTime", "resourceName"}
SINK_MUTABLE = {"destination", "filter", "description", "disabled", "exclusions", "includeChildren",
                "interceptChildren", "outputVersionFormat"}
EXCLUSION_FIELDS = {"name", "description", "filter", "disabled", "createTime", "updateTime"}
EXCLUSION_MUTABLE = {"description", "filter", "disabled"}


def _filter(value: Any, where: str, *, required: bool = False) -> str:
    if value is None or value == "":
        if required:
            raise InvalidArgument(f"{where} is required.")
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"Invalid value at '{where}' (TYPE_STRING), {json.dumps(value)[:100]}")
    if len(value) > MAX_FILTER:
        raise InvalidArgument(f"Invalid {where}: filters are limited to {MAX_FILTER} characters.")
    lq.parse(value)
    return value


def _text(body: dict[str, Any], name: str, limit: int = MAX_DESCRIPTION) -> str:
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidArgument(f"Invalid value at '{name}' (TYPE_STRING): at most {limit} characters.")
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidArgument(f"Invalid value at '{name}' (TYPE_BOOL), {json.dumps(value)[:100]}")
    return value


def _fields(body: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object.")
    body = names.camel(body)
    for name in body:
        if name not in allowed:
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{str(name)[:100]}\" at '{where}': "
                                  "Cannot find field.")
    return body


# "An empty updateMask is temporarily treated as using the following mask for backwards
# compatibility purposes: destination,filter,includeChildren" (projects.sinks.update).
SINK_DEFAULT_MASK = ["destination", "filter", "includeChildren"]


def _mask(mask: list[str] | None, mutable: set[str], kind: str) -> list[str]:
    if not mask:
        if kind == "sink":
            return SINK_DEFAULT_MASK
        raise InvalidArgument(f"updateMask is required: a non-empty list of the {kind}'s fields to change.")
    paths = list(names.camel(dict.fromkeys(mask)))
    for path in paths:
        if path not in mutable:
            raise InvalidArgument(f"Invalid update mask path '{path[:100]}': a {kind}'s updatable fields are "
                                  f"{', '.join(sorted(mutable))}.")
    return paths


# -- exclusions ------------------------------------------------------------------------------------


def check_exclusion(body: Any, where: str, now: datetime, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """A LogExclusion, checked, with its times (createTime kept from `previous`)."""
    body = _fields(body, EXCLUSION_FIELDS, where)
    out: dict[str, Any] = {"name": names.check_config_id(body.get("name"), "exclusion"),
                           "filter": _filter(body.get("filter"), f"{where}.filter", required=True)}
    if body.get("description"):
        out["description"] = _text(body, "description")
    if _flag(body, "disabled"):
        out["disabled"] = True
    out["createTime"] = previous["createTime"] if previous else rfc3339(now)
    out["updateTime"] = rfc3339(now)
    return out


def exclusion_json(row: LoggingExclusion) -> dict[str, Any]:
    return {"name": f"projects/{row.project_id}/exclusions/{row.exclusion_id}", **row.body}


def find_exclusion(s: Session, project_id: str, exclusion_id: str) -> LoggingExclusion:
    row = s.get(LoggingExclusion, (project_id, exclusion_id))
    if row is None:
        raise NotFound(f"Exclusion projects/{project_id}/exclusions/{exclusion_id} does not exist")
    return row


def create_exclusion(s: Session, project: Project, body: dict[str, Any]) -> LoggingExclusion:
    checked = check_exclusion(body, "exclusion", datetime.now(UTC))
    if s.get(LoggingExclusion, (project.project_id, checked["name"])) is not None:
        raise AlreadyExists(f"Exclusion projects/{project.project_id}/exclusions/{checked['name']} already exists")
    row = LoggingExclusion(project_id=project.project_id, exclusion_id=checked.pop("name"), body=checked)
    s.add(row)
    return row


def update_exclusion(row: LoggingExclusion, body: Any, mask: list[str] | None) -> LoggingExclusion:
    given = _fields(body, EXCLUSION_FIELDS, "exclusion")
    merged = {"name": row.exclusion_id, **row.body}
    for path in _mask(mask, EXCLUSION_MUTABLE, "exclusion"):
        if given.get(path) is None:
            merged.pop(path, None)
        else:
            merged[path] = given[path]
    checked = check_exclusion(merged, "exclusion", datetime.now(UTC), row.body)
    checked.pop("name")
    row.body = checked
    return row


def list_exclusions(s: Session, project_id: str) -> list[LoggingExclusion]:
    return list(s.scalars(select(LoggingExclusion).where(LoggingExclusion.project_id == project_id)
                          .order_by(LoggingExclusion.exclusion_id)))


def active_exclusions(s: Session, project_ids: list[str]) -> dict[str, list[lq.Node]]:
    """The parsed filters of the enabled exclusions of each project."""
    out: dict[str, list[lq.Node]] = {}
    rows = s.scalars(select(LoggingExclusion).where(LoggingExclusion.project_id.in_(project_ids)))
    for row in rows:
        if not row.body.get("disabled"):
            out.setdefault(row.project_id, []).append(lq.parse(row.body["filter"]))
    return out


# -- sinks -----------------------------------------------------------------------------------------


def _check_sink(body: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The client-set fields of a LogSink, checked (name and output fields aside)."""
    out: dict[str, Any] = {"destination": body.get("destination")}
    names.parse_destination(out["destination"])
    if body.get("bigqueryOptions") not in (None, {}):
        raise InvalidArgument("bigqueryOptions is only for BigQuery destinations, which Keyless does not route to.")
    filter_text = _filter(body.get("filter"), "sink.filter")
    if filter_text:
        out["filter"] = filter_text
    if body.get("description"):
        out["description"] = _text(body, "description")
    for flag in ("disabled", "includeChildren", "interceptChildren"):
        if _flag(body, flag):
            out[flag] = True
    version = body.get("outputVersionFormat")
    if version not in (None, "", "VERSION_FORMAT_UNSPECIFIED", "V2"):
        raise InvalidArgument(f"Invalid outputVersionFormat {json.dumps(version)[:100]}: only V2 is supported.")
    if version:
        out["outputVersionFormat"] = version
    exclusions = body.get("exclusions") or []
    if not isinstance(exclusions, list) or len(exclusions) > MAX_SINK_EXCLUSIONS:
        raise InvalidArgument(f"Invalid value at 'sink.exclusions': a list of at most {MAX_SINK_EXCLUSIONS}.")
    if exclusions:
        checked = [check_exclusion(e, f"sink.exclusions[{i}]", now) for i, e in enumerate(exclusions)]
        if len({e["name"] for e in checked}) != len(checked):
            raise InvalidArgument("Sink exclusions must have distinct names.")
        out["exclusions"] = checked
    return out


def sink_json(row: LoggingSink) -> dict[str, Any]:
    return {"name": row.sink_id, **row.body}


def find_sink(s: Session, project_id: str, sink_id: str, *, for_update: bool = False) -> LoggingSink:
    row = s.get(LoggingSink, (project_id, sink_id), with_for_update=for_update)
    if row is None:
        raise NotFound(f"Sink {sink_id} does not exist")
    return row


def create_sink(s: Session, project: Project, body: Any, *, unique_writer: bool) -> LoggingSink:
    body = _fields(body, SINK_FIELDS, "sink")
    sink_id = names.check_config_id(body.get("name"), "sink")
    if s.get(LoggingSink, (project.project_id, sink_id)) is not None:
        raise AlreadyExists(f"Sink {sink_id} already exists")
    now = datetime.now(UTC)
    checked = _check_sink(body, now)
    checked.update(writerIdentity=names.writer_identity(project.project_number, unique_writer),
                   createTime=rfc3339(now), updateTime=rfc3339(now),
                   resourceName=f"projects/{project.project_id}/sinks/{sink_id}")
    newest = s.scalar(select(func.max(AuditEntry.id))) or 0
    row = LoggingSink(project_id=project.project_id, sink_id=sink_id, body=checked, cursor=newest, last_error="")
    s.add(row)
    return row


def update_sink(row: LoggingSink, project: Project, body: Any, mask: list[str] | None, *,
                unique_writer: bool) -> LoggingSink:
    """sinks.update/patch: the masked fields (else those given) replaced. Google: a sink's writer
    identity changes only from the legacy one to a unique one, when uniqueWriterIdentity asks."""
    given = _fields(body, SINK_FIELDS, "sink")
    if given.get("name") not in (None, row.sink_id):
        raise InvalidArgument("A sink's name cannot be changed.")
    merged = dict(row.body)
    for path in _mask(mask, SINK_MUTABLE, "sink"):
        if given.get(path) in (None, "", [], False):
            merged.pop(path, None)
        else:
            merged[path] = given[path]
    now = datetime.now(UTC)
    checked = _check_sink(merged, now)
    identity = row.body["writerIdentity"]
    if unique_writer and identity == names.LEGACY_WRITER:
        identity = names.writer_identity(project.project_number, True)
    checked.update(writerIdentity=identity, createTime=row.body["createTime"], updateTime=rfc3339(now),
                   resourceName=row.body["resourceName"])
    row.body = checked
    return row


def list_sinks(s: Session, project_id: str) -> list[LoggingSink]:
    return list(s.scalars(select(LoggingSink).where(LoggingSink.project_id == project_id)
                          .order_by(LoggingSink.sink_id)))
