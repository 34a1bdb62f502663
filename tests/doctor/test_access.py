"""`keyless doctor access` and `GET /doctor/v1/access`: who has access to what, on a real server's
store: direct grants, principal sets, impersonation chains, a pod's KSA, conditional grants, and
the reverse question for a resource."""

from __future__ import annotations

import json
import tempfile
import time
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from keyless.doctor.access import Analyzer
from keyless.errors import DeadlineExceeded
from keyless.iam.principal import Principal
from tests.api.helpers import token_for_service_account
from tests.conftest import KeylessServer
from tests.gke.pod_helpers import NUMBER, PROJECT, apply_ksa, make_cluster

POOL = f"iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/github-pool"
SUBJECT = "repo:my-org/my-repo:ref:refs/heads/main"
GITHUB = f"principal://{POOL}/subject/{SUBJECT}"
REPO_SET = f"principalSet://{POOL}/attribute.repository/my-org/my-repo"
KSA = f"serviceAccount:{PROJECT}.svc.id.goog[production/my-app-ksa]"


def sa(name: str) -> str:
    return f"{name}@{PROJECT}.iam.gserviceaccount.com"


def _sa_binding(srv: KeylessServer, account: str, role: str, member: str) -> None:
    path = f"/iam/v1/projects/-/serviceAccounts/{account}"
    policy = srv.call("POST", path + ":getIamPolicy", body={}).json()
    policy.setdefault("bindings", []).append({"role": role, "members": [member]})
    r = srv.call("POST", path + ":setIamPolicy", body={"policy": policy})
    assert r.status_code == 200, r.text


def _project_binding(srv: KeylessServer, role: str, member: str, condition: dict[str, str] | None = None) -> None:
    path = f"/cloudresourcemanager/v1/projects/{PROJECT}"
    policy = srv.call("POST", path + ":getIamPolicy", body={"options": {"requestedPolicyVersion": 3}}).json()
    policy.setdefault("bindings", []).append({"role": role, "members": [member],
                                              **({"condition": condition} if condition else {})})
    policy["version"] = 3
    r = srv.call("POST", path + ":setIamPolicy", body={"policy": policy})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def world(module_server: KeylessServer) -> KeylessServer:
    """The seeds' shapes: a GSA reading a bucket and impersonated by a KSA; a GitHub repository's
    principal set reading the project's objects; a GitHub principal reaching a secret through two
    impersonation hops; a grant conditional on the secret's name."""
    srv = module_server
    assert srv.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
    for account in ("my-app-gsa", "deploy-sa", "vault-sa", "lonely-sa", "nobody-sa"):
        r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account})
        assert r.status_code == 200, r.text
    r = srv.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": "my-bucket"})
    assert r.status_code == 200, r.text
    policy = srv.call("GET", "/storage/v1/b/my-bucket/iam").json()
    policy["bindings"].append({"role": "roles/storage.objectViewer", "members": [f"serviceAccount:{sa('my-app-gsa')}"]})
    assert srv.call("PUT", "/storage/v1/b/my-bucket/iam", body=policy).status_code == 200
    r = srv.call("POST", f"/secretmanager/v1/projects/{PROJECT}/secrets", params={"secretId": "api-key"},
                 body={"replication": {"automatic": {}}})
    assert r.status_code == 200, r.text
    secret = f"/secretmanager/v1/projects/{PROJECT}/secrets/api-key"
    r = srv.call("POST", secret + ":setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{sa('vault-sa')}"]}]}})
    assert r.status_code == 200, r.text
    _sa_binding(srv, sa("my-app-gsa"), "roles/iam.workloadIdentityUser", KSA)
    _sa_binding(srv, sa("deploy-sa"), "roles/iam.serviceAccountTokenCreator", GITHUB)
    _sa_binding(srv, sa("vault-sa"), "roles/iam.serviceAccountTokenCreator", f"serviceAccount:{sa('deploy-sa')}")
    _sa_binding(srv, sa("deploy-sa"), "roles/iam.serviceAccountTokenCreator", f"serviceAccount:{sa('vault-sa')}")  # a cycle
    _project_binding(srv, "roles/storage.objectViewer", REPO_SET)
    _project_binding(srv, "roles/secretmanager.secretAccessor", f"serviceAccount:{sa('lonely-sa')}",
                     {"title": "only api-key", "expression": 'resource.name.endsWith("/secrets/api-key")'})
    return srv


