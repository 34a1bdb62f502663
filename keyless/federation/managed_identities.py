"""Managed workload identities: a TRUST_DOMAIN pool's namespaces, their managed identities, and the
attestation rules saying which Google Cloud workloads may receive an identity (IAM v1
projects.locations.workloadIdentityPools.namespaces.*, .managedIdentities.*, and the pools' and
managed identities' add/list/remove/setAttestationRules).

Rules from the discovery document (iam v1, revision 20261023) and
https://cloud.google.com/iam/docs/create-managed-workload-identities:
- namespaces and managed identities live only in TRUST_DOMAIN pools ("FEDERATION_ONLY mode pools
  ... you cannot create any resources within the pool besides providers"); their ids are 2-63
  characters `[a-z0-9-]`, start and end with a letter or digit, and the prefix `gcp-` is reserved;
  descriptions at most 256 characters;
- deletion is soft for 30 days (state DELETED, `expireTime`), undone by `undelete`, and the id
  cannot be reused meanwhile: the pools' rules (keyless.federation.pools);
- an attestation rule is one `googleCloudResource`, at most 50 per resource. A managed identity's
  rules name Compute Engine workloads in the three forms Google documents
  (`//compute.googleapis.com/projects/NUMBER/uid/zones/ZONE/instances/ID`,
  `.../type/Instance/attached_service_account.email/EMAIL`, `.../attached_service_account.uid/UID`);
  a pool's rules (gcloud's example: `//run.googleapis.com/projects/123/type/Service/*`) name a
  workload of any Google Cloud service in project NUMBER. `listAttestationRules`' filter
  `container_ids(projects/N, ...)` keeps the rules of those projects.

Google documents no answer for a rule added twice or removed while absent; Keyless refuses both
(ALREADY_EXISTS, NOT_FOUND), and a set of rules holding one rule twice (INVALID_ARGUMENT), so
a policy never silently holds less or more than the caller meant.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from keyless.federation.pools import TRUST_DOMAIN, expired, soft_delete, undelete
from keyless.store.models import (
    WorkloadIdentityPool,
    WorkloadIdentityPoolManagedIdentity,
    WorkloadIdentityPoolNamespace,
)

ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$")
MAX_RULES = 50
MAX_RULE_LENGTH = 512  # an email is at most 254 characters; the longest documented form stays well below
MAX_FILTER_LENGTH = 2048
_RULE = re.compile(r"^//([a-z][a-z0-9-]{0,62})\.googleapis\.com/projects/([0-9]{1,20})/([A-Za-z0-9._@%+*/-]+)$")
_COMPUTE_FORMS = (
    re.compile(r"^uid/zones/[a-z0-9-]{1,63}/instances/[0-9]{1,20}$"),
    re.compile(r"^type/Instance/attached_service_account\.email/[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}$"),
    re.compile(r"^type/Instance/attached_service_account\.uid/[0-9]{1,30}$"),
)
_CONTAINER_IDS = re.compile(r"^\s*container_ids\(([^()]*)\)\s*$")
_CONTAINER = re.compile(r"^projects/[0-9]{1,20}$")


def _check_id(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not ID.match(value) or value.startswith("gcp-"):
        raise InvalidArgument(
            f"Invalid {kind} id \"{str(value)[:80]}\": it must be 2 to 63 lowercase letters, digits or hyphens, "
            "start and end with a letter or digit, and must not start with \"gcp-\"."
        )
    return value


def _check_fields(body: dict[str, Any]) -> None:
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 256:
        raise InvalidArgument("description must be a string of at most 256 characters.")
    if "disabled" in body and not isinstance(body["disabled"], bool):
        raise InvalidArgument(f"Invalid value at 'disabled' (TYPE_BOOL), {str(body['disabled'])[:50]!r}")


class _Soft(Protocol):
    state: str
    expire_time: datetime | None
    description: str
    disabled: bool


def _update(row: _Soft, kind: str, body: dict[str, Any], mask: list[str]) -> None:
    if row.state != "ACTIVE":
        raise FailedPrecondition(f"The {kind} is deleted: undelete it before updating it.")
    _check_fields(body)
    for f in mask:
        if f == "description":
            row.description = body.get("description", "")
        elif f == "disabled":
            row.disabled = bool(body.get("disabled", False))
        else:
            raise InvalidArgument(f"Invalid update mask path: {f[:100]}")


def _json(row: _Soft, name: str) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "state": row.state}
    if row.description:
        body["description"] = row.description
    if row.disabled:
        body["disabled"] = True
    if row.expire_time:
        body["expireTime"] = rfc3339(row.expire_time)
    return body


# -- namespaces ---------------------------------------------------------------------------------


def _trust_domain(pool: WorkloadIdentityPool, what: str) -> None:
    if pool.state != "ACTIVE":
        raise FailedPrecondition(f"The pool is deleted: {what} cannot be changed in it.")
    if pool.mode != TRUST_DOMAIN:
        raise FailedPrecondition(f"The pool's mode is {pool.mode or 'FEDERATION_ONLY'}: {what} exist only in "
                                 "pools of mode TRUST_DOMAIN.")


def create_namespace(s: Session, pool: WorkloadIdentityPool, namespace_id: Any,
                     body: dict[str, Any]) -> WorkloadIdentityPoolNamespace:
    _check_id("namespace", namespace_id)
    _check_fields(body)
    _trust_domain(pool, "namespaces")
    name = f"{pool.name}/namespaces/{namespace_id}"
    existing = s.get(WorkloadIdentityPoolNamespace, name)
    if existing is not None:
        if not expired(existing.expire_time):
            raise AlreadyExists("Requested entity already exists")
        for child in _identities(s, name):  # purged with their namespace
            s.delete(child)
        s.delete(existing)
        s.flush()
    row = WorkloadIdentityPoolNamespace(name=name, pool_name=pool.name, namespace_id=namespace_id,
                                        description=body.get("description", ""),
                                        disabled=bool(body.get("disabled", False)), state="ACTIVE")
    s.add(row)
    return row


def get_namespace(s: Session, name: str) -> WorkloadIdentityPoolNamespace:
    row = s.get(WorkloadIdentityPoolNamespace, name)
    if row is None or expired(row.expire_time):
        raise NotFound("Requested entity was not found.")
    return row


def list_namespaces(s: Session, pool: WorkloadIdentityPool, show_deleted: bool) -> list[WorkloadIdentityPoolNamespace]:
    rows = s.scalars(select(WorkloadIdentityPoolNamespace).where(WorkloadIdentityPoolNamespace.pool_name == pool.name)
                     .order_by(WorkloadIdentityPoolNamespace.name)).all()
    return [r for r in rows if not expired(r.expire_time) and (show_deleted or r.state == "ACTIVE")]


def update_namespace(row: WorkloadIdentityPoolNamespace, body: dict[str, Any], mask: list[str]) -> None:
    _update(row, "namespace", body, mask)


def delete_namespace(row: WorkloadIdentityPoolNamespace) -> None:
    soft_delete(row, "namespace")


def undelete_namespace(s: Session, row: WorkloadIdentityPoolNamespace) -> None:
    undelete(row, "namespace", s.get(WorkloadIdentityPool, row.pool_name), "pool")


def namespace_json(row: WorkloadIdentityPoolNamespace) -> dict[str, Any]:
    return _json(row, row.name)


# -- managed identities -------------------------------------------------------------------------


def _identities(s: Session, namespace_name: str) -> list[WorkloadIdentityPoolManagedIdentity]:
    return list(s.scalars(select(WorkloadIdentityPoolManagedIdentity)
                          .where(WorkloadIdentityPoolManagedIdentity.namespace_name == namespace_name)
                          .order_by(WorkloadIdentityPoolManagedIdentity.name)).all())


def create_managed_identity(s: Session, pool: WorkloadIdentityPool, namespace: WorkloadIdentityPoolNamespace,
                            identity_id: Any, body: dict[str, Any]) -> WorkloadIdentityPoolManagedIdentity:
    _check_id("managed identity", identity_id)
    _check_fields(body)
    _trust_domain(pool, "managed identities")
    if namespace.state != "ACTIVE":
        raise FailedPrecondition("The namespace is deleted: managed identities cannot be created in it.")
    name = f"{namespace.name}/managedIdentities/{identity_id}"
    existing = s.get(WorkloadIdentityPoolManagedIdentity, name)
    if existing is not None:
        if not expired(existing.expire_time):
            raise AlreadyExists("Requested entity already exists")
        s.delete(existing)
        s.flush()
    row = WorkloadIdentityPoolManagedIdentity(name=name, namespace_name=namespace.name, managed_identity_id=identity_id,
                                              description=body.get("description", ""),
                                              disabled=bool(body.get("disabled", False)), state="ACTIVE",
                                              attestation_rules=[])
    s.add(row)
    return row


def get_managed_identity(s: Session, name: str) -> WorkloadIdentityPoolManagedIdentity:
    row = s.get(WorkloadIdentityPoolManagedIdentity, name)
    if row is None or expired(row.expire_time):
        raise NotFound("Requested entity was not found.")
    return row


def list_managed_identities(s: Session, namespace: WorkloadIdentityPoolNamespace,
                            show_deleted: bool) -> list[WorkloadIdentityPoolManagedIdentity]:
    return [r for r in _identities(s, namespace.name)
            if not expired(r.expire_time) and (show_deleted or r.state == "ACTIVE")]


def update_managed_identity(row: WorkloadIdentityPoolManagedIdentity, body: dict[str, Any], mask: list[str]) -> None:
    _update(row, "managed identity", body, mask)


def delete_managed_identity(row: WorkloadIdentityPoolManagedIdentity) -> None:
    soft_delete(row, "managed identity")


def undelete_managed_identity(s: Session, row: WorkloadIdentityPoolManagedIdentity) -> None:
    undelete(row, "managed identity", s.get(WorkloadIdentityPoolNamespace, row.namespace_name), "namespace")


def managed_identity_json(row: WorkloadIdentityPoolManagedIdentity) -> dict[str, Any]:
    return _json(row, row.name)


# -- attestation rules --------------------------------------------------------------------------


def check_rule(rule: Any, *, compute_only: bool) -> str:
    """The rule's `googleCloudResource`, once it names a workload in a form Google documents."""
    if not isinstance(rule, dict) or set(rule) - {"googleCloudResource"}:
        raise InvalidArgument("An attestation rule is an object with one field, googleCloudResource.")
    resource = rule.get("googleCloudResource")
    if not isinstance(resource, str) or not resource:
        raise InvalidArgument("attestation_rule.google_cloud_resource is required.")
    if len(resource) > MAX_RULE_LENGTH:
        raise InvalidArgument(f"attestation_rule.google_cloud_resource is longer than {MAX_RULE_LENGTH} characters.")
    match = _RULE.match(resource)
    service, tail = (match.group(1), match.group(3)) if match else ("", "")
    if match is None or "//" in tail or tail.endswith("/") or any(part in (".", "..") for part in tail.split("/")) \
            or (service == "compute" or compute_only) and not any(f.match(tail) for f in _COMPUTE_FORMS):
        raise InvalidArgument(
            f"Invalid attestation_rule.google_cloud_resource \"{resource[:200]}\": expected "
            "//compute.googleapis.com/projects/PROJECT_NUMBER/uid/zones/ZONE/instances/INSTANCE_ID, "
            ".../type/Instance/attached_service_account.email/EMAIL or "
            ".../type/Instance/attached_service_account.uid/UID"
            + ("" if compute_only else ", or //SERVICE.googleapis.com/projects/PROJECT_NUMBER/..."))
    return resource


