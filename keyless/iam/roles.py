"""Roles: Google's predefined catalogue plus project custom roles, resolved to permission sets.

Custom roles follow https://cloud.google.com/iam/docs/creating-custom-roles: role IDs of
3-64 letters, digits, `_` and `.`; soft delete with undelete; a deleted role grants nothing
but its bindings stay in policies; permissions must exist (we check against the catalogue).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from keyless.etag import etags_match, new_etag
from keyless.iam.predefined import (
    expand_permissions,
    get_predefined_role,
    known_permissions,
    predefined_roles,
    role_to_json,
)
from keyless.store.db import Database, RevisionCache
from keyless.store.models import CustomRole

ROLE_ID = re.compile(r"^[a-zA-Z0-9_.]{3,64}$")
CUSTOM_ROLE_NAME = re.compile(r"^projects/([^/]+)/roles/([^/]+)$")
ORGANIZATION = re.compile(r"^organizations/[1-9][0-9]{0,19}$")
STAGES = ("ALPHA", "BETA", "GA", "DEPRECATED", "DISABLED", "EAP")
MAX_PERMISSIONS = 3000
MAX_TITLE = 100
MAX_DESCRIPTION = 300


class RoleCatalogue:
    """Resolves any role name to its permissions; custom roles are cached per store revision."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._custom = RevisionCache(db, self._load_custom)

    def _load_custom(self) -> dict[str, frozenset[str]]:
        with self._db.read_each() as s:
            rows = s.scalars(select(CustomRole).where(CustomRole.deleted.is_(False))).all()
            # Google spells some permissions two ways in roles
            # (iam.googleapis.com/workloadIdentityPools.x and iam.workloadIdentityPools.x)
            return {r.name: expand_permissions(r.permissions) for r in rows if r.stage != "DISABLED"}

    def permissions(self, role: str) -> frozenset[str]:
        """The permissions `role` grants now (empty for unknown or deleted roles)."""
        predefined = get_predefined_role(role)
        if predefined is not None:
            return predefined.included_permissions
        return self._custom.get().get(role, frozenset())

    def exists(self, session: Session, role: str) -> bool:
        """Whether `role` names a predefined role or a (possibly deleted) custom role."""
        if get_predefined_role(role) is not None:
            return True
        return session.get(CustomRole, role) is not None


# -- custom role CRUD (the domain behind projects.roles.*) -----------------------------------


def _validate_fields(title: str | None, description: str | None, stage: str | None,
                     permissions: Iterable[str] | None) -> list[str] | None:
    if title is not None and len(title) > MAX_TITLE:
        raise InvalidArgument(f"The title of a role must be at most {MAX_TITLE} characters.")
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidArgument(f"The description of a role must be at most {MAX_DESCRIPTION} characters.")
    if stage is not None and stage not in STAGES:
        raise InvalidArgument(f"Invalid value at 'role.stage' ({stage!r}): expected one of {', '.join(STAGES)}.")
    if permissions is None:
        return None
    perms = list(permissions)
    if len(perms) > MAX_PERMISSIONS:
        raise InvalidArgument(f"A custom role can have at most {MAX_PERMISSIONS} permissions.")
    known = known_permissions()
    for perm in perms:
        if not isinstance(perm, str) or perm not in known:
            raise InvalidArgument(f"Permission {perm} is not valid.")
    return sorted(set(perms))


def custom_role_json(row: CustomRole) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": row.name,
        "title": row.title,
        "description": row.description,
        "includedPermissions": list(row.permissions),
        "stage": row.stage,
        "etag": row.etag,
    }
    if row.deleted:
        body["deleted"] = True
    return {k: v for k, v in body.items() if v not in ("", [])}


