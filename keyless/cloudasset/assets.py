"""Scopes and asset names: which of Keyless's policies a Cloud Asset request covers, and how Cloud
Asset Inventory names the resource each is attached to
(https://cloud.google.com/asset-inventory/docs/resource-name-format,
https://cloud.google.com/asset-inventory/docs/supported-asset-types).

A scope is `projects/P` (id or number) or `organizations/ORG`. Keyless's root policy plays the
organization (keyless.projects), so an organization scope holds the root's policy, named
`//cloudresourcemanager.googleapis.com/organizations/ORG`, and the policies of the projects whose
`parent` is that organization. A project scope holds its project's policies only: as on Google,
policies above the scope are not analyzed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from keyless.errors import InvalidArgument
from keyless.projects import ROOT, find_project, project_chain
from keyless.storage import buckets
from keyless.store.models import Project

CRM = "cloudresourcemanager.googleapis.com"
PROJECT_TYPE = f"{CRM}/Project"
ORGANIZATION_TYPE = f"{CRM}/Organization"
_SCOPE = re.compile(r"^(projects|organizations)/([a-z0-9-]{1,30})$")
_BUCKET = re.compile(r"^projects/_/buckets/([^/]{1,222})$")
_ACCOUNT = re.compile(r"^projects/([^/]{1,30})/serviceAccounts/([^/]{1,256})$")
_SECRET = re.compile(r"^//secretmanager\.googleapis\.com/projects/([0-9]{1,20})(?:/locations/[a-z0-9-]{1,40})?/secrets/([^/]{1,255})$")
_POOL = re.compile(r"^(?://iam\.googleapis\.com/)?(projects/([^/]{1,30})/locations/[^/]+/workloadIdentityPools/.+)$")
_PROJECT = re.compile(r"^projects/([^/]{1,30})$")


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
    or of a kind Cloud Asset Inventory does not search. `organization` names the root."""
    if resource == ROOT:
        if organization is None:
            return None
        return Asset(ROOT, f"//{CRM}/organizations/{organization}", ORGANIZATION_TYPE,
                     organization=f"organizations/{organization}")
    project: Project | None
    if (m := _PROJECT.match(resource)) is not None:
        project = projects.get(m.group(1))
        full, kind = (f"//{CRM}/projects/{project.project_id}", PROJECT_TYPE) if project else ("", "")
    elif (m := _BUCKET.match(resource)) is not None:
        bucket = buckets.find_bucket(s, m.group(1))
        project = projects.get(bucket.project_id) if bucket is not None else None
        full, kind = f"//storage.googleapis.com/{m.group(1)}", "storage.googleapis.com/Bucket"
    elif (m := _ACCOUNT.match(resource)) is not None:
        project = projects.get(m.group(1))
        full, kind = f"//iam.googleapis.com/{resource}", "iam.googleapis.com/ServiceAccount"
    elif (m := _SECRET.match(resource)) is not None:
        project = projects.get(m.group(1))
        full, kind = resource, "secretmanager.googleapis.com/Secret"
    elif (m := _POOL.match(resource)) is not None:
        project = projects.get(m.group(2))
        kind = "iam.googleapis.com/WorkloadIdentityPool" + ("Provider" if "/providers/" in m.group(1) else "")
        full = f"//iam.googleapis.com/{m.group(1)}"
    else:
        return None
    if project is None:
        return None
    return Asset(resource, full, kind, project.project_id, project.project_number, _organization(project))


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
