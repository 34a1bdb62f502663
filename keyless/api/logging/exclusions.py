"""A project's exclusions: projects.exclusions create/get/list/patch/delete
(https://cloud.google.com/logging/docs/reference/v2/rest/v2/projects.exclusions), which belong to
the project's _Default sink: entries.write drops the entries an enabled exclusion matches.
Changes are Admin Activity (`google.logging.v2.ConfigServiceV2.CreateExclusion` & co.); get and
list are Data Access ADMIN_READ."""

from __future__ import annotations

from typing import Any

from keyless.api.http import Call, update_mask
from keyless.api.logging.common import project_of
from keyless.cloudlogging import config
from keyless.cloudlogging.names import check_config_id


def _name(call: Call) -> tuple[str, str]:
    exclusion_id = check_config_id(call.params["exclusion"], "exclusion")
    return exclusion_id, f"projects/{{project}}/exclusions/{exclusion_id}"


def create_exclusion(call: Call) -> dict[str, Any]:
    with call.write() as s:
        project = project_of(call, s, "logging.exclusions.create",
                             resource=f"projects/{{project}}/exclusions/{call.body.get('name')}")
        return config.exclusion_json(config.create_exclusion(s, project, call.body))


def get_exclusion(call: Call) -> dict[str, Any]:
    exclusion_id, resource = _name(call)
    with call.read() as s:
        project = project_of(call, s, "logging.exclusions.get", resource=resource)
        return config.exclusion_json(config.find_exclusion(s, project.project_id, exclusion_id))


def list_exclusions(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project = project_of(call, s, "logging.exclusions.list")
        everything = [config.exclusion_json(r) for r in config.list_exclusions(s, project.project_id)]
    items, token = call.page(everything)
    out: dict[str, Any] = {}
    if items:
        out["exclusions"] = items
    if token:
        out["nextPageToken"] = token
    return out


def patch_exclusion(call: Call) -> dict[str, Any]:
    exclusion_id, resource = _name(call)
    mask = update_mask(call)
    with call.write() as s:
        project = project_of(call, s, "logging.exclusions.update", resource=resource)
        row = config.find_exclusion(s, project.project_id, exclusion_id)
        return config.exclusion_json(config.update_exclusion(row, call.body, mask))


def delete_exclusion(call: Call) -> dict[str, Any]:
    exclusion_id, resource = _name(call)
    with call.write() as s:
        project = project_of(call, s, "logging.exclusions.delete", resource=resource)
        s.delete(config.find_exclusion(s, project.project_id, exclusion_id))
    return {}
