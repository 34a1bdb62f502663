"""`keyless doctor explain`: walk one access path in the seeds' order and say where it breaks.

pod -> KSA -> annotation -> node pool mode -> cluster workload pool -> STS exchange, or
provider -> token -> attribute condition -> mapping; then workloadIdentityUser binding -> the GSA
is enabled -> role on the resource -> IAM condition (seeds 002/003 "work the path in order").
Every decision is the server's own (keyless.gke.metadata, keyless.federation.exchange,
keyless.iam.credentials, keyless.iam.evaluate); this module only orders them and names the
cause of the first failure in the seeds' symptom-table words, with the fix.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from keyless.audit.log import entry_of
from keyless.doctor.identities import principal_of
from keyless.errors import InvalidArgument, KeylessError, PermissionDenied
from keyless.federation.diagnosis import Diagnosis, diagnose
from keyless.federation.exchange import AUDIENCE, AWS_TYPE, INVALID_TARGET, OAuthError, federated_principal
from keyless.federation.mapping import CONDITION_REJECTED, apply
from keyless.gke.metadata import (
    ANNOTATION,
    ANNOTATION_FORMAT,
    GKE_METADATA,
    GSA_EMAIL,
    PodIdentity,
    ksa_exchange_form,
    pod_identity,
)
from keyless.iam.credentials import GET_ACCESS_TOKEN, may_act_as
from keyless.iam.directory import AccountInfo
from keyless.iam.evaluate import Candidate
from keyless.iam.members import parse_member
from keyless.iam.policy import get_policy_row
from keyless.iam.predefined import predefined_roles
from keyless.iam.principal import Principal
from keyless.iam.service_accounts import sa_resource
from keyless.state import ServerState, service_account_principal
from keyless.storage.buckets import with_convenience_members
from keyless.store.models import (
    AuditEntry,
    GkeCluster,
    GkeNode,
    GkeNodePool,
    K8sObject,
    WorkloadIdentityPool,
    WorkloadIdentityPoolProvider,
)
from keyless.tokens.access import CLOUD_PLATFORM

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SET_SA_POLICY = "google.iam.admin.v1.SetIAMPolicy"  # the Admin Activity method of a service account's setIamPolicy
WIU = "roles/iam.workloadIdentityUser"
NODE_POOL_LABEL = "cloud.google.com/gke-nodepool"  # GKE's node label, what nodeSelector names

# Causes, in the words of the seeds' symptom tables (002 section 7, 003 Troubleshooting).
POD_MISSING = "The pod does not exist in this cluster and namespace."
NO_KSA = "serviceaccount {ksa!r} not found: the pod cannot be created with this serviceAccountName."
DEFAULT_KSA = ("Pod is not running under the annotated KSA; check serviceAccountName in the pod spec (without it the "
               "pod runs as the namespace's default KSA).")
KEY_TYPO = ("Annotation present but ignored: typo in annotation key iam.gke.io/gcp-service-account "
            "(the KSA has {key!r}).")
NOT_ANNOTATED = ("Forgetting to annotate the Kubernetes ServiceAccount: {gsa} grants this KSA "
                 "roles/iam.workloadIdentityUser, but the KSA does not name it, so the pod never impersonates it.")
NOT_EMAIL = ("The annotation value is not the full GSA email (NAME@PROJECT_ID.iam.gserviceaccount.com); "
             "GKE's metadata server answers 400: ")
GCE_MODE = ("Node pool not on GKE_METADATA: the pod bypasses the Workload Identity metadata server and gets the "
            "node's Compute Engine service account ({email}), not your GSA.")
NO_POOL = "Workload Identity is not enabled on the cluster (no workload pool): pods get the node's service account."
BINDING_MISSING = ("Missing workloadIdentityUser binding: roles/iam.workloadIdentityUser on {gsa} is not granted to "
                   "{member}, so the token request is 403 (email correct but token request 403).")
BINDING_MISMATCH = ("Member string mismatch: the workloadIdentityUser binding on {gsa} names {bound}, but the pod is "
                    "{member}; namespace and KSA name must match character-for-character.")
SA_MISSING = "Service account {email} does not exist (a wrong project in the annotation value fails silently)."
SA_DISABLED = "Service account {email} is disabled: disabling a service account revokes access at once."
NO_ROLE = ("API call 403 but token mints fine: {who} lacks the application role (no binding grants {permission} "
           "on {resource} or its ancestors).")
CONDITION_FALSE = "The IAM condition of the binding evaluates to false for this request: {conditions}."


@dataclass
class Step:
    step: str
    status: str
    evidence: str
    cause: str = ""
    fix: str = ""
    soft: bool = field(default=False, repr=False)  # a suspect: a failure only if access is denied in the end


@dataclass
class Explanation:
    subject: str
    permission: str
    resource: str
    identity: str = ""  # the principal the resource sees
    granted: bool = False
    steps: list[Step] = field(default_factory=list)
    levels: list[dict[str, Any]] = field(default_factory=list)  # Policy Troubleshooter's view (policy_levels)

    @property
    def first_failure(self) -> Step | None:
        return next((s for s in self.steps if s.status == FAIL), None)

    def add(self, step: str, status: str, evidence: str, cause: str = "", fix: str = "", soft: bool = False) -> Step:
        s = Step(step, status, evidence, cause, fix, soft)
        self.steps.append(s)
        return s

    def skip_rest(self, *names: str) -> None:
        for name in names:
            self.add(name, SKIP, "not reached: an earlier step fails")


# How a question's fields are named where it was asked: the CLI's flags, or the console's form fields
# (so a page never tells its reader to pass a flag).
CLI_NAMES = {"permission": "--permission", "pod": "--pod", "cluster": "--cluster", "token": "--token FILE",
             "provider": "--provider", "principal": "--principal", "service_account": "--service-account"}
FORM_NAMES = {"permission": "Permission", "pod": "Pod", "cluster": "Cluster", "token": "Token",
              "provider": "Provider", "principal": "Principal", "service_account": "Impersonating"}


@dataclass
class Question:
    """What to explain: one identity (pod, external token, or principal), a permission and a resource."""

    permission: str
    resource: str
    pod: str | None = None  # NAMESPACE/NAME
    cluster: str | None = None
    project: str | None = None
    location: str | None = None
    token: str | None = None  # the external credential's text
    provider: str | None = None
    principal: str | None = None
    service_account: str | None = None  # the GSA a token or principal impersonates
    at: datetime | None = None  # request.time for IAM conditions (an audit entry's timestamp)
    names: dict[str, str] = field(default_factory=lambda: CLI_NAMES)  # how errors name the fields
    # levels of the hierarchy whose bindings the asker may not read (the console's viewer without
    # getIamPolicy on the root): the role and condition steps count their bindings, never name them
    unreadable: frozenset[str] = frozenset()


# -- the walk -----------------------------------------------------------------------------------


def explain(state: ServerState, q: Question) -> Explanation:
    if not q.permission or not re.fullmatch(r"[a-zA-Z0-9_.]{3,128}(?:/[a-zA-Z0-9_.]{1,128})?", q.permission):
        raise InvalidArgument(f"{q.names['permission']} must be an IAM permission such as storage.objects.get.")
    inputs = [x for x in (q.pod, q.token, q.principal) if x]
    if len(inputs) != 1:
        n = q.names
        raise InvalidArgument(f"Name exactly one identity: {n['pod']} NAMESPACE/NAME, {n['token']} with "
                              f"{n['provider']}, or {n['principal']}.")
    if q.pod:
        ex = Explanation(f"pod {q.pod} (cluster {q.cluster})", q.permission, q.resource)
        principal, may_continue = _pod_path(state, q, ex)
    elif q.token:
        ex = Explanation(f"external token for provider {q.provider}", q.permission, q.resource)
        principal, may_continue = _token_path(state, q, ex)
    else:
        ex = Explanation(f"principal {q.principal}", q.permission, q.resource)
        principal, may_continue = _principal_path(state, q, ex)
    if principal is not None and may_continue:
        _resource_path(state, q, ex, principal)
    else:
        ex.skip_rest("role", "iam condition")
    _settle(ex)
    return ex


def _settle(ex: Explanation) -> None:
    """Suspect steps (a pod on its default KSA, a misspelt annotation) fail only when access is
    denied in the end: with access granted they are what the user meant."""
    for s in ex.steps:
        if s.soft and s.status == FAIL and ex.granted and not any(x.status == FAIL and not x.soft for x in ex.steps):
            s.status, s.cause, s.fix = PASS, "", ""


def kubectl(project: str, location: str, cluster: str) -> str:
    """The seeds' kubectl, at the context `gcloud container clusters get-credentials` writes for the
    cluster (its Kubernetes API is Keyless's, README "kubectl against a Keyless cluster")."""
    return f"kubectl --context gke_{project}_{location}_{cluster}"


def _gsa_path(state: ServerState, ex: Explanation, actor: Principal, gsa: str, member_shown: str,
              pod: PodIdentity | None = None) -> Principal | None:
    """The impersonation hop: the binding on the GSA, then the GSA itself (enabled)."""
    account = state.directory.find(gsa)
    if account is None:
        ex.add("binding", SKIP, f"{gsa} does not exist, so it has no policy")
        ex.add("service account", FAIL, f"no live service account {gsa}", SA_MISSING.format(email=gsa),
               f"gcloud iam service-accounts create {gsa.split('@')[0]} --project={gsa.split('@')[1].split('.')[0]}"
               + (f"   # or fix the annotation: {kubectl(pod.project_id, pod.location, pod.cluster_name)} annotate "
                  f"serviceaccount {pod.ksa} --namespace {pod.namespace} {ANNOTATION}=GSA_EMAIL --overwrite"
                  if pod else ""))
        return None
    decision = may_act_as(state.authz, actor, account, GET_ACCESS_TOKEN)
    if decision.granted:
        assert decision.via is not None
        where, role, member = decision.via
        ex.add("binding", PASS, f"{role} on {_shown_resource(where, account.email)} is granted to {member}")
    else:
        bound = _impersonators(state, sa_resource(account))
        same_pool = [m for m in bound if pod is not None and _near_miss(m, pod)]
        fix = (f'gcloud iam service-accounts add-iam-policy-binding {account.email} --role={WIU} '
               f'--member="{member_shown}"')
        removed = _removed_set(state, account, actor.member)
        if removed is not None:  # a set that admitted this subject was bound before: put it back
            member, when, insert_id = removed
            fix = (f'gcloud iam service-accounts add-iam-policy-binding {account.email} --role={WIU} '
                   f'--member="{member}"   # restores the binding removed at {when} (audit entry {insert_id})')
        if same_pool:
            cause = BINDING_MISMATCH.format(gsa=account.email, bound=", ".join(same_pool), member=member_shown)
        else:
            cause = BINDING_MISSING.format(gsa=account.email, member=member_shown)
        ex.add("binding", FAIL, f"{GET_ACCESS_TOKEN} on {account.email}: denied; impersonators bound: "
                                f"{', '.join(bound) or 'none'}", cause, fix)
        ex.skip_rest("service account")
        return None
    return service_account_principal(account) if _enabled(ex, account) else None


# -- pods -------------------------------------------------------------------------------------------


def _pod_path(state: ServerState, q: Question, ex: Explanation) -> tuple[Principal | None, bool]:
    ns, _, name = (q.pod or "").partition("/")
    if not ns or not name or not q.cluster:
        raise InvalidArgument(f"{q.names['pod']} takes NAMESPACE/NAME, and {q.names['cluster']} is required with it.")
    with state.db.read() as s:
        cluster = find_cluster(s, q.cluster, q.project, q.location)
        pod = s.scalars(select(K8sObject).where(K8sObject.cluster_id == cluster.id, K8sObject.kind == "Pod",
                                                K8sObject.namespace == ns, K8sObject.name == name)).first()
        if pod is None:
            ex.add("pod", FAIL, f'pods "{name}" not found in namespace "{ns}" of cluster {cluster.name}', POD_MISSING,
                   f"{kubectl(cluster.project_id, cluster.location, cluster.name)} get pods --namespace {ns}")
            ex.skip_rest("ksa", "annotation", "node pool", "workload pool", "exchange", "binding", "service account")
            return None, False
        node, placed = node_of(s, cluster, pod)
        identity = pod_identity(s, pod, node) if node is not None else None
        if identity is None or node is None:
            ex.add("pod", FAIL, f"cluster {cluster.name} has no node for the pod", "The cluster has no nodes.",
                   f"gcloud container node-pools create default-pool --cluster={cluster.name} "
                   f"--location={cluster.location} --workload-metadata=GKE_METADATA")
            ex.skip_rest("ksa", "annotation", "node pool", "workload pool", "exchange", "binding", "service account")
            return None, False
        pool_row = s.get(GkeNodePool, node.node_pool_id)
        pool_name = pool_row.name if pool_row is not None else "?"
        ksa_row = s.scalars(select(K8sObject).where(
            K8sObject.cluster_id == cluster.id, K8sObject.kind == "ServiceAccount", K8sObject.namespace == ns,
            K8sObject.name == identity.ksa)).first()
        ksa_annotations = dict((ksa_row.body.get("metadata") or {}).get("annotations") or {}) if ksa_row else {}
        annotated_here = [o.name for o in s.scalars(select(K8sObject).where(
            K8sObject.cluster_id == cluster.id, K8sObject.kind == "ServiceAccount", K8sObject.namespace == ns)).all()
            if ANNOTATION in ((o.body.get("metadata") or {}).get("annotations") or {})]
        s.expunge(cluster)
    where = "" if placed else " (not scheduled yet: placed as `keyless pod run` places it)"
    ex.add("pod", PASS, f"Pod {ns}/{name} in cluster {identity.cluster_name} ({identity.project_id}), on node "
                        f"{identity.node_name} of node pool {pool_name}{where}")
    # KSA
    if ksa_row is None and identity.ksa != "default":
        ex.add("ksa", FAIL, f"spec.serviceAccountName is {identity.ksa!r}, which namespace {ns} does not have",
               NO_KSA.format(ksa=identity.ksa),
               f"{kubectl(identity.project_id, identity.location, identity.cluster_name)} create serviceaccount "
               f"{identity.ksa} --namespace {ns}")
        ex.skip_rest("annotation", "node pool", "workload pool", "exchange", "binding", "service account")
        return None, False
    if identity.ksa == "default":  # omitted: Kubernetes fills in `default`
        target = annotated_here[0] if len(annotated_here) == 1 else "KSA_NAME"
        if len(annotated_here) > 1:
            target += f" (annotated KSAs in {ns}: {', '.join(sorted(annotated_here))})"
        ex.add("ksa", FAIL, f"spec.serviceAccountName is unset (or default): the pod runs as {ns}/default", DEFAULT_KSA,
               f"set spec.serviceAccountName: {target} in the pod spec, then re-create the pod", soft=True)
    else:
        ex.add("ksa", PASS, f"runs as KSA {ns}/{identity.ksa} (spec.serviceAccountName)")
    # annotation
    gsa: str | None = None
    annotate = (f"{kubectl(identity.project_id, identity.location, identity.cluster_name)} annotate serviceaccount "
                f"{identity.ksa} --namespace {ns}")
    if identity.annotation is not None:
        value = identity.annotation
        if not GSA_EMAIL.match(value):
            guess = f"{value.strip()}@{identity.project_id}.iam.gserviceaccount.com" if "@" not in value \
                else value.strip()
            ex.add("annotation", FAIL, f"{ANNOTATION}: {value!r}", NOT_EMAIL + ANNOTATION_FORMAT,
                   f"{annotate} {ANNOTATION}={guess} --overwrite")
            ex.skip_rest("node pool", "workload pool", "exchange", "binding", "service account")
            return None, False
        gsa = value
        ex.add("annotation", PASS, f"{ANNOTATION}: {value}")
    else:
        from keyless.doctor.lint import misspelt_annotation

        typos = [k for k in ksa_annotations if misspelt_annotation(str(k))]
        bound = _gsas_binding(state, identity.ksa_member)
        if typos:
            value = ksa_annotations[typos[0]]
            ex.add("annotation", FAIL, f"no {ANNOTATION} annotation; the KSA has {typos[0]}: {value}",
                   KEY_TYPO.format(key=typos[0]), f"{annotate} {typos[0]}- {ANNOTATION}={value}", soft=True)
        elif bound:
            ex.add("annotation", FAIL, f"no {ANNOTATION} annotation on {ns}/{identity.ksa}",
                   NOT_ANNOTATED.format(gsa=bound[0]), f"{annotate} {ANNOTATION}={bound[0]}", soft=True)
        else:
            ex.add("annotation", PASS, f"not annotated: the KSA-only (direct) model, the pod acts as its own "
                                       f"principal://…/{identity.workload_pool or 'PROJECT_ID.svc.id.goog'}/subject/"
                                       f"ns/{ns}/sa/{identity.ksa}")
    # node pool, workload pool
    if not identity.workload_pool:
        ex.add("node pool", SKIP, f"node pool {pool_name}: workloadMetadataConfig.mode={identity.mode}; GKE_METADATA "
                                  "needs the cluster's workload pool first")
    elif identity.mode != GKE_METADATA:
        ex.add("node pool", FAIL, f"node pool {pool_name}: workloadMetadataConfig.mode="
                                  f"{identity.mode}", GCE_MODE.format(email=identity.node_service_account),
               f"gcloud container node-pools update {pool_name} --cluster={identity.cluster_name}"
               f" --location={identity.location} --workload-metadata=GKE_METADATA")
    else:
        ex.add("node pool", PASS, f"node pool {pool_name}: workloadMetadataConfig.mode=GKE_METADATA")
    if not identity.workload_pool:
        ex.add("workload pool", FAIL, f"cluster {identity.cluster_name} has no workloadIdentityConfig.workloadPool",
               NO_POOL, f"gcloud container clusters update {identity.cluster_name} --location={identity.location} "
                        f"--workload-pool={identity.project_id}.svc.id.goog")
    else:
        ex.add("workload pool", PASS, f"cluster workload pool {identity.workload_pool}")
    if not identity.gke_metadata:
        # What the pod really gets: the node's service account, straight from the GCE metadata server.
        ex.add("exchange", SKIP, "no STS exchange: the GCE metadata server hands out the node's token")
        ex.add("binding", SKIP, "no impersonation: the node's service account acts itself")
        return _node_account(state, ex, identity.node_service_account), True
    # STS: exactly the request GKE's metadata server makes for this pod.
    form = ksa_exchange_form(cluster, identity, (CLOUD_PLATFORM,))
    try:
        result = state.exchanger.exchange(form)
    except OAuthError as error:
        ex.add("exchange", FAIL, f"STS refused the KSA token: {error.oauth_error}: {error.message}",
               f"Token exchange fails: {error.message}",
               f"gcloud container clusters describe {identity.cluster_name} --location={identity.location}")
        ex.skip_rest("binding", "service account")
        return None, False
    federated: Principal = result.token.principal
    ex.add("exchange", PASS, f"STS exchanges the KSA token for {federated.member}")
    if gsa is None:
        ex.add("binding", SKIP, "not annotated: no impersonation, the federated identity acts itself")
        ex.add("service account", SKIP, "no GSA in the direct model")
        return federated, True
    account = _gsa_path(state, ex, federated, gsa, identity.ksa_member, identity)
    return account, account is not None


def find_cluster(s: Any, name: str, project: str | None, location: str | None) -> GkeCluster:
    q = select(GkeCluster).where(GkeCluster.name == name)
    if project:
        q = q.where(GkeCluster.project_id == project)
    if location:
        q = q.where(GkeCluster.location == location)
    found = list(s.scalars(q).all())
    if not found:
        raise InvalidArgument(f"Cluster {name!r} not found" + (f" in project {project}" if project else "") + ".")
    if len(found) > 1:
        raise InvalidArgument(f"Cluster name {name!r} is ambiguous: give --project and --location.")
    cluster: GkeCluster = found[0]
    return cluster


def node_of(s: Any, cluster: GkeCluster, pod: K8sObject) -> tuple[GkeNode | None, bool]:
    """The pod's node (spec.nodeName); for a pod not scheduled yet, a node of the pool its
    nodeSelector names, else the node `keyless pod run` would choose (the first by name)."""
    spec = pod.body.get("spec") or {}
    nodes = list(s.scalars(select(GkeNode).where(GkeNode.cluster_id == cluster.id).order_by(GkeNode.name)).all())
    if isinstance(spec.get("nodeName"), str):
        found = next((n for n in nodes if n.name == spec["nodeName"]), None)
        if found is not None:
            return found, True
    wanted = (spec.get("nodeSelector") or {}).get(NODE_POOL_LABEL) if isinstance(spec.get("nodeSelector"), dict) \
        else None
    if wanted:
        pool = s.scalars(select(GkeNodePool).where(GkeNodePool.cluster_id == cluster.id,
                                                   GkeNodePool.name == wanted)).first()
        nodes = [n for n in nodes if pool is not None and n.node_pool_id == pool.id]
    return (nodes[0] if nodes else None), False


def _node_account(state: ServerState, ex: Explanation, email: str) -> Principal:
    account = state.directory.find(email)
    if account is None:  # Google's default compute SA exists whenever Compute is on
        ex.add("service account", PASS, f"the node's service account {email}")
        from keyless.iam.members import member_keys_for_service_account

        return Principal(member=f"serviceAccount:{email}", member_keys=member_keys_for_service_account(email),
                         email=email, subject=f"serviceAccount:{email}")
    if account.disabled:
        ex.add("service account", FAIL, f"the node's service account {email} is disabled",
               SA_DISABLED.format(email=email), f"gcloud iam service-accounts enable {email}")
    else:
        ex.add("service account", PASS, f"the node's service account {email} is enabled")
    return service_account_principal(account)


def _impersonators(state: ServerState, resource: str) -> list[str]:
    with state.db.read() as s:
        row = get_policy_row(s, resource)
        bindings = list(row.bindings) if row is not None else []
    return [m for b in bindings if b.get("role") in (WIU, "roles/iam.serviceAccountTokenCreator")
            for m in b.get("members", [])]


SET_POLICY_SCAN = 200  # the latest SetIAMPolicy entries of a project read for a removed binding


def _removed_set(state: ServerState, account: AccountInfo, member: str) -> tuple[str, str, str] | None:
    """The principal set of `member`'s pool (its repository's, where the subject names one) that a
    SetIAMPolicy on `account` removed from roles/iam.workloadIdentityUser and nothing put back, as
    (member, when, insertId): a subject denied after someone narrowed a binding gets that binding
    back, not a binding of its single subject (one branch, one ref)."""
    if not member.startswith("principal://") or "/subject/" not in member:
        return None
    base, subject = member.removeprefix("principal://").split("/subject/", 1)
    prefix = f"principalSet://{base}/"
    with state.db.read() as s:
        rows = list(s.scalars(select(AuditEntry).where(
            AuditEntry.project_id == account.project_id, AuditEntry.method_name == SET_SA_POLICY,
            AuditEntry.status_code == 0).order_by(AuditEntry.timestamp.desc()).limit(SET_POLICY_SCAN)).all())
        entries = [entry_of(r) for r in reversed(rows)
                   if account.email in r.resource_name or account.unique_id in r.resource_name]
    removed: dict[str, tuple[str, str]] = {}
    before: set[str] = set()
    for entry in entries:
        payload = entry.get("protoPayload") or {}
        request = payload.get("request") or {}
        mask = request.get("updateMask")
        if isinstance(mask, str) and "bindings" not in mask.split(","):
            continue  # the bindings were left as they were
        # the policy set: the response where the entry keeps it, else the request's whole policy
        policy = payload.get("response") or request.get("policy") or {}
        now = {m for b in policy.get("bindings") or [] if isinstance(b, dict) and b.get("role") == WIU
               for m in b.get("members") or [] if isinstance(m, str)}
        for gone in before - now:
            removed[gone] = (str(entry.get("timestamp")), str(entry.get("insertId")))
        for back in now:
            removed.pop(back, None)
        before = now
    sets = [m for m in removed if m.startswith(prefix)]
    if not sets:
        return None
    # a set whose value the subject names (repo:ORG/REPO:ref:… names ORG/REPO) first, then the latest removal
    best = max(sets, key=lambda m: ("/".join(m.split("/")[-2:]) in subject, removed[m][0]))
    return best, *removed[best]


def _near_miss(member: str, pod: PodIdentity) -> bool:
    """A KSA member of the pod's pool that differs from the pod's in namespace or KSA name only
    (the seeds' "wrong namespace or a typo in the KSA name")."""
    try:
        m = parse_member(member)
    except KeylessError:
        return False
    if not m.is_gke or m.namespace is None or m.ksa is None or f"{m.project_id}.svc.id.goog" != pod.workload_pool:
        return False
    return (m.namespace, m.ksa) != (pod.namespace, pod.ksa) and (m.namespace == pod.namespace or m.ksa == pod.ksa)


def _gsas_binding(state: ServerState, ksa_member: str) -> list[str]:
    """GSAs whose policy grants workloadIdentityUser to this KSA's legacy member."""
    from keyless.store.models import IamPolicy, ServiceAccount

    out = []
    with state.db.read() as s:
        for row in s.scalars(select(IamPolicy).where(IamPolicy.resource.like("projects/%/serviceAccounts/%"))).all():
            if any(b.get("role") == WIU and ksa_member in b.get("members", []) for b in row.bindings or []):
                account = s.get(ServiceAccount, row.resource.rsplit("/", 1)[-1])
                if account is not None and not account.deleted:
                    out.append(account.email)
    return out


# -- external tokens -------------------------------------------------------------------------------


def _token_path(state: ServerState, q: Question, ex: Explanation) -> tuple[Principal | None, bool]:
    name = (q.provider or "").removeprefix("//iam.googleapis.com/").removeprefix("https://iam.googleapis.com/")
    m = AUDIENCE.match(f"//iam.googleapis.com/{name}")
    if m is None:
        raise InvalidArgument(f"{q.names['provider']} must be projects/NUMBER/locations/global/"
                              "workloadIdentityPools/POOL/providers/PROVIDER.")
    number, pool_id, provider_id = m.group(2), m.group(3), m.group(4)
    later = ("token", "condition", "mapping", "binding", "service account")
    runtime = state.exchanger.providers.get(name)
    gcloud = (f"--workload-identity-pool={pool_id} --location=global --project={number}")
    with state.db.read() as s:
        row = s.get(WorkloadIdentityPoolProvider, name)
        pool = s.get(WorkloadIdentityPool, row.pool_name) if row is not None else None
        row_state = (row.state, row.disabled) if row is not None else None
        pool_state = (pool.state, pool.disabled) if pool is not None else None
    if runtime is None or not runtime.usable:
        if row_state is None:
            evidence, fix = f"provider {name} does not exist", \
                f"gcloud iam workload-identity-pools providers list {gcloud}"
        elif pool_state is not None and (pool_state[0] != "ACTIVE" or pool_state[1]):
            evidence = f"pool {pool_id}: state {pool_state[0]}{', disabled' if pool_state[1] else ''}"
            fix = (f"gcloud iam workload-identity-pools update {pool_id} --location=global --project={number} "
                   f"--no-disabled" if pool_state[0] == "ACTIVE" else
                   f"gcloud iam workload-identity-pools undelete {pool_id} --location=global --project={number}")
        elif row_state[0] != "ACTIVE" or row_state[1]:
            evidence = f"provider {provider_id}: state {row_state[0]}{', disabled' if row_state[1] else ''}"
            verb = "update-oidc" if runtime is None or runtime.oidc is not None else "update-aws"
            fix = (f"gcloud iam workload-identity-pools providers {verb} {provider_id} {gcloud} --no-disabled"
                   if row_state[0] == "ACTIVE" else
                   f"gcloud iam workload-identity-pools providers undelete {provider_id} {gcloud}")
        else:
            evidence, fix = "the provider's mapping or condition no longer compiles", \
                f"gcloud iam workload-identity-pools providers describe {provider_id} {gcloud}"
        ex.add("provider", FAIL, evidence, INVALID_TARGET, fix)
        ex.skip_rest(*later)
        return None, False
    ex.add("provider", PASS, f"provider {provider_id} of pool {pool_id} exists and is enabled "
                             f"({'OIDC issuer ' + runtime.oidc['issuerUri'] if runtime.oidc else 'AWS'})")
    audience = f"//iam.googleapis.com/{name}"
    kind = JWT_TYPE if runtime.oidc is not None else AWS_TYPE

    def why(stage: str, cause: BaseException | None) -> Diagnosis | None:  # what the audit entry says too
        return diagnose(stage, cause, runtime.name, runtime.oidc, runtime.compiled.attribute_condition,
                        q.token or "", state.settings.base_url)

    try:
        assertion = state.exchanger.verify_credential(runtime, (q.token or "").strip(), kind, audience)
    except OAuthError as error:
        detail = getattr(error.__cause__, "detail", "")
        found = why(error.stage or "token", error.__cause__)
        ex.add("token", FAIL, f"{error.oauth_error}: {error.message}"
               + (f" ({found.cause})" if found else f" ({detail})" if detail else ""),
               error.message, found.fix if found else
               f"gcloud iam workload-identity-pools providers describe {provider_id} {gcloud}")
        ex.skip_rest(*later[1:])
        return None, False
    ex.add("token", PASS, _claims_evidence(assertion))
    compiled = runtime.compiled
    try:
        identity = apply(compiled, assertion)
    except PermissionDenied as exc:
        claims = sorted(set(re.findall(r"assertion\.([A-Za-z_][A-Za-z0-9_]*)", compiled.attribute_condition or "")))
        shown = ", ".join(f"{c}={assertion.get(c)!r}" for c in claims)
        found = why("condition", exc)
        ex.add("condition", FAIL, f"{compiled.attribute_condition} is false for {shown or 'this token'}",
               CONDITION_REJECTED, found.fix if found else "")
        ex.skip_rest(*later[2:])
        return None, False
    except InvalidArgument as exc:
        if compiled.condition is not None and not compiled.condition_uses_mapped:
            ex.add("condition", PASS, f"{compiled.attribute_condition} is true")
        else:
            ex.add("condition", SKIP, "the condition reads mapped attributes, and the mapping fails")
        found = why("mapping", exc)
        ex.add("mapping", FAIL, exc.message, exc.message, found.fix if found else "")
        ex.skip_rest(*later[3:])
        return None, False
    ex.add("condition", PASS, f"{compiled.attribute_condition} is true" if compiled.attribute_condition
           else "the provider has no attribute condition")
    principal = federated_principal(runtime.project_number, runtime.pool_id, identity.subject,
                                    tuple(identity.groups), dict(identity.attributes))
    attrs = ", ".join(f"attribute.{k}={v}" for k, v in identity.attributes.items())
    ex.add("mapping", PASS, f"google.subject={identity.subject}" + (f", {attrs}" if attrs else "")
           + f": {principal.member}")
    return _then_impersonate(state, q, ex, principal)


def _then_impersonate(state: ServerState, q: Question, ex: Explanation,
                      principal: Principal) -> tuple[Principal | None, bool]:
    if not q.service_account:
        ex.add("binding", SKIP, f"no {q.names['service_account']}: direct resource access, no impersonation")
        if principal.is_service_account:
            return principal, _own_account(state, ex, principal)
        ex.add("service account", SKIP, "not a service account")
        return principal, True
    account = _gsa_path(state, ex, principal, q.service_account, principal.member)
    return account, account is not None


def _own_account(state: ServerState, ex: Explanation, principal: Principal) -> bool:
    account = state.directory.find(principal.email)
    if account is None:
        ex.add("service account", FAIL, f"no live service account {principal.email}",
               SA_MISSING.format(email=principal.email), f"gcloud iam service-accounts list --filter=email:{principal.email}")
        return False
    return _enabled(ex, account)


def _enabled(ex: Explanation, account: AccountInfo) -> bool:
    """The "service account" step for an existing account: it must not be disabled."""
    if account.disabled:
        ex.add("service account", FAIL, f"{account.email} is disabled", SA_DISABLED.format(email=account.email),
               f"gcloud iam service-accounts enable {account.email}")
        return False
    ex.add("service account", PASS, f"{account.email} exists and is enabled")
    return True


def _claims_evidence(assertion: dict[str, Any]) -> str:
    parts = [f"{k}={assertion[k]!r}" for k in ("iss", "aud", "sub", "arn") if k in assertion]
    exp = assertion.get("exp")
    if isinstance(exp, int | float):
        import time

        parts.append(f"expires in {int(exp - time.time())}s")
    return "verified: " + ", ".join(parts)


# -- principals and audit entries ---------------------------------------------------------------


def _principal_path(state: ServerState, q: Question, ex: Explanation) -> tuple[Principal | None, bool]:
    principal = principal_of(state, q.principal or "", flag=q.names["principal"])
    ex.add("principal", PASS, f"{principal.member}" + ("" if principal.member == q.principal else
                                                       f" (given as {q.principal})"))
    return _then_impersonate(state, q, ex, principal)


def find_entry(state: ServerState, insert_id: str) -> dict[str, Any]:
    """The audit entry of `insert_id` (INVALID_ARGUMENT when there is none)."""
    with state.db.read() as s:
        row = s.scalars(select(AuditEntry).where(AuditEntry.insert_id == insert_id[:64])).first()
        entry = entry_of(row) if row is not None else None
    if entry is None:
        raise InvalidArgument(f"No audit entry has insertId {insert_id[:64]!r}.")
    return entry


def refused_exchange(entry: dict[str, Any]) -> Explanation | None:
    """A refused ExchangeToken entry, explained from what it records: the provider its audience
    names, and the refusal's cause and fix (`metadata.diagnosis`, keyless.federation.diagnosis:
    the same words `explain --token` gives); None for any other entry. The token itself is not
    logged, so the steps after the failing one are not reached."""
    payload = entry.get("protoPayload") or {}
    status = payload.get("status") or {}
    if payload.get("serviceName") != "sts.googleapis.com" or not status.get("code"):
        return None
    audience = str((payload.get("request") or {}).get("audience") or "")
    provider = audience.removeprefix("//iam.googleapis.com/")
    diagnosis = (payload.get("metadata") or {}).get("diagnosis") or {}
    cause, fix = str(diagnosis.get("cause") or ""), str(diagnosis.get("fix") or "")
    ex = Explanation(f"token exchange for provider {provider} at {entry.get('timestamp')}",
                     "sts.googleapis.com/ExchangeToken", str(payload.get("resourceName") or ""))
    ex.add("provider", PASS, f"the request's audience names {provider}")
    stage = ("condition" if cause.startswith("the attribute condition") else
             "mapping" if cause.startswith("the attribute mapping") else "token")
    order = ["token", "condition", "mapping"]
    for name in order[:order.index(stage)]:
        ex.add(name, PASS, "passed: the refusal came at a later step")
    message = str(status.get("message") or "")
    ex.add(stage, FAIL, message + (f" ({cause})" if cause else ""), cause or message,
           fix or "explain the token itself (an external token and this provider) to see which claim is refused")
    ex.skip_rest(*order[order.index(stage) + 1:], "binding", "service account", "role", "iam condition")
    return ex


def question_of_entry(state: ServerState, insert_id: str) -> tuple[Question, str]:
    """The principal, permission, resource and time of an audit entry (its first denied check)."""
    entry = find_entry(state, insert_id)
    payload = entry.get("protoPayload") or {}
    auth = payload.get("authenticationInfo") or {}
    checks = [c for c in payload.get("authorizationInfo") or [] if isinstance(c, dict)]
    check = next((c for c in checks if c.get("granted") is False), checks[0] if checks else None)
    if check is None:
        raise InvalidArgument(f"Audit entry {insert_id} records no authorization check to explain.")
    subject, email = str(auth.get("principalSubject") or ""), str(auth.get("principalEmail") or "")
    if subject.startswith(("principal://", "serviceAccount:")):
        member = subject
    elif email.endswith(".gserviceaccount.com"):
        member = f"serviceAccount:{email}"
    elif email:
        member = f"user:{email}"
    else:
        raise InvalidArgument(f"Audit entry {insert_id} has no caller identity.")
    status = payload.get("status") or {}
    summary = (f"audit entry {insert_id}: {payload.get('methodName')} on {payload.get('resourceName')} by {member} "
               f"at {entry.get('timestamp')}" + (f", status {status.get('code')}: {status.get('message')}"
                                                 if status.get("code") else ""))
    at = datetime.fromisoformat(str(entry.get("timestamp")).replace("Z", "+00:00"))
    return Question(permission=str(check.get("permission")), resource=str(check.get("resource")),
                    principal=member, at=at), summary


# -- the resource ---------------------------------------------------------------------------------


def _resource_path(state: ServerState, q: Question, ex: Explanation, principal: Principal) -> None:
    from keyless.doctor.targets import resolve

    with state.db.read() as s:
        target = resolve(s, q.resource)
    if target.kind in ("bucket", "object", "managed folder"):  # below a bucket's policy
        principal = with_convenience_members(state.authz, principal, target.project_id)
    ex.identity = principal.email or principal.member
    who = principal.email or principal.member
    decision = state.authz.check(principal, q.permission, target.chain, target.context, q.at)
    candidates = state.authz.candidates(principal, q.permission, target.chain, target.context, q.at)
    ex.granted = decision.granted
    ex.levels = policy_levels(state, principal, q.permission, target.chain, candidates)
    gone = "" if target.exists else f" ({target.kind} {target.display} does not exist: IAM says 'or it may not exist')"
    if not candidates:
        member = f"serviceAccount:{principal.email}" if principal.email else principal.member
        fix = _grant_fix(target.kind, target.fix_target, target.project_id, member, q.permission)
        account = state.directory.find(target.fix_target) if target.kind == "service account" else None
        removed = _removed_set(state, account, principal.member) if account is not None else None
        if removed is not None and q.permission in state.roles.permissions(WIU):
            fix = (f'gcloud iam service-accounts add-iam-policy-binding {target.fix_target} --role={WIU} '
                   f'--member="{removed[0]}"   # restores the binding removed at {removed[1]} (audit entry {removed[2]})')
        ex.add("role", FAIL, f"no binding for {who} holds {q.permission} on {target.context.name}{gone}",
               NO_ROLE.format(who=who, permission=q.permission, resource=target.display), fix)
        ex.add("iam condition", SKIP, "no binding to evaluate")
        return
    shown = [c for c in candidates if c.resource not in q.unreadable]
    left_out = len(candidates) - len(shown)
    unseen = sorted({c.resource for c in candidates if c.resource in q.unreadable})
    ex.add("role", PASS, "; ".join([*(_shown_candidate(c) for c in shown),
                                    *(f"a binding on {r}: bindings not shown" for r in unseen)]) + gone)
    if decision.granted:
        holding = next(c for c in candidates if c.holds)
        if holding.resource in q.unreadable:
            ex.add("iam condition", PASS, f"the granting binding is on {holding.resource}: bindings not shown")
        else:
            ex.add("iam condition", PASS, f"condition {_condition_text(holding.condition)} is true"
                   if holding.condition else "the granting binding has no condition")
        return
    conditions = "; ".join([*(_condition_text(c.condition) for c in shown),
                            *(["(bindings not shown)"] if left_out else [])])
    ex.add("iam condition", FAIL, f"resource.name={target.context.name!r}, resource.type={target.context.type!r}",
           CONDITION_FALSE.format(conditions=conditions),
           f"gcloud projects get-iam-policy {target.project_id or 'PROJECT_ID'} --format=json   # then condition the "
           f"grant to include {target.context.name} (or use a resource it admits)")


MAX_LEVEL_BINDINGS = 100  # bindings listed per policy (a policy holds at most 1,500 members)
MAX_SHOWN_MEMBERS = 10


def policy_levels(state: ServerState, principal: Principal, permission: str, chain: list[str],
                  candidates: list[Candidate]) -> list[dict[str, Any]]:
    """Policy Troubleshooter's view: the allow policy at each level of the hierarchy (the resource,
    then its ancestors), each binding with whether its role contains the permission, whether a
    member matches the principal, and its condition's outcome where both hold
    (https://cloud.google.com/policy-intelligence/docs/troubleshoot-access)."""
    with state.db.read() as s:
        rows = {r: get_policy_row(s, r) for r in chain}
        bindings = {r: [dict(b) for b in row.bindings] if row is not None else [] for r, row in rows.items()}
    held = {(c.resource, c.role, c.member): c.holds for c in candidates}
    out = []
    for resource in chain:
        shown = []
        for b in bindings[resource][:MAX_LEVEL_BINDINGS]:
            role, members = str(b.get("role")), [str(m) for m in b.get("members") or []]
            matched = next((m for m in members if m in principal.member_keys), None)
            contains = permission in state.roles.permissions(role)
            item: dict[str, Any] = {"role": role, "members": members[:MAX_SHOWN_MEMBERS], "memberCount": len(members),
                                    "containsPermission": contains, "memberMatches": matched is not None}
            if matched:
                item["matchedMember"] = matched
            condition = b.get("condition")
            if condition:
                item["condition"] = condition.get("expression")
                if contains and matched:
                    item["conditionHolds"] = held.get((resource, role, matched), False)
            item["grants"] = bool(contains and matched and item.get("conditionHolds", True))
            shown.append(item)
        out.append({"resource": resource, "bindings": shown, "bindingCount": len(bindings[resource])})
    return out


def _shown_candidate(c: Candidate) -> str:
    cond = f" if {_condition_text(c.condition)}" if c.condition else ""
    return f"{c.role} on {c.resource} to {c.member}{cond}"


def _condition_text(condition: dict[str, Any] | None) -> str:
    if not condition:
        return "(none)"
    title = f" ({condition.get('title')})" if condition.get("title") else ""
    return f"{condition.get('expression')!s}{title}"


def _shown_resource(resource: str, email: str) -> str:
    return f"service account {email}" if "/serviceAccounts/" in resource else resource


def suggested_role(permission: str) -> str:
    """The smallest predefined role with `permission` (no basic or legacy roles)."""
    roles = [r for r in predefined_roles().values() if permission in r.included_permissions
             and r.name not in ("roles/owner", "roles/editor", "roles/viewer") and ".legacy" not in r.name]
    own = [r for r in roles if r.name.startswith(f"roles/{permission.split('.')[0]}.")]  # the service's own roles
    best = min(own or roles, key=lambda r: (len(r.included_permissions), r.name), default=None)
    return best.name if best is not None else "ROLE"


def _grant_fix(kind: str, target: str, project: str, member: str, permission: str) -> str:
    role = suggested_role(permission)
    if kind in ("bucket", "object"):
        return f'gcloud storage buckets add-iam-policy-binding {target} --member="{member}" --role={role}'
    if kind in ("secret", "secret version"):
        return (f'gcloud secrets add-iam-policy-binding {target} --project={project} --member="{member}" '
                f"--role={role}")
    if kind == "service account":
        return f'gcloud iam service-accounts add-iam-policy-binding {target} --member="{member}" --role={role}'
    if kind in ("topic", "subscription"):  # gcloud has no add-iam-policy-binding for snapshots or schemas
        return (f'gcloud pubsub {kind}s add-iam-policy-binding {target} --project={project} --member="{member}" '
                f"--role={role}")
    if kind == "managed folder":
        return f'gcloud storage managed-folders add-iam-policy-binding {target} --member="{member}" --role={role}'
    if kind.startswith("workload identity pool"):  # the pool's policy governs what is below it
        return (f'gcloud iam workload-identity-pools add-iam-policy-binding {target} --location=global '
                f'--project={project} --member="{member}" --role={role}')
    return f'gcloud projects add-iam-policy-binding {project or "PROJECT_ID"} --member="{member}" --role={role}'


# -- rendering ------------------------------------------------------------------------------------


def exit_status(ex: Explanation) -> int:
    return 1 if ex.first_failure is not None or not ex.granted else 0


def render_json(ex: Explanation) -> str:
    first = ex.first_failure
    return json.dumps({
        "subject": ex.subject, "permission": ex.permission, "resource": ex.resource, "identity": ex.identity,
        "granted": ex.granted,
        "firstFailure": ({"step": first.step, "cause": first.cause, "fix": first.fix} if first else None),
        "steps": [{k: v for k, v in asdict(s).items() if k != "soft" and (v or k in ("step", "status"))}
                  for s in ex.steps],
        **({"policies": ex.levels} if ex.levels else {}),
    }, indent=2)


def render_text(ex: Explanation) -> str:
    lines = [f"Explaining {ex.permission} on {ex.resource}", f"  for {ex.subject}", ""]
    for s in ex.steps:
        lines.append(f"  {s.status}  {s.step:<16} {s.evidence}")
        if s.status == FAIL:
            lines.append(f"        {'':<16} cause: {s.cause}")
            lines.append(f"        {'':<16} fix:   {s.fix}")
    lines.append("")
    first = ex.first_failure
    verdict = "GRANTED" if ex.granted else "DENIED"
    if first is None:
        lines.append(f"{verdict}: every step passes" + (f" ({ex.identity} holds {ex.permission})." if ex.granted
                                                         else "."))
    else:
        lines.append(f"{verdict}. First failing step: {first.step}. {first.cause}")
        lines.append(f"Fix: {first.fix}")
    return "\n".join(lines) + "\n"