def create_custom_role(s: Session, parent: str, role_id: str, role: dict[str, Any]) -> CustomRole:
    """A custom role of `parent`: `projects/P` or `organizations/N` (an organization's roles are
    grantable on every project, https://cloud.google.com/iam/docs/creating-custom-roles)."""
    if not isinstance(role_id, str) or not ROLE_ID.match(role_id):
        raise InvalidArgument(
            f"The role ID \"{role_id}\" is invalid. It must be 3 to 64 characters long and contain "
            "only letters, digits, underscores and periods."
        )
    name = f"{parent}/roles/{role_id}"
    if s.get(CustomRole, name) is not None:
        raise AlreadyExists(f"A role named {role_id} in {parent} already exists.")
    # an organization's roles have no project: project_id stays empty and they are listed by name
    project_id = parent.removeprefix("projects/") if parent.startswith("projects/") else ""
    stage = role.get("stage") or "ALPHA"
    perms = _validate_fields(role.get("title"), role.get("description"), stage,
                             role.get("includedPermissions") or [])
    row = CustomRole(name=name, project_id=project_id, role_id=role_id, title=role.get("title") or "",
                     description=role.get("description") or "", stage=stage, permissions=perms or [],
                     deleted=False, etag=new_etag())
    s.add(row)
    return row


def get_custom_role(s: Session, name: str) -> CustomRole:
    row = s.get(CustomRole, name)
    if row is None:
        raise NotFound(f"The role named {name} was not found.")
    return row


UPDATABLE = {"title", "description", "includedPermissions", "stage"}


def update_custom_role(s: Session, name: str, role: dict[str, Any], update_mask: list[str] | None) -> CustomRole:
    row = get_custom_role(s, name)
    if row.deleted:
        raise FailedPrecondition(f"You can't update a deleted role: {name}.")
    if role.get("etag") and not etags_match(role["etag"], row.etag):
        raise InvalidArgument("The etag in the request does not match the current etag of the role. "
                              "Get the role again and retry.")
    # gcloud's `roles update --file` sends the whole Role and no mask: replace every field.
    fields = sorted(UPDATABLE) if update_mask is None else update_mask
    for f in fields:
        if f not in UPDATABLE:
            raise InvalidArgument(f"Invalid update mask path: {f}")
    perms = _validate_fields(role.get("title") if "title" in fields else None,
                             role.get("description") if "description" in fields else None,
                             role.get("stage") if "stage" in fields else None,
                             (role.get("includedPermissions") or []) if "includedPermissions" in fields else None)
    if "title" in fields:
        row.title = role.get("title") or ""
    if "description" in fields:
        row.description = role.get("description") or ""
    if "stage" in fields:
        row.stage = role.get("stage") or "ALPHA"
    if perms is not None:
        row.permissions = perms
    row.etag = new_etag()
    return row


def delete_custom_role(s: Session, name: str) -> CustomRole:
    row = get_custom_role(s, name)
    if row.deleted:
        raise FailedPrecondition(f"The role {name} is already deleted.")
    row.deleted = True
    row.delete_time = datetime.now(UTC)
    row.etag = new_etag()
    return row


def undelete_custom_role(s: Session, name: str) -> CustomRole:
    row = get_custom_role(s, name)
    if not row.deleted:
        raise FailedPrecondition(f"The role {name} is not deleted.")
    row.deleted = False
    row.delete_time = None
    row.etag = new_etag()
    return row


def list_custom_roles(s: Session, project_id: str, show_deleted: bool) -> list[CustomRole]:
    q = select(CustomRole).where(CustomRole.project_id == project_id).order_by(CustomRole.name)
    if not project_id:
        return []  # the organizations' roles have no project: list them with list_organization_roles
    if not show_deleted:
        q = q.where(CustomRole.deleted.is_(False))
    return list(s.scalars(q).all())


def list_organization_roles(s: Session, organization: str, show_deleted: bool) -> list[CustomRole]:
    """The custom roles of `organizations/N` (digits only: nothing in the prefix is a LIKE wildcard)."""
    assert ORGANIZATION.match(organization), organization
    q = select(CustomRole).where(CustomRole.project_id == "", CustomRole.name.like(f"{organization}/roles/%")) \
        .order_by(CustomRole.name)
    if not show_deleted:
        q = q.where(CustomRole.deleted.is_(False))
    return list(s.scalars(q).all())


def list_predefined_roles() -> list[dict[str, Any]]:
    return [role_to_json(r) for r in predefined_roles().values()]
