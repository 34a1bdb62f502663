"""Policy members as Google's allow policies accept them, and identities expanded into member keys."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyless.errors import InvalidArgument
from keyless.iam.members import (
    ALL_AUTHENTICATED_USERS,
    ALL_USERS,
    UNKNOWN_TYPE,
    canonical_member,
    federated_principal,
    member_keys_for_federated,
    member_keys_for_gke_workload,
    member_keys_for_service_account,
    member_keys_for_user,
    parse_member,
)

pytestmark = pytest.mark.store_independent  # runs on the SQLite leg only (tests/conftest.py)

POOL = "iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/github-pool"
SEED_REPO_SET = f"principalSet://{POOL}/attribute.repository/my-org/my-repo"
SEED_LEGACY_KSA = "serviceAccount:my-project.svc.id.goog[my-namespace/my-ksa]"
GKE_POOL = "iam.googleapis.com/projects/424242/locations/global/workloadIdentityPools/my-project.svc.id.goog"
SEED_DIRECT_KSA = f"principal://{GKE_POOL}/subject/ns/apps/sa/app-ksa"
CLUSTER_URL = "https://container.googleapis.com/v1/projects/my-project/locations/us-central1/clusters/prod"


# -- every kind, by example ------------------------------------------------------------------

def test_special_identifiers() -> None:
    assert parse_member("allUsers").kind == ALL_USERS
    assert parse_member("allAuthenticatedUsers").value == ALL_AUTHENTICATED_USERS


@pytest.mark.parametrize("kind", ["user", "group", "serviceAccount"])
def test_email_kinds_are_lower_cased(kind: str) -> None:
    m = parse_member(f"{kind}:Alex.Doe@Example.COM")
    assert (m.kind, m.email, m.value) == (kind, "alex.doe@example.com", f"{kind}:alex.doe@example.com")


def test_domain() -> None:
    m = parse_member("domain:Example.com")
    assert (m.kind, m.domain, m.value) == ("domain", "example.com", "domain:example.com")


def test_deleted_principals_round_trip() -> None:
    m = parse_member("deleted:serviceAccount:My-SA@p.iam.gserviceaccount.com?uid=123456789012345678901")
    assert (m.kind, m.deleted_kind, m.email, m.uid) == ("deleted", "serviceAccount", "my-sa@p.iam.gserviceaccount.com",
                                                         "123456789012345678901")
    assert m.value == "deleted:serviceAccount:my-sa@p.iam.gserviceaccount.com?uid=123456789012345678901"
    assert parse_member("deleted:user:alex@example.com?uid=1").deleted_kind == "user"
    assert parse_member("deleted:group:g@example.com?uid=2").deleted_kind == "group"
    wf = "deleted:principal://iam.googleapis.com/locations/global/workforcePools/my-pool-id/subject/My-Subject"
    assert parse_member(wf).value == wf


def test_seed_github_attribute_set_keeps_slashes_in_the_value() -> None:
    m = parse_member(SEED_REPO_SET)
    assert (m.kind, m.pool_type, m.project_number, m.pool_id) == ("principalSet", "workload", "123456789", "github-pool")
    assert (m.selector, m.attribute_name, m.attribute_value) == ("attribute", "repository", "my-org/my-repo")
    assert m.value == SEED_REPO_SET


def test_pool_subject_group_and_whole_pool() -> None:
    subject = f"principal://{POOL}/subject/repo:My-Org/my-repo:ref:refs/heads/main"
    m = parse_member(subject)
    assert (m.kind, m.selector, m.subject) == ("principal", "subject", "repo:My-Org/my-repo:ref:refs/heads/main")
    assert m.value == subject  # principal:// values are case-sensitive: not lower-cased
    assert parse_member(f"principalSet://{POOL}/group/Admins").group == "Admins"
    assert parse_member(f"principalSet://{POOL}/*").selector == "*"


def test_seed_gke_legacy_member() -> None:
    m = parse_member(SEED_LEGACY_KSA)
    assert (m.kind, m.project_id, m.namespace, m.ksa, m.email) == (
        "serviceAccount", "my-project", "my-namespace", "my-ksa", None)
    assert m.is_gke and m.value == SEED_LEGACY_KSA


def test_seed_gke_direct_member() -> None:
    m = parse_member(SEED_DIRECT_KSA)
    assert (m.kind, m.project_number, m.pool_id, m.project_id) == (
        "principal", "424242", "my-project.svc.id.goog", "my-project")
    assert (m.subject, m.namespace, m.ksa) == ("ns/apps/sa/app-ksa", "apps", "app-ksa")


def test_seed_literal_placeholder_pool_is_accepted_verbatim() -> None:
    # seed 002: "IAM accepts a malformed principal happily and silently grants nothing"
    member = ("principal://iam.googleapis.com/projects/999/locations/global/workloadIdentityPools/"
              "PROJECT_ID.svc.id.goog/subject/ns/tenant-42/sa/app-ksa")
    assert canonical_member(member) == member


def test_gke_principal_sets_and_uid() -> None:
    ns = parse_member(f"principalSet://{GKE_POOL}/namespace/apps")
    assert (ns.selector, ns.namespace) == ("namespace", "apps")
    cluster = parse_member(f"principalSet://{GKE_POOL}/kubernetes.cluster/{CLUSTER_URL}")
    assert (cluster.selector, cluster.cluster) == ("kubernetes.cluster", CLUSTER_URL)
    uid = parse_member(f"principal://{GKE_POOL}/kubernetes.serviceaccount.uid/0b1c-77")
    assert (uid.selector, uid.ksa_uid) == ("kubernetes.serviceaccount.uid", "0b1c-77")


def test_workforce_and_resource_manager_sets() -> None:
    base = "iam.googleapis.com/locations/global/workforcePools/altostrat-contractors"
    m = parse_member(f"principal://{base}/subject/raha@altostrat.com")
    assert (m.pool_type, m.pool_id, m.subject, m.project_number) == (
        "workforce", "altostrat-contractors", "raha@altostrat.com", None)
    assert parse_member(f"principalSet://{base}/attribute.department/administration").attribute_value == "administration"
    sas = parse_member("principalSet://cloudresourcemanager.googleapis.com/projects/123456789012/type/ServiceAccount")
    assert (sas.selector, sas.container) == ("type/ServiceAccount", "projects/123456789012")


# -- malformed members -----------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "", "foo", "a@example.com", "user:", "serviceAccount:", "domain:", "User:a@b.c", "USER:a@b.c", "serviceaccount:a@b.c", "user", "allusers",
    "deleted:serviceaccount:sa@p.iam.gserviceaccount.com?uid=1", "deleted:user:a@example.com",
    "principalSet://iam.googleapis.com/projects/abc/locations/global/workloadIdentityPools/github-pool/*",
    "principalSet://iam.googleapis.com/github-pool/attribute.repository/my-org/my-repo",
    f"principalSet://{POOL}/", f"principalSet://{POOL}/attribute.Repo/x", f"principalSet://{POOL}/attribute.repo/",
    f"principalSet://{POOL}/subject/x", f"principal://{POOL}/group/x", f"principal://{POOL}/subject/",
    f"principal://{POOL}/subject/{'s' * 128}",
    "principal://iam.googleapis.com/projects/1/locations/us/workloadIdentityPools/github-pool/subject/x",
    "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/GitHub-Pool/subject/x",
    "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/abc/subject/x",
    "principal://example.com/projects/1/locations/global/workloadIdentityPools/github-pool/subject/x",
    "principalSet://cloudresourcemanager.googleapis.com/projects/abc/type/ServiceAccount",
    "user:" + "a" * 10_000 + "@example.com", "x" * 10_000, f"principalSet://{POOL}/group/" + "g" * 10_000,
    "user:a@example.com\n",
])
def test_malformed_members_are_of_an_unknown_type(text: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_member(text)
    assert err.value.status == "INVALID_ARGUMENT"
    assert err.value.message.endswith("is of an unknown type. Please set a valid type prefix for the member.")


@pytest.mark.parametrize(("text", "message"), [
    ("user:notanemail", "User notanemail does not exist."),
    ("group:a@b", "Group a@b does not exist."),
    ("serviceAccount:my-project.svc.id.goog[ns]", "Service account my-project.svc.id.goog[ns] does not exist."),
    ("domain:not a domain", "Domain not a domain does not exist."),
])
def test_known_type_with_a_bad_value(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_member(text)
    assert err.value.message == message


def test_unknown_type_message_is_googles() -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_member("impersonator@p.iam.gserviceaccount.com")
    assert err.value.message == UNKNOWN_TYPE.format(member="impersonator@p.iam.gserviceaccount.com")


# -- properties ------------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_domain = st.builds(lambda labels: ".".join(labels), st.lists(_label, min_size=2, max_size=4))
_local = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_+-]{0,12}[A-Za-z0-9])?", fullmatch=True)
_email = st.builds(lambda local, domain: f"{local}@{domain}", _local, _domain)
_number = st.from_regex(r"[1-9][0-9]{0,14}", fullmatch=True)
_pool = st.from_regex(r"[a-z0-9-]{4,32}", fullmatch=True)
_opaque = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30)
_subject = _opaque.filter(lambda s: len(s.encode()) <= 127)
_attr_name = st.from_regex(r"[a-z0-9_]{1,20}", fullmatch=True)
_project_id = st.from_regex(r"[a-z][a-z0-9-]{4,20}[a-z0-9]", fullmatch=True)
_k8s = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@st.composite
def valid_members(draw: st.DrawFn) -> str:
    base = f"iam.googleapis.com/projects/{draw(_number)}/locations/global/workloadIdentityPools/{draw(_pool)}"
    gke = f"iam.googleapis.com/projects/{draw(_number)}/locations/global/workloadIdentityPools/" \
          f"{draw(_project_id)}.svc.id.goog"
    return draw(st.sampled_from([
        "allUsers", "allAuthenticatedUsers",
        f"user:{draw(_email)}", f"group:{draw(_email)}", f"serviceAccount:{draw(_email)}",
        f"domain:{draw(_domain)}",
        f"deleted:{draw(st.sampled_from(['user', 'group', 'serviceAccount']))}:{draw(_email)}?uid={draw(_number)}",
        f"serviceAccount:{draw(_project_id)}.svc.id.goog[{draw(_k8s)}/{draw(_k8s)}]",
        f"principal://{base}/subject/{draw(_subject)}",
        f"principalSet://{base}/group/{draw(_opaque)}",
        f"principalSet://{base}/attribute.{draw(_attr_name)}/{draw(_opaque)}",
        f"principalSet://{base}/*",
        f"principal://{gke}/subject/ns/{draw(_k8s)}/sa/{draw(_k8s)}",
        f"principalSet://{gke}/namespace/{draw(_k8s)}",
        f"principalSet://{gke}/kubernetes.cluster/{CLUSTER_URL}",
        f"principal://iam.googleapis.com/locations/global/workforcePools/wf-pool-{draw(_k8s)}/subject/{draw(_subject)}",
    ]))


# Generation itself is slow on a CI machine running both legs on xdist workers (1.9 s for 2 inputs).
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(valid_members())
def test_generated_valid_members_parse_and_canonicalise_idempotently(text: str) -> None:
    once = canonical_member(text)
    assert canonical_member(once) == once
    assert once == text or (text.startswith(("user:", "group:", "serviceAccount:", "domain:", "deleted:"))
                            and once.lower() == text.lower())


_PREFIXES = ["", "user:", "group:", "serviceAccount:", "domain:", "deleted:", "deleted:user:", "principal://",
             "principalSet://", f"principal://{POOL}/", f"principalSet://{POOL}/", "principalSet://iam.googleapis.com/"]


@settings(max_examples=300)
@given(st.sampled_from(_PREFIXES), st.text())
def test_arbitrary_text_raises_only_invalid_argument(prefix: str, tail: str) -> None:
    try:
        member = parse_member(prefix + tail)
    except InvalidArgument:
        return
    assert canonical_member(member.value) == member.value


@given(_number, _pool, _subject, st.lists(_opaque, max_size=3),
       st.dictionaries(_attr_name, st.one_of(_opaque, st.lists(_opaque, max_size=3)), max_size=3))
def test_every_federated_key_is_a_canonical_member(number: str, pool: str, subject: str, groups: list[str],
                                                   attributes: dict[str, str | list[str]]) -> None:
    for key in member_keys_for_federated(number, pool, subject, groups, attributes):
        assert canonical_member(key) == key


@given(_project_id, _number, _k8s, _k8s)
def test_every_gke_key_is_a_canonical_member(project_id: str, number: str, ns: str, ksa: str) -> None:
    keys = member_keys_for_gke_workload(project_id, number, ns, ksa, "projects/p/locations/l/clusters/c", "uid-1")
    for key in keys:
        assert canonical_member(key) == key


# -- matching --------------------------------------------------------------------------------

def test_federated_identity_matches_the_seed_repository_set_only() -> None:
    keys = member_keys_for_federated("123456789", "github-pool", "repo:my-org/my-repo:ref:refs/heads/main",
                                     groups=[], attributes={"attribute.repository": "my-org/my-repo",
                                                            "google.subject": "ignored"})
    assert canonical_member(SEED_REPO_SET) in keys
    assert canonical_member(f"principalSet://{POOL}/attribute.repository/my-org/other") not in keys
    assert canonical_member(f"principalSet://{POOL}/*") in keys
    assert federated_principal("123456789", "github-pool", "repo:my-org/my-repo:ref:refs/heads/main") in keys
    assert ALL_AUTHENTICATED_USERS in keys and ALL_USERS in keys
    other_pool = "principalSet://iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/x-pool/*"
    assert other_pool not in keys


def test_federated_groups_and_multi_valued_attributes() -> None:
    keys = member_keys_for_federated("1", "aws-pool", "arn:aws:sts::1:assumed-role/r/s", ["ops", "dev"],
                                     {"teams": ["a", "b"], "aws_role": "arn:aws:iam::1:role/r"})
    base = "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/aws-pool"
    assert {f"{base}/group/ops", f"{base}/group/dev", f"{base}/attribute.teams/a", f"{base}/attribute.teams/b",
            f"{base}/attribute.aws_role/arn:aws:iam::1:role/r"} <= keys
    assert f"{base}/attribute.teams/c" not in keys


def test_gke_workload_matches_every_documented_form() -> None:
    keys = member_keys_for_gke_workload("my-project", "424242", "apps", "app-ksa",
                                        "projects/my-project/locations/us-central1/clusters/prod")
    for member in (SEED_DIRECT_KSA, "serviceAccount:my-project.svc.id.goog[apps/app-ksa]",
                   f"principalSet://{GKE_POOL}/namespace/apps",
                   f"principalSet://{GKE_POOL}/kubernetes.cluster/{CLUSTER_URL}",
                   f"principalSet://{GKE_POOL}/*", ALL_AUTHENTICATED_USERS, ALL_USERS):
        assert canonical_member(member) in keys
    for member in ("serviceAccount:my-project.svc.id.goog[apps/other-ksa]",
                   "serviceAccount:my-project.svc.id.goog[Apps/app-ksa]",  # Kubernetes names match exactly
                   f"principalSet://{GKE_POOL}/namespace/other",
                   f"principal://{GKE_POOL.replace('424242', '999')}/subject/ns/apps/sa/app-ksa"):
        assert canonical_member(member) not in keys
    assert parse_member(SEED_LEGACY_KSA).value not in keys  # different namespace and KSA


def test_service_account_binding_matches_regardless_of_case() -> None:
    keys = member_keys_for_service_account("my-sa@p.iam.gserviceaccount.com")
    assert parse_member("serviceAccount:My-SA@p.iam.gserviceaccount.com").value in keys
    assert parse_member("user:my-sa@p.iam.gserviceaccount.com").value not in keys
    assert not any(k.startswith("domain:") for k in keys)  # domain: means a Workspace domain's users


def test_user_matches_own_domain_and_specials() -> None:
    keys = member_keys_for_user("Alex@Example.com")
    assert keys == {"user:alex@example.com", "domain:example.com", ALL_AUTHENTICATED_USERS, ALL_USERS}
    assert parse_member("domain:EXAMPLE.com").value in keys
    assert parse_member("group:alex@example.com").value not in keys


def test_a_policy_with_ten_thousand_members_is_a_set_lookup() -> None:
    members = {canonical_member(f"principalSet://{POOL}/attribute.repository/my-org/repo-{i}") for i in range(10_000)}
    keys = member_keys_for_federated("123456789", "github-pool", "s", [], {"repository": "my-org/repo-9999"})
    assert len(keys & members) == 1
