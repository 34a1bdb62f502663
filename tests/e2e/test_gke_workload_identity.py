"""Seeds 002 and 003 inside real pods: `keyless pod run` puts each command in its own network
namespace on a node, where metadata.google.internal / 169.254.169.254 is the node's metadata
server; curl, google-auth and the real gcloud find their identity there, unmodified."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from keyless.store.models import AuditEntry, K8sObject
from tests.api.helpers import server_state
from tests.conftest import GCLOUD, KeylessServer
from tests.gke.pod_helpers import (
    COMPUTE_SA,
    GSA,
    NUMBER,
    POOL,
    PROJECT,
    apply_ksa,
    curl,
    leftovers,
    make_cluster,
    pod_run,
    unique_sleep,
)

ANNOTATION = "iam.gke.io/gcp-service-account"
PRINCIPAL_BASE = f"principal://iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/{POOL}"
DENIED = ("Unable to generate access token; IAM returned 403 Forbidden: Permission "
          "'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).\n"
          "This error could be caused by a missing IAM policy binding on the target IAM service account.")
PYTHON = sys.executable


def _bind(srv: KeylessServer, gsa: str, member: str) -> None:
    path = f"/iam/v1/projects/{PROJECT}/serviceAccounts/{gsa}"
    policy = srv.call("POST", f"{path}:getIamPolicy", body={}).json()
    policy.setdefault("bindings", []).append({"role": "roles/iam.workloadIdentityUser", "members": [member]})
    assert srv.call("POST", f"{path}:setIamPolicy", body={"policy": policy}).status_code == 200


@pytest.fixture(scope="module")
def cluster(module_server: KeylessServer) -> Iterator[str]:
    """Seed 002's setup: project, GSA with workloadIdentityUser for production/my-app-ksa, the
    annotated KSA; plus the KSAs of the troubleshooting rows."""
    srv = module_server
    assert srv.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
    for account in ("my-app-gsa", "other-gsa"):
        r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account})
        assert r.status_code == 200, r.text
    cluster_id = make_cluster(srv)
    _bind(srv, GSA, f"serviceAccount:{POOL}[production/my-app-ksa]")
    other = f"other-gsa@{PROJECT}.iam.gserviceaccount.com"
    _bind(srv, other, f"serviceAccount:{POOL}[staging/wrong-ns-ksa]")  # the member names the wrong namespace
    apply_ksa(srv, cluster_id, "production", "my-app-ksa", {ANNOTATION: GSA})
    apply_ksa(srv, cluster_id, "production", "unbound-ksa", {ANNOTATION: other})
    apply_ksa(srv, cluster_id, "production", "wrong-ns-ksa", {ANNOTATION: other})
    apply_ksa(srv, cluster_id, "production", "typo-ksa", {"iam.gke.io/gcp-service-acount": GSA})
    apply_ksa(srv, cluster_id, "production", "short-ksa", {ANNOTATION: "my-app-gsa"})
    apply_ksa(srv, cluster_id, "production", "direct-ksa")
    # The direct model: a role granted to the KSA's principal:// identity; and the same grant
    # to my-app-ksa (the mixed case: annotation and direct grant).
    policy = srv.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy", body={}).json()
    policy["auditConfigs"] = [  # Data Access logs of the exchange and the impersonation
        {"service": "sts.googleapis.com", "auditLogConfigs": [{"logType": "ADMIN_READ"}]},
        {"service": "iam.googleapis.com", "auditLogConfigs": [{"logType": "DATA_READ"}]}]
    policy["bindings"].append({"role": "roles/storage.objectViewer", "members": [
        f"{PRINCIPAL_BASE}/subject/ns/production/sa/direct-ksa", f"{PRINCIPAL_BASE}/subject/ns/production/sa/my-app-ksa"]})
    r = srv.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:setIamPolicy",
                 body={"policy": policy, "updateMask": "bindings,etag,auditConfigs"})
    assert r.status_code == 200, r.text
    yield cluster_id


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, nothing its server's pods made is left on this machine (pod_helpers.leftovers)."""
    yield
    if "module_server" not in request.fixturenames:
        return
    srv = request.getfixturevalue("module_server")
    deadline = time.monotonic() + 10
    while leftovers(srv) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(srv) == []


def run(srv: KeylessServer, ksa: str | None, script: str, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["--cluster", "my-cluster", "--namespace", "production", *extra]
    if ksa:
        args += ["--service-account", ksa]
    result = pod_run(srv, *args, command=["sh", "-c", script])
    assert result.returncode == 0, result.stderr
    return result


def tokeninfo(srv: KeylessServer, token: str) -> dict[str, str]:
    r = srv.call("GET", "/oauth2/v3/tokeninfo", token="", params={"access_token": token})
    assert r.status_code == 200, r.text
    info: dict[str, str] = r.json()
    return info


def granted(srv: KeylessServer, token: str, *permissions: str) -> list[str]:
    r = srv.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:testIamPermissions", token=token,
                 body={"permissions": list(permissions)})
    assert r.status_code == 200, r.text
    return list(r.json().get("permissions", []))


