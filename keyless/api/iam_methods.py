"""google.iam.v1.IAMPolicy's three methods (getIamPolicy, setIamPolicy, testIamPermissions,
https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/setIamPolicy and the
same methods of every v1 API) written once: each API says how to find its resource and which
permission guards it; the wire shapes, validation and audit payloads are the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from keyless.api.http import Call, allowed_fields, object_field
from keyless.errors import InvalidArgument
from keyless.iam.evaluate import ResourceContext
from keyless.iam.policy import audit_data, get_policy_row, parse_requested_version, policy_json, set_policy

MAX_TESTED_PERMISSIONS = 100

# The policy's resource name, once the caller is authorized (raises NotFound/PermissionDenied).
Locate = Callable[[Session], str]
# For testIamPermissions: the resource's chain (itself, then its ancestors) and its context for
# IAM conditions, or None where it does not exist (the answer is then empty, as Google's is).
Chain = Callable[[Session], tuple[list[str], ResourceContext | None] | None]


def requested_options(call: Call) -> dict[str, Any] | None:
    """GetIamPolicyRequest.options, from the body (POST) or `?options.requestedPolicyVersion=` (GET)."""
    if call.body:
        allowed_fields(call.body, {"options"}, "")
        return call.body.get("options")
    version = call.arg("options.requestedPolicyVersion")
    return {"requestedPolicyVersion": version} if version is not None else None


def get_iam_policy(call: Call, locate: Locate) -> dict[str, Any]:
    version = parse_requested_version(requested_options(call))
    with call.read() as s:
        return policy_json(get_policy_row(s, locate(s)), version)


def set_iam_policy(call: Call, locate: Locate, member_kind: str) -> dict[str, Any]:
    """`member_kind` names the resource for the member checks' messages (project, serviceAccount…)."""
    allowed_fields(call.body, {"policy", "updateMask"}, "")
    policy = object_field(call.body, "policy", "")
    mask = call.body.get("updateMask")
    if mask is not None and not isinstance(mask, str):
        raise InvalidArgument("updateMask must be a comma-separated string of field paths.")
    if call.record is not None:
        call.record.request = {"@type": "type.googleapis.com/google.iam.v1.SetIamPolicyRequest", **call.body}
    with call.write() as s:
        resource = locate(s)
        before = list(old.bindings) if (old := get_policy_row(s, resource)) is not None else []
        stored = set_policy(s, resource, policy, mask, call.state.role_exists(s),
                            call.state.member_check(s, member_kind))
        result = policy_json(stored, 3)
        if call.record is not None:  # before the transaction ends: the entry is written with it
            call.record.response = {"@type": "type.googleapis.com/google.iam.v1.Policy", **result}
            call.record.service_data = audit_data(before, stored.bindings)
    return result


def requested_permissions(body: dict[str, Any]) -> list[str]:
    allowed_fields(body, {"permissions"}, "")
    perms = body.get("permissions") or []
    if (not isinstance(perms, list) or len(perms) > MAX_TESTED_PERMISSIONS
            or not all(isinstance(p, str) and 0 < len(p) < 200 for p in perms)):
        raise InvalidArgument(f"permissions must be a list of at most {MAX_TESTED_PERMISSIONS} permission names.")
    return perms


def test_iam_permissions(call: Call, chain_of: Chain) -> dict[str, Any]:
    """The subset of the requested permissions the caller holds; no permission is needed to ask."""
    perms = requested_permissions(call.body)
    with call.read() as s:
        found = chain_of(s)
    if found is None:
        return {}
    chain, context = found
    granted = [p for p in perms if call.state.authz.check(call.principal, p, chain, context).granted]
    return {"permissions": granted} if granted else {}
