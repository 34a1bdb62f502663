"""Who has access to what: every (resource, role, permissions) an identity reaches and how —
directly, through principal sets it belongs to, or by impersonating service accounts — and, for
a resource, every identity that reaches it. Google splits this between Policy Analyzer
(https://cloud.google.com/policy-intelligence/docs/analyze-iam-policies) and the Policy
Troubleshooter; Keyless holds all the policies, so one walk answers both.

Bindings are read from the `Setup` snapshot (keyless.doctor.model); member matching is the
server's own: a principal's member keys (keyless.iam.members), and Cloud Storage's convenience
members (`projectOwner:P` & co.) through keyless.storage.buckets. Conditional grants are
reported with their expression, never as unconditional.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from keyless.doctor import targets
from keyless.doctor.identities import principal_of
from keyless.doctor.model import AccountInfo, Binding, Setup
from keyless.errors import DeadlineExceeded, InvalidArgument, NotFound
from keyless.iam.members import (
    member_keys_for_gke_workload,
    member_keys_for_service_account,
)
from keyless.iam.principal import Principal
from keyless.iam.service_accounts import sa_chain
from keyless.projects import ROOT, project_chain
from keyless.storage import buckets
from keyless.store.models import K8sObject

IMPERSONATE = "iam.serviceAccounts.getAccessToken"
CREATE_KEY = "iam.serviceAccountKeys.create"  # a key file is the account too, unless keys are disabled
MAX_CHAIN = 8  # impersonation hops followed; Google's delegation chains are shorter


@dataclass(frozen=True)
class Hop:
    """One impersonation step: the account, and the condition of the grant that allows it."""

    account: str
    condition: str | None = None
    by: str = IMPERSONATE  # the permission that makes the hop: getAccessToken, or creating a key


@dataclass(frozen=True)
class Access:
    """`identity` holds `role` (so `permissions`) on `resource` and what is below it, by the
    binding of `member` there, after impersonating the accounts of `via` in order."""

    identity: str
    resource: str
    role: str
    member: str
    permissions: tuple[str, ...]
    condition: str | None = None
    via: tuple[Hop, ...] = ()

    def as_json(self, setup: Setup) -> dict[str, Any]:
        body: dict[str, Any] = {"identity": self.identity, "resource": setup.describe(self.resource),
                                "role": self.role, "member": self.member, "permissions": list(self.permissions)}
        if self.condition:
            body["condition"] = self.condition
        if self.via:
            body["via"] = [{"serviceAccount": h.account, "by": h.by,
                            **({"condition": h.condition} if h.condition else {})} for h in self.via]
        return body


@dataclass
class Analysis:
    query: dict[str, str]
    accesses: list[Access] = field(default_factory=list)

    def as_json(self, setup: Setup) -> dict[str, Any]:
        return {"query": self.query, "accesses": [a.as_json(setup) for a in self.accesses]}


# -- identities ------------------------------------------------------------------------------


def pod_principal(state: Any, setup: Setup, cluster: str, namespace: str, pod: str) -> Principal:
    """Who a pod is, as its node's metadata server decides (keyless.gke.metadata.pod_identity): on a
    GCE_METADATA node pool the node's service account; otherwise its KSA in the project pool (the
    impersonation of an annotated GSA then shows as a hop, through the KSA's workloadIdentityUser
    grant)."""
    from keyless.doctor.explain import find_cluster, node_of
    from keyless.gke.metadata import pod_identity

    with state.db.read() as s:
        row = find_cluster(s, cluster, None, None)
        found = s.scalars(select(K8sObject).where(K8sObject.cluster_id == row.id, K8sObject.kind == "Pod",
                                                  K8sObject.namespace == namespace, K8sObject.name == pod)).first()
        if found is None:
            raise NotFound(f"Pod {namespace}/{pod} not found in cluster {cluster}.")
        node, _ = node_of(s, row, found)
        identity = pod_identity(s, found, node) if node is not None else None
    if identity is not None and identity.mode == "GCE_METADATA":
        email = identity.node_service_account
        return Principal(member=f"serviceAccount:{email}", member_keys=member_keys_for_service_account(email),
                         email=email)
    ksa = (found.body.get("spec") or {}).get("serviceAccountName") or "default"
    project = setup.project_by_id(row.project_id)
    member = f"serviceAccount:{row.project_id}.svc.id.goog[{namespace}/{ksa}]"
    keys = member_keys_for_gke_workload(row.project_id, project.number if project else "", namespace, ksa,
                                        f"projects/{row.project_id}/locations/{row.location}/clusters/{row.name}")
    return Principal(member=member, member_keys=keys, subject=member)


# -- resources -------------------------------------------------------------------------------


def resource_chain(state: Any, resource: str) -> list[str]:
    """The policy resources that govern `resource` (itself first, then its ancestors), as the APIs
    evaluate them (keyless.doctor.targets), plus gcloud's `gs://BUCKET` and the root."""
    name = resource.strip()
    if name in (ROOT, "root"):
        return [ROOT]
    if name.startswith("gs://"):
        name = f"projects/_/buckets/{name.removeprefix('gs://').rstrip('/')}"
    with state.db.read() as s:
        target = targets.resolve(s, name)
    if not target.exists:
        raise NotFound(f"The {target.kind} {resource[:200]} does not exist.")
    return target.chain


