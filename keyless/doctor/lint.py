"""`keyless doctor lint`: every rule of `keyless.doctor.rules` checked against a `Setup`.

Each check is a pure function of the setup returning findings; the seeds' mistakes (and their
own correct configuration, which must lint clean) are the specification.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from keyless.audit.data_access import credentials_logged
from keyless.doctor import rules as R
from keyless.doctor.manifests import ANNOTATION, key_file_uses, pod_spec, pod_spec_path
from keyless.doctor.model import Binding, KObject, ProviderInfo, Setup
from keyless.doctor.rules import Finding
from keyless.federation.mapping import apply, compile_mapping
from keyless.iam.members import Member
from keyless.projects import ROOT

WIU = "roles/iam.workloadIdentityUser"
TOKEN_CREATOR = "roles/iam.serviceAccountTokenCreator"
IMPERSONATION_ROLES = (WIU, TOKEN_CREATOR)
BASIC_ROLES = ("roles/owner", "roles/editor")
SENSITIVE_ROLES = frozenset({
    "roles/owner", "roles/editor", "roles/iam.serviceAccountTokenCreator", "roles/iam.serviceAccountKeyAdmin",
    "roles/iam.serviceAccountUser", "roles/iam.workloadIdentityUser", "roles/iam.securityAdmin",
    "roles/secretmanager.admin", "roles/secretmanager.secretAccessor", "roles/storage.admin",
    "roles/container.admin", "roles/cloudkms.admin", "roles/compute.admin", "roles/orgpolicy.policyAdmin",
    "roles/logging.admin",
})
SENSITIVE_PATTERNS = (re.compile(r"^roles/iam\.[A-Za-z]*[aA]dmin$"), re.compile(r"^roles/resourcemanager\..+$"))
GSA_EMAIL = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9.:-]*[a-z0-9]\.iam\.gserviceaccount\.com$"
                       r"|^[0-9]+-compute@developer\.gserviceaccount\.com$")
GITHUB_ISSUERS = ("https://token.actions.githubusercontent.com", "/idp/github")
# claims whose check confines a GitHub token to a repository or branch (the seeds' "restrict further")
NARROWING_CLAIMS = frozenset({"repository", "repository_id", "sub", "job_workflow_ref", "workflow_ref", "ref",
                              "environment", "workflow", "job_workflow_sha", "base_ref", "head_ref"})
# claims that name one repository: a binding selecting on them is scoped to a repository
REPOSITORY_CLAIMS = frozenset({"repository", "repository_id", "sub", "job_workflow_ref", "workflow_ref"})
ISSUER_CLAIMS = frozenset({"iss", "aud", "azp", "exp", "iat", "nbf", "auth_time", "jti"})
_ASSERTION_REF = re.compile(r"\bassertion\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)|\bassertion\s*\[\s*['\"]([^'\"]+)['\"]")
_MAPPED_REF = re.compile(r"\b(attribute|google)\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")


def is_sensitive(role: str) -> bool:
    return role in SENSITIVE_ROLES or any(p.match(role) for p in SENSITIVE_PATTERNS)


# -- helpers ------------------------------------------------------------------------------------


def _q(text: str) -> str:
    return shlex.quote(text)


def _binding_command(setup: Setup, verb: str, resource: str, role: str, member: str,
                     condition: str | None = None) -> str:
    """The gcloud command that adds or removes one binding on `resource`."""
    account = setup.account_of_resource(resource)
    tail = f"--role={role} --member={_q(member)}"
    if condition:
        tail += f" --condition={_q(condition)}"
    if account is not None:
        return f"gcloud iam service-accounts {verb}-iam-policy-binding {account.email} {tail}"
    if resource.startswith("projects/") and resource.count("/") == 1:
        return f"gcloud projects {verb}-iam-policy-binding {resource.split('/')[1]} {tail}"
    if resource.startswith("projects/_/buckets/"):
        return f"gcloud storage buckets {verb}-iam-policy-binding gs://{resource.split('/')[3]} {tail}"
    if resource == ROOT:
        return f"gcloud organizations {verb}-iam-policy-binding ORG_ID {tail}"
    return f"gcloud ... {verb}-iam-policy-binding {resource} {tail}"


def _is_federated(m: Member | None) -> bool:
    return m is not None and (m.is_gke or (m.kind in ("principal", "principalSet") and m.pool_type == "workload"))


def _sa_email(member: str) -> str | None:
    if member.startswith("serviceAccount:") and "[" not in member:
        return member.split(":", 1)[1].lower()
    return None


def _impersonations(setup: Setup) -> list[Binding]:
    """Bindings that let a federated or GKE principal act as a service account."""
    return [b for b in setup.bindings if b.role in IMPERSONATION_ROLES and _is_federated(b.parsed)
            and setup.account_of_resource(b.resource) is not None]


def _workload_accounts(setup: Setup) -> dict[str, list[Binding]]:
    """email -> the impersonation bindings of every service account federated principals use."""
    out: dict[str, list[Binding]] = {}
    for b in _impersonations(setup):
        account = setup.account_of_resource(b.resource)
        assert account is not None
        out.setdefault(account.email, []).append(b)
    return out


def _roles_by_account(setup: Setup) -> dict[str, list[Binding]]:
    """email -> the bindings held by that service account (one pass: a lookup per account was
    quadratic, half a second at the console graph's 2,000 nodes)."""
    out: dict[str, list[Binding]] = {}
    for b in setup.bindings:
        email = _sa_email(b.member)
        if email is not None:
            out.setdefault(email, []).append(b)
    return out


def _manifest_loc(o: KObject, *path: str | int) -> dict[str, Any]:
    if o.manifest is None:
        return {}
    return {"path": o.manifest.path, "line": o.manifest.line_of(*path)}


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _github_like(p: ProviderInfo) -> bool:
    issuer = str((p.oidc or {}).get("issuerUri") or "")
    text = (p.attribute_condition or "") + " " + " ".join(p.attribute_mapping.values())
    return any(i in issuer for i in GITHUB_ISSUERS) or "repository_owner" in text


def condition_claims(p: ProviderInfo) -> set[str]:
    """The assertion claims a provider's condition depends on, through mapped attributes too."""
    source = p.attribute_condition or ""
    claims = {a or b for a, b in _ASSERTION_REF.findall(source)}
    for prefix, name in _MAPPED_REF.findall(source):
        expression = p.attribute_mapping.get(f"{prefix}.{name}", "")
        claims |= {a or b for a, b in _ASSERTION_REF.findall(expression)}
    return claims


def stranger_assertion(p: ProviderInfo) -> dict[str, Any]:
    """A valid token from someone the pool's owner never meant to trust: another GitHub
    organisation's repository, another role of the AWS account, another OIDC subject."""
    if p.aws is not None:
        account = str(p.aws.get("accountId") or "123456789012")
        return {"arn": f"arn:aws:sts::{account}:assumed-role/stranger-role/i-0stranger",
                "account": account, "userid": "AROASTRANGER:i-0stranger", "type": "assumed-role"}
    audiences = (p.oidc or {}).get("allowedAudiences") or [f"https://iam.googleapis.com/{p.name}"]
    return {
        "iss": str((p.oidc or {}).get("issuerUri") or ""), "aud": audiences[0], "azp": "stranger",
        "sub": "repo:stranger-org/stranger-repo:ref:refs/heads/main", "repository": "stranger-org/stranger-repo",
        "repository_owner": "stranger-org", "repository_id": "999", "repository_owner_id": "999",
        "repository_visibility": "public", "ref": "refs/heads/main", "ref_type": "branch", "actor": "stranger",
        "actor_id": "999", "workflow": "Deploy", "event_name": "push", "sha": "0" * 40, "run_id": "1",
        "job_workflow_ref": "stranger-org/stranger-repo/.github/workflows/deploy.yml@refs/heads/main",
        "email": "stranger@example.com", "email_verified": True, "exp": 4102444800, "iat": 1700000000,
    }


def accepts(p: ProviderInfo, assertion: dict[str, Any]) -> bool:
    """Whether the provider's condition (after its mapping) lets `assertion` through."""
    try:
        compiled = compile_mapping(p.attribute_mapping, p.attribute_condition,
                                   provider_type="aws" if p.aws is not None else "oidc")
        apply(compiled, assertion)
    except Exception:  # a rejected or unmappable token: Google issues nothing either
        return False
    return True


# -- provider rules ---------------------------------------------------------------------------------


def _provider_fix(p: ProviderInfo, condition: str) -> str:
    parts = p.name.split("/")
    return (f"gcloud iam workload-identity-pools providers update-{'aws' if p.aws is not None else 'oidc'} "
            f"{p.provider_id} --location=global --workload-identity-pool={parts[5]} "
            f"--project={parts[1]} --attribute-condition={_q(condition)}")


def _example_condition(p: ProviderInfo) -> str:
    if p.aws is not None:
        account = str(p.aws.get("accountId") or "ACCOUNT_ID")
        return f"assertion.arn.startsWith('arn:aws:sts::{account}:assumed-role/allowed-role/')"
    if _github_like(p):
        return "assertion.repository_owner == 'my-org' && assertion.repository == 'my-org/my-repo'"
    return "assertion.sub == 'EXPECTED_SUBJECT'"


def check_providers(setup: Setup) -> Iterator[Finding]:
    for p in setup.providers:
        if p.state != "ACTIVE" or p.disabled:
            continue
        aws_sev = R.WARNING if p.aws is not None else None  # an AWS provider is already bound to one account
        if not p.attribute_condition or not p.attribute_condition.strip():
            yield Finding(R.PROVIDER_NO_CONDITION, p.name,
                          "provider has no attribute condition: every token its issuer signs is exchanged",
                          _provider_fix(p, _example_condition(p)), severity=aws_sev)
            continue
        claims = condition_claims(p)
        stranger = stranger_assertion(p)
        if claims and claims <= ISSUER_CLAIMS:
            yield Finding(R.PROVIDER_TRIVIAL_CONDITION, p.name,
                          f"condition {p.attribute_condition!r} only checks {', '.join(sorted(claims))}, which every "
                          "token of the issuer passes", _provider_fix(p, _example_condition(p)), severity=aws_sev)
        elif accepts(p, stranger):
            who = stranger.get("repository") or stranger.get("arn")
            yield Finding(R.PROVIDER_TRIVIAL_CONDITION, p.name,
                          f"condition {p.attribute_condition!r} accepts a token from an unrelated identity ({who})",
                          _provider_fix(p, _example_condition(p)), severity=aws_sev)
        elif _github_like(p) and claims & {"repository_owner", "repository_owner_id"} and not claims & NARROWING_CLAIMS:
            broad = [b for b in _pool_members(setup, p.pool_name) if not _repository_scoped(p, b.parsed)]
            if broad:
                b = broad[0]
                yield Finding(R.PROVIDER_ORG_ONLY, p.name,
                              f"condition admits every repository of the organisation, and {b.member} holds "
                              f"{b.role} on {setup.describe(b.resource)} without a repository selector",
                              _provider_fix(p, p.attribute_condition + " && assertion.repository == 'my-org/my-repo'"))


def _pool_members(setup: Setup, pool_name: str) -> list[Binding]:
    parts = pool_name.split("/")
    return [b for b in setup.bindings if b.parsed is not None and b.parsed.pool_type == "workload"
            and b.parsed.project_number == parts[1] and b.parsed.pool_id == parts[5]]


def _repository_scoped(p: ProviderInfo, m: Member | None) -> bool:
    if m is None:
        return False
    if m.kind == "principal":
        return True
    if m.selector == "attribute" and m.attribute_name:
        expression = p.attribute_mapping.get(f"attribute.{m.attribute_name}", "")
        return bool({a or b for a, b in _ASSERTION_REF.findall(expression)} & REPOSITORY_CLAIMS)
    return False


# -- member rules ---------------------------------------------------------------------------------


def _principal_fix(setup: Setup, b: Binding, pool_hint: str) -> str:
    remove = _binding_command(setup, "remove", b.resource, b.role, b.member)
    return (f"{remove}; then re-grant with a generated member: PROJECT_NUMBER=$(gcloud projects describe "
            f"PROJECT_ID --format='value(projectNumber)') and {pool_hint}")


def check_members(setup: Setup) -> Iterator[Finding]:
    known = setup.known_ksas()
    for b in setup.bindings:
        m = b.parsed
        if m is None:
            continue
        where = f"{b.role} on {setup.describe(b.resource)}"
        if m.kind == "principalSet" and m.pool_type == "workload" and m.selector == "*":
            yield Finding(R.PRINCIPALSET_WHOLE_POOL, b.member, f"{where} is granted to every identity of pool "
                          f"{m.pool_id}", _binding_command(setup, "remove", b.resource, b.role, b.member) + "; "
                          + _binding_command(setup, "add", b.resource, b.role, b.member.removesuffix("/*")
                                             + "/attribute.repository/my-org/my-repo"))
        elif m.kind == "principalSet" and m.selector in ("group", "namespace", "kubernetes.cluster") \
                and is_sensitive(b.role):
            yield Finding(R.PRINCIPALSET_NO_SELECTOR, b.member, f"sensitive {where} is granted to a whole "
                          f"{m.selector} of pool {m.pool_id}, not to one workload",
                          _binding_command(setup, "remove", b.resource, b.role, b.member)
                          + "; grant it to one principal:// subject or an attribute.repository set instead")
        if m.kind in ("principal", "principalSet") and m.pool_type == "workload" and m.project_number:
            yield from _check_pool_member(setup, b, m, known)
        elif m.kind == "serviceAccount" and m.is_gke:
            pool = f"{m.project_id}.svc.id.goog"
            if setup.project_by_id(str(m.project_id)) is None or not setup.clusters_with_pool(pool):
                why = "no such project" if setup.project_by_id(str(m.project_id)) is None else \
                    "no cluster of that project has that workload pool"
                yield Finding(R.GKE_MEMBER_NO_POOL, b.member, f"{where} names workload pool {pool}: {why}",
                              f"gcloud container clusters update CLUSTER_NAME --location=REGION "
                              f"--workload-pool={m.project_id}.svc.id.goog (or fix the project in the member)")
            elif known is not None and (m.namespace, m.ksa) not in known:
                yield _unknown_ksa(setup, b, where)


def _unknown_ksa(setup: Setup, b: Binding, where: str) -> Finding:
    m = b.parsed
    assert m is not None
    return Finding(R.GKE_MEMBER_UNKNOWN_KSA, b.member,
                   f"{where} names KSA {m.namespace}/{m.ksa}, which no manifest or cluster has",
                   _binding_command(setup, "remove", b.resource, b.role, b.member)
                   + "; re-add it with the namespace and serviceAccountName of the pod, character for character")


def _check_pool_member(setup: Setup, b: Binding, m: Member, known: set[tuple[str, str]] | None) -> Iterator[Finding]:
    where = f"{b.role} on {setup.describe(b.resource)}"
    number = str(m.project_number)
    project = setup.project_by_number(number)
    if m.project_id is not None:  # a GKE project pool: PROJECT_ID.svc.id.goog
        owner = setup.project_by_id(m.project_id)
        hint = "the pool ${PROJECT_ID}.svc.id.goog of the cluster (gcloud container clusters describe CLUSTER " \
               "--format='value(workloadIdentityConfig.workloadPool)')"
        if owner is None:
            yield Finding(R.MEMBER_UNKNOWN_POOL, b.member, f"{where} names pool {m.pool_id}: there is no project "
                          f"{m.project_id}", _principal_fix(setup, b, hint))
            return
        if owner.number != number:
            yield Finding(R.MEMBER_UNKNOWN_PROJECT, b.member, f"{where} uses project number {number}, but "
                          f"{m.project_id} is number {owner.number}", _principal_fix(setup, b, hint))
            return
        if not setup.clusters_with_pool(str(m.pool_id)):
            yield Finding(R.MEMBER_UNKNOWN_POOL, b.member, f"{where} names pool {m.pool_id}, which no cluster "
                          "uses as its workload pool", _principal_fix(setup, b, hint))
            return
        if m.kind == "principal" and m.subject is not None and m.namespace is None:
            yield Finding(R.MEMBER_UNKNOWN_SUBJECT, b.member, f"{where} names subject {m.subject!r}; GKE subjects "
                          "are ns/NAMESPACE/sa/KSA", _principal_fix(setup, b, hint))
        elif known is not None and m.namespace is not None:
            if m.ksa is not None and (m.namespace, m.ksa) not in known:
                yield _unknown_ksa(setup, b, where)
            elif m.ksa is None and not any(ns == m.namespace for ns, _ in known):
                yield Finding(R.GKE_MEMBER_UNKNOWN_KSA, b.member, f"{where} names namespace {m.namespace}, which "
                              "no manifest or cluster has", _binding_command(setup, "remove", b.resource, b.role,
                                                                             b.member))
        return
    hint = f"the pool's full name from gcloud iam workload-identity-pools describe {m.pool_id} --location=global " \
           "--format='value(name)'"
    if project is None:
        yield Finding(R.MEMBER_UNKNOWN_PROJECT, b.member, f"{where} uses project number {number}, which no "
                      "project has", _principal_fix(setup, b, hint))
        return
    pool = setup.pool(number, str(m.pool_id))
    if pool is None or pool.state != "ACTIVE":
        state = "does not exist" if pool is None else "is deleted"
        yield Finding(R.MEMBER_UNKNOWN_POOL, b.member, f"{where} names pool {m.pool_id} of project "
                      f"{project.project_id}, which {state}", _principal_fix(setup, b, hint))
        return
    if m.kind == "principal" and m.subject is not None:
        providers = setup.providers_of(pool)
        if providers and not any(_may_produce(p, m.subject) for p in providers):
            yield Finding(R.MEMBER_UNKNOWN_SUBJECT, b.member, f"{where} names subject {m.subject!r}, which no "
                          f"provider of pool {m.pool_id} maps a token to", _principal_fix(setup, b, hint))


def _may_produce(p: ProviderInfo, subject: str) -> bool:
    """Whether a provider's google.subject mapping can yield `subject` (True when we cannot tell)."""
    expression = p.attribute_mapping.get("google.subject", "").replace(" ", "")
    if p.aws is not None and expression == "assertion.arn":
        account = str(p.aws.get("accountId") or "")
        return subject.startswith(f"arn:aws:sts::{account}:") or subject.startswith(f"arn:aws:iam::{account}:")
    if _github_like(p) and expression == "assertion.sub":
        return subject.startswith("repo:")
    return True


# -- Kubernetes service accounts -------------------------------------------------------------------


def _wiu_for_ksa(setup: Setup, email: str, project_id: str, namespace: str, ksa: str, pools: set[str]) -> bool:
    """Whether some workloadIdentityUser binding on the GSA (or its project) matches the KSA."""
    account = setup.account_by_email(email)
    resources = {f"projects/{project_id}"}
    if account is not None:
        resources.add(f"projects/{account.project_id}/serviceAccounts/{account.unique_id}")
    for b in setup.bindings:
        m = b.parsed
        if b.role != WIU or b.resource not in resources or m is None or not m.is_gke:
            continue
        if pools and f"{m.project_id}.svc.id.goog" not in pools:
            continue
        if m.selector == "*" or (m.namespace == namespace and (m.ksa == ksa or m.selector == "namespace")):
            return True
    return False


def misspelt_annotation(key: str) -> bool:
    """Whether an annotation key is a misspelling of iam.gke.io/gcp-service-account (GKE ignores it)."""
    if key == ANNOTATION:
        return False
    return key.lower() == ANNOTATION or _edit_distance(key, ANNOTATION) <= 3 or key.endswith("/gcp-service-account") \
        or (key.startswith("iam.gke.io/") and "service" in key)


def check_ksas(setup: Setup) -> Iterator[Finding]:
    for o in setup.service_accounts():
        for key in o.annotations():
            k = str(key)
            if k == ANNOTATION:
                continue
            if misspelt_annotation(k):
                yield Finding(R.ANNOTATION_KEY_TYPO, o.label, f"annotation key {k!r} is not {ANNOTATION!r}: GKE "
                              "ignores it", f"in {o.where}: rename metadata.annotations[{k!r}] to {ANNOTATION}",
                              **_manifest_loc(o, "metadata", "annotations", k))
    for o, value in setup.annotated_ksas():
        loc = _manifest_loc(o, "metadata", "annotations", ANNOTATION)
        if o.name == "default":
            yield Finding(R.DEFAULT_KSA_ANNOTATED, o.label, f"the default KSA of namespace {o.namespace} is "
                          f"annotated with {value!r}", f"remove the annotation from {o.where}, create a dedicated KSA "
                          "(kubectl create serviceaccount my-app-ksa --namespace=" + o.namespace + ") and set "
                          "serviceAccountName", **loc)
        if not GSA_EMAIL.fullmatch(value):
            yield Finding(R.ANNOTATION_NOT_EMAIL, o.label, f"annotation value {value!r} is not a full GSA email "
                          "(NAME@PROJECT_ID.iam.gserviceaccount.com)",
                          f"kubectl annotate serviceaccount {o.name} --namespace={o.namespace} --overwrite "
                          f"{ANNOTATION}={value.strip()}@PROJECT_ID.iam.gserviceaccount.com"
                          if "@" not in value else f"set {ANNOTATION}: {value.strip()} (no spaces) in {o.where}",
                          **loc)
            continue
        pools = o.workload_pools(setup.project)
        project = next(iter(pools)).removesuffix(".svc.id.goog") if pools else "PROJECT_ID"
        member = f"serviceAccount:{project}.svc.id.goog[{o.namespace}/{o.name}]"
        grant = (f"gcloud iam service-accounts add-iam-policy-binding {value} --role={WIU} "
                 f"--member={_q(member)}")
        if setup.account_by_email(value) is None:
            yield Finding(R.ANNOTATION_NO_BINDING, o.label, f"annotation names {value}, which does not exist",
                          f"gcloud iam service-accounts create {value.split('@')[0]} "
                          f"--project={value.split('@')[1].split('.')[0]}; {grant}", **loc)
        elif not _wiu_for_ksa(setup, value, value.split("@")[1].split(".")[0], o.namespace, o.name, pools):
            yield Finding(R.ANNOTATION_NO_BINDING, o.label, f"annotation names {value}, but no {WIU} binding on "
                          f"it matches {o.namespace}/{o.name}", grant, **loc)
    # bound but not annotated (the seeds' first common mistake)
    annotated = {(o.namespace, o.name) for o, _ in setup.annotated_ksas()}
    bound: dict[tuple[str, str], str] = {}
    for b in _impersonations(setup):
        m = b.parsed
        if b.role == WIU and m is not None and m.kind == "serviceAccount" and m.ksa:
            account = setup.account_of_resource(b.resource)
            bound.setdefault((str(m.namespace), m.ksa), account.email if account else "")
    for o in setup.service_accounts():
        email = bound.get((o.namespace, o.name))
        if email and (o.namespace, o.name) not in annotated:
            yield Finding(R.KSA_NOT_ANNOTATED, o.label, f"{o.namespace}/{o.name} may impersonate {email} but is "
                          f"not annotated, so its pods do not act as {email}",
                          f"kubectl annotate serviceaccount {o.name} --namespace={o.namespace} "
                          f"{ANNOTATION}={email}", **_manifest_loc(o, "metadata"))


def check_default_ksa(setup: Setup) -> Iterator[Finding]:
    roles = _roles_by_account(setup)
    for b in setup.bindings:
        m = b.parsed
        if m is None or not m.is_gke or m.ksa != "default":
            continue
        if is_sensitive(b.role) and b.role != WIU:
            yield Finding(R.DEFAULT_KSA_SENSITIVE, b.member, f"{b.role} on {setup.describe(b.resource)} is granted "
                          f"to the default KSA of namespace {m.namespace}",
                          _binding_command(setup, "remove", b.resource, b.role, b.member))
        account = setup.account_of_resource(b.resource)
        if b.role in IMPERSONATION_ROLES and account is not None:
            for held in roles.get(account.email, ()):
                if is_sensitive(held.role):
                    yield Finding(R.DEFAULT_KSA_SENSITIVE, b.member, f"the default KSA of namespace {m.namespace} "
                                  f"can act as {account.email}, which holds {held.role} on "
                                  f"{setup.describe(held.resource)}",
                                  _binding_command(setup, "remove", b.resource, b.role, b.member))


def check_node_pools(setup: Setup) -> Iterator[Finding]:
    for np in setup.node_pools:
        c = np.cluster
        if c.workload_pool and not c.autopilot and np.mode != "GKE_METADATA":
            yield Finding(R.NODE_POOL_METADATA, f"projects/{c.project_id}/locations/{c.location}/clusters/{c.name}"
                          f"/nodePools/{np.name}", f"node pool {np.name} of cluster {c.name} runs in "
                          f"{np.mode or 'GCE_METADATA'} mode although the cluster has workload pool {c.workload_pool}",
                          f"gcloud container node-pools update {np.name} --cluster={c.name} --location={c.location} "
                          f"--project={c.project_id} --workload-metadata=GKE_METADATA")


# -- grants -------------------------------------------------------------------------------------------


def check_grants(setup: Setup) -> Iterator[Finding]:
    for b in setup.bindings:
        if b.role != WIU:
            continue
        if setup.account_of_resource(b.resource) is None:
            yield Finding(R.WIU_PROJECT_LEVEL, b.member, f"{WIU} on {setup.describe(b.resource)} lets {b.member} "
                          "impersonate every service account below it",
                          _binding_command(setup, "remove", b.resource, b.role, b.member) + "; "
                          + f"gcloud iam service-accounts add-iam-policy-binding GSA_EMAIL --role={WIU} "
                          f"--member={_q(b.member)}")
        if b.condition:
            yield Finding(R.WIU_CONDITIONAL, b.member, f"{WIU} on {setup.describe(b.resource)} carries condition "
                          f"{b.condition.get('expression')!r}",
                          _binding_command(setup, "remove", b.resource, b.role, b.member, "all") + "; "
                          + _binding_command(setup, "add", b.resource, b.role, b.member)
                          + "; put the condition on the GSA's application grant (e.g. gcloud projects "
                          "add-iam-policy-binding PROJECT_ID --role=roles/storage.objectViewer "
                          "--condition=...)")
    accounts = _workload_accounts(setup)
    roles = _roles_by_account(setup)
    for email, _ in sorted(accounts.items()):
        for held in roles.get(email, ()):
            if held.role in BASIC_ROLES:
                yield Finding(R.BASIC_ROLE_WORKLOAD_SA, f"serviceAccount:{email}", f"workload service account "
                              f"{email} holds {held.role} on {setup.describe(held.resource)}",
                              _binding_command(setup, "remove", held.resource, held.role, held.member)
                              + "; grant the narrowest predefined or custom role the workload needs")
    users: dict[str, set[str]] = {}
    for email, bs in accounts.items():
        for b in bs:
            m = b.parsed
            assert m is not None
            users.setdefault(email, set()).add(f"KSA {m.namespace}/{m.ksa}" if m.ksa else b.member)
    for o, value in setup.annotated_ksas():
        users.setdefault(value.strip().lower(), set()).add(f"KSA {o.namespace}/{o.name}")
    for email, who in sorted(users.items()):
        if len(who) > 1:
            yield Finding(R.SHARED_GSA, f"serviceAccount:{email}", f"{email} is used by {len(who)} workloads: "
                          f"{', '.join(sorted(who))}", "gcloud iam service-accounts create one GSA per workload "
                          f"and move each {WIU} binding and annotation to its own GSA")


# -- keys -------------------------------------------------------------------------------------------


def _federation_projects(setup: Setup) -> set[str]:
    out = {a.project_id for a in (setup.account_by_email(e) for e in _workload_accounts(setup)) if a}
    numbers = {p.project_number for p in setup.pools if p.state == "ACTIVE" and not p.pool_id.endswith(".id.goog")}
    out |= {p.project_id for p in setup.projects if p.number in numbers}
    out |= {c.project_id for c in setup.clusters if c.workload_pool}
    if setup.project is not None:
        out &= {setup.project}
    return out


def check_keys(setup: Setup, max_key_age_days: int) -> Iterator[Finding]:
    federated = _workload_accounts(setup)
    for k in setup.keys:
        if k.key_type != "USER_MANAGED":
            continue
        delete = f"gcloud iam service-accounts keys delete {k.key_id} --iam-account={k.sa_email}"
        name = f"projects/{k.project_id}/serviceAccounts/{k.sa_email}/keys/{k.key_id}"
        if k.sa_email in federated:
            yield Finding(R.KEY_ON_FEDERATED_SA, name, f"{k.sa_email} is used through federation yet has "
                          f"user-managed key {k.key_id}", delete)
        age = setup.now - k.valid_after
        if age > timedelta(days=max_key_age_days):
            yield Finding(R.KEY_TOO_OLD, name, f"key {k.key_id} of {k.sa_email} is {age.days} days old "
                          f"(limit {max_key_age_days})", delete)
    for project_id in sorted(_federation_projects(setup)):
        p = setup.project_by_id(project_id)
        if p is not None and not p.key_creation_disabled:
            yield Finding(R.KEY_CREATION_ALLOWED, f"projects/{project_id}", f"project {project_id} uses federation "
                          "but still allows service account key creation",
                          "gcloud resource-manager org-policies enable-enforce iam.disableServiceAccountKeyCreation "
                          f"--project={project_id}")


def check_audit(setup: Setup) -> Iterator[Finding]:
    projects = {a.project_id for a in (setup.account_by_email(e) for e in _workload_accounts(setup)) if a}
    for project_id in sorted(projects):
        configs = setup.audit_configs.get(f"projects/{project_id}", []) + setup.audit_configs.get(ROOT, [])
        if not credentials_logged(configs, ()):
            yield Finding(R.DATA_ACCESS_OFF, f"projects/{project_id}", f"service accounts of {project_id} are "
                          "impersonated, but Data Access audit logs (DATA_READ or ADMIN_READ) are off for iam.googleapis.com",
                          f"gcloud projects get-iam-policy {project_id} --format=json > policy.json; add "
                          '"auditConfigs": [{"service": "iam.googleapis.com", "auditLogConfigs": [{"logType": '
                          f'"DATA_READ"}}]}}]; gcloud projects set-iam-policy {project_id} policy.json')


def check_workloads(setup: Setup) -> Iterator[Finding]:
    for o in setup.workloads():
        spec = pod_spec(o.body)
        path = pod_spec_path(o.body)
        assert spec is not None and path is not None
        for use in key_file_uses(spec):
            src = f"secret {use.secret_name}" + (f" (volume {use.volume})" if use.volume else " (secretKeyRef)")
            yield Finding(R.MANIFEST_KEY_FILE, o.label, f"container {use.container} reads its credentials from "
                          f"{src} via GOOGLE_APPLICATION_CREDENTIALS",
                          "keyless doctor migrate -f " + (o.manifest.path if o.manifest else "MANIFEST.yaml")
                          + " (bind a KSA to the GSA, then remove the secret volume, mount and env)",
                          **_manifest_loc(o, *path, *use.container_path, "env", use.env_index or 0))
        if not spec.get("serviceAccountName") and not spec.get("serviceAccount"):
            yield Finding(R.POD_DEFAULT_KSA, o.label, f"{o.label} sets no serviceAccountName, so it runs as "
                          f"{o.namespace}/default", f"set spec.serviceAccountName: my-app-ksa in {o.where} "
                          "(a dedicated, annotated KSA)", **_manifest_loc(o, *path))


CHECKS: tuple[Callable[[Setup], Iterator[Finding]], ...] = (
    check_providers, check_members, check_ksas, check_default_ksa, check_node_pools, check_grants,
    check_audit, check_workloads,
)
SEVERITY_ORDER = {R.ERROR: 0, R.WARNING: 1, R.INFO: 2}


def lint(setup: Setup, *, max_key_age_days: int = 90) -> list[Finding]:
    """Every finding of every rule, errors first, then by rule id and object."""
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(setup))
    findings.extend(check_keys(setup, max_key_age_days))
    unique = {(f.rule.id, f.object, f.message): f for f in findings}
    return sorted(unique.values(), key=lambda f: (SEVERITY_ORDER[f.level], f.rule.id, f.object, f.message))