class _RuleHolder(Protocol):
    attestation_rules: Any


def _holder_rules(holder: _RuleHolder) -> list[str]:
    return list(holder.attestation_rules or [])


def rules_writable(s: Session, pool: WorkloadIdentityPool,
                   identity: WorkloadIdentityPoolManagedIdentity | None = None) -> None:
    """A pool's or managed identity's rules change only while it, its namespace and its pool are
    active, in a TRUST_DOMAIN pool."""
    _trust_domain(pool, "attestation rules")
    if identity is None:
        return
    namespace = s.get(WorkloadIdentityPoolNamespace, identity.namespace_name)
    if namespace is None or namespace.state != "ACTIVE":
        raise FailedPrecondition("The namespace is deleted: undelete it before changing its identities' "
                                 "attestation rules.")
    if identity.state != "ACTIVE":
        raise FailedPrecondition("The managed identity is deleted: undelete it before changing its attestation rules.")


def add_rule(holder: _RuleHolder, rule: Any, *, compute_only: bool) -> None:
    resource = check_rule(rule, compute_only=compute_only)
    rules = _holder_rules(holder)
    if resource in rules:
        raise AlreadyExists(f"The attestation rule {resource[:200]} already exists.")
    if len(rules) >= MAX_RULES:
        raise FailedPrecondition(f"At most {MAX_RULES} attestation rules can be set: remove one first.")
    holder.attestation_rules = [*rules, resource]


