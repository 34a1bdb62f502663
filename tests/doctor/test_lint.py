"""`keyless doctor lint`: the seeds' correct configuration lints clean, and each of the seeds'
mistakes, introduced one at a time into it, is reported by its rule (and only then)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from keyless.federation.pools import create_provider, get_pool
from keyless.iam import service_account_keys, service_accounts
from keyless.projects import KEY_CREATION_CONSTRAINT, clear_org_policy, get_project
from keyless.state import ServerState
from keyless.store.models import ServiceAccountKey
from tests.doctor import seeds
from tests.doctor.seeds import (
    APP_GSA,
    APP_KSA_MEMBER,
    DEPLOY_SA,
    MANIFESTS,
    NUMBER,
    POOL,
    PROJECT,
    grant,
    ids,
    run,
)

WIU = "roles/iam.workloadIdentityUser"
PROJ = f"projects/{PROJECT}"


@pytest.fixture
def st(state: ServerState) -> ServerState:
    return seeds.build(state)


def _provider(st: ServerState, pid: str, condition: str | None, mapping: dict[str, str] | None = None) -> None:
    with st.db.write() as s:
        create_provider(s, get_pool(s, seeds.pool_path("github-pool")), pid, {
            "attributeMapping": mapping or {"google.subject": "assertion.sub",
                                            "attribute.repository": "assertion.repository"},
            "attributeCondition": condition, "oidc": {"issuerUri": "https://token.actions.githubusercontent.com"}})


def _key(st: ServerState, email: str, age_days: int = 0) -> None:
    with st.db.write() as s:
        project = get_project(s, PROJECT)
        clear_org_policy(project, KEY_CREATION_CONSTRAINT)
        sa = service_accounts.find_by_email(s, email) or service_accounts.create(s, PROJECT, email.split("@")[0])
        s.flush()
        row, _ = service_account_keys.create(s, sa, {}, "http://127.0.0.1")
        row.valid_after = datetime.now(UTC) - timedelta(days=age_days)
        s.flush()
        assert s.get(ServiceAccountKey, row.key_id) is not None


def test_the_seeds_correct_configuration_lints_clean(st: ServerState) -> None:
    assert run(st) == []
    assert run(st, project=None) == []


def _m(old: str, new: str) -> str:
    assert old in MANIFESTS
    return MANIFESTS.replace(old, new)


WITHOUT_SA_NAME = _m("      serviceAccountName: my-app-ksa\n", "")
TYPO_KEY = _m("    iam.gke.io/gcp-service-account: my-app-gsa", "    iam.gke.io/gcp-service-acount: my-app-gsa")
SHORT_VALUE = _m("gcp-service-account: my-app-gsa@my-project.iam.gserviceaccount.com",
                 "gcp-service-account: my-app-gsa")
DEFAULT_ANNOTATED = _m("  name: default\n  namespace: production\n",
                       "  name: default\n  namespace: production\n  annotations:\n"
                       "    iam.gke.io/gcp-service-account: my-app-gsa@my-project.iam.gserviceaccount.com\n")
UNBOUND_KSA = MANIFESTS + """---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: other-ksa
  namespace: production
  annotations:
    iam.gke.io/gcp-service-account: deploy-sa@my-project.iam.gserviceaccount.com
