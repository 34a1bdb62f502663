"""A snapshot of one federation setup: projects, policies, service accounts and keys, pools and
providers, GKE clusters, node pools and Kubernetes objects from the store, plus the manifests
given on the command line. Lint rules are pure functions of a `Setup`, so they test without I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from keyless.doctor.manifests import ANNOTATION, Manifest, pod_spec, service_account_name
from keyless.errors import KeylessError
from keyless.iam.members import Member, parse_member
from keyless.projects import KEY_CREATION_CONSTRAINT, ROOT, constraint_enforced
from keyless.store.models import (
    GkeCluster,
    GkeNodePool,
    IamPolicy,
    K8sObject,
    Project,
    ServiceAccount,
    ServiceAccountKey,
    WorkloadIdentityPool,
    WorkloadIdentityPoolProvider,
)


@dataclass(frozen=True)
class ProjectInfo:
    project_id: str
    number: str
    key_creation_disabled: bool


@dataclass(frozen=True)
class Binding:
    """One (role, member) of a policy, with the binding's condition."""

    resource: str  # where the policy is stored: projects/P, projects/P/serviceAccounts/UID, ...
    role: str
    member: str
    parsed: Member | None  # None when the stored member does not parse (never from a real write)
    condition: dict[str, Any] | None


@dataclass(frozen=True)
class AccountInfo:
    unique_id: str
    project_id: str
    email: str
    disabled: bool


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    sa_email: str
    project_id: str
    key_type: str
    valid_after: datetime
    disabled: bool


@dataclass(frozen=True)
class PoolInfo:
    name: str
    project_number: str
    pool_id: str
    state: str
    disabled: bool


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    pool_name: str
    provider_id: str
    state: str
    disabled: bool
    attribute_mapping: dict[str, str]
    attribute_condition: str | None
    oidc: dict[str, Any] | None
    aws: dict[str, Any] | None


@dataclass(frozen=True)
class ClusterInfo:
    id: str
    project_id: str
    location: str
    name: str
    workload_pool: str
    autopilot: bool


@dataclass(frozen=True)
class NodePoolInfo:
    cluster: ClusterInfo
    name: str
    mode: str


@dataclass
class KObject:
    """A Kubernetes object from a manifest file or from a cluster in the store."""

    kind: str
    namespace: str
    name: str
    body: dict[str, Any]
    manifest: Manifest | None = None
    cluster: ClusterInfo | None = None

    @property
    def where(self) -> str:
        if self.manifest is not None:
            return f"{self.manifest.path}:{self.manifest.line}"
        assert self.cluster is not None
        return f"cluster {self.cluster.name} ({self.cluster.project_id})"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.kind != "Namespace" else f"Namespace {self.name}"

    def annotations(self) -> dict[str, Any]:
        ann = (self.body.get("metadata") or {}).get("annotations")
        return ann if isinstance(ann, dict) else {}

    def workload_pools(self, default_project: str | None) -> set[str]:
        """The workload pools this object's KSAs federate into (empty when unknown)."""
        if self.cluster is not None:
            return {self.cluster.workload_pool} if self.cluster.workload_pool else set()
        return {f"{default_project}.svc.id.goog"} if default_project else set()


@dataclass
class Setup:
    projects: list[ProjectInfo] = field(default_factory=list)
    bindings: list[Binding] = field(default_factory=list)
    audit_configs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # resource -> configs
    accounts: list[AccountInfo] = field(default_factory=list)
    keys: list[KeyInfo] = field(default_factory=list)
    pools: list[PoolInfo] = field(default_factory=list)
    providers: list[ProviderInfo] = field(default_factory=list)
    clusters: list[ClusterInfo] = field(default_factory=list)
    node_pools: list[NodePoolInfo] = field(default_factory=list)
    objects: list[KObject] = field(default_factory=list)
    project: str | None = None  # --project: the scope, and the pool manifests' KSAs federate into
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    # -- lookups -------------------------------------------------------------------------------
    def project_by_id(self, project_id: str) -> ProjectInfo | None:
        return next((p for p in self.projects if p.project_id == project_id), None)

    def project_by_number(self, number: str) -> ProjectInfo | None:
        return next((p for p in self.projects if p.number == number), None)

    def account_by_email(self, email: str) -> AccountInfo | None:
        email = email.lower()
        return next((a for a in self.accounts if a.email == email), None)

    def account_of_resource(self, resource: str) -> AccountInfo | None:
        uid = resource.rsplit("/", 1)[-1] if "/serviceAccounts/" in resource else None
        return next((a for a in self.accounts if a.unique_id == uid), None) if uid else None

    def pool(self, project_number: str, pool_id: str) -> PoolInfo | None:
        return next((p for p in self.pools if p.project_number == project_number and p.pool_id == pool_id), None)

    def providers_of(self, pool: PoolInfo) -> list[ProviderInfo]:
        return [p for p in self.providers if p.pool_name == pool.name and p.state == "ACTIVE"]

    def clusters_with_pool(self, workload_pool: str) -> list[ClusterInfo]:
        return [c for c in self.clusters if c.workload_pool == workload_pool]

    def describe(self, resource: str) -> str:
        """A resource name as people say it: service accounts by email."""
        account = self.account_of_resource(resource)
        if account is not None:
            return f"projects/{account.project_id}/serviceAccounts/{account.email}"
        if resource == ROOT:
            return "the root (organization) policy"
        return resource

    def service_accounts(self) -> list[KObject]:
        return [o for o in self.objects if o.kind == "ServiceAccount"]

    def workloads(self) -> list[KObject]:
        return [o for o in self.objects if pod_spec(o.body) is not None]

    def known_ksas(self) -> set[tuple[str, str]] | None:
        """(namespace, name) of every KSA a manifest or cluster has (with `default` in every known
        namespace); None when nothing about Kubernetes is known, so no rule guesses."""
        if not self.objects:
            return None
        out: set[tuple[str, str]] = set()
        for o in self.objects:
            if o.kind == "ServiceAccount":
                out.add((o.namespace, o.name))
            elif o.kind == "Namespace":
                out.add((o.name, "default"))
            else:
                out.add((o.namespace, "default"))
                spec = pod_spec(o.body)
                # a manifest set naming a KSA it does not define: the KSA is created elsewhere
                # (kubectl create serviceaccount), so the pod's reference is evidence enough
                if spec is not None:
                    out.add((o.namespace, service_account_name(spec)))
        return out

    def annotated_ksas(self) -> list[tuple[KObject, str]]:
        out = []
        for o in self.service_accounts():
            value = o.annotations().get(ANNOTATION)
            if isinstance(value, str):
                out.append((o, value))
        return out


