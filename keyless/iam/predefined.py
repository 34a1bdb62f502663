"""Google's predefined IAM roles, with their real permission lists (`predefined_roles.json`).

The catalogue holds every role Keyless is expected to see in a policy (basic roles, the IAM,
Resource Manager, Cloud Storage, Secret Manager, Pub/Sub, BigQuery, Logging, GKE, Cloud Run,
Compute, Cloud SQL, Artifact Registry, Service Usage and Cloud Build roles people commonly
grant, and roles/cloudasset.viewer for Policy Analyzer, issue #20), each with Google's title, description, launch stage and permission list as returned by
`roles.get` (`gcloud iam roles describe`) and as published in

- https://cloud.google.com/iam/docs/roles-permissions (the per-service pages, e.g.
  .../roles-permissions/iam, .../storage, .../secretmanager, .../resourcemanager),
- https://cloud.google.com/iam/docs/understanding-roles (basic roles),
- https://cloud.google.com/storage/docs/access-control/iam-roles,
- https://cloud.google.com/iam/docs/service-account-permissions (impersonation roles).

The lists were taken from a 2026-08 snapshot of those role definitions (the public
iann0036/iam-dataset crawl of the roles API was used to read them in bulk) and curated here.

Scope: the basic roles (roles/owner, roles/editor, roles/viewer) and the two cross-service
security roles (roles/iam.securityAdmin, roles/iam.securityReviewer) hold thousands of
permissions on Google; the catalogue keeps exactly Google's split for the services Keyless
serves (the JSON's `about.coveredServices`) and drops the rest. Facts from Google's data that
the server relies on:

- roles/owner does NOT include iam.serviceAccounts.getAccessToken / getOpenIdToken / signBlob /
  signJwt / implicitDelegation; impersonating a service account needs
  roles/iam.serviceAccountTokenCreator (or roles/iam.workloadIdentityUser for federated
  principals) even for owners. roles/editor includes iam.serviceAccounts.actAs but no
  token-minting permission either.
- roles/editor lacks resourcemanager.projects.setIamPolicy/delete/undelete,
  iam.serviceAccounts.setIamPolicy/undelete, iam.roles.create/update/delete/undelete, every
  workload identity pool/provider write, secretmanager.secrets.setIamPolicy and
  secretmanager.versions.access; roles/owner has them all.
- No basic role includes storage.objects.* nor storage.buckets.get/update/getIamPolicy/
  setIamPolicy: on Google those come from each bucket's default policy, which grants the
  legacy bucket/object roles to the convenience members projectOwner:/projectEditor:/
  projectViewer:. Only roles/resourcemanager.projectCreator has resourcemanager.projects.create.

Permission names: Google lists the workload identity federation (and workforce / OAuth client)
permissions with a service prefix, e.g. ``iam.googleapis.com/workloadIdentityPools.create``,
while the API's checks and its IAM_PERMISSION_DENIED errors name the short form
``iam.workloadIdentityPools.create``. ``role_to_json`` returns Google's listed names;
``PredefinedRole.included_permissions`` (what authorization tests against) and
``known_permissions()`` hold both spellings, and ``expand_permissions`` does the same for
custom roles.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

DATA_FILE = "predefined_roles.json"
PREDEFINED_ETAG = "AA=="  # what Google returns as the etag of every predefined role
_QUALIFIED_PREFIX = "iam.googleapis.com/"


@dataclass(frozen=True)
class PredefinedRole:
    """One predefined role.

    `listed_permissions` is Google's `includedPermissions`, sorted; `included_permissions` is
    the set authorization checks against: the listed names plus their short aliases.
    """

    name: str
    title: str
    description: str
    stage: str
    included_permissions: frozenset[str]
    listed_permissions: tuple[str, ...] = ()


def permission_aliases(permission: str) -> frozenset[str]:
    """Every spelling of `permission` (itself included).

    ``iam.googleapis.com/workloadIdentityPools.get`` <-> ``iam.workloadIdentityPools.get``.
    """
    if permission.startswith(_QUALIFIED_PREFIX):
        return frozenset({permission, "iam." + permission[len(_QUALIFIED_PREFIX):]})
    return frozenset({permission})


def expand_permissions(permissions: Iterable[str]) -> frozenset[str]:
    """`permissions` plus the short alias of every service-qualified name among them.

    Only qualified names gain an alias; a short name stays as given (use this on a role's
    permission list, then test the short name the API checks).
    """
    out: set[str] = set()
    for p in permissions:
        out |= permission_aliases(p)
    return frozenset(out)


def _load() -> dict[str, Any]:
    text = resources.files("keyless.iam").joinpath(DATA_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


@functools.cache
def predefined_roles() -> Mapping[str, PredefinedRole]:
    """All predefined roles by name ("roles/..."), in name order. Loaded once."""
    roles: dict[str, PredefinedRole] = {}
    for raw in _load()["roles"]:
        listed = tuple(sorted(raw.get("includedPermissions", ())))
        role = PredefinedRole(
            name=raw["name"],
            title=raw.get("title", ""),
            description=raw.get("description", ""),
            stage=raw.get("stage", "GA"),
            included_permissions=expand_permissions(listed),
            listed_permissions=listed,
        )
        if role.name in roles:
            raise ValueError(f"duplicate predefined role {role.name}")
        roles[role.name] = role
    return MappingProxyType(dict(sorted(roles.items())))


def get_predefined_role(name: str) -> PredefinedRole | None:
    """The predefined role called `name` (e.g. "roles/viewer"), or None."""
    return predefined_roles().get(name)


@functools.cache
def known_permissions() -> frozenset[str]:
    """Every permission the catalogue knows (both spellings of qualified names).

    Used to validate custom roles: Google rejects permissions it does not know.
    """
    return expand_permissions(_load()["permissions"]) | frozenset().union(
        *(r.included_permissions for r in predefined_roles().values())
    )


def role_to_json(role: PredefinedRole) -> dict[str, Any]:
    """Google's Role resource for a predefined role (as `roles.get` returns it)."""
    body: dict[str, Any] = {
        "name": role.name,
        "title": role.title,
        "description": role.description,
        "includedPermissions": list(role.listed_permissions or sorted(role.included_permissions)),
        "stage": role.stage,
        "etag": PREDEFINED_ETAG,
    }
    return {k: v for k, v in body.items() if v not in ("", [])}
