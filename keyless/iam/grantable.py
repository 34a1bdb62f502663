"""What a resource's allow policy may hold: the roles grantable on it (roles.queryGrantableRoles,
https://cloud.google.com/iam/docs/viewing-grantable-roles) and the services whose Data Access logs
its `auditConfigs` configure (iamPolicies.queryAuditableServices).

A role is grantable on a resource when one of its permissions applies to that kind of resource:
every role on a project, organization or folder (they contain everything), the roles that carry a
bucket's, managed folder's, secret's, service account's, pool's or Pub/Sub resource's permissions
on those. Resource names are resolved as the doctor resolves them (keyless.doctor.targets), so the
chain checked is the APIs' own; every kind it resolves is in the tables below (issue #20).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from keyless.doctor.targets import Target
from keyless.iam import roles as roles_domain
from keyless.iam.predefined import predefined_roles, role_to_json

# the permission prefixes that apply to each kind of resource (None: every permission does)
KIND_PERMISSIONS: dict[str, tuple[str, ...] | None] = {
    "project": None, "organization": None, "folder": None,
    "bucket": ("storage.",), "object": ("storage.objects.",),
    "secret": ("secretmanager.secrets.", "secretmanager.versions."),
    "secret version": ("secretmanager.versions.",),
    "service account": ("iam.serviceAccounts.", "iam.serviceAccountKeys."),
    "workload identity pool": ("iam.workloadIdentityPool", "iam.googleapis.com/workloadIdentityPool"),
    "managed folder": ("storage.managedFolders.", "storage.objects."),
    "topic": ("pubsub.topics.",), "subscription": ("pubsub.subscriptions.",),
    "snapshot": ("pubsub.snapshots.",), "schema": ("pubsub.schemas.",),
}

# the permission that lets a caller ask what a resource's policy may hold: reading that policy
GET_POLICY_PERMISSION = {
    "project": "resourcemanager.projects.getIamPolicy",
    "organization": "resourcemanager.organizations.getIamPolicy",
    "folder": "resourcemanager.folders.getIamPolicy",
    "bucket": "storage.buckets.getIamPolicy", "object": "storage.objects.getIamPolicy",
    "secret": "secretmanager.secrets.getIamPolicy", "secret version": "secretmanager.secrets.getIamPolicy",
    "service account": "iam.serviceAccounts.getIamPolicy",
    "workload identity pool": "iam.workloadIdentityPools.getIamPolicy",
    "managed folder": "storage.managedFolders.getIamPolicy",
    "topic": "pubsub.topics.getIamPolicy", "subscription": "pubsub.subscriptions.getIamPolicy",
    "snapshot": "pubsub.snapshots.getIamPolicy", "schema": "pubsub.schemas.getIamPolicy",
}

# Services whose Data Access entries Keyless writes as a policy's auditConfigs say (keyless.audit),
# by the kind of resource whose policy is asked about.
AUDITED_SERVICES = ("iam.googleapis.com", "secretmanager.googleapis.com", "storage.googleapis.com",
                    "sts.googleapis.com")
KIND_SERVICES: dict[str, tuple[str, ...]] = {
    "bucket": ("storage.googleapis.com",), "object": ("storage.googleapis.com",),
    "secret": ("secretmanager.googleapis.com",), "secret version": ("secretmanager.googleapis.com",),
    "service account": ("iam.googleapis.com",),
    "workload identity pool": ("iam.googleapis.com", "sts.googleapis.com"),
    "managed folder": ("storage.googleapis.com",),
    **{kind: ("pubsub.googleapis.com",) for kind in ("topic", "subscription", "snapshot", "schema")},
}
# what is below a pool has no policy of its own: the pool's governs it
for _part in ("workload identity pool provider", "workload identity pool namespace",
              "workload identity pool managed identity"):
    KIND_PERMISSIONS[_part] = KIND_PERMISSIONS["workload identity pool"]
    GET_POLICY_PERMISSION[_part] = GET_POLICY_PERMISSION["workload identity pool"]
    KIND_SERVICES[_part] = KIND_SERVICES["workload identity pool"]


def _applies(permissions: Iterable[str], prefixes: tuple[str, ...] | None) -> bool:
    return prefixes is None or any(p.startswith(prefixes) for p in permissions)


def grantable_roles(s: Session, target: Target, *, full: bool) -> list[dict[str, Any]]:
    """The predefined roles, then the target's project's live custom roles, grantable on `target`."""
    prefixes = KIND_PERMISSIONS[target.kind]
    out: list[dict[str, Any]] = []
    for role in predefined_roles().values():
        if _applies(role.included_permissions, prefixes):
            out.append(_view(role_to_json(role), full))
    if target.project_id:
        for row in roles_domain.list_custom_roles(s, target.project_id, show_deleted=False):
            if _applies(row.permissions, prefixes):
                out.append(_view(roles_domain.custom_role_json(row), full))
    return out


def _view(role: dict[str, Any], full: bool) -> dict[str, Any]:
    return role if full else {k: v for k, v in role.items() if k != "includedPermissions"}


def auditable_services(target: Target) -> list[str]:
    return list(KIND_SERVICES.get(target.kind, AUDITED_SERVICES))
