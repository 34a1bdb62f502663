"""IAM policies: stored per resource, read and written as Google's `Policy` message.

Follows https://cloud.google.com/iam/docs/reference/rest/v1/Policy and
https://cloud.google.com/iam/docs/policies#versions:
- `etag` gives optimistic concurrency: a write carrying a stale etag fails with 409 ABORTED;
  a write without one overwrites.
- A policy with any conditional binding is version 3; writing conditions with a requested
  version below 3 is refused; reading such a policy at version 1 returns each conditional
  binding's role suffixed `_withcond_<hash>` and no conditions, as Google does.
- setIamPolicy without `updateMask` writes only `bindings` and `etag`; `auditConfigs` change
  only when the mask names them.
- Bindings with the same role and condition are merged, members de-duplicated and sorted,
  bindings left without members dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.cel import CelCompileError, compile_expression
from keyless.errors import Aborted, InvalidArgument
from keyless.etag import etags_match, new_etag
from keyless.iam.members import parse_member
from keyless.store.models import IamPolicy

EMPTY_ETAG = "ACAB"  # what Google returns for a resource that never had a policy
AUDIT_LOG_TYPES = ("ADMIN_READ", "DATA_READ", "DATA_WRITE")
MAX_MEMBERS = 1500  # https://cloud.google.com/iam/quotas: principals per allow policy
CONCURRENT_CHANGE = ("There were concurrent policy changes. Please retry the whole "
                     "read-modify-write with exponential backoff.")

RoleCheck = Callable[[str], bool]
MemberCheck = Callable[[str], None]


def empty_policy() -> dict[str, Any]:
    return {"version": 1, "etag": EMPTY_ETAG}


def _condition_key(condition: dict[str, Any] | None) -> str:
    return json.dumps(condition or {}, sort_keys=True)


def policy_json(row: IamPolicy | None, requested_version: int = 1) -> dict[str, Any]:
    """Render a stored policy at the version the caller asked for."""
    if row is None:
        return empty_policy()
    has_conditions = any(b.get("condition") for b in row.bindings)
    bindings: list[dict[str, Any]] = []
    for b in row.bindings:
        if b.get("condition") and requested_version < 3:
            digest = hashlib.sha1(_condition_key(b["condition"]).encode()).hexdigest()[:20]
            bindings.append({"role": f"{b['role']}_withcond_{digest}", "members": list(b["members"])})
        else:
            bindings.append(dict(b))
    body: dict[str, Any] = {"version": 3 if has_conditions and requested_version >= 3 else 1}
    if bindings:
        body["bindings"] = bindings
    if row.audit_configs:
        body["auditConfigs"] = row.audit_configs
    body["etag"] = row.etag
    return body


def _normalise_condition(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"Invalid value at '{where}' (type.googleapis.com/google.type.Expr)")
    unknown = set(raw) - {"expression", "title", "description", "location"}
    if unknown:
        raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" "
                              f"at '{where}': Cannot find field.")
    expression = raw.get("expression")
    title = raw.get("title")
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidArgument("Condition expression must not be empty.")
    if not isinstance(title, str) or not title.strip():
        raise InvalidArgument("Condition title must not be empty.")
    if len(title) > 100:
        raise InvalidArgument("Condition title must be at most 100 characters.")
    description = raw.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 256):
        raise InvalidArgument("Condition description must be a string of at most 256 characters.")
    try:
        compile_expression(expression)
    except CelCompileError as exc:
        raise InvalidArgument(f"Condition expression is invalid: {exc}") from exc
    out = {"expression": expression, "title": title}
    if description:
        out["description"] = description
    return out


def normalise_bindings(raw: Any, role_exists: RoleCheck, check_member: MemberCheck) -> list[dict[str, Any]]:
    """Validate and canonicalise `bindings`; raise InvalidArgument with Google's wording."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidArgument("Invalid value at 'policy.bindings': expected a list of bindings.")
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    total_members = 0
    for i, b in enumerate(raw):
        where = f"policy.bindings[{i}]"
        if not isinstance(b, dict):
            raise InvalidArgument(f"Invalid value at '{where}': expected a Binding object.")
        unknown = set(b) - {"role", "members", "condition"}
        if unknown:
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" "
                                  f"at '{where}': Cannot find field.")
        role = b.get("role")
        if not isinstance(role, str) or not role:
            raise InvalidArgument(f"Field '{where}.role' is required.")
        if not role_exists(role):
            raise InvalidArgument(f"Role ({role}) does not exist in the resource's hierarchy.")
        members = b.get("members") or []
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise InvalidArgument(f"Invalid value at '{where}.members': expected a list of strings.")
        canonical = []
        for m in members:
            member = parse_member(m)
            check_member(member.value)
            canonical.append(member.value)
        condition = b.get("condition")
        cond = _normalise_condition(condition, f"{where}.condition") if condition else None
        key = (role, _condition_key(cond))
        entry = merged.setdefault(key, {"role": role, "members": set()} | ({"condition": cond} if cond else {}))
        entry["members"].update(canonical)
    out = []
    for entry in merged.values():
        if entry["members"]:
            entry["members"] = sorted(entry["members"])
            total_members += len(entry["members"])
            out.append(entry)
    if total_members > MAX_MEMBERS:
        raise InvalidArgument(f"The number of members in the policy ({total_members}) is larger than "
                              f"the maximum allowed size {MAX_MEMBERS}.")
    out.sort(key=lambda e: (e["role"], _condition_key(e.get("condition"))))
    return out