def remove_rule(holder: _RuleHolder, rule: Any, *, compute_only: bool) -> None:
    resource = check_rule(rule, compute_only=compute_only)
    rules = _holder_rules(holder)
    if resource not in rules:
        raise NotFound(f"The attestation rule {resource[:200]} was not found.")
    holder.attestation_rules = [r for r in rules if r != resource]


def set_rules(holder: _RuleHolder, rules: Any, *, compute_only: bool) -> None:
    if rules is None:
        rules = []
    if not isinstance(rules, list):
        raise InvalidArgument("attestationRules must be a list of attestation rules.")
    if len(rules) > MAX_RULES:
        raise InvalidArgument(f"At most {MAX_RULES} attestation rules can be set; the request has {len(rules)}.")
    resources = [check_rule(r, compute_only=compute_only) for r in rules]
    if len(set(resources)) != len(resources):
        raise InvalidArgument("The attestation rules hold the same rule more than once.")
    holder.attestation_rules = resources


def list_rules(holder: _RuleHolder, filter_text: str | None) -> list[dict[str, str]]:
    """The rules, those of the filter's `container_ids(projects/N, ...)` only when given."""
    rules = _holder_rules(holder)
    if filter_text:
        if len(filter_text) > MAX_FILTER_LENGTH:
            raise InvalidArgument(f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
        match = _CONTAINER_IDS.match(filter_text)
        containers = [c.strip() for c in match.group(1).split(",")] if match else []
        if not containers or not all(_CONTAINER.match(c) for c in containers):
            raise InvalidArgument(f"Invalid filter \"{filter_text[:200]}\": expected "
                                  "container_ids(projects/PROJECT_NUMBER, ...).")
        wanted = {c.removeprefix("projects/") for c in containers}
        rules = [r for r in rules if (m := _RULE.match(r)) is not None and m.group(2) in wanted]
    return [{"googleCloudResource": r} for r in rules]
