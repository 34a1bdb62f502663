"""Credential Access Boundaries: downscoped access tokens for Cloud Storage (issue #19).

https://cloud.google.com/iam/docs/downscoping-short-lived-credentials: an access token is exchanged
at STS (RFC 8693, `subject_token_type` access_token) with `options={"accessBoundary":
{"accessBoundaryRules": [...]}}`, as google.auth.downscoped sends it. Each rule names a bucket
(`availableResource` = `//storage.googleapis.com/projects/_/buckets/B`), the permissions it leaves
(`availablePermissions`, each `inRole:roles/...`, a predefined role) and optionally a CEL
`availabilityCondition` over `resource.name`, `resource.type` and
`api.getAttribute('storage.googleapis.com/objectListPrefix', '')`. A call with the downscoped token
is allowed only if IAM allows it to the token's principal AND some rule's bucket, roles and condition
allow it. Limits from STS's discovery document: at most 10 rules, the accessBoundary at most 2048
characters, an expression at most 2048. Only Cloud Storage honours such tokens (other APIs refuse
them), and only predefined roles are accepted (Google also takes organizations' custom roles).

The boundary travels inside the token (keyless.tokens.access) as `[[bucket, [roles], expression], ...]`;
compiled boundaries are remembered by that claim, so a token's conditions compile once.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from keyless.cel import CelCompileError, CelError, Program, compile_expression
from keyless.iam.predefined import get_predefined_role

MAX_RULES = 10
MAX_BOUNDARY_CHARS = 2048  # "The size of the parameter value should not exceed 2048 characters."
MAX_EXPRESSION_CHARS = 2048
MAX_OPTIONS_CHARS = 8 * 1024  # decoded JSON: the boundary rides in the token (access.MAX_TOKEN_LENGTH, 16 KiB)
LIST_PREFIX = "storage.googleapis.com/objectListPrefix"
RESOURCE = re.compile(r"^//storage\.googleapis\.com/projects/_/buckets/([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])$")
IN_ROLE = "inRole:"
CACHE_LIMIT = 10_000


class BoundaryError(ValueError):
    """An access boundary STS refuses (invalid_request, with this message)."""


@dataclass(frozen=True)
class BoundaryRule:
    bucket: str
    roles: tuple[str, ...]
    expression: str  # "" when the rule has no condition
    permissions: frozenset[str]  # every permission of `roles`
    condition: Program | None


@dataclass(frozen=True)
class AccessBoundary:
    rules: tuple[BoundaryRule, ...]

    def claim(self) -> list[list[Any]]:
        """The compact form carried in the token."""
        return [[r.bucket, list(r.roles), r.expression] for r in self.rules]

    def allows(self, permission: str, bucket: str, resource_name: str, resource_type: str,
               list_prefix: str = "") -> bool:
        """Whether some rule leaves `permission` on `resource_name` (in `bucket`) available."""
        activation: dict[str, Any] | None = None
        for rule in self.rules:
            if rule.bucket != bucket or permission not in rule.permissions:
                continue
            if rule.condition is None:
                return True
            if activation is None:
                activation = {"resource": {"name": resource_name, "type": resource_type,
                                           "service": "storage.googleapis.com"},
                              "api": {LIST_PREFIX: list_prefix}}
            try:
                if rule.condition.evaluate(activation) is True:
                    return True
            except CelError:
                continue  # a condition that cannot be evaluated leaves nothing available
        return False


def parse_options(raw: Any) -> AccessBoundary:
    """The boundary in STS's `options`: a JSON object, or its URL-encoded JSON text (google-auth
    quotes it before form-encoding the request)."""
    options = raw
    if isinstance(raw, str):
        too_long = BoundaryError(f"The options parameter is too long (at most {MAX_OPTIONS_CHARS} characters of JSON).")
        if len(raw) > 3 * MAX_OPTIONS_CHARS:  # each character quoted is at most three
            raise too_long
        text = raw if raw.lstrip().startswith("{") else unquote(raw)
        if len(text) > MAX_OPTIONS_CHARS:
            raise too_long
        try:
            options = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise BoundaryError("The options parameter is not a valid JSON object.") from exc
    elif len(_dumps(options)) > MAX_OPTIONS_CHARS:  # a JSON request body's object
        raise BoundaryError(f"The options parameter is too long (at most {MAX_OPTIONS_CHARS} characters of JSON).")
    if not isinstance(options, dict):
        raise BoundaryError("The options parameter is not a valid JSON object.")
    boundary = options.get("accessBoundary")
    if not isinstance(boundary, dict):
        raise BoundaryError("The options parameter must contain an accessBoundary.")
    rules = boundary.get("accessBoundaryRules")
    if not isinstance(rules, list) or not rules:
        raise BoundaryError("The access boundary must contain at least one access boundary rule.")
    if len(rules) > MAX_RULES:
        raise BoundaryError(f"The access boundary can contain at most {MAX_RULES} access boundary rules.")
    parsed = AccessBoundary(tuple(_rule(r) for r in rules))
    if len(_dumps(boundary)) > MAX_BOUNDARY_CHARS:
        raise BoundaryError(f"The accessBoundary is too long: at most {MAX_BOUNDARY_CHARS} characters.")
    return parsed


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        return "x" * (MAX_OPTIONS_CHARS + 1)


def _rule(raw: Any) -> BoundaryRule:
    if not isinstance(raw, dict):
        raise BoundaryError("Each access boundary rule must be a JSON object.")
    resource = raw.get("availableResource")
    m = RESOURCE.match(resource) if isinstance(resource, str) else None
    if m is None:
        raise BoundaryError(f"Invalid availableResource {str(resource)[:300]!r}: Credential Access Boundaries "
                            "support Cloud Storage buckets only, //storage.googleapis.com/projects/_/buckets/BUCKET.")
    permissions = raw.get("availablePermissions")
    if not isinstance(permissions, list) or not permissions or len(permissions) > 100:
        raise BoundaryError("Each access boundary rule must list availablePermissions.")
    roles = []
    for p in permissions:
        if not isinstance(p, str) or not p.startswith(IN_ROLE):
            raise BoundaryError(f"Invalid availablePermissions value {str(p)[:300]!r}: "
                                "each must be an IAM role with the prefix inRole:.")
        roles.append(p[len(IN_ROLE):])
    condition = raw.get("availabilityCondition")
    expression = ""
    if condition is not None:
        if not isinstance(condition, dict) or not isinstance(condition.get("expression"), str):
            raise BoundaryError("An availabilityCondition must have an expression.")
        for name in ("title", "description"):
            if not isinstance(condition.get(name, ""), str):
                raise BoundaryError(f"Invalid availabilityCondition.{name}: expected a string.")
        expression = condition["expression"]
        if len(expression) > MAX_EXPRESSION_CHARS:
            raise BoundaryError(f"The availabilityCondition expression is too long: at most {MAX_EXPRESSION_CHARS} "
                                "characters.")
    return _compiled(m.group(1), tuple(roles), expression)


def _compiled(bucket: str, roles: tuple[str, ...], expression: str) -> BoundaryRule:
    allowed: set[str] = set()
    for role in roles:
        found = get_predefined_role(role) if role.startswith("roles/") else None
        if found is None:
            raise BoundaryError(f"Invalid availablePermissions value 'inRole:{role[:200]}': "
                                "the role is not a predefined role.")
        allowed |= found.included_permissions
    program = None
    if expression:
        try:
            program = compile_expression(expression, variables=("resource", "api", "request"))
        except CelCompileError as exc:
            raise BoundaryError(f"Invalid availabilityCondition expression: {exc}") from exc
    return BoundaryRule(bucket, roles, expression, frozenset(allowed), program)


_cache: dict[str, AccessBoundary] = {}
_lock = threading.Lock()


def from_claim(claim: Any) -> AccessBoundary:
    """The boundary a verified token carries (compiled once per distinct boundary)."""
    key = json.dumps(claim, separators=(",", ":"))
    found = _cache.get(key)
    if found is None:
        found = AccessBoundary(tuple(_compiled(str(b), tuple(map(str, roles)), str(e)) for b, roles, e in claim))
        with _lock:
            if len(_cache) >= CACHE_LIMIT:
                _cache.clear()
            _cache[key] = found
    return found