def normalise_audit_configs(raw: Any, check_member: MemberCheck) -> list[dict[str, Any]]:
    """Validate `auditConfigs` (https://cloud.google.com/logging/docs/audit/configure-data-access)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidArgument("Invalid value at 'policy.audit_configs': expected a list.")
    by_service: dict[str, dict[str, set[str]]] = {}
    for i, cfg in enumerate(raw):
        if not isinstance(cfg, dict) or not isinstance(cfg.get("service"), str) or not cfg["service"]:
            raise InvalidArgument(f"Invalid value at 'policy.audit_configs[{i}]': a service is required.")
        unknown = set(cfg) - {"service", "auditLogConfigs"}
        if unknown:
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" "
                                  f"at 'policy.audit_configs[{i}]': Cannot find field.")
        logs = by_service.setdefault(cfg["service"], {})
        for j, log in enumerate(cfg.get("auditLogConfigs") or []):
            log_type = log.get("logType") if isinstance(log, dict) else None
            if log_type not in AUDIT_LOG_TYPES:
                raise InvalidArgument(
                    f"Invalid value at 'policy.audit_configs[{i}].audit_log_configs[{j}].log_type' "
                    f"(type.googleapis.com/google.iam.v1.AuditLogConfig.LogType), \"{log_type}\"")
            exempted = log.get("exemptedMembers") or []
            if not isinstance(exempted, list):
                raise InvalidArgument("exemptedMembers must be a list of members.")
            members = logs.setdefault(log_type, set())
            for m in exempted:
                member = parse_member(m)
                check_member(member.value)
                members.add(member.value)
    out = []
    for service in sorted(by_service):
        configs = []
        for log_type in AUDIT_LOG_TYPES:
            if log_type in by_service[service]:
                log_config: dict[str, Any] = {"logType": log_type}
                if by_service[service][log_type]:
                    log_config["exemptedMembers"] = sorted(by_service[service][log_type])
                configs.append(log_config)
        out.append({"service": service, "auditLogConfigs": configs})
    return out


def set_policy(s: Session, resource: str, policy: Any, update_mask: str | None,
               role_exists: RoleCheck, check_member: MemberCheck) -> IamPolicy:
    """Apply setIamPolicy to `resource` inside the caller's write transaction."""
    if not isinstance(policy, dict):
        raise InvalidArgument("Invalid value at 'policy': expected a Policy object.")
    unknown = set(policy) - {"version", "bindings", "auditConfigs", "etag"}
    if unknown:
        raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{sorted(unknown)[0]}\" "
                              "at 'policy': Cannot find field.")
    mask = {p.strip() for p in (update_mask or "bindings,etag").split(",") if p.strip()}
    for path in mask:
        if path not in ("bindings", "etag", "auditConfigs", "audit_configs", "version"):
            raise InvalidArgument(f"Invalid update mask path: {path}")
    version = policy.get("version", 1)
    if not isinstance(version, int) or version not in (0, 1, 3):
        raise InvalidArgument(f"Invalid policy version {version!r}: must be 1 or 3.")
    row = s.get(IamPolicy, resource)
    current_etag = row.etag if row else EMPTY_ETAG
    given_etag = policy.get("etag")
    if given_etag is not None and not etags_match(given_etag, current_etag):
        raise Aborted(CONCURRENT_CHANGE)
    bindings = (normalise_bindings(policy.get("bindings"), role_exists, check_member)
                if "bindings" in mask else (row.bindings if row else []))
    has_conditions = any(b.get("condition") for b in bindings)
    if has_conditions and version < 3 and "bindings" in mask:
        raise InvalidArgument("Policies with conditional role bindings must specify version 3.")
    if row is not None and version < 3 and "bindings" in mask and any(b.get("condition") for b in row.bindings):
        raise InvalidArgument("The policy contains conditional role bindings: it must be written "
                              "with version 3 (read it with requestedPolicyVersion 3 first).")
    audit = (normalise_audit_configs(policy.get("auditConfigs"), check_member)
             if mask & {"auditConfigs", "audit_configs"} else (row.audit_configs if row else []))
    if row is None:
        row = IamPolicy(resource=resource, bindings=[], audit_configs=[], etag=EMPTY_ETAG, version=1,
                        update_time=datetime.now(UTC))
        s.add(row)
    row.bindings = bindings
    row.audit_configs = audit
    row.version = 3 if has_conditions else 1
    row.etag = new_etag()
    row.update_time = datetime.now(UTC)
    return row


