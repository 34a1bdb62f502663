"""Scopes and asset names: which of Keyless's policies a Cloud Asset request covers, and how Cloud
Asset Inventory names the resource each is attached to
(https://cloud.google.com/asset-inventory/docs/resource-name-format,
https://cloud.google.com/asset-inventory/docs/supported-asset-types).

A scope is `projects/P` (id or number) or `organizations/ORG`. Keyless's root policy plays the
organization (keyless.projects), so an organization scope holds the root's policy, named
`//cloudresourcemanager.googleapis.com/organizations/ORG`, and the policies of the projects whose
`parent` is that organization. A project scope holds its project's policies and those of the
resources in it (service accounts, buckets and their managed folders, secrets, Pub/Sub topics,
subscriptions, snapshots and schemas, workload identity pools: issue #20) only: as on Google,
policies above the scope are not analyzed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from keyless.doctor import targets
from keyless.errors import InvalidArgument
from keyless.projects import ROOT, find_project, project_chain
from keyless.store.models import Project

CRM = "cloudresourcemanager.googleapis.com"
PROJECT_TYPE = f"{CRM}/Project"
ORGANIZATION_TYPE = f"{CRM}/Organization"
_SCOPE = re.compile(r"^(projects|organizations)/([a-z0-9-]{1,30})$")
_BUCKET = re.compile(r"^projects/_/buckets/([^/]{1,222})$")


@dataclass(frozen=True)
class Scope:
    """What a request covers, and the policy chain its permission is checked on."""

    name: str  # as given
    chain: list[str]
    project_id: str | None = None  # projects/P
    project_number: str | None = None
    organization: str | None = None  # organizations/ORG: the id
    exists: bool = True  # False: an unknown project (the caller is told only "denied")


@dataclass(frozen=True)
class Asset:
    """The resource a stored policy is attached to, as Cloud Asset Inventory names it."""

    policy_resource: str  # Keyless's key of the policy (keyless.store.models.IamPolicy)
    full_name: str
    asset_type: str
    project_id: str | None = None  # None for the organization (the root)
    project_number: str | None = None
    organization: str | None = None  # "organizations/ORG" when the project's parent is one


def parse_scope(s: Any, scope: str) -> Scope:
    """`projects/P` or `organizations/ORG`; folders are not modelled (INVALID_ARGUMENT)."""
    m = _SCOPE.match(scope or "")
    if m is None:
        raise InvalidArgument(f"Invalid scope {scope[:200]!r}: expected projects/PROJECT_ID, projects/PROJECT_NUMBER "
                              "or organizations/ORGANIZATION_NUMBER.")
    kind, value = m.groups()
    if kind == "organizations":
        if not value.isdigit():
            raise InvalidArgument(f"Invalid scope {scope!r}: an organization is named by its number.")
        return Scope(scope, [ROOT], organization=value)
    row = find_project(s, value, include_deleted=False)
    if row is None:
        return Scope(scope, [f"projects/{value}", ROOT], exists=False)
    return Scope(scope, project_chain(row.project_id), project_id=row.project_id, project_number=row.project_number)


def holds(scope: Scope, asset: Asset) -> bool:
    if scope.organization is not None:
        return asset.project_id is None or asset.organization == f"organizations/{scope.organization}"
    return asset.project_id is not None and asset.project_id == scope.project_id


def project_index(s: Any) -> dict[str, Project]:
    """Active projects by id and by number."""
    rows = s.scalars(select(Project).where(Project.lifecycle_state == "ACTIVE")).all()
    return {**{r.project_id: r for r in rows}, **{r.project_number: r for r in rows}}


def _organization(row: Project) -> str | None:
    parent = row.parent or {}
    if isinstance(parent, dict) and parent.get("type") == "organization" and parent.get("id"):
        return f"organizations/{parent['id']}"
    return None


def asset_of(s: Any, resource: str, projects: dict[str, Project], organization: str | None) -> Asset | None:
    """The asset a stored policy is attached to; None for policies of resources that are gone
    or of a kind Cloud Asset Inventory does not search. `organization` names the root. What the
    resource is, and which project holds it, is the doctor's (keyless.doctor.targets): one model
    of the hierarchy for the analysis, the search and explain."""
    if resource == ROOT:
        if organization is None:
            return None
        return Asset(ROOT, f"//{CRM}/organizations/{organization}", ORGANIZATION_TYPE,
                     organization=f"organizations/{organization}")
    try:
        target = targets.resolve(s, resource)
    except InvalidArgument:
        return None
    project = projects.get(target.project_id) if target.exists and target.project_id else None
    if project is None or not target.context.type:
        return None
    return Asset(resource, full_name(resource, target.context.service), target.context.type, project.project_id,
                 project.project_number, _organization(project))


def full_name(resource: str, service: str) -> str:
    """Cloud Asset Inventory's name of the resource whose policy is stored under `resource`
    (https://cloud.google.com/asset-inventory/docs/asset-names): Keyless keeps Pub/Sub's and Secret
    Manager's policies under their full names already; a bucket is `//storage.googleapis.com/BUCKET`;
    the rest are their relative names under their service (a project by id, a service account by
    unique id, a pool by project number, a managed folder under `projects/_/buckets/B`)."""
    if resource.startswith("//"):
        return resource
    if (m := _BUCKET.match(resource)) is not None:
        return f"//storage.googleapis.com/{m.group(1)}"
    return f"//{service}/{resource}"


def policy_resource(full_name: str) -> str:
    """A full resource name as Cloud Asset Inventory gives it, as the doctor's analysis takes it
    (keyless.doctor.access.resource_chain): `//storage.googleapis.com/BUCKET` is
    `projects/_/buckets/BUCKET`, an organization is the root."""
    if not isinstance(full_name, str) or not full_name or len(full_name) > 2048:
        raise InvalidArgument("analysisQuery.resourceSelector.fullResourceName must be a full resource name.")
    if full_name.startswith(f"//{CRM}/organizations/"):
        return ROOT
    bucket = full_name.removeprefix("//storage.googleapis.com/")
    if bucket != full_name and "/" not in bucket:
        return f"projects/_/buckets/{bucket}"
    return full_name