def _in_scope(s: Any, resource: str, project: str | None) -> bool:
    """Whether the policy stored under `resource` is `project`'s or one of its resources' (a topic,
    a bucket, a pool named by the project's number, ...: keyless.doctor.targets knows which)."""
    if project is None:
        return True
    if resource == f"projects/{project}" or resource.startswith(f"projects/{project}/"):
        return True
    from keyless.doctor.targets import resolve

    try:
        return resolve(s, resource).project_id == project
    except KeylessError:
        return False


def load(state: Any, project: str | None = None, manifests: list[Manifest] | None = None) -> Setup:
    """Read the store (all of it, or one project's part) and add the manifests."""
    setup = Setup(project=project)
    with state.db.read() as s:
        projects = list(s.scalars(select(Project).where(Project.lifecycle_state == "ACTIVE")).all())
        setup.projects = [ProjectInfo(p.project_id, p.project_number,
                                      constraint_enforced(p, KEY_CREATION_CONSTRAINT)) for p in projects]
        scope_numbers = {p.project_number for p in projects if project is None or p.project_id == project}
        accounts = s.scalars(select(ServiceAccount).where(ServiceAccount.deleted.is_(False))).all()
        setup.accounts = [AccountInfo(a.unique_id, a.project_id, a.email, a.disabled) for a in accounts]
        by_uid = {a.unique_id: a for a in accounts}
        for k in s.scalars(select(ServiceAccountKey).where(ServiceAccountKey.deleted.is_(False))).all():
            a = by_uid.get(k.sa_unique_id)
            if a is None or (project is not None and a.project_id != project):
                continue
            va = k.valid_after if k.valid_after.tzinfo else k.valid_after.replace(tzinfo=UTC)
            setup.keys.append(KeyInfo(k.key_id, a.email, a.project_id, k.key_type, va, k.disabled))
        for row in s.scalars(select(IamPolicy)).all():
            if not _in_scope(s, row.resource, project):
                continue
            for b in row.bindings or []:
                for m in b.get("members", []):
                    try:
                        parsed: Member | None = parse_member(m)
                    except Exception:  # a stored member always parsed once; be robust anyway
                        parsed = None
                    setup.bindings.append(Binding(row.resource, str(b.get("role")), m, parsed, b.get("condition")))
            if row.audit_configs:
                setup.audit_configs[row.resource] = list(row.audit_configs)
        root = s.get(IamPolicy, ROOT)
        if root is not None and root.audit_configs:
            setup.audit_configs[ROOT] = list(root.audit_configs)
        for p in s.scalars(select(WorkloadIdentityPool)).all():
            setup.pools.append(PoolInfo(p.name, p.project_number, p.pool_id, p.state, p.disabled))
        for v in s.scalars(select(WorkloadIdentityPoolProvider)).all():
            if v.pool_name.split("/")[1] not in scope_numbers:
                continue
            setup.providers.append(ProviderInfo(v.name, v.pool_name, v.provider_id, v.state, v.disabled,
                                                dict(v.attribute_mapping or {}), v.attribute_condition,
                                                v.oidc, v.aws))
        clusters = {c.id: ClusterInfo(c.id, c.project_id, c.location, c.name, c.workload_pool or "", c.autopilot)
                    for c in s.scalars(select(GkeCluster)).all()}
        setup.clusters = list(clusters.values())
        for np in s.scalars(select(GkeNodePool)).all():
            c = clusters.get(np.cluster_id)
            if c is not None and (project is None or c.project_id == project):
                setup.node_pools.append(NodePoolInfo(c, np.name, np.workload_metadata_mode))
        for o in s.scalars(select(K8sObject).where(K8sObject.kind.in_(
                ("ServiceAccount", "Namespace", "Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet",
                 "Job", "CronJob")))).all():
            c = clusters.get(o.cluster_id)
            if c is None or (project is not None and c.project_id != project):
                continue
            # pods a Deployment made are the Deployment's concern: lint the owner once
            meta = (o.body or {}).get("metadata") or {}
            if o.kind == "Pod" and meta.get("ownerReferences"):
                continue
            setup.objects.append(KObject(o.kind, o.namespace or "", o.name, dict(o.body or {}), cluster=c))
    for m in manifests or []:
        if m.kind:
            setup.objects.append(KObject(m.kind, m.namespace if m.kind != "Namespace" else "", m.name, m.body,
                                         manifest=m))
    return setup