AUDIT_DATA_TYPE = "type.googleapis.com/google.iam.v1.logging.AuditData"


def audit_data(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, Any]:
    """AuditLog.serviceData of a setIamPolicy entry, as Google writes it
    (google.iam.v1.logging.AuditData, https://cloud.google.com/iam/docs/audit-logging/examples-iam):
    `policyDelta.bindingDeltas`, one BindingDelta (action ADD or REMOVE, role, member, condition)
    for each member a binding gained or lost, so a reader sees what changed without diffing policies."""

    def grants(bindings: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
        out: dict[tuple[str, str, str], dict[str, Any]] = {}
        for b in bindings:
            condition = b.get("condition") or None
            for member in b.get("members", []):
                out[(b["role"], member, _condition_key(condition))] = {
                    "role": b["role"], "member": member, **({"condition": condition} if condition else {})}
        return out

    old, new = grants(before), grants(after)
    deltas = [{"action": "REMOVE", **old[k]} for k in sorted(old.keys() - new.keys())]
    deltas += [{"action": "ADD", **new[k]} for k in sorted(new.keys() - old.keys())]
    return {"@type": AUDIT_DATA_TYPE, "policyDelta": {"bindingDeltas": deltas} if deltas else {}}


def add_binding(s: Session, resource: str, role: str, member: str,
                role_exists: RoleCheck, check_member: MemberCheck) -> IamPolicy:
    """Grant `role` to `member` unconditionally (used for creators and the bootstrap owner)."""
    row = s.get(IamPolicy, resource)
    bindings = list(row.bindings) if row else []
    bindings.append({"role": role, "members": [member]})
    policy = {"bindings": bindings, "version": 3}
    return set_policy(s, resource, policy, None, role_exists, check_member)


def rename_member(s: Session, old: str, new: str) -> int:
    """Replace `old` by `new` in every stored policy (bindings and audit exemptions).

    Google does this when a principal is deleted (`serviceAccount:x` becomes
    `deleted:serviceAccount:x?uid=N`) and undoes it on undelete. Deletions are rare, so a
    scan of the policies is acceptable; returns how many policies changed.
    """
    changed = 0
    for row in s.scalars(select(IamPolicy)).all():
        touched = False
        bindings = []
        for b in row.bindings:
            if old in b["members"]:
                b = {**b, "members": sorted({new if m == old else m for m in b["members"]})}
                touched = True
            bindings.append(b)
        audit = []
        for cfg in row.audit_configs or []:
            logs = []
            for log in cfg.get("auditLogConfigs", []):
                if old in log.get("exemptedMembers", []):
                    log = {**log, "exemptedMembers": sorted({new if m == old else m for m in log["exemptedMembers"]})}
                    touched = True
                logs.append(log)
            audit.append({**cfg, "auditLogConfigs": logs})
        if touched:
            row.bindings, row.audit_configs = bindings, audit
            row.etag = new_etag()
            row.update_time = datetime.now(UTC)
            changed += 1
    return changed


def get_policy_row(s: Session, resource: str) -> IamPolicy | None:
    return s.get(IamPolicy, resource)


def parse_requested_version(options: Any) -> int:
    """`options.requestedPolicyVersion` of getIamPolicy (0, 1 or 3)."""
    if options is None:
        return 1
    if not isinstance(options, dict):
        raise InvalidArgument("Invalid value at 'options': expected GetPolicyOptions.")
    raw = options.get("requestedPolicyVersion", 1)
    try:
        version = int(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"Invalid value at 'options.requested_policy_version' (TYPE_INT32), {raw!r}") from exc
    if version not in (0, 1, 3):
        raise InvalidArgument(f"Invalid requested policy version {version}: must be 0, 1 or 3.")
    return version