def test_seed_002_verify_block_inside_a_pod(module_server: KeylessServer, cluster: str, tmp_path: Path) -> None:
    srv = module_server
    script = "; echo; ".join([
        shlex.join(curl("instance/service-accounts/default/email")),
        shlex.join(curl("instance/service-accounts/default/token", "-o", "/dev/null", "-w", "%{http_code}")),
        shlex.join(curl("instance/service-accounts/default/token")),
        shlex.join([PYTHON, "-c", "import google.auth, google.auth.transport.requests as r; c, p = google.auth.default();"
                    " c.refresh(r.Request()); print(type(c).__name__, p, c.service_account_email)"]),
    ])
    out = run(srv, "my-app-ksa", script).stdout.splitlines()
    assert out[0] == GSA
    assert out[1] == "200"
    token = json.loads(out[2])
    assert token["token_type"] == "Bearer" and 3000 < token["expires_in"] <= 3600
    assert out[3] == f"Credentials {PROJECT} {GSA}"  # google.auth.compute_engine.Credentials
    # The token is the GSA's, obtained by impersonation from the KSA's federated identity.
    info = tokeninfo(srv, token["access_token"])
    assert info["email"] == GSA
    # Issued tokens are audited: the STS exchange for the pod's KSA identity, then the GSA's token,
    # both naming the caller as Google does (seed 001): serviceAccount:PROJECT.svc.id.goog[NS/KSA].
    subject = f"serviceAccount:{POOL}[production/my-app-ksa]"
    wanted = {("sts.googleapis.com", "google.identity.sts.v1.SecurityTokenService.ExchangeToken", subject),
              ("iamcredentials.googleapis.com", "GenerateAccessToken", subject)}
    assert wanted <= audited(srv, lambda seen: wanted <= seen), wanted


def audited(srv: KeylessServer, done: Callable[[set[tuple[str, str, str]]], bool]) -> set[tuple[str, str, str]]:
    """(serviceName, methodName, principalSubject) of every entry, polled until `done` (the audit
    writer commits a moment after the call)."""
    st = server_state(srv)
    deadline = time.monotonic() + 30  # the audit writer's first start, under a loaded CI
    seen: set[tuple[str, str, str]] = set()
    while time.monotonic() < deadline and not done(seen):
        with st.db.read() as s:
            seen = {(str(r.service_name), str(r.method_name), str(r.principal_subject))
                    for r in s.scalars(select(AuditEntry))}
        time.sleep(0.1)
    return seen


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed: this test needs the Google Cloud CLI on PATH")
def test_gcloud_auth_list_in_a_pod_shows_the_gsa(module_server: KeylessServer, cluster: str, tmp_path: Path) -> None:
    # A fresh gcloud, as in a google/cloud-sdk container: no overrides; its config lives in the
    # pod's own /tmp (the host's is hidden from pods), so the pod shows what gcloud wrote there.
    config = tmp_path / "gcloud-in-pod"
    script = (f"{shlex.quote(str(GCLOUD))} auth list --filter=status:ACTIVE --format='value(account)'; "
              f"{shlex.quote(str(GCLOUD))} config list --format='value(core.project)'; cat {config}/gce")
    result = run(module_server, "my-app-ksa", script, "--env", f"CLOUDSDK_CONFIG={config}")
    # The last line: gcloud decided it is on GCE by asking the metadata server.
    assert result.stdout.splitlines() == [GSA, PROJECT, "True"], result.stderr
    assert not config.exists()  # written in the pod's /tmp, not the host's


def test_gce_metadata_node_pool_silently_gives_the_node_service_account(module_server: KeylessServer,
                                                                         cluster: str) -> None:
    script = "; echo; ".join([shlex.join(curl("instance/service-accounts/default/email")),
                              shlex.join(curl("instance/service-accounts/default/token")),
                              shlex.join(curl("instance/attributes/kube-env", "-o", "/dev/null", "-w", "%{http_code}"))])
    out = run(module_server, "my-app-ksa", script, "--node-pool", "legacy-pool").stdout.splitlines()
    assert out[0] == COMPUTE_SA
    assert tokeninfo(module_server, json.loads(out[1])["access_token"])["email"] == COMPUTE_SA
    assert out[2] == "200"  # the node's own metadata is exposed: what GKE_METADATA conceals