def access(srv: KeylessServer, *args: str) -> list[dict[str, Any]]:
    out = srv.keyless("doctor", "access", *args, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["accesses"]


def test_a_direct_grant_on_a_bucket(world: KeylessServer) -> None:
    found = access(world, "--identity", f"serviceAccount:{sa('my-app-gsa')}", "--permission", "storage.objects.get")
    assert [(a["resource"], a["role"], a.get("via")) for a in found] == [
        ("projects/_/buckets/my-bucket", "roles/storage.objectViewer", None)]
    assert found[0]["permissions"] == ["storage.objects.get"]


def test_principal_sets_need_the_attribute_they_select(world: KeylessServer) -> None:
    with_attr = access(world, "--identity", GITHUB, "--attribute", "repository=my-org/my-repo",
                       "--permission", "storage.objects.get")
    direct = [a for a in with_attr if not a.get("via")]
    assert [(a["resource"], a["member"]) for a in direct] == [(f"projects/{PROJECT}", REPO_SET)]
    without = access(world, "--identity", GITHUB, "--permission", "storage.objects.get")
    assert all(a["member"] != REPO_SET for a in without)


def test_an_impersonation_chain_is_followed_and_shown_and_cycles_end(world: KeylessServer) -> None:
    found = access(world, "--identity", GITHUB, "--permission", "secretmanager.versions.access")
    secret = [a for a in found if a["resource"].endswith("/secrets/api-key")]
    assert len(secret) == 1, found
    assert [h["serviceAccount"] for h in secret[0]["via"]] == [sa("deploy-sa"), sa("vault-sa")]
    assert secret[0]["role"] == "roles/secretmanager.secretAccessor"
    # the text form says the same in a line
    text = world.keyless("doctor", "access", "--identity", GITHUB, "--permission", "secretmanager.versions.access")
    assert f"after impersonating {sa('deploy-sa')} -> {sa('vault-sa')}" in text.stdout


def test_a_ksa_reaches_what_its_gsa_reaches(world: KeylessServer) -> None:
    found = access(world, "--identity", KSA, "--permission", "storage.objects.get")
    bucket = [a for a in found if a["resource"] == "projects/_/buckets/my-bucket"]
    assert [h["serviceAccount"] for h in bucket[0]["via"]] == [sa("my-app-gsa")]
    assert not access(world, "--identity", f"serviceAccount:{PROJECT}.svc.id.goog[staging/my-app-ksa]",
                      "--permission", "storage.objects.get")


def test_a_pod_is_who_its_metadata_server_says(world: KeylessServer) -> None:
    cluster = make_cluster(world, "access-cluster")
    apply_ksa(world, cluster, "production", "my-app-ksa")
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "production"},
             "spec": {"serviceAccountName": "my-app-ksa", "containers": [{"name": "app", "image": "python:3.11"}],
                      "nodeSelector": {"cloud.google.com/gke-nodepool": pool}}}
            for name, pool in (("web", "default-pool"), ("legacy", "legacy-pool"))]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump_all(pods, f)
        f.flush()
        out = world.keyless("k8s", "apply", "-f", f.name, "--cluster", "access-cluster", "--project", PROJECT)
    assert out.returncode == 0, out.stderr
    out = world.keyless("doctor", "access", "--pod", "production/web", "--cluster", "access-cluster",
                        "--permission", "storage.objects.get", "--format", "json")
    body = json.loads(out.stdout)
    assert body["query"]["identity"] == KSA
    assert [h["serviceAccount"] for h in body["accesses"][0]["via"]] == [sa("my-app-gsa")]
    # on a GCE_METADATA node pool the metadata server hands out the node's service account
    out = world.keyless("doctor", "access", "--pod", "production/legacy", "--cluster", "access-cluster",
                        "--format", "json")
    assert json.loads(out.stdout)["query"]["identity"] == f"serviceAccount:{NUMBER}-compute@developer.gserviceaccount.com"
    missing = world.keyless("doctor", "access", "--pod", "production/nope", "--cluster", "access-cluster")
    assert missing.returncode != 0 and "Pod production/nope not found" in missing.stderr


def test_conditional_grants_carry_their_condition(world: KeylessServer) -> None:
    found = access(world, "--identity", f"serviceAccount:{sa('lonely-sa')}", "--permission",
                   "secretmanager.versions.access")
    assert [(a["resource"], a["condition"]) for a in found] == [
        (f"projects/{PROJECT}", 'resource.name.endsWith("/secrets/api-key")')]


