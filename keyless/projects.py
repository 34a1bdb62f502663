"""Projects (Cloud Resource Manager): ids, numbers, lifecycle, and the resource hierarchy.

Project ids follow https://cloud.google.com/resource-manager/docs/creating-managing-projects:
6-30 characters, lowercase letters, digits and hyphens, starting with a letter and not ending
with a hyphen. Every project sits under Keyless's root node, whose policy holds the bootstrap
owner (it plays the part of an organization: its bindings are inherited by every project).
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from keyless.etag import etags_match, new_etag
from keyless.store.models import Project

ROOT = "//keyless.dev/root"  # the policy every project inherits from (the bootstrap owner's)
PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
PROJECT_NUMBER = re.compile(r"^[1-9][0-9]{0,17}$")
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
PARENT = re.compile(r"^(organizations|folders)/([1-9][0-9]{0,19})$")
# A project pending deletion can be restored for 30 days, then it is gone for good
# (https://cloud.google.com/resource-manager/docs/creating-managing-projects#shutting_down_projects).
DELETION_GRACE = timedelta(days=30)


def project_resource(project_id: str) -> str:
    """The resource name IAM policies of a project are stored under."""
    return f"projects/{project_id}"


def project_chain(project_id: str) -> list[str]:
    return [project_resource(project_id), ROOT]


def validate_project_id(project_id: Any) -> str:
    if not isinstance(project_id, str) or not PROJECT_ID.match(project_id):
        raise InvalidArgument(
            f"Project id '{project_id}' is invalid: it must be 6 to 30 lowercase letters, digits or "
            "hyphens, start with a letter and not end with a hyphen."
        )
    return project_id


def _validate_labels(labels: Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or len(labels) > 64:
        raise InvalidArgument("Labels must be a map of at most 64 entries.")
    for k, v in labels.items():
        if not isinstance(k, str) or not LABEL_KEY.match(k) or not isinstance(v, str) or not LABEL_VALUE.match(v):
            raise InvalidArgument(f"Invalid label {k!r}: {v!r}.")
    return dict(labels)


def create_project(s: Session, project_id: str, *, name: str | None = None, number: str | None = None,
                   labels: Any = None, parent: Any = None) -> Project:
    validate_project_id(project_id)
    if s.get(Project, project_id) is not None:
        raise AlreadyExists("Requested entity already exists")
    if number is None:
        while True:
            number = str(secrets.randbelow(9 * 10**11) + 10**11)  # 12 digits, like Google's
            if s.scalar(select(Project).where(Project.project_number == number)) is None:
                break
    elif not PROJECT_NUMBER.match(number):
        raise InvalidArgument(f"Project number '{number}' is invalid: it must be a positive integer.")
    elif s.scalar(select(Project).where(Project.project_number == number)) is not None:
        raise AlreadyExists(f"Project number {number} is already in use.")
    if name is not None and (not isinstance(name, str) or len(name) > 30):
        raise InvalidArgument("Project name must be at most 30 characters.")
    row = Project(project_id=project_id, project_number=number, display_name=name or project_id,
                  lifecycle_state="ACTIVE", create_time=datetime.now(UTC), labels=_validate_labels(labels),
                  parent=parent if isinstance(parent, dict) else None, settings={}, etag=new_etag())
    s.add(row)
    return row


def find_project(s: Session, id_or_number: str, *, include_deleted: bool = True) -> Project | None:
    """A project by id or by number (Google accepts either in most names); one deleted more than
    30 days ago is gone (its id stays taken: `create_project` reads the row directly)."""
    row = s.get(Project, id_or_number) if not id_or_number.isdigit() else None
    if row is None and id_or_number.isdigit():
        row = s.scalar(select(Project).where(Project.project_number == id_or_number))
    if row is not None and row.lifecycle_state != "ACTIVE" and (not include_deleted or purged(row)):
        return None
    return row


def _settings_time(row: Project, key: str) -> datetime | None:
    raw = (row.settings or {}).get(key)
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def delete_time(row: Project) -> datetime | None:
    return _settings_time(row, "deleteTime")


def purged(row: Project, now: datetime | None = None) -> bool:
    """Whether a project pending deletion is past its 30 days of grace."""
    when = delete_time(row)
    return row.lifecycle_state == "DELETE_REQUESTED" and when is not None \
        and when + DELETION_GRACE <= (now or datetime.now(UTC))


def get_project(s: Session, id_or_number: str) -> Project:
    row = find_project(s, id_or_number)
    if row is None:
        raise NotFound(f"Project '{id_or_number}' not found or permission denied.")
    return row


def active_project(s: Session, id_or_number: str) -> Project:
    row = get_project(s, id_or_number)
    if row.lifecycle_state != "ACTIVE":
        raise FailedPrecondition(f"Project '{row.project_id}' is pending deletion.")
    return row


def delete_project(s: Session, project_id: str) -> Project:
    row = get_project(s, project_id)
    if row.lifecycle_state != "ACTIVE":
        raise FailedPrecondition("Project is already pending deletion.")
    row.lifecycle_state = "DELETE_REQUESTED"
    row.settings = {**(row.settings or {}), "deleteTime": datetime.now(UTC).isoformat()}
    row.etag = new_etag()
    return row


def undelete_project(s: Session, project_id: str) -> Project:
    row = get_project(s, project_id)
    if row.lifecycle_state != "DELETE_REQUESTED":
        raise FailedPrecondition("Project is not pending deletion.")
    row.lifecycle_state = "ACTIVE"
    row.settings = {k: v for k, v in (row.settings or {}).items() if k != "deleteTime"}
    row.etag = new_etag()
    return row


def _touched(row: Project) -> None:
    row.settings = {**(row.settings or {}), "updateTime": datetime.now(UTC).isoformat()}
    row.etag = new_etag()


def update_project(row: Project, *, name: Any = None, labels: Any = None, fields: set[str]) -> Project:
    """Change a project's mutable fields (display name, labels): `fields` says which to set, so
    an absent one is cleared, as v1 `update` and v3 `patch` with a mask do."""
    if row.lifecycle_state != "ACTIVE":
        raise FailedPrecondition(f"Project '{row.project_id}' is pending deletion.")
    if "name" in fields:
        if name is not None and (not isinstance(name, str) or len(name) > 30):
            raise InvalidArgument("Project name must be at most 30 characters.")
        row.display_name = name or ""
    if "labels" in fields:
        row.labels = _validate_labels(labels)
    _touched(row)
    return row


def parse_parent(value: Any) -> dict[str, str]:
    """`organizations/N` or `folders/N` (v3's parent) as v1's ResourceId {type, id}."""
    match = PARENT.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidArgument(f"Invalid parent: {str(value)[:100]!r}: expected organizations/N or folders/N.")
    return {"type": match.group(1)[:-1], "id": match.group(2)}


def move_project(row: Project, destination: Any) -> Project:
    parent = parse_parent(destination)
    if row.lifecycle_state != "ACTIVE":
        raise FailedPrecondition(f"Project '{row.project_id}' is pending deletion.")
    row.parent = parent
    _touched(row)
    return row


def list_projects(s: Session) -> list[Project]:
    """Every project but those past their 30 days of deletion grace (gone, as on Google)."""
    now = datetime.now(UTC)
    return [r for r in s.scalars(select(Project).order_by(Project.project_id)).all() if not purged(r, now)]


# -- organization policy (Resource Manager v1 projects.setOrgPolicy & co.) -----------------------
# https://cloud.google.com/resource-manager/reference/rest/v1/Policy: one policy per constraint,
# boolean or list, with an etag. Keyless enforces the boolean constraints it implements.
KEY_CREATION_CONSTRAINT = "constraints/iam.disableServiceAccountKeyCreation"
KEY_UPLOAD_CONSTRAINT = "constraints/iam.disableServiceAccountKeyUpload"
CONSTRAINT = re.compile(r"^constraints/[a-zA-Z0-9_.]{1,200}$")


def _org_policies(row: Project) -> dict[str, Any]:
    return dict((row.settings or {}).get("orgPolicies", {}))


def set_org_policy(row: Project, policy: Any) -> dict[str, Any]:
    if not isinstance(policy, dict):
        raise InvalidArgument("Invalid value at 'policy': expected an org Policy object.")
    unknown = set(policy) - {"constraint", "booleanPolicy", "listPolicy", "restoreDefault", "etag", "version",
                             "updateTime"}
    if unknown:
        raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at 'policy': "
                              "Cannot find field.")
    constraint = policy.get("constraint")
    if not isinstance(constraint, str) or not CONSTRAINT.match(constraint):
        raise InvalidArgument(f"Invalid constraint name: {constraint!r}.")
    kinds = [k for k in ("booleanPolicy", "listPolicy", "restoreDefault") if k in policy]
    if len(kinds) > 1:
        raise InvalidArgument("A policy sets at most one of booleanPolicy, listPolicy and restoreDefault.")
    boolean = policy.get("booleanPolicy")
    if boolean is not None and (not isinstance(boolean, dict) or not isinstance(boolean.get("enforced", False), bool)):
        raise InvalidArgument("Invalid value at 'policy.boolean_policy.enforced' (TYPE_BOOL).")
    policies = _org_policies(row)
    current = policies.get(constraint)
    if "etag" in policy and current is not None and not etags_match(policy["etag"], current["etag"]):
        raise Aborted("The etag of the org policy does not match its current etag.")
    stored = {k: v for k, v in policy.items() if k in ("constraint", "booleanPolicy", "listPolicy", "restoreDefault")}
    stored.update(version=1, etag=new_etag(), updateTime=rfc3339(datetime.now(UTC)))
    policies[constraint] = stored
    row.settings = {**(row.settings or {}), "orgPolicies": policies}
    return stored


def list_org_policies(row: Project) -> list[dict[str, Any]]:
    return [policy for _, policy in sorted(_org_policies(row).items())]


# The constraints Keyless enforces (projects.listAvailableOrgPolicyConstraints' answer).
AVAILABLE_CONSTRAINTS = [{
    "name": KEY_CREATION_CONSTRAINT,
    "displayName": "Disable service account key creation",
    "description": "This boolean constraint disables the creation of service account external keys "
                   "where this constraint is set to `True`.",
    "constraintDefault": "ALLOW",
    "booleanConstraint": {},
    "version": 1,
}, {
    "name": KEY_UPLOAD_CONSTRAINT,
    "displayName": "Disable Service Account Key Upload",
    "description": "This boolean constraint disables the feature that allows uploading public keys to service "
                   "accounts where this constraint is set to `True`.",
    "constraintDefault": "ALLOW",
    "booleanConstraint": {},
    "version": 1,
}]


def get_org_policy(row: Project, constraint: Any) -> dict[str, Any]:
    if not isinstance(constraint, str) or not CONSTRAINT.match(constraint):
        raise InvalidArgument(f"Invalid constraint name: {constraint!r}.")
    return _org_policies(row).get(constraint) or {"constraint": constraint}


def clear_org_policy(row: Project, constraint: Any) -> None:
    get_org_policy(row, constraint)
    policies = _org_policies(row)
    policies.pop(constraint, None)
    row.settings = {**(row.settings or {}), "orgPolicies": policies}


def constraint_enforced(row: Project, constraint: str) -> bool:
    """Whether a boolean constraint is enforced on the project (unset means not enforced)."""
    policy = _org_policies(row).get(constraint) or {}
    return bool((policy.get("booleanPolicy") or {}).get("enforced", False))


def project_v1_json(row: Project) -> dict[str, Any]:
    """cloudresourcemanager v1 Project."""
    body: dict[str, Any] = {
        "projectNumber": row.project_number,
        "projectId": row.project_id,
        "lifecycleState": row.lifecycle_state,
        "name": row.display_name,
        "createTime": rfc3339(row.create_time),
    }
    if row.labels:
        body["labels"] = row.labels
    if row.parent:
        body["parent"] = row.parent
    return body


def _parent_name(parent: dict[str, Any]) -> str:
    return f"{parent.get('type')}s/{parent.get('id')}"


def project_v3_json(row: Project) -> dict[str, Any]:
    """cloudresourcemanager v3 Project."""
    state = {"ACTIVE": "ACTIVE", "DELETE_REQUESTED": "DELETE_REQUESTED"}.get(row.lifecycle_state, "STATE_UNSPECIFIED")
    body: dict[str, Any] = {
        "name": f"projects/{row.project_number}",
        "projectId": row.project_id,
        "state": state,
        "displayName": row.display_name,
        "createTime": rfc3339(row.create_time),
        "updateTime": rfc3339(_settings_time(row, "updateTime") or row.create_time),
        "etag": row.etag,
    }
    if row.parent:
        body["parent"] = _parent_name(row.parent)
    deleted = delete_time(row)
    if deleted is not None and row.lifecycle_state == "DELETE_REQUESTED":
        body["deleteTime"] = rfc3339(deleted)
    if row.labels:
        body["labels"] = row.labels
    return body

