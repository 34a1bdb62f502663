"""Allow-policy evaluation: does a principal hold a permission on a resource?

Follows https://cloud.google.com/iam/docs/policy-evaluation: the policies of the resource and
of every ancestor are unioned; a binding applies when one of the principal's member keys is
among its members, its role includes the permission, and its condition (if any) evaluates to
true. A condition that fails to evaluate does not grant.

Each policy is compiled once per store revision into an index member -> [(role, condition)],
so a check costs a few dictionary lookups however many bindings a policy has.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from keyless.cel import CelError, Program, compile_expression
from keyless.errors import PermissionDenied
from keyless.iam.principal import Principal
from keyless.iam.roles import RoleCatalogue
from keyless.store.db import Database, RevisionCache
from keyless.store.models import IamPolicy


@dataclass(frozen=True)
class Grant:
    role: str
    condition: dict[str, Any] | None
    program: Program | None


@dataclass
class PolicyIndex:
    by_member: dict[str, list[Grant]] = field(default_factory=dict)
    audit_configs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ResourceContext:
    """What IAM conditions may test: resource.name/type/service (and request.time)."""

    name: str  # the full resource name used for IAM conditions, e.g. projects/_/buckets/b
    type: str = ""
    service: str = ""


@dataclass(frozen=True)
class Candidate:
    """A binding naming the principal with a role that holds the permission."""

    resource: str  # the policy it is in (chain[0] or an ancestor)
    role: str
    member: str
    condition: dict[str, Any] | None
    holds: bool  # no condition, or the condition evaluated to true


@dataclass(frozen=True)
class Decision:
    granted: bool
    permission: str
    resource: str
    via: tuple[str, str, str] | None = None  # (policy resource, role, member) that granted


class Authorizer:
    """Checks permissions against the policies of a resource and its ancestors."""

    def __init__(self, db: Database, roles: RoleCatalogue) -> None:
        self._db = db
        self._roles = roles
        self._indexes: RevisionCache[dict[str, PolicyIndex]] = RevisionCache(db, dict)

    def _index(self, resource: str) -> PolicyIndex:
        indexes = self._indexes.get()
        index = indexes.get(resource)
        if index is None:
            with self._db.read_each() as s:  # one round trip on PostgreSQL
                row = s.get(IamPolicy, resource)
            index = self._compile(row)
            indexes[resource] = index
        return index

    @staticmethod
    def _compile(row: IamPolicy | None) -> PolicyIndex:
        index = PolicyIndex()
        if row is None:
            return index
        for b in row.bindings:
            cond = b.get("condition")
            program = None
            if cond:
                try:
                    program = compile_expression(cond["expression"])
                except CelError:
                    continue  # an uncompilable condition grants nothing
            grant = Grant(b["role"], cond, program)
            for m in b["members"]:
                index.by_member.setdefault(m, []).append(grant)
        index.audit_configs = list(row.audit_configs or [])
        return index

    def _prefetch(self, resources: Sequence[str]) -> None:
        """Compile the policies of `resources` not cached yet, read in one query (a cold cache
        costs one round trip for the whole chain, not one per node)."""
        indexes = self._indexes.get()
        missing = [r for r in resources if r not in indexes]
        if len(missing) < 2:
            return
        with self._db.read_each() as s:
            rows = {row.resource: row for row in s.scalars(select(IamPolicy).where(IamPolicy.resource.in_(missing)))}
        for r in missing:
            indexes[r] = self._compile(rows.get(r))

    def audit_configs(self, resources: Sequence[str]) -> list[dict[str, Any]]:
        self._prefetch(resources)
        out: list[dict[str, Any]] = []
        for r in resources:
            out.extend(self._index(r).audit_configs)
        return out

    def check(self, principal: Principal, permission: str, chain: Sequence[str],
              context: ResourceContext | None = None, now: datetime | None = None) -> Decision:
        """Evaluate `permission` for `principal` on chain[0], inheriting from chain[1:]."""
        activation: dict[str, Any] | None = None
        self._prefetch(chain)
        # The walk of _candidates, inlined: this is every request's hot path (a generator costs ~1 µs).
        for resource in chain:
            index = self._index(resource)
            if not index.by_member:
                continue
            for key in principal.member_keys:
                for grant in index.by_member.get(key, ()):
                    if permission not in self._roles.permissions(grant.role):
                        continue
                    if grant.program is not None:
                        if activation is None:
                            activation = _activation(context or ResourceContext(chain[0]), now)
                        if not _holds(grant.program, activation):
                            continue
                    return Decision(True, permission, chain[0], (resource, grant.role, key))
        return Decision(False, permission, chain[0])

    def candidates(self, principal: Principal, permission: str, chain: Sequence[str],
                   context: ResourceContext | None = None, now: datetime | None = None) -> list[Candidate]:
        """Every binding `check` weighs: member and role match, with its condition's outcome
        (what `keyless doctor explain` shows; `check` is granted iff one of them holds)."""
        activation = _activation(context or ResourceContext(chain[0]), now)
        return [Candidate(resource, grant.role, key, grant.condition,
                          grant.program is None or _holds(grant.program, activation))
                for resource, grant, key in self._candidates(principal, permission, chain)]

    def _candidates(self, principal: Principal, permission: str,
                    chain: Sequence[str]) -> Iterator[tuple[str, Grant, str]]:
        for resource in chain:
            index = self._index(resource)
            if not index.by_member:
                continue
            for key in principal.member_keys:
                for grant in index.by_member.get(key, ()):
                    if permission in self._roles.permissions(grant.role):
                        yield resource, grant, key

    def holds_role(self, principal: Principal, role: str, chain: Sequence[str]) -> bool:
        """Whether `principal` is bound to `role` without condition on chain[0] or an ancestor
        (what Cloud Storage's convenience members such as `projectOwner:P` stand for)."""
        for resource in chain:
            by_member = self._index(resource).by_member
            for key in principal.member_keys:
                if any(g.role == role and g.program is None for g in by_member.get(key, ())):
                    return True
        return False

    def require(self, principal: Principal, permission: str, chain: Sequence[str],
                display_resource: str | None = None, context: ResourceContext | None = None) -> Decision:
        """`check`, raising Google's 403 when the permission is missing."""
        decision = self.check(principal, permission, chain, context)
        if not decision.granted:
            raise permission_denied(permission, display_resource)
        return decision


def permission_denied(permission: str, resource: str | None) -> PermissionDenied:
    """Google's IAM_PERMISSION_DENIED error, with its ErrorInfo detail."""
    where = f"on resource '{resource}' " if resource else "on resource "
    return PermissionDenied(
        f"Permission '{permission}' denied {where}(or it may not exist).",
        details=[{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "IAM_PERMISSION_DENIED",
            "domain": "iam.googleapis.com",
            "metadata": {"permission": permission, **({"resource": resource} if resource else {})},
        }],
    )


def _holds(program: Program, activation: dict[str, Any]) -> bool:
    """A condition grants only when it evaluates to true; one that fails to evaluate does not."""
    try:
        return program.evaluate(activation) is True
    except CelError:
        return False


def _activation(context: ResourceContext, now: datetime | None) -> dict[str, Any]:
    return {
        "resource": {"name": context.name, "type": context.type, "service": context.service},
        "request": {"time": now or datetime.now(UTC)},
    }