def exit_status(findings: list[Finding]) -> int:
    """1 when any finding is an error (so CI fails), else 0."""
    return 1 if any(f.level == R.ERROR for f in findings) else 0


def finding_json(f: Finding) -> dict[str, Any]:
    body: dict[str, Any] = {"rule": f.rule.id, "severity": f.level, "title": f.rule.title, "object": f.object,
                            "message": f.message, "why": f.rule.why, "fix": f.fix}
    if f.path:
        body["location"] = {"path": f.path, "line": f.line}
    return body


def render_json(findings: list[Finding]) -> str:
    counts = {s: sum(1 for f in findings if f.level == s) for s in (R.ERROR, R.WARNING, R.INFO)}
    return json.dumps({"findings": [finding_json(f) for f in findings], "summary": counts}, indent=2)


def render_text(findings: list[Finding]) -> str:
    if not findings:
        return "No problems found.\n"
    lines = []
    for f in findings:
        at = f" ({f.path}:{f.line})" if f.path else ""
        lines += [f"{f.level.upper()} {f.rule.id} {f.object}{at}", f"  {f.message}", f"  why: {f.rule.why}",
                  f"  fix: {f.fix}", ""]
    errors = sum(1 for f in findings if f.level == R.ERROR)
    lines.append(f"{len(findings)} finding(s), {errors} error(s).")
    return "\n".join(lines) + "\n"
