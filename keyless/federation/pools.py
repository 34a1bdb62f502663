"""Workload identity pools and providers (IAM v1 projects.locations.workloadIdentityPools).

Rules from https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools
and .providers: ids are 4-32 characters `[a-z0-9-]` and may not start with `gcp-`; display
names at most 32 characters, descriptions 256; deletion is soft for 30 days (state DELETED,
`expireTime`) and undone by `undelete`; resources are named by project *number*. A provider's
attribute mapping and condition are compiled as CEL when written, so a bad expression is
refused with the compiler's message.

A pool's `mode` is immutable (WorkloadIdentityPool.mode in the discovery document): FEDERATION_ONLY
pools (and pools of no mode, which "operate as if they are in federation-only mode") hold only
providers; TRUST_DOMAIN pools hold namespaces of managed workload identities and no providers
(keyless.federation.managed_identities); SYSTEM_TRUST_DOMAIN pools are "managed by Google Cloud
services", so a caller cannot create one.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import urlparse

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from keyless.federation.mapping import DEFAULT_AWS_ATTRIBUTE_MAPPING, compile_mapping
from keyless.store.models import (
    WorkloadIdentityPool,
    WorkloadIdentityPoolManagedIdentity,
    WorkloadIdentityPoolNamespace,
    WorkloadIdentityPoolProvider,
    WorkloadIdentityPoolProviderKey,
)

ID = re.compile(r"^[a-z0-9-]{4,32}$")
AWS_ACCOUNT = re.compile(r"^[0-9]{12}$")
SOFT_DELETE = timedelta(days=30)
MAX_AUDIENCES = 10
MODES = ("FEDERATION_ONLY", "TRUST_DOMAIN")  # a caller's choices; MODE_UNSPECIFIED is stored as None
TRUST_DOMAIN = "TRUST_DOMAIN"


def _check_id(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not ID.match(value) or value.startswith("gcp-"):
        raise InvalidArgument(
            f"Invalid {kind} id \"{value}\": it must be 4 to 32 lowercase letters, digits or hyphens "
            "and must not start with \"gcp-\"."
        )
    return value


def _check_text(body: dict[str, Any]) -> None:
    display = body.get("displayName", "")
    if not isinstance(display, str) or len(display) > 32:
        raise InvalidArgument("displayName must be a string of at most 32 characters.")
    description = body.get("description", "")
    if not isinstance(description, str) or len(description) > 256:
        raise InvalidArgument("description must be a string of at most 256 characters.")
    if "disabled" in body and not isinstance(body["disabled"], bool):
        raise InvalidArgument(f"Invalid value at 'disabled' (TYPE_BOOL), {body['disabled']!r}")


def _check_mode(value: Any) -> str | None:
    if value in (None, "", "MODE_UNSPECIFIED"):
        return None
    if value == "SYSTEM_TRUST_DOMAIN":
        raise InvalidArgument("Invalid value at 'workload_identity_pool.mode': SYSTEM_TRUST_DOMAIN pools are "
                              "managed by Google Cloud services and cannot be created.")
    if value not in MODES:
        raise InvalidArgument(f"Invalid value at 'workload_identity_pool.mode' "
                              f"(type.googleapis.com/google.iam.v1.WorkloadIdentityPool.Mode), {str(value)[:64]!r}")
    return str(value)


def pool_name(project_number: str, pool_id: str) -> str:
    return f"projects/{project_number}/locations/global/workloadIdentityPools/{pool_id}"


class SoftDeleted(Protocol):
    """A resource of the pool family that Google deletes softly: kept DELETED for 30 days
    (`expire_time`), then purged; undelete brings it back within them."""

    state: str
    expire_time: datetime | None


Soft = TypeVar("Soft", bound=SoftDeleted)


def soft_delete(row: Soft, kind: str) -> Soft:
    """DELETED, purged after SOFT_DELETE (pools, providers, their keys, namespaces, managed identities)."""
    if row.state != "ACTIVE":
        raise FailedPrecondition(f"The {kind} is already deleted.")
    row.state = "DELETED"
    row.expire_time = datetime.now(UTC) + SOFT_DELETE
    return row


def undelete(row: Soft, kind: str, parent: SoftDeleted | None = None, parent_kind: str = "") -> Soft:
    """ACTIVE again; a child only while its parent (`parent_kind`) is ACTIVE."""
    if row.state != "DELETED":
        raise FailedPrecondition(f"The {kind} is not deleted.")
    if parent_kind and (parent is None or parent.state != "ACTIVE"):
        raise FailedPrecondition(f"The {kind}'s {parent_kind} is deleted: undelete the {parent_kind} first.")
    row.state = "ACTIVE"
    row.expire_time = None
    return row


def expired(expire_time: datetime | None) -> bool:
    if expire_time is None:
        return False
    et = expire_time if expire_time.tzinfo else expire_time.replace(tzinfo=UTC)
    return et <= datetime.now(UTC)


# -- pools -------------------------------------------------------------------------------------


def create_pool(s: Session, project_number: str, pool_id: str, body: dict[str, Any]) -> WorkloadIdentityPool:
    _check_id("pool", pool_id)
    _check_text(body)
    mode = _check_mode(body.get("mode"))
    name = pool_name(project_number, pool_id)
    existing = s.get(WorkloadIdentityPool, name)
    if existing is not None:
        if not expired(existing.expire_time):
            raise AlreadyExists("Requested entity already exists")
        _purge_children(s, name)
        s.delete(existing)
        s.flush()
    row = WorkloadIdentityPool(name=name, project_number=project_number, pool_id=pool_id,
                               display_name=body.get("displayName", ""), description=body.get("description", ""),
                               state="ACTIVE", disabled=bool(body.get("disabled", False)),
                               session_duration=body.get("sessionDuration"), mode=mode)
    s.add(row)
    return row


def _purge_children(s: Session, name: str) -> None:
    """What a purged pool held goes with it: a pool created again under its id starts empty (a
    provider of the purged pool must not accept tokens into the new one)."""
    s.execute(delete(WorkloadIdentityPoolProviderKey)
              .where(WorkloadIdentityPoolProviderKey.name.startswith(name + "/providers/", autoescape=True)))
    s.execute(delete(WorkloadIdentityPoolProvider).where(WorkloadIdentityPoolProvider.pool_name == name))
    s.execute(delete(WorkloadIdentityPoolManagedIdentity)
              .where(WorkloadIdentityPoolManagedIdentity.name.startswith(name + "/namespaces/", autoescape=True)))
    s.execute(delete(WorkloadIdentityPoolNamespace).where(WorkloadIdentityPoolNamespace.pool_name == name))


def get_pool(s: Session, name: str) -> WorkloadIdentityPool:
    row = s.get(WorkloadIdentityPool, name)
    if row is None or expired(row.expire_time):
        raise NotFound("Requested entity was not found.")
    return row


def list_pools(s: Session, project_number: str, show_deleted: bool) -> list[WorkloadIdentityPool]:
    rows = s.scalars(select(WorkloadIdentityPool).where(WorkloadIdentityPool.project_number == project_number)
                     .order_by(WorkloadIdentityPool.name)).all()
    return [r for r in rows if not expired(r.expire_time) and (show_deleted or r.state == "ACTIVE")]


def update_pool(row: WorkloadIdentityPool, body: dict[str, Any], mask: list[str]) -> WorkloadIdentityPool:
    if row.state != "ACTIVE":
        raise FailedPrecondition("The pool is deleted: undelete it before updating it.")
    _check_text(body)
    for f in mask:
        if f == "displayName" or f == "display_name":
            row.display_name = body.get("displayName", "")
        elif f == "description":
            row.description = body.get("description", "")
        elif f == "disabled":
            row.disabled = bool(body.get("disabled", False))
        elif f in ("sessionDuration", "session_duration"):
            row.session_duration = body.get("sessionDuration")
        elif f == "mode":
            raise InvalidArgument("The pool's mode is immutable: it cannot be updated.")
        else:
            raise InvalidArgument(f"Invalid update mask path: {f}")
    return row


def delete_pool(row: WorkloadIdentityPool) -> WorkloadIdentityPool:
    return soft_delete(row, "pool")


def undelete_pool(row: WorkloadIdentityPool) -> WorkloadIdentityPool:
    return undelete(row, "pool")


def pool_json(row: WorkloadIdentityPool) -> dict[str, Any]:
    body: dict[str, Any] = {"name": row.name, "state": row.state}
    if row.display_name:
        body["displayName"] = row.display_name
    if row.description:
        body["description"] = row.description
    if row.disabled:
        body["disabled"] = True
    if row.session_duration:
        body["sessionDuration"] = row.session_duration
    if row.mode:
        body["mode"] = row.mode
    if row.expire_time:
        body["expireTime"] = rfc3339(row.expire_time)
    return body


# -- providers ---------------------------------------------------------------------------------


def _check_issuer(uri: Any, allow_insecure_loopback: bool) -> str:
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument("oidc.issuer_uri is required.")
    parsed = urlparse(uri)
    if parsed.scheme == "https" and parsed.hostname:
        return uri
    if parsed.scheme == "http" and allow_insecure_loopback and parsed.hostname:
        host = parsed.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback:
            return uri
    raise InvalidArgument(f"Invalid issuer uri \"{uri}\": the issuer uri must use the https scheme.")


def _check_jwks(text: Any) -> str:
    if not isinstance(text, str) or len(text) > 64 * 1024:
        raise InvalidArgument("oidc.jwks_json must be a JSON Web Key Set of at most 64 KiB.")
    try:
        jwks = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"oidc.jwks_json is not valid JSON: {exc}") from exc
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys or len(keys) > 8:
        raise InvalidArgument("oidc.jwks_json must contain between 1 and 8 keys.")
    for k in keys:
        if not isinstance(k, dict) or k.get("kty") not in ("RSA", "EC"):
            raise InvalidArgument("oidc.jwks_json keys must be RSA or EC public keys.")
    return text


def _normalise_oidc(oidc: Any, allow_insecure_loopback: bool) -> dict[str, Any]:
    if not isinstance(oidc, dict):
        raise InvalidArgument("Invalid value at 'oidc': expected an Oidc object.")
    unknown = set(oidc) - {"issuerUri", "allowedAudiences", "jwksJson"}
    if unknown:
        raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" at "
                              "'workload_identity_pool_provider.oidc': Cannot find field.")
    out: dict[str, Any] = {"issuerUri": _check_issuer(oidc.get("issuerUri"), allow_insecure_loopback)}
    audiences = oidc.get("allowedAudiences") or []
    if not isinstance(audiences, list) or len(audiences) > MAX_AUDIENCES or \
            not all(isinstance(a, str) and 0 < len(a) <= 256 for a in audiences):
        raise InvalidArgument(f"allowedAudiences must be a list of at most {MAX_AUDIENCES} non-empty strings.")
    if audiences:
        out["allowedAudiences"] = audiences
    if oidc.get("jwksJson"):
        out["jwksJson"] = _check_jwks(oidc["jwksJson"])
    return out


def _normalise_aws(aws: Any) -> dict[str, Any]:
    if not isinstance(aws, dict) or not isinstance(aws.get("accountId"), str) or \
            not AWS_ACCOUNT.match(aws["accountId"]):
        raise InvalidArgument("aws.account_id must be a 12-digit AWS account id.")
    if set(aws) - {"accountId"}:
        raise InvalidArgument("Invalid JSON payload received. Unknown name \"{}\" at "
                              "'workload_identity_pool_provider.aws': Cannot find field.".format(sorted(set(aws) - {"accountId"})[0]))
    return {"accountId": aws["accountId"]}


def _provider_kind(row: WorkloadIdentityPoolProvider) -> str:
    return "aws" if row.aws else "oidc"


def _apply_mapping(row: WorkloadIdentityPoolProvider, mapping: Any, condition: Any) -> None:
    kind = _provider_kind(row)
    if mapping is None or mapping == {}:
        mapping = dict(DEFAULT_AWS_ATTRIBUTE_MAPPING) if kind == "aws" else {}
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise InvalidArgument("attributeMapping must be a map of strings to CEL expressions.")
    if condition is not None and not isinstance(condition, str):
        raise InvalidArgument("attributeCondition must be a CEL expression string.")
    compile_mapping(mapping, condition or None, provider_type=kind)
    row.attribute_mapping = dict(mapping)
    row.attribute_condition = condition or None


def create_provider(s: Session, pool: WorkloadIdentityPool, provider_id: str, body: dict[str, Any],
                    *, allow_insecure_loopback: bool = False) -> WorkloadIdentityPoolProvider:
    _check_id("provider", provider_id)
    _check_text(body)
    if pool.state != "ACTIVE":
        raise FailedPrecondition("The pool is deleted: providers cannot be created in it.")
    if pool.mode == TRUST_DOMAIN:
        raise FailedPrecondition("Providers cannot be created in a TRUST_DOMAIN pool: it holds managed workload "
                                 "identities, in namespaces.")
    has_oidc, has_aws = body.get("oidc") is not None, body.get("aws") is not None
    if has_oidc == has_aws:
        raise InvalidArgument("Exactly one of oidc, aws (or saml) must be set on a provider.")
    name = f"{pool.name}/providers/{provider_id}"
    existing = s.get(WorkloadIdentityPoolProvider, name)
    if existing is not None:
        if not expired(existing.expire_time):
            raise AlreadyExists("Requested entity already exists")
        s.execute(delete(WorkloadIdentityPoolProviderKey).where(WorkloadIdentityPoolProviderKey.provider_name == name))
        s.delete(existing)
        s.flush()
    row = WorkloadIdentityPoolProvider(
        name=name, pool_name=pool.name, provider_id=provider_id, display_name=body.get("displayName", ""),
        description=body.get("description", ""), state="ACTIVE", disabled=bool(body.get("disabled", False)),
        oidc=_normalise_oidc(body["oidc"], allow_insecure_loopback) if has_oidc else None,
        aws=_normalise_aws(body["aws"]) if has_aws else None, version=1)
    _apply_mapping(row, body.get("attributeMapping"), body.get("attributeCondition"))
    s.add(row)
    return row


def get_provider(s: Session, name: str) -> WorkloadIdentityPoolProvider:
    row = s.get(WorkloadIdentityPoolProvider, name)
    if row is None or expired(row.expire_time):
        raise NotFound("Requested entity was not found.")
    return row


def list_providers(s: Session, pool: WorkloadIdentityPool, show_deleted: bool) -> list[WorkloadIdentityPoolProvider]:
    rows = s.scalars(select(WorkloadIdentityPoolProvider).where(WorkloadIdentityPoolProvider.pool_name == pool.name)
                     .order_by(WorkloadIdentityPoolProvider.name)).all()
    return [r for r in rows if not expired(r.expire_time) and (show_deleted or r.state == "ACTIVE")]


def update_provider(row: WorkloadIdentityPoolProvider, body: dict[str, Any], mask: list[str],
                    *, allow_insecure_loopback: bool = False) -> WorkloadIdentityPoolProvider:
    if row.state != "ACTIVE":
        raise FailedPrecondition("The provider is deleted: undelete it before updating it.")
    _check_text(body)
    mapping: Any = row.attribute_mapping
    condition: Any = row.attribute_condition
    for f in mask:
        if f in ("displayName", "display_name"):
            row.display_name = body.get("displayName", "")
        elif f == "description":
            row.description = body.get("description", "")
        elif f == "disabled":
            row.disabled = bool(body.get("disabled", False))
        elif f in ("attributeMapping", "attribute_mapping"):
            mapping = body.get("attributeMapping")
        elif f in ("attributeCondition", "attribute_condition"):
            condition = body.get("attributeCondition")
        elif f.startswith("oidc") and row.oidc is not None:
            merged = dict(row.oidc)
            sub = f.split(".", 1)[1] if "." in f else None
            src = body.get("oidc") or {}
            keys = [_camel(sub)] if sub else ["issuerUri", "allowedAudiences", "jwksJson"]
            for k in keys:
                if k in src:
                    merged[k] = src[k]
                else:
                    merged.pop(k, None)
            row.oidc = _normalise_oidc(merged, allow_insecure_loopback)
        elif f.startswith("aws") and row.aws is not None:
            row.aws = _normalise_aws(body.get("aws"))
        else:
            raise InvalidArgument(f"Invalid update mask path: {f}")
    _apply_mapping(row, mapping, condition)
    row.version += 1
    return row


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(p.title() for p in rest)


def delete_provider(row: WorkloadIdentityPoolProvider) -> WorkloadIdentityPoolProvider:
    return soft_delete(row, "provider")


def undelete_provider(s: Session, row: WorkloadIdentityPoolProvider) -> WorkloadIdentityPoolProvider:
    return undelete(row, "provider", s.get(WorkloadIdentityPool, row.pool_name), "pool")


def provider_json(row: WorkloadIdentityPoolProvider) -> dict[str, Any]:
    body: dict[str, Any] = {"name": row.name, "state": row.state}
    if row.display_name:
        body["displayName"] = row.display_name
    if row.description:
        body["description"] = row.description
    if row.disabled:
        body["disabled"] = True
    if row.attribute_mapping:
        body["attributeMapping"] = row.attribute_mapping
    if row.attribute_condition:
        body["attributeCondition"] = row.attribute_condition
    if row.oidc:
        body["oidc"] = row.oidc
    if row.aws:
        body["aws"] = row.aws
    if row.expire_time:
        body["expireTime"] = rfc3339(row.expire_time)
    return body
