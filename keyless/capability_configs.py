"""Resource Manager v3 CapabilityConfigs of projects
(https://cloud.google.com/resource-manager/reference/rest/v3/projects.capabilityConfigs, the
CapabilityConfig schema of the cloudresourcemanager v3 discovery document; issue #20).

Validation is the schema's: the id "6 to 30 lowercase ASCII letters, digits, or hyphens", starting
with a letter, no trailing hyphen; displayName "between 4 to 30 characters" of letters, digits,
hyphen, single-quote, double-quote, space and exclamation point; `types` required, of APP_MANAGEMENT
and AGENT_MANAGEMENT; boundaries `organizations|folders|projects/X/boundaries/B`; managementProject
`projects/{project_number}`, immutable. The etag is the server's checksum: a patch or delete that
sends one that is not current is ABORTED (AIP-154).

What Google does not document, and Keyless therefore does not do: Google creates a management
project when `managementProject` is absent ("a management project will be automatically
created"), but not which id, name, parent, owner or billing it gets; Keyless refuses that
creation (FAILED_PRECONDITION, naming the field to set) rather than invent one. Boundaries are
checked for their documented format only: Keyless has no Boundary resources to look them up in.
Repeated `types` are refused (Keyless's choice: a set of capabilities).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from keyless.etag import etags_match, new_etag
from keyless.store.models import CapabilityConfig, Project

RESPONSE_TYPE = "type.googleapis.com/google.cloud.resourcemanager.v3.CapabilityConfig"
CONFIG_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
DISPLAY_NAME = re.compile(r"^[A-Za-z0-9\-'\" !]{4,30}$")
TYPES = ("APP_MANAGEMENT", "AGENT_MANAGEMENT")
BOUNDARY = re.compile(r"^(organizations|folders|projects)/[a-z0-9-]{1,63}/boundaries/[A-Za-z0-9_.~-]{1,63}$")
MANAGEMENT_PROJECT = re.compile(r"^projects/([1-9][0-9]{0,19})$")
MAX_BOUNDARIES = 100  # Keyless's bound; Google documents none
FIELDS = {"name", "displayName", "types", "boundaries", "managementProject", "etag", "state", "createTime",
          "updateTime"}
MUTABLE = ("displayName", "types", "boundaries")


def validate_id(config_id: str | None) -> str:
    if not config_id:
        raise InvalidArgument("capability_config_id is required.")
    if not CONFIG_ID.match(config_id):
        raise InvalidArgument(f"Invalid capability_config_id {config_id[:64]!r}: it must be 6 to 30 lowercase "
                              "ASCII letters, digits, or hyphens, start with a letter and not end with a hyphen.")
    return config_id


def _display_name(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not DISPLAY_NAME.match(value):
        raise InvalidArgument(f"Invalid display_name {str(value)[:64]!r}: it must be 4 to 30 letters, numbers, "
                              "hyphens, single-quotes, double-quotes, spaces or exclamation points.")
    return value


def _types(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidArgument("types is required: one or more of APP_MANAGEMENT, AGENT_MANAGEMENT.")
    if any(not isinstance(t, str) or t not in TYPES for t in value):
        raise InvalidArgument(f"Invalid types {str(value)[:100]}: each is APP_MANAGEMENT or AGENT_MANAGEMENT.")
    if len(set(value)) != len(value):
        raise InvalidArgument("types must not repeat a type.")
    return list(value)


def _boundaries(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_BOUNDARIES:
        raise InvalidArgument(f"boundaries must be a list of at most {MAX_BOUNDARIES} boundary names.")
    for b in value:
        if not isinstance(b, str) or not BOUNDARY.match(b):
            raise InvalidArgument(f"Invalid boundary {str(b)[:100]!r}: expected organizations/{{organization}}/"
                                  "boundaries/{boundary}, folders/{folder}/boundaries/{boundary} or "
                                  "projects/{project}/boundaries/{boundary}.")
    if len(set(value)) != len(value):
        raise InvalidArgument("boundaries must not repeat a boundary.")
    return list(value)


def management_project_number(value: Any) -> str:
    """The number of `projects/{project_number}`; absent is FAILED_PRECONDITION (see the module)."""
    if value is None or value == "":
        raise FailedPrecondition("Keyless does not create management projects (Google does not document the "
                                 "project it would create): set managementProject to projects/PROJECT_NUMBER "
                                 "of an existing project.")
    m = MANAGEMENT_PROJECT.match(value) if isinstance(value, str) else None
    if m is None:
        raise InvalidArgument(f"Invalid management_project {str(value)[:64]!r}: expected projects/PROJECT_NUMBER.")
    return m.group(1)


def config_name(project: Project, config_id: str) -> str:
    return f"projects/{project.project_number}/capabilityConfigs/{config_id}"


def as_json(project: Project, row: CapabilityConfig) -> dict[str, Any]:
    body = row.body or {}
    out: dict[str, Any] = {"name": config_name(project, row.config_id)}
    if body.get("displayName"):
        out["displayName"] = body["displayName"]
    out["types"] = list(body.get("types") or [])
    if body.get("boundaries"):
        out["boundaries"] = list(body["boundaries"])
    out.update(managementProject=body["managementProject"], state="ACTIVE", createTime=rfc3339(row.create_time),
               updateTime=rfc3339(row.update_time), etag=row.etag)
    return out


def _check_body(body: dict[str, Any]) -> None:
    unknown = set(body) - FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{name[:100]}\" at 'capability_config': "
                              "Cannot find field.")


def create(s: Session, project: Project, config_id: str, body: dict[str, Any], management: Project) -> CapabilityConfig:
    _check_body(body)
    if s.get(CapabilityConfig, (project.project_id, config_id)) is not None:
        raise AlreadyExists(f"CapabilityConfig {config_name(project, config_id)} already exists.")
    now = datetime.now(UTC)
    row = CapabilityConfig(project_id=project.project_id, config_id=config_id, etag=new_etag(), create_time=now,
                           update_time=now, body={
                               "displayName": _display_name(body.get("displayName")),
                               "types": _types(body.get("types")), "boundaries": _boundaries(body.get("boundaries")),
                               "managementProject": f"projects/{management.project_number}"})
    s.add(row)
    return row


def find(s: Session, project: Project, config_id: str, *, for_update: bool = False) -> CapabilityConfig:
    if not CONFIG_ID.match(config_id):  # no such config can exist: the store is not asked
        raise NotFound(f"CapabilityConfig {config_name(project, config_id[:64])} not found.")
    query = select(CapabilityConfig).where(CapabilityConfig.project_id == project.project_id,
                                           CapabilityConfig.config_id == config_id)
    row = s.scalars(query.with_for_update() if for_update else query).first()
    if row is None:
        raise NotFound(f"CapabilityConfig {config_name(project, config_id)} not found.")
    return row


def list_configs(s: Session, project: Project) -> list[CapabilityConfig]:
    return list(s.scalars(select(CapabilityConfig).where(CapabilityConfig.project_id == project.project_id)
                          .order_by(CapabilityConfig.config_id)))


def check_etag(row: CapabilityConfig, given: Any) -> None:
    if given not in (None, "") and not etags_match(given, row.etag):
        raise Aborted(f"The etag {str(given)[:64]!r} does not match the CapabilityConfig's current etag: it was "
                      "changed since it was read; read it again.")


def patch(row: CapabilityConfig, project: Project, body: dict[str, Any], mask: list[str] | None) -> None:
    """displayName, types and boundaries, by updateMask (default: those the body sets)."""
    _check_body(body)
    if body.get("name") not in (None, "", config_name(project, row.config_id)):
        raise InvalidArgument(f"The name {str(body['name'])[:200]!r} is not the CapabilityConfig's name.")
    current = row.body or {}
    given = body.get("managementProject")
    if given not in (None, "") and given != current.get("managementProject"):
        raise InvalidArgument("management_project is immutable: it cannot be modified after creation.")
    check_etag(row, body.get("etag"))
    paths = mask if mask is not None else [f for f in MUTABLE if f in body]
    camel = {"display_name": "displayName"}
    fields = [camel.get(p, p) for p in paths]
    unknown = [f for f in fields if f not in MUTABLE]
    if unknown:
        raise InvalidArgument(f"Invalid update_mask path {unknown[0][:100]!r}: only displayName, types and "
                              "boundaries can be updated.")
    updated = dict(current)
    for field in fields:
        if field == "displayName":
            updated["displayName"] = _display_name(body.get("displayName"))
        elif field == "types":
            updated["types"] = _types(body.get("types"))
        else:
            updated["boundaries"] = _boundaries(body.get("boundaries"))
    if updated != current:
        row.body = updated
        row.etag = new_etag()
        row.update_time = datetime.now(UTC)