def test_missing_workload_identity_user_binding_email_answers_but_token_403(module_server: KeylessServer,
                                                                           cluster: str) -> None:
    other = f"other-gsa@{PROJECT}.iam.gserviceaccount.com"
    for ksa in ("unbound-ksa", "wrong-ns-ksa"):  # no binding; a binding naming staging/, not production/
        script = "; echo; ".join([
            shlex.join(curl("instance/service-accounts/default/email")),
            shlex.join(curl("instance/service-accounts/default/token", "-w", "\n%{http_code}"))])
        out = run(module_server, ksa, script).stdout
        email, rest = out.split("\n", 1)
        assert email == other
        body, status = rest.rstrip("\n").rsplit("\n", 1)
        assert status == "403"
        assert body.startswith(DENIED), body
    # the refusals leave their trace: a GenerateAccessToken entry with code 7 for each KSA
    st = server_state(module_server)
    deadline, refused = time.monotonic() + 5, {}
    while time.monotonic() < deadline and len(refused) < 2:
        with st.db.read() as s:
            refused = {r.principal_subject: r.entry for r in s.scalars(
                select(AuditEntry).where(AuditEntry.method_name == "GenerateAccessToken", AuditEntry.status_code == 7))}
        time.sleep(0.1)
    assert set(refused) == {f"serviceAccount:{POOL}[production/unbound-ksa]",
                            f"serviceAccount:{POOL}[production/wrong-ns-ksa]"}, refused
    for entry in refused.values():
        payload = entry["protoPayload"]
        assert payload["serviceName"] == "iamcredentials.googleapis.com"
        assert entry["resource"]["labels"]["email_id"] == other and entry["severity"] == "ERROR"
        assert payload["authorizationInfo"] == [{"resource": payload["resourceName"], "granted": False,
                                                 "permission": "iam.serviceAccounts.getAccessToken",
                                                 "permissionType": "ADMIN_READ"}]


def test_annotation_key_typo_is_ignored_and_short_gsa_name_is_refused(module_server: KeylessServer,
                                                                     cluster: str) -> None:
    email = shlex.join(curl("instance/service-accounts/default/email"))
    assert run(module_server, "typo-ksa", email).stdout == POOL  # as if not annotated: the direct model
    out = run(module_server, "short-ksa", shlex.join(curl("instance/service-accounts/default/token",
                                                          "-w", "\n%{http_code}"))).stdout
    assert out.startswith("Annotated service account must be in format of "
                          "'[SA-NAME]@[PROJECT-ID].iam.gserviceaccount.com'")
    assert out.endswith("\n400")


def test_direct_model_and_pod_without_service_account_name(module_server: KeylessServer, cluster: str) -> None:
    script = "; echo; ".join([shlex.join(curl("instance/service-accounts/default/email")),
                              shlex.join(curl("instance/service-accounts/default/token"))])
    out = run(module_server, "direct-ksa", script).stdout.splitlines()
    assert out[0] == POOL  # what GKE reports for a KSA that is not annotated
    token = json.loads(out[1])["access_token"]
    assert tokeninfo(module_server, token)["sub"] == f"{PRINCIPAL_BASE}/subject/ns/production/sa/direct-ksa"
    assert granted(module_server, token, "storage.objects.get", "iam.roles.list") == ["storage.objects.get"]
    # No serviceAccountName: the namespace's `default` KSA, which holds nothing.
    out = run(module_server, None, script).stdout.splitlines()
    assert out[0] == POOL
    token = json.loads(out[1])["access_token"]
    assert tokeninfo(module_server, token)["sub"] == f"{PRINCIPAL_BASE}/subject/ns/production/sa/default"
    assert granted(module_server, token, "storage.objects.get") == []


def test_mixed_case_annotation_wins_over_direct_grants(module_server: KeylessServer, cluster: str) -> None:
    out = run(module_server, "my-app-ksa", shlex.join(curl("instance/service-accounts/default/token"))).stdout
    token = json.loads(out)["access_token"]
    assert tokeninfo(module_server, token)["email"] == GSA
    assert granted(module_server, token, "storage.objects.get") == []  # the GSA's roles, not the KSA principal's


def test_default_deny_egress_blocks_the_metadata_server(module_server: KeylessServer, cluster: str) -> None:
    script = (f"{shlex.join(curl('instance/service-accounts/default/email'))}; echo \"rc=$?\"; "
              f"{shlex.join(curl('instance/service-accounts/default/email', '-m', '3', host='169.254.169.254'))}; "
              "echo \"rc=$?\"")
    out = run(module_server, "my-app-ksa", script, "--deny-metadata-egress").stdout.split()
    assert out == ["rc=6", "rc=7"]  # could not resolve metadata.google.internal; could not connect