# -- the walk --------------------------------------------------------------------------------


class Analyzer:
    """`deadline` (time.monotonic()) bounds a walk: past it, DEADLINE_EXCEEDED (the console asks
    while a reader waits; the CLI has none)."""

    def __init__(self, state: Any, setup: Setup, deadline: float | None = None) -> None:
        self.state, self.setup, self.deadline = state, setup, deadline
        self._by_resource: dict[str, list[Binding]] = {}
        for b in setup.bindings:
            self._by_resource.setdefault(b.resource, []).append(b)

    def _in_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("The access analysis took too long: ask about one permission, or a "
                                   "narrower identity or resource.")

    def _permissions(self, role: str, permission: str | None) -> tuple[str, ...]:
        perms = self.state.roles.permissions(role)
        if permission is not None:
            return (permission,) if permission in perms else ()
        return tuple(sorted(p for p in perms if "." in p))

    def _matches(self, principal: Principal, binding: Binding) -> bool:
        if binding.member in principal.member_keys:
            return True
        kind, _, project_id = binding.member.partition(":")
        if kind in buckets.CONVENIENCE_ROLES:
            extended = buckets.with_convenience_members(self.state.authz, principal, project_id)
            return binding.member in extended.member_keys
        return False

    def _grants(self, principal: Principal, resources: list[str], permission: str | None) -> list[tuple[Binding, tuple[str, ...]]]:
        out = []
        for resource in resources:
            for b in self._by_resource.get(resource, ()):
                if self._matches(principal, b):
                    perms = self._permissions(b.role, permission)
                    if perms:
                        out.append((b, perms))
        return out

    def _hop_permissions(self, account: AccountInfo) -> tuple[str, ...]:
        project = self.setup.project_by_id(account.project_id)
        key_creation = project is not None and not project.key_creation_disabled
        return (IMPERSONATE, CREATE_KEY) if key_creation else (IMPERSONATE,)

    def _impersonable(self, principal: Principal) -> list[Hop]:
        """The hops `principal` can make to accounts (an unconditional grant preferred)."""
        out = []
        for account in self.setup.accounts:
            self._in_time()
            if account.disabled:
                continue
            for permission in self._hop_permissions(account):
                grants = [b for b, _ in self._grants(principal, sa_chain(account), permission)]
                if grants:
                    chosen = next((b for b in grants if not b.condition), grants[0])
                    out.append(Hop(account.email, _expression(chosen), permission))
                    break
        return out

    def identity(self, principal: Principal, permission: str | None = None) -> list[Access]:
        """Everything `principal` reaches, breadth first through impersonation."""
        out: list[Access] = []
        queue: deque[tuple[Principal, tuple[Hop, ...]]] = deque([(principal, ())])
        seen = {principal.member}
        while queue:
            self._in_time()
            current, via = queue.popleft()
            for b, perms in self._grants(current, list(self._by_resource), permission):
                out.append(Access(principal.member, b.resource, b.role, b.member, perms, _expression(b), via))
            if len(via) >= MAX_CHAIN:
                continue
            for hop in self._impersonable(current):
                member = f"serviceAccount:{hop.account}"
                if member in seen:
                    continue
                seen.add(member)
                target = Principal(member=member, member_keys=member_keys_for_service_account(hop.account),
                                   email=hop.account)
                queue.append((target, (*via, hop)))
        return out

    def resource(self, chain: list[str], permission: str | None = None) -> list[Access]:
        """Every identity reaching chain[0]: the members bound on it or above, then whoever can
        impersonate a service account among them (and so on)."""
        out: list[Access] = []
        for resource in chain:
            for b in self._by_resource.get(resource, ()):
                perms = self._permissions(b.role, permission)
                if perms:
                    out.extend(Access(who, b.resource, b.role, b.member, perms, _expression(b))
                               for who in self._members_behind(b.member))
        queue = deque(out)
        seen = {a.identity for a in out}
        while queue:
            self._in_time()
            access = queue.popleft()
            if len(access.via) >= MAX_CHAIN or not access.identity.startswith("serviceAccount:"):
                continue
            account = self.setup.account_by_email(access.identity.removeprefix("serviceAccount:"))
            if account is None or account.disabled:
                continue
            for permission in self._hop_permissions(account):
                for b in self._bound(sa_chain(account), permission):
                    for who in self._members_behind(b.member):
                        if who in seen:
                            continue
                        seen.add(who)
                        reached = Access(who, access.resource, access.role, access.member, access.permissions,
                                         access.condition, (Hop(account.email, _expression(b), permission),
                                                            *access.via))
                        out.append(reached)
                        queue.append(reached)
        return out

    def _members_behind(self, member: str) -> list[str]:
        """A binding's member, or for `projectOwner:P` & co. the members holding that basic role
        on P without condition (whom the convenience member stands for)."""
        kind, _, project_id = member.partition(":")
        role = buckets.CONVENIENCE_ROLES.get(kind)
        if role is None:
            return [member]
        return sorted({b.member for b in self._bound(project_chain(project_id), None)
                       if b.role == role and not b.condition})

    def _bound(self, resources: list[str], permission: str | None) -> list[Binding]:
        if permission is None:
            return [b for r in resources for b in self._by_resource.get(r, ())]
        return [b for r in resources for b in self._by_resource.get(r, ()) if self._permissions(b.role, permission)]