def test_who_reaches_a_bucket(world: KeylessServer) -> None:
    found = access(world, "--resource", "gs://my-bucket", "--permission", "storage.objects.get")
    who = {(a["identity"], tuple(h["serviceAccount"] for h in a.get("via", []))) for a in found}
    assert (f"serviceAccount:{sa('my-app-gsa')}", ()) in who
    assert (KSA, (sa("my-app-gsa"),)) in who  # through its workloadIdentityUser grant
    assert (REPO_SET, ()) in who  # granted on the project, inherited by the bucket
    # the bootstrap owner holds roles/owner at the root: the bucket's projectOwner: member is it
    owner = [a for a in found if a["identity"] == "user:owner@keyless.dev"]
    assert owner and owner[0]["member"] == f"projectOwner:{PROJECT}", found
    assert all(a["identity"] != f"serviceAccount:{sa('nobody-sa')}" for a in found)
    secret = access(world, "--resource", f"projects/{PROJECT}/secrets/api-key", "--permission",
                    "secretmanager.versions.access")
    chains = {a["identity"]: [h["serviceAccount"] for h in a.get("via", [])] for a in secret}
    assert chains[GITHUB] == [sa("deploy-sa"), sa("vault-sa")]
    assert chains[f"serviceAccount:{sa('vault-sa')}"] == []


def test_the_http_endpoint_answers_the_same_and_needs_permission(world: KeylessServer) -> None:
    params = {"identity": GITHUB, "permission": "secretmanager.versions.access"}
    r = world.call("GET", "/doctor/v1/access", params=params)
    assert r.status_code == 200, r.text
    assert r.json()["accesses"] == access(world, "--identity", GITHUB, "--permission", "secretmanager.versions.access")
    denied = world.call("GET", "/doctor/v1/access", params=params,
                        token=token_for_service_account(world, sa("nobody-sa")))
    assert denied.status_code == 403
    assert denied.json()["error"]["status"] == "PERMISSION_DENIED"
    bad = world.call("GET", "/doctor/v1/access", params={"identity": "bogus"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    both = world.call("GET", "/doctor/v1/access", params={"identity": GITHUB, "resource": "gs://my-bucket"})
    assert both.status_code == 400
    assert world.call("GET", "/doctor/v1/access", params=params, token="").status_code == 401


def test_creating_a_key_is_a_way_in_until_key_creation_is_disabled(world: KeylessServer) -> None:
    """The seeds' reason to disable key creation: whoever may create a key for an account is it."""
    keymaker = "user:keymaker@example.com"
    _sa_binding(world, sa("vault-sa"), "roles/iam.serviceAccountKeyAdmin", keymaker)
    found = access(world, "--identity", keymaker, "--permission", "secretmanager.versions.access")
    assert [[(h["serviceAccount"], h["by"]) for h in a["via"]] for a in found] == [
        [(sa("vault-sa"), "iam.serviceAccountKeys.create")]]
    text = world.keyless("doctor", "access", "--identity", keymaker, "--permission", "secretmanager.versions.access")
    assert f"after impersonating {sa('vault-sa')} (by creating a key)" in text.stdout
    r = world.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:setOrgPolicy", body={"policy": {
        "constraint": "constraints/iam.disableServiceAccountKeyCreation", "booleanPolicy": {"enforced": True}}})
    assert r.status_code == 200, r.text
    try:
        assert access(world, "--identity", keymaker, "--permission", "secretmanager.versions.access") == []
    finally:
        world.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:clearOrgPolicy",
                   body={"constraint": "constraints/iam.disableServiceAccountKeyCreation"})


@pytest.mark.store_independent
def test_a_walk_past_its_deadline_is_deadline_exceeded() -> None:
    """The console asks with a deadline (keyless.console.app.ACCESS_SECONDS): a walk still going
    past it ends with Google's DEADLINE_EXCEEDED rather than holding the reader's request."""
    analyzer = Analyzer(None, SimpleNamespace(bindings=[], accounts=[]), deadline=time.monotonic() - 1)  # type: ignore[arg-type]
    with pytest.raises(DeadlineExceeded) as raised:
        analyzer.identity(Principal(member="user:a@example.com", member_keys=frozenset({"user:a@example.com"})))
    assert raised.value.http_status == 504 and raised.value.status == "DEADLINE_EXCEEDED"
    assert Analyzer(None, SimpleNamespace(bindings=[], accounts=[])).identity(  # type: ignore[arg-type]
        Principal(member="user:a@example.com", member_keys=frozenset({"user:a@example.com"}))) == []
