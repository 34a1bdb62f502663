"""`keyless doctor explain` for every row of the seeds' troubleshooting tables (002 section 7, 003
Troubleshooting, 001's condition and 000's common mistakes): the real server is driven into each
state through its APIs and `keyless k8s apply`, then the CLI walks the path and must stop at the
right step with the seeds' cause. A real 403 is explained from its audit entry's insertId."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.api.helpers import token_for_service_account
from tests.conftest import KeylessServer, fresh_database_url
from tests.gke.pod_helpers import COMPUTE_SA, GSA, NUMBER, POOL, PROJECT, apply_ksa, make_cluster

ANNOTATION = "iam.gke.io/gcp-service-account"
OTHER_GSA = f"other-gsa@{PROJECT}.iam.gserviceaccount.com"
DISABLED_GSA = f"disabled-gsa@{PROJECT}.iam.gserviceaccount.com"
DEPLOY_SA = f"deploy-sa@{PROJECT}.iam.gserviceaccount.com"
GH_POOL = f"projects/{NUMBER}/locations/global/workloadIdentityPools/github-pool"
PROVIDER = f"{GH_POOL}/providers/github-provider"
APP_OBJECT = "//storage.googleapis.com/projects/_/buckets/my-app-bucket/objects/data.txt"
PRINCIPAL_BASE = f"principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/{POOL}"
SECRET_VERSION = f"projects/{PROJECT}/secrets/api-key/versions/1"
PODS = {  # pod name -> (serviceAccountName or None, node pool)
    "my-app": ("my-app-ksa", "default-pool"),
    "legacy-app": ("my-app-ksa", "legacy-pool"),
    "unbound-app": ("unbound-ksa", "default-pool"),
    "wrong-ns-app": ("wrong-ns-ksa", "default-pool"),
    "typo-app": ("typo-ksa", "default-pool"),
    "short-app": ("short-ksa", "default-pool"),
    "disabled-app": ("disabled-ksa", "default-pool"),
    "direct-app": ("direct-ksa", "default-pool"),
    "no-sa-app": (None, "default-pool"),
}


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def _bind(srv: KeylessServer, gsa: str, member: str) -> None:
    path = f"/iam/v1/projects/{PROJECT}/serviceAccounts/{gsa}"
    policy = ok(srv.call("POST", f"{path}:getIamPolicy", body={}))
    policy.setdefault("bindings", []).append({"role": "roles/iam.workloadIdentityUser", "members": [member]})
    ok(srv.call("POST", f"{path}:setIamPolicy", body={"policy": policy}))


def _apply(srv: KeylessServer, cluster: str, docs: list[dict[str, Any]]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(docs, f)
    try:
        out = srv.keyless("k8s", "apply", "-f", f.name, "--cluster", cluster, "--project", PROJECT)
    finally:
        os.unlink(f.name)
    assert out.returncode == 0, out.stderr


def _pod(name: str, ksa: str | None, pool: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeSelector": {"cloud.google.com/gke-nodepool": pool},
                            "containers": [{"name": "app", "image": "google/cloud-sdk:slim"}]}
    if ksa:
        spec["serviceAccountName"] = ksa
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "production"}, "spec": spec}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    """Seeds 001-003's correct setup, plus one KSA and pod per troubleshooting row."""
    server = KeylessServer(tmp_path_factory.mktemp("explain") / "data", fresh_database_url(),
                           "--allow-insecure-issuers")
    assert server.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
    for account in ("my-app-gsa", "other-gsa", "disabled-gsa", "deploy-sa"):
        ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account}))
    cluster_id = make_cluster(server)  # default-pool on GKE_METADATA, legacy-pool on GCE_METADATA
    ok(server.call("POST", f"/container/v1/projects/{PROJECT}/locations/us-central1/clusters", body={"cluster": {
        "name": "plain-cluster", "nodePools": [{"name": "default-pool", "initialNodeCount": 1}]}}))
    _bind(server, GSA, f"serviceAccount:{POOL}[production/my-app-ksa]")
    _bind(server, OTHER_GSA, f"serviceAccount:{POOL}[staging/wrong-ns-ksa]")  # the wrong namespace
    _bind(server, DISABLED_GSA, f"serviceAccount:{POOL}[production/disabled-ksa]")
    ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts/{DISABLED_GSA}:disable", body={}))
    for ksa, wanted in (("my-app-ksa", {ANNOTATION: GSA}), ("unbound-ksa", {ANNOTATION: OTHER_GSA}),
                             ("wrong-ns-ksa", {ANNOTATION: OTHER_GSA}),
                             ("typo-ksa", {"iam.gke.io/gcp-service-acount": GSA}),
                             ("short-ksa", {ANNOTATION: "my-app-gsa"}), ("disabled-ksa", {ANNOTATION: DISABLED_GSA}),
                             ("direct-ksa", {})):
        apply_ksa(server, cluster_id, "production", ksa, wanted)
    _apply(server, "my-cluster", [_pod(name, ksa, pool) for name, (ksa, pool) in PODS.items()])
    _apply(server, "plain-cluster", [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "production"}},
                                     {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                                         "name": "my-app-ksa", "namespace": "production",
                                         "annotations": {ANNOTATION: GSA}}},
                                     _pod("my-app", "my-app-ksa", "default-pool")])
    for bucket in ("my-app-bucket", "other-bucket"):
        ok(server.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": bucket}))
    sm = f"/secretmanager/v1/projects/{PROJECT}/secrets"
    ok(server.call("POST", sm, params={"secretId": "api-key"}, body={"replication": {"automatic": {}}}))
    ok(server.call("POST", f"{sm}/api-key:addVersion", body={"payload": {"data": "czNjcjN0"}}))
    # Seed 001: GitHub Actions federation into deploy-sa.
    iam = f"/iam/v1/projects/{PROJECT}/locations/global/workloadIdentityPools"
    ok(server.call("POST", iam, params={"workloadIdentityPoolId": "github-pool"}, body={}))
    for provider in ("github-provider", "off-provider"):
        ok(server.call("POST", f"{iam}/github-pool/providers", params={"workloadIdentityPoolProviderId": provider},
                       body={"attributeMapping": {"google.subject": "assertion.sub",
                                                  "attribute.repository": "assertion.repository"},
                             "attributeCondition": "assertion.repository_owner == 'my-org'",
                             "oidc": {"issuerUri": f"{server.base_url}/idp/github"}}))
    ok(server.call("PATCH", f"{iam}/github-pool/providers/off-provider", params={"updateMask": "disabled"},
                   body={"disabled": True}))
    _bind(server, DEPLOY_SA, f"principalSet://iam.googleapis.com/{GH_POOL}/attribute.repository/my-org/my-repo")
    policy = ok(server.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy", body={}))
    policy["bindings"] += [
        {"role": "roles/storage.objectViewer", "members": [f"serviceAccount:{GSA}", f"serviceAccount:{DISABLED_GSA}"],
         "condition": {"expression": 'resource.name.startsWith("projects/_/buckets/my-app-bucket")',
                       "title": "only-app-bucket"}},
        {"role": "roles/storage.objectViewer", "members": [f"{PRINCIPAL_BASE}/subject/ns/production/sa/direct-ksa"]},
        {"role": "roles/viewer", "members": [f"serviceAccount:{DEPLOY_SA}"]}]
    policy["version"] = 3
    policy["auditConfigs"] = [{"service": "secretmanager.googleapis.com",
                               "auditLogConfigs": [{"logType": "DATA_READ"}]}]
    ok(server.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:setIamPolicy",
                   body={"policy": policy, "updateMask": "bindings,etag,auditConfigs"}))
    yield server
    server.stop()


def explain(srv: KeylessServer, *args: str, fmt: str = "json") -> tuple[int, Any]:
    cmd = [sys.executable, "-m", "keyless.cli.main", "doctor", "explain", *args, "--format", fmt,
           "--allow-insecure-issuers", "--data-dir", str(srv.data_dir)]
    if srv.database_url:
        cmd += ["--database", srv.database_url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1) and not out.stderr, out.stderr
    return out.returncode, (json.loads(out.stdout) if fmt == "json" else out.stdout)


def pod(srv: KeylessServer, name: str, permission: str = "storage.objects.get", resource: str = APP_OBJECT,
        cluster: str = "my-cluster") -> tuple[int, Any]:
    return explain(srv, "--pod", f"production/{name}", "--cluster", cluster, "--permission", permission,
                   "--resource", resource)


def github_token(srv: KeylessServer, tmp_path: Path, repository: str = "my-org/my-repo",
                 audience: str = f"https://iam.googleapis.com/{PROVIDER}") -> str:
    out = srv.keyless("token", "github", "--repository", repository, "--audience", audience,
                      "--server", srv.base_url)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "github.jwt"
    path.write_text(out.stdout.strip())
    return str(path)


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {s["step"]: s["status"] for s in result["steps"]}


def failed(result: dict[str, Any], step: str, cause: str) -> dict[str, Any]:
    """The first failing step is `step`, and its cause says `cause`; access is denied."""
    first = result["firstFailure"]
    assert first is not None, result
    assert first["step"] == step, json.dumps(result, indent=1)
    assert cause in first["cause"], first
    # every step before it passed (or was a suspect cleared by passing): the walk is in order
    before = [s for s in result["steps"]][: [s["step"] for s in result["steps"]].index(step)]
    assert all(s["status"] in ("PASS", "SKIP") for s in before), before
    return dict(first)


# -- the clean setups explain as all-PASS --------------------------------------------------------


def test_seed_002_pod_is_all_pass(srv: KeylessServer) -> None:
    code, result = pod(srv, "my-app")
    assert code == 0 and result["granted"] is True and result["firstFailure"] is None
    assert statuses(result) == {"pod": "PASS", "ksa": "PASS", "annotation": "PASS", "node pool": "PASS",
                                "workload pool": "PASS", "exchange": "PASS", "binding": "PASS",
                                "service account": "PASS", "role": "PASS", "iam condition": "PASS"}
    assert result["identity"] == GSA
    steps = {s["step"]: s["evidence"] for s in result["steps"]}
    assert f"{PRINCIPAL_BASE}/subject/ns/production/sa/my-app-ksa" in steps["exchange"]
    assert f"serviceAccount:{POOL}[production/my-app-ksa]" in steps["binding"]
    assert "only-app-bucket" in steps["iam condition"]
    code, text = pod_text(srv, "my-app")
    assert code == 0 and "GRANTED: every step passes" in text and "  PASS  node pool" in text


def pod_text(srv: KeylessServer, name: str) -> tuple[int, str]:
    return explain(srv, "--pod", f"production/{name}", "--cluster", "my-cluster", "--permission",
                   "storage.objects.get", "--resource", APP_OBJECT, fmt="text")


def test_direct_model_pod_is_all_pass(srv: KeylessServer) -> None:
    code, result = pod(srv, "direct-app")
    assert code == 0 and result["granted"] is True
    assert statuses(result)["binding"] == "SKIP" and result["firstFailure"] is None
    assert result["identity"] == f"{PRINCIPAL_BASE}/subject/ns/production/sa/direct-ksa"


def test_seed_001_github_token_is_all_pass(srv: KeylessServer, tmp_path: Path) -> None:
    code, result = explain(srv, "--token", github_token(srv, tmp_path), "--provider", PROVIDER,
                           "--service-account", DEPLOY_SA, "--permission", "resourcemanager.projects.get",
                           "--resource", f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}")
    assert code == 0 and result["granted"] is True, result
    assert statuses(result) == {"provider": "PASS", "token": "PASS", "condition": "PASS", "mapping": "PASS",
                                "binding": "PASS", "service account": "PASS", "role": "PASS", "iam condition": "PASS"}
    mapping = next(s for s in result["steps"] if s["step"] == "mapping")["evidence"]
    assert "google.subject=repo:my-org/my-repo:ref:refs/heads/main" in mapping


# -- seed 002 section 7 and seed 003 troubleshooting: one row each ----------------------------------


def test_node_pool_on_gce_metadata_gives_the_node_service_account(srv: KeylessServer) -> None:
    code, result = pod(srv, "legacy-app")
    first = failed(result, "node pool", "Node pool not on GKE_METADATA")
    assert COMPUTE_SA in first["cause"]
    assert first["fix"] == ("gcloud container node-pools update legacy-pool --cluster=my-cluster "
                            "--location=us-central1 --workload-metadata=GKE_METADATA")
    assert code == 1 and result["identity"] == COMPUTE_SA and result["granted"] is False


def test_cluster_without_workload_pool(srv: KeylessServer) -> None:
    _, result = pod(srv, "my-app", cluster="plain-cluster")
    first = failed(result, "workload pool", "Workload Identity is not enabled on the cluster")
    assert first["fix"].endswith(f"--workload-pool={PROJECT}.svc.id.goog")


def test_missing_workload_identity_user_binding(srv: KeylessServer) -> None:
    _, result = pod(srv, "unbound-app")
    first = failed(result, "binding", "Missing workloadIdentityUser binding")
    assert "token request 403" in first["cause"]
    assert first["fix"] == (f"gcloud iam service-accounts add-iam-policy-binding {OTHER_GSA} "
                            f'--role=roles/iam.workloadIdentityUser --member="serviceAccount:{POOL}'
                            f'[production/unbound-ksa]"')


def test_wrong_namespace_in_the_member_string(srv: KeylessServer) -> None:
    _, result = pod(srv, "wrong-ns-app")
    first = failed(result, "binding", "Member string mismatch")
    assert f"serviceAccount:{POOL}[staging/wrong-ns-ksa]" in first["cause"]
    assert "[production/wrong-ns-ksa]" in first["fix"]


def test_annotation_key_typo(srv: KeylessServer) -> None:
    _, result = pod(srv, "typo-app")
    first = failed(result, "annotation", "typo in annotation key iam.gke.io/gcp-service-account")
    assert "iam.gke.io/gcp-service-acount" in first["cause"]
    assert f"{ANNOTATION}={GSA}" in first["fix"]
    assert result["granted"] is False  # the pod acts as its bare KSA principal, which holds nothing


def test_short_gsa_name_in_the_annotation(srv: KeylessServer) -> None:
    _, result = pod(srv, "short-app")
    first = failed(result, "annotation", "not the full GSA email")
    assert "Annotated service account must be in format of" in first["cause"]  # GKE's own 400
    assert first["fix"].endswith(f"{ANNOTATION}={GSA} --overwrite")


def test_pod_without_service_account_name(srv: KeylessServer) -> None:
    _, result = pod(srv, "no-sa-app")
    first = failed(result, "ksa", "check serviceAccountName in the pod spec")
    assert first["fix"].startswith("set spec.serviceAccountName: KSA_NAME (annotated KSAs in production: ")
    assert "my-app-ksa" in first["fix"]
    assert result["identity"] == f"{PRINCIPAL_BASE}/subject/ns/production/sa/default"


def test_disabled_service_account(srv: KeylessServer) -> None:
    _, result = pod(srv, "disabled-app")
    first = failed(result, "service account", "is disabled")
    assert first["fix"] == f"gcloud iam service-accounts enable {DISABLED_GSA}"


def test_api_403_but_token_mints_fine_missing_role(srv: KeylessServer) -> None:
    _, result = pod(srv, "my-app", "secretmanager.versions.access", SECRET_VERSION)
    first = failed(result, "role", "lacks the application role")
    assert first["fix"] == (f'gcloud secrets add-iam-policy-binding api-key --project={PROJECT} '
                            f'--member="serviceAccount:{GSA}" --role=roles/secretmanager.secretAccessor')


def test_iam_condition_false_for_another_bucket(srv: KeylessServer) -> None:
    _, result = pod(srv, "my-app", resource="//storage.googleapis.com/projects/_/buckets/other-bucket")
    first = failed(result, "iam condition", "evaluates to false")
    assert 'resource.name.startsWith("projects/_/buckets/my-app-bucket")' in first["cause"]
    assert statuses(result)["role"] == "PASS"  # the role is there; its condition excludes this bucket


# -- seed 001: the provider, the token, the attribute condition ------------------------------------


def test_provider_condition_rejects_another_org(srv: KeylessServer, tmp_path: Path) -> None:
    _, result = explain(srv, "--token", github_token(srv, tmp_path, "evil-org/my-repo"), "--provider", PROVIDER,
                        "--service-account", DEPLOY_SA, "--permission", "resourcemanager.projects.get",
                        "--resource", f"projects/{PROJECT}")
    failed(result, "condition", "The given credential is rejected by the attribute condition.")
    step = next(s for s in result["steps"] if s["step"] == "condition")
    assert "repository_owner='evil-org'" in step["evidence"]


def test_wrong_audience(srv: KeylessServer, tmp_path: Path) -> None:
    _, result = explain(srv, "--token", github_token(srv, tmp_path, audience="https://someone-else"),
                        "--provider", PROVIDER, "--permission", "resourcemanager.projects.get",
                        "--resource", f"projects/{PROJECT}")
    first = failed(result, "token", "does not match the expected audience")
    assert f"https://iam.googleapis.com/{PROVIDER}" in first["fix"]


def test_disabled_provider(srv: KeylessServer, tmp_path: Path) -> None:
    off = PROVIDER.replace("github-provider", "off-provider")
    _, result = explain(srv, "--token", github_token(srv, tmp_path, audience=f"https://iam.googleapis.com/{off}"),
                        "--provider", off, "--permission", "resourcemanager.projects.get",
                        "--resource", f"projects/{PROJECT}")
    first = failed(result, "provider", "the pool or provider is disabled or deleted")
    assert first["fix"].endswith("--no-disabled") and "providers update-oidc off-provider" in first["fix"]


# -- a real 403, explained by its audit entry ------------------------------------------------------


def test_real_denial_explained_by_its_insert_id(srv: KeylessServer) -> None:
    token = token_for_service_account(srv, GSA)
    denied = srv.call("GET", f"/secretmanager/v1/{SECRET_VERSION}:access", token=token)
    assert denied.status_code == 403 and denied.json()["error"]["status"] == "PERMISSION_DENIED", denied.text
    query = {"resourceNames": [f"projects/{PROJECT}"], "orderBy": "timestamp desc",
             "filter": f'protoPayload.status.code=7 AND protoPayload.authenticationInfo.principalEmail="{GSA}"'}
    deadline, found = time.monotonic() + 10, list[dict[str, Any]]()
    while not found and time.monotonic() < deadline:
        found = ok(srv.call("POST", "/logging/v2/entries:list", body=query)).get("entries", [])
        time.sleep(0.1)
    assert found, "the denial was not audited"
    insert_id = found[0]["insertId"]
    code, result = explain(srv, "--audit-entry", insert_id)
    assert code == 1
    assert result["permission"] == "secretmanager.versions.access"
    assert result["resource"] == f"projects/{NUMBER}/secrets/api-key/versions/1"
    assert insert_id in result["subject"] and "AccessSecretVersion" in result["subject"]
    first = failed(result, "role", "lacks the application role")
    assert "--role=roles/secretmanager.secretAccessor" in first["fix"]
    # grant what the fix says, and the same entry explains as granted
    ok(srv.call("POST", f"/secretmanager/v1/projects/{PROJECT}/secrets/api-key:setIamPolicy", body={"policy": {
        "bindings": [{"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{GSA}"]}]}}))
    try:
        code, result = explain(srv, "--audit-entry", insert_id)
        assert code == 0 and result["granted"] is True and result["firstFailure"] is None
        assert srv.call("GET", f"/secretmanager/v1/{SECRET_VERSION}:access", token=token).status_code == 200
    finally:
        ok(srv.call("POST", f"/secretmanager/v1/projects/{PROJECT}/secrets/api-key:setIamPolicy",
                    body={"policy": {"bindings": []}}))


def test_bad_questions_are_refused_in_one_line(srv: KeylessServer) -> None:
    cmd = [sys.executable, "-m", "keyless.cli.main", "doctor", "explain", "--principal", "nobody",
           "--permission", "storage.objects.get", "--resource", APP_OBJECT, "--data-dir", str(srv.data_dir)]
    if srv.database_url:
        cmd += ["--database", srv.database_url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "unknown type" in out.stderr and "Traceback" not in out.stderr
    _, result = explain(srv, "--principal", f"serviceAccount:{GSA}", "--permission", "storage.objects.get",
                        "--resource", "//storage.googleapis.com/projects/_/buckets/my-app-bucket")
    assert result["granted"] is True and result["firstFailure"] is None
