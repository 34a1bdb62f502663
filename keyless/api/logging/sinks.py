"""A project's sinks: projects.sinks create/get/list/update/patch/delete
(https://cloud.google.com/logging/docs/reference/v2/rest/v2/projects.sinks). Changes are Admin
Activity (`google.logging.v2.ConfigServiceV2.CreateSink` & co., on a `logging_sink` resource);
get and list are Data Access ADMIN_READ. The writer identity is the project's Logging service
agent when uniqueWriterIdentity is set (as gcloud always sets it); customWriterIdentity is only
for log bucket destinations, which Keyless does not route to."""

from __future__ import annotations

from typing import Any

from keyless.api.http import Call, update_mask
from keyless.api.logging.common import project_of, router_of
from keyless.cloudlogging import config
from keyless.cloudlogging.names import check_config_id
from keyless.errors import InvalidArgument


def _writer_args(call: Call) -> bool:
    if call.arg("customWriterIdentity"):
        raise InvalidArgument("customWriterIdentity is only for sinks routing to a log bucket in another project, "
                              "which Keyless does not route to.")
    return call.flag("uniqueWriterIdentity")


def _labels(project_id: str, sink_id: str, destination: Any) -> dict[str, str]:
    return {"project_id": project_id, "name": sink_id, "destination": str(destination or "")}


def create_sink(call: Call) -> dict[str, Any]:
    unique = _writer_args(call)
    sink_id = call.body.get("name")
    with call.write() as s:
        project = project_of(call, s, "logging.sinks.create", resource=f"projects/{{project}}/sinks/{sink_id}",
                             kind="logging_sink", labels={"name": str(sink_id)})
        row = config.create_sink(s, project, call.body, unique_writer=unique)
        call.touch(labels=_labels(project.project_id, row.sink_id, row.body["destination"]))
        out = config.sink_json(row)
    router_of(call.state).wake()
    return out


def _sink_id(call: Call) -> str:
    return check_config_id(call.params["sink"], "sink")


def get_sink(call: Call) -> dict[str, Any]:
    sink_id = _sink_id(call)
    with call.read() as s:
        project = project_of(call, s, "logging.sinks.get", resource=f"projects/{{project}}/sinks/{sink_id}",
                             kind="logging_sink", labels={"name": str(sink_id)})
        return config.sink_json(config.find_sink(s, project.project_id, sink_id))


def list_sinks(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project = project_of(call, s, "logging.sinks.list")
        everything = [config.sink_json(r) for r in config.list_sinks(s, project.project_id)]
    items, token = call.page(everything)
    out: dict[str, Any] = {}
    if items:
        out["sinks"] = items
    if token:
        out["nextPageToken"] = token
    return out


def update_sink(call: Call) -> dict[str, Any]:
    """sinks.update (PUT) and sinks.patch: the fields of updateMask (else those given) replaced."""
    unique = _writer_args(call)
    sink_id = _sink_id(call)
    mask = update_mask(call)
    with call.write() as s:
        project = project_of(call, s, "logging.sinks.update", resource=f"projects/{{project}}/sinks/{sink_id}",
                             kind="logging_sink", labels={"name": str(sink_id)})
        row = config.find_sink(s, project.project_id, sink_id, for_update=True)
        config.update_sink(row, project, call.body, mask, unique_writer=unique)
        call.touch(labels=_labels(project.project_id, sink_id, row.body["destination"]))
        out = config.sink_json(row)
    router_of(call.state).wake()
    return out


def delete_sink(call: Call) -> dict[str, Any]:
    sink_id = _sink_id(call)
    with call.write() as s:
        project = project_of(call, s, "logging.sinks.delete", resource=f"projects/{{project}}/sinks/{sink_id}",
                             kind="logging_sink", labels={"name": str(sink_id)})
        row = config.find_sink(s, project.project_id, sink_id, for_update=True)
        call.touch(labels=_labels(project.project_id, sink_id, row.body.get("destination")))
        s.delete(row)
    return {}