def test_metadata_protocol_as_gke_serves_it(module_server: KeylessServer, cluster: str) -> None:
    base = "http://169.254.169.254/computeMetadata/v1"
    sa = "instance/service-accounts"
    calls = [
        ["curl", "-s", "-w", " %{http_code}", f"{base}/{sa}/default/email"],
        ["curl", "-s", "-w", " %{http_code}", "-H", "Metadata-Flavor: Google", "-H", "X-Forwarded-For: 1.2.3.4",
         f"{base}/{sa}/default/email"],
        ["curl", "-s", "-i", "http://169.254.169.254/"],
        curl(f"{sa}/"),
        curl(f"{sa}/default/"),
        curl(f"{sa}/default/?recursive=true"),
        curl("instance/?recursive=true&alt=text"),
        curl("project/project-id"), curl("project/numeric-project-id"), curl("instance/zone"),
        curl("instance/attributes/cluster-name"),
        curl("instance/attributes/kube-env", "-w", " %{http_code}"),
        curl(f"{sa}", "-w", " %{http_code} %{redirect_url}"),
        curl(f"{sa}/default/identity", "-w", " %{http_code}"),
        curl(f"{sa}/default/identity?audience=https://example.com&format=full"),
        curl(f"{sa}/default/token"), curl(f"{sa}/{GSA}/token"),
    ]
    script = "; echo; echo ---; ".join(shlex.join(c) for c in calls)
    out = [part.strip("\n") for part in run(module_server, "my-app-ksa", script).stdout.split("\n---\n")]
    assert out[0] == 'Missing required header "Metadata-Flavor": "Google"\n 403'
    assert out[1].endswith(" 403")
    assert out[2].startswith("HTTP/1.1 200") and out[2].endswith("computeMetadata/")
    assert "metadata-flavor: google" in out[2].lower() and "server: gke metadata server" in out[2].lower()
    assert out[3].split() == ["default/", f"{GSA}/"]
    assert out[4].split() == ["aliases", "email", "identity", "scopes", "token"]
    assert json.loads(out[5]) == {"aliases": ["default"], "email": GSA, "scopes": [
        "https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/userinfo.email"]}
    assert "serviceAccounts/default/email " + GSA in out[6] and "attributes/cluster-name my-cluster" in out[6]
    assert out[7:11] == [PROJECT, NUMBER, f"projects/{NUMBER}/zones/us-central1-a", "my-cluster"]
    assert out[11].endswith(" 404")  # kube-env is concealed
    assert out[12].endswith(f" 301 http://metadata.google.internal/computeMetadata/v1/{sa}/")
    assert out[13] == "non-empty audience parameter required\n 400"
    claims = json.loads(base64.urlsafe_b64decode(out[14].split(".")[1] + "=="))
    assert claims["aud"] == "https://example.com" and claims["email"] == GSA
    # Cached per pod identity: the second request (even by the GSA's own name) costs no exchange.
    assert json.loads(out[15])["access_token"] == json.loads(out[16])["access_token"]


def test_killed_runner_leaves_nothing_behind(module_server: KeylessServer, cluster: str) -> None:
    srv = module_server
    cmd = [sys.executable, "-m", "keyless.cli.main", "pod", "run", "--cluster", "my-cluster", "--namespace",
           "production", "--service-account", "my-app-ksa", "--name", "doomed", "--data-dir", str(srv.data_dir)]
    if srv.database_url:
        cmd += ["--database", srv.database_url]
    sleep = unique_sleep()
    proc = subprocess.Popen([*cmd, "--", *sleep.split()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    st = server_state(srv)
    deadline = time.monotonic() + 30
    ip = None
    while time.monotonic() < deadline and ip is None:
        with st.db.read() as s:
            ip = s.scalars(select(K8sObject.pod_ip).where(K8sObject.name == "doomed")).first()
        time.sleep(0.1)
    assert ip and leftovers(srv)  # running: its pod namespace and node namespace exist
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while leftovers(srv) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(srv) == []
    with st.db.read() as s:
        assert s.scalars(select(K8sObject).where(K8sObject.name == "doomed")).first() is None
    assert subprocess.run(["pgrep", "-f", sleep], capture_output=True).returncode == 1


def test_pod_run_without_root_says_so(module_server: KeylessServer, cluster: str) -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv is not None
    result = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                             "keyless.cli.main", "pod", "run", "--cluster", "my-cluster", "--", "true"],
                            capture_output=True, text=True, timeout=60, cwd=os.getcwd(),
                            env={**os.environ, "KEYLESS_DATA_DIR": "/nonexistent"})
    assert result.returncode == 1
    assert "needs root" in result.stderr and "network namespace" in result.stderr