"""
NOT_ANNOTATED = _m("  annotations:\n    iam.gke.io/gcp-service-account: my-app-gsa@my-project.iam.gserviceaccount.com\n",
                   "")
KEY_FILE = MANIFESTS + "---\n" + seeds.BEFORE.replace("name: my-app\n", "name: legacy-app\n", 1)

Mistake = Callable[[ServerState], str | None]
CASES: dict[str, tuple[str, Mistake]] = {
    "no condition": ("KL001", lambda st: _provider(st, "no-condition", None)),
    "always true": ("KL002", lambda st: _provider(st, "always-true", "true")),
    "issuer only": ("KL002", lambda st: _provider(
        st, "issuer-only", "assertion.iss == 'https://token.actions.githubusercontent.com'")),
    "branch only (any repository on GitHub)": ("KL002", lambda st: _provider(
        st, "branch-only", "assertion.ref == 'refs/heads/main'")),
    "org-only condition reaching resources by branch": ("KL003", lambda st: grant(
        st, PROJ, "roles/storage.objectViewer", f"principalSet://{POOL}/github-pool/attribute.ref/refs/heads/main")),
    "whole pool": ("KL004", lambda st: grant(st, seeds.sa_resource(st, DEPLOY_SA), WIU,
                                             f"principalSet://{POOL}/github-pool/*")),
    "namespace set on a sensitive role": ("KL005", lambda st: grant(
        st, PROJ, "roles/secretmanager.admin", f"principalSet://{POOL}/my-project.svc.id.goog/namespace/production")),
    "tenant-42: sibling project's number": ("KL006", lambda st: grant(
        st, PROJ, "roles/storage.objectViewer", seeds.TENANT_PRINCIPAL.replace(NUMBER, "987654321"))),
    "tenant-42: literal PROJECT_ID pool": ("KL007", lambda st: grant(
        st, PROJ, "roles/storage.objectViewer", seeds.TENANT_PRINCIPAL.replace("my-project.svc", "PROJECT_ID.svc"))),
    "unknown pool": ("KL007", lambda st: grant(st, PROJ, "roles/storage.objectViewer",
                                               f"principalSet://{POOL}/gh-pool/attribute.repository/my-org/my-repo")),
    "subject no provider maps": ("KL008", lambda st: grant(st, PROJ, "roles/storage.objectViewer",
                                                           f"principal://{POOL}/github-pool/subject/my-org/my-repo")),
    "wrong namespace in member": ("KL009", lambda st: grant(
        st, seeds.sa_resource(st, APP_GSA), WIU, "serviceAccount:my-project.svc.id.goog[prod/my-app-ksa]")),
    "wrong KSA in principal": ("KL009", lambda st: grant(
        st, PROJ, "roles/storage.objectViewer", seeds.TENANT_PRINCIPAL.replace("app-ksa", "app-sa"))),
    "project with no workload pool": ("KL010", lambda st: grant(
        st, seeds.sa_resource(st, APP_GSA), WIU, "serviceAccount:my-project-id.svc.id.goog[production/my-app-ksa]")),
    "annotation key typo": ("KL011", lambda st: TYPO_KEY),
    "annotation short name": ("KL012", lambda st: SHORT_VALUE),
    "annotation without binding": ("KL013", lambda st: UNBOUND_KSA),
    "default KSA annotated": ("KL014", lambda st: DEFAULT_ANNOTATED),
    "sensitive role on default KSA": ("KL015", lambda st: grant(
        st, PROJ, "roles/secretmanager.admin", "serviceAccount:my-project.svc.id.goog[production/default]")),
    "default KSA can act as an owner": ("KL015", lambda st: (
        grant(st, seeds.sa_resource(st, DEPLOY_SA), WIU, "serviceAccount:my-project.svc.id.goog[production/default]"),
        grant(st, PROJ, "roles/owner", f"serviceAccount:{DEPLOY_SA}")) and None),
    "node pool on GCE_METADATA": ("KL016", lambda st: seeds.add_cluster(st, name="old-cluster", mode="GCE_METADATA")),
    "workloadIdentityUser on the project": ("KL017", lambda st: grant(st, PROJ, WIU, APP_KSA_MEMBER)),
    "condition on workloadIdentityUser": ("KL018", lambda st: grant(
        st, seeds.sa_resource(st, DEPLOY_SA), WIU, f"principalSet://{POOL}/github-pool/attribute.repository/my-org/x",
        {"expression": 'resource.name.startsWith("projects/_/buckets/b")', "title": "t"})),
    "editor on the workload GSA": ("KL019", lambda st: grant(st, PROJ, "roles/editor", f"serviceAccount:{APP_GSA}")),
    "GSA shared by two KSAs": ("KL020", lambda st: grant(
        st, seeds.sa_resource(st, APP_GSA), WIU, "serviceAccount:my-project.svc.id.goog[tenant-42/app-ksa]")),
    "key on a federated GSA": ("KL021", lambda st: _key(st, APP_GSA)),
    "key creation allowed": ("KL022", lambda st: _clear_policy(st)),
    "key older than 90 days": ("KL023", lambda st: _key(st, "legacy-sa@my-project.iam.gserviceaccount.com", 200)),
    "data access logs off": ("KL024", lambda st: _audit_off(st)),
    "key Secret feeds ADC": ("KL025", lambda st: KEY_FILE),
    "no serviceAccountName": ("KL026", lambda st: WITHOUT_SA_NAME),
    "KSA bound but not annotated": ("KL027", lambda st: NOT_ANNOTATED),
}


def _clear_policy(st: ServerState) -> None:
    with st.db.write() as s:
        clear_org_policy(get_project(s, PROJECT), KEY_CREATION_CONSTRAINT)


def _audit_off(st: ServerState) -> None:
    from keyless.iam.policy import set_policy
    with st.db.write() as s:
        set_policy(s, PROJ, {"auditConfigs": []}, "auditConfigs", st.role_exists(s), st.member_check(s))


@pytest.mark.parametrize("case", list(CASES))
def test_each_seed_mistake_is_reported_by_its_rule(st: ServerState, case: str) -> None:
    rule, mistake = CASES[case]
    assert rule not in ids(run(st))  # passing fixture: the seeds' configuration
    text = mistake(st)
    findings = run(st, text or MANIFESTS)
    hits = [f for f in findings if f.rule.id == rule]
    assert hits, f"{case}: expected {rule}, got {[(f.rule.id, f.message) for f in findings]}"
    for f in hits:
        assert f.fix and f.rule.why and f.object


def test_rules_not_in_the_table_are_all_covered() -> None:
    from keyless.doctor.rules import RULES
    assert set(RULES) == {rule for rule, _ in CASES.values()}


def test_passing_variants_of_rules(st: ServerState) -> None:
    # narrower-than-org conditions and repository-scoped principals pass
    _provider(st, "repo-only", "assertion.repository == 'my-org/my-repo'")
    _provider(st, "protected-branches", "assertion.repository_owner == 'my-org' && (assertion.ref == 'refs/heads/main' "
                                        "|| assertion.ref.startsWith('refs/heads/release/'))")
    grant(st, PROJ, "roles/storage.objectViewer", f"principal://{POOL}/github-pool/subject/repo:my-org/my-repo:ref:"
                                                  "refs/heads/main")
    # a namespace principal set on a non-sensitive role is a least-privilege grant, not KL005
    grant(st, PROJ, "roles/storage.objectViewer", f"principalSet://{POOL}/my-project.svc.id.goog/namespace/production")
    # a key younger than the limit: only KL022 (its creation needed the policy cleared)
    _key(st, "legacy-sa@my-project.iam.gserviceaccount.com", 10)
    assert ids(run(st)) == {"KL022"}
    assert "KL023" in ids(run(st, days=5))


def test_aws_provider_without_condition_is_a_warning_not_an_error(st: ServerState) -> None:
    with st.db.write() as s:
        create_provider(s, get_pool(s, seeds.pool_path("aws-pool")), "aws-open", {"aws": {"accountId": "123456789012"}})
    hits = [f for f in run(st) if f.rule.id == "KL001"]
    assert [f.level for f in hits] == ["warning"]


def test_manifest_findings_point_at_file_and_line(st: ServerState) -> None:
    findings = run(st, TYPO_KEY)
    typo = next(f for f in findings if f.rule.id == "KL011")
    assert typo.path == "k8s/app.yaml"
    assert TYPO_KEY.splitlines()[typo.line - 1].strip().startswith("iam.gke.io/gcp-service-acount")
    key = next(f for f in run(st, KEY_FILE) if f.rule.id == "KL025")
    assert KEY_FILE.splitlines()[key.line - 1].strip() == "- name: GOOGLE_APPLICATION_CREDENTIALS"
    assert "my-app-sa-key" in key.message and "doctor migrate" in key.fix


def test_fix_is_the_exact_command(st: ServerState) -> None:
    seeds.add_cluster(st, name="old-cluster", mode="GCE_METADATA")
    f = next(f for f in run(st) if f.rule.id == "KL016")
    assert f.fix == ("gcloud container node-pools update default-pool --cluster=old-cluster --location=europe-west2 "
                     "--project=my-project --workload-metadata=GKE_METADATA")
    grant(st, seeds.sa_resource(st, APP_GSA), WIU, "serviceAccount:my-project.svc.id.goog[prod/my-app-ksa]")
    f = next(f for f in run(st) if f.rule.id == "KL009")
    assert f.fix.startswith(f"gcloud iam service-accounts remove-iam-policy-binding {APP_GSA} --role={WIU} "
                            "--member='serviceAccount:my-project.svc.id.goog[prod/my-app-ksa]'")