def _expression(binding: Binding) -> str | None:
    return (binding.condition or {}).get("expression") or None


def render_text(setup: Setup, analysis: Analysis) -> str:
    """One line per access: who, role on resource, how (binding member, chain), condition."""
    if not analysis.accesses:
        return "No access found.\n"
    lines = []
    for a in analysis.accesses:
        how = f"as {a.member}" if a.member != a.identity else "directly"
        if a.via:
            how += " after impersonating " + " -> ".join(
                h.account + (" (by creating a key)" if h.by == CREATE_KEY else "")
                + (f" (if {h.condition})" if h.condition else "") for h in a.via)
        perms = ", ".join(a.permissions) if len(a.permissions) <= 3 else f"{len(a.permissions)} permissions"
        cond = f"  IF {a.condition}" if a.condition else ""
        lines.append(f"{a.identity}  {a.role} on {setup.describe(a.resource)} ({perms}) {how}{cond}")
    return "\n".join(lines) + "\n"


def analyze(state: Any, *, identity: str | None = None, pod: str | None = None, cluster: str | None = None,
            resource: str | None = None, permission: str | None = None,
            attributes: dict[str, str] | None = None, groups: tuple[str, ...] = (),
            identity_flag: str = "--identity") -> tuple[Setup, Analysis]:
    """The one entry point of the CLI and the HTTP endpoints (the doctor's, Cloud Asset's): an
    identity (a member, or a pod as NS/NAME with its cluster) or a resource, optionally one
    permission. `identity_flag` names the identity where an error points at it."""
    from keyless.doctor.model import load

    if sum(x is not None for x in (identity, pod, resource)) != 1:
        raise InvalidArgument("Give exactly one of an identity, a pod or a resource.")
    if permission is not None and (not permission or len(permission) > 200 or "." not in permission):
        raise InvalidArgument(f"Invalid permission {permission[:200]!r}.")
    setup = load(state)
    analyzer = Analyzer(state, setup)
    query = {k: v for k, v in (("identity", identity), ("pod", pod), ("cluster", cluster), ("resource", resource),
                               ("permission", permission)) if v is not None}
    if resource is not None:
        return setup, Analysis(query, analyzer.resource(resource_chain(state, resource), permission))
    if pod is not None:
        namespace, _, name = pod.partition("/")
        if not cluster or not namespace or not name:
            raise InvalidArgument("A pod is given as NAMESPACE/NAME, with its cluster.")
        principal = pod_principal(state, setup, cluster, namespace, name)
        query["identity"] = principal.member
    else:
        assert identity is not None
        principal = principal_of(state, identity, attributes=attributes, groups=groups, flag=identity_flag)
    return setup, Analysis(query, analyzer.identity(principal, permission))
