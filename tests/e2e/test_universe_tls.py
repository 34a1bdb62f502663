"""Full-fidelity networking outside pods (issue #4): Keyless serves HTTPS with its own CA and
answers as Google's hosts and as a custom universe's, so google-auth's calls that no endpoint
setting redirects (the project lookup at cloudresourcemanager, generateIdToken at
iamcredentials) and the clients' universe settings all reach it. The client runs with the
hosts entries `keyless env` prints, in a private mount namespace (`unshare -m`, /etc/hosts
bind-mounted), so this machine's own resolver is never touched."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import KeylessServer, free_port, fresh_database_url
from tests.e2e.universe import run_in_universe

NUMBER = "123456789"
POOL = f"projects/{NUMBER}/locations/global/workloadIdentityPools/github-pool"
AUDIENCE = f"//iam.googleapis.com/{POOL}/providers/github-provider"
SA = "deploy-sa@my-project.iam.gserviceaccount.com"
UNIVERSE = "keyless.test"


def ok(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    tls_port = free_port()
    server = KeylessServer(tmp_path_factory.mktemp("tls") / "data", fresh_database_url(), "--allow-insecure-issuers",
                           "--tls-port", str(tls_port), "--universe-domain", UNIVERSE)
    server.tls_port = tls_port  # type: ignore[attr-defined]
    assert server.keyless("projects", "create", "my-project", "--number", NUMBER).returncode == 0
    iam = "/iam/v1/projects/my-project"
    ok(server.call("POST", f"{iam}/locations/global/workloadIdentityPools", params={"workloadIdentityPoolId": "github-pool"},
                   body={}))
    ok(server.call("POST", f"{iam}/locations/global/workloadIdentityPools/github-pool/providers",
                   params={"workloadIdentityPoolProviderId": "github-provider"},
                   body={"attributeMapping": {"google.subject": "assertion.sub",
                                              "attribute.repository": "assertion.repository"},
                         "attributeCondition": "assertion.repository_owner == 'my-org'",
                         "oidc": {"issuerUri": f"{server.base_url}/idp/github"}}))
    ok(server.call("POST", f"{iam}/serviceAccounts", body={"accountId": "deploy-sa"}))
    member = f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/my-org/my-repo"
    ok(server.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SA}:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/iam.workloadIdentityUser", "members": [member]},
        {"role": "roles/iam.serviceAccountOpenIdTokenCreator", "members": [f"serviceAccount:{SA}"]}]}}))
    policy = ok(server.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy", body={}))
    policy["bindings"] += [{"role": "roles/viewer", "members": [f"serviceAccount:{SA}"]},
                           {"role": "roles/storage.objectViewer", "members": [f"serviceAccount:{SA}"]},
                           {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{SA}"]}]
    ok(server.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy", body={"policy": policy}))
    ok(server.call("POST", "/storage/v1/b", params={"project": "my-project"}, body={"name": "my-bucket"}))
    ok(server.call("POST", "/upload/storage/v1/b/my-bucket/o", params={"uploadType": "media", "name": "data.txt"},
                   raw=b"hello from keyless.test", headers={"Content-Type": "text/plain"}))
    sm = "/secretmanager/v1/projects/my-project/secrets"
    ok(server.call("POST", sm, params={"secretId": "api-key"}, body={"replication": {"automatic": {}}}))
    ok(server.call("POST", f"{sm}/api-key:addVersion", body={"payload": {"data": base64.b64encode(b"s3cr3t").decode()}}))
    yield server
    server.stop()


def test_https_answers_as_google_hosts_and_by_prefix(srv: KeylessServer) -> None:
    ca = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "ca.pem"))
    base = f"https://127.0.0.1:{srv.tls_port}"  # type: ignore[attr-defined]
    h = {"Authorization": f"Bearer {srv.owner_token}"}
    for host in ("cloudresourcemanager.googleapis.com", f"cloudresourcemanager.{UNIVERSE}"):
        r = httpx.get(f"{base}/v1/projects/my-project", headers={**h, "Host": host}, verify=ca)
        assert r.status_code == 200 and r.json()["projectId"] == "my-project", r.text
    # the same path as another API's host is that API's (Secret Manager lists secrets)
    r = httpx.get(f"{base}/v1/projects/my-project/secrets", headers={**h, "Host": "secretmanager.googleapis.com"},
                  verify=ca)
    assert r.status_code == 200 and r.json()["secrets"][0]["name"].endswith("/secrets/api-key")
    # prefixes still work over HTTPS; paths that are not Google's under an API host are not found
    assert httpx.get(f"{base}/cloudresourcemanager/v1/projects/my-project", headers=h, verify=ca).status_code == 200
    r = httpx.get(f"{base}/sts/v1/token", headers={"Host": "sts.googleapis.com"}, verify=ca)
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    # the certificate is issued by Keyless's CA, nobody else's
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz")


def test_keyless_env_prints_what_clients_read(srv: KeylessServer, tmp_path: Path) -> None:
    out = srv.keyless("env", "--universe-domain", UNIVERSE, "--tls-port", str(srv.tls_port))  # type: ignore[attr-defined]
    assert out.returncode == 0, out.stderr
    bundle = srv.data_dir / "tls" / "bundle.pem"
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
                 "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", "NODE_EXTRA_CA_CERTS"):
        assert f"export {name}={bundle}" in out.stdout
    assert f"export GOOGLE_CLOUD_UNIVERSE_DOMAIN={UNIVERSE}:{srv.tls_port}" in out.stdout  # type: ignore[attr-defined]
    assert (srv.data_dir / "tls" / "ca.pem").read_bytes() in bundle.read_bytes()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    for _ in range(2):  # idempotent: the fragment is replaced, not appended again
        assert srv.keyless("env", "--universe-domain", UNIVERSE, "--write-hosts", str(hosts)).returncode == 0
    text = hosts.read_text()
    assert text.startswith("127.0.0.1 localhost\n") and text.count("# BEGIN keyless") == 1
    assert f"127.0.0.1 sts.{UNIVERSE}" in text and f"127.0.0.1 iamcredentials.{UNIVERSE}" in text


CLIENT = r'''
import json, sys
import google.auth, google.auth.transport.requests
from google.auth import impersonated_credentials
from google.cloud import secretmanager, storage

universe, sa = sys.argv[1], sys.argv[2]
creds, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
out = {"project": project}
target = impersonated_credentials.Credentials(source_credentials=creds, target_principal=sa,
                                              target_scopes=["https://www.googleapis.com/auth/cloud-platform"])
idc = impersonated_credentials.IDTokenCredentials(target, target_audience="https://my-service.example.com",
                                                  include_email=True)
idc.refresh(google.auth.transport.requests.Request())
out["id_token_email"] = json.loads(__import__("base64").urlsafe_b64decode(idc.token.split(".")[1] + "==")).get("email")
client = storage.Client(project=project, credentials=creds, client_options={"universe_domain": universe})
out["object"] = client.bucket("my-bucket").blob("data.txt").download_as_bytes().decode()
sm = secretmanager.SecretManagerServiceClient(credentials=creds, transport="rest")
out["secret"] = sm.access_secret_version(
    request={"name": f"projects/{project}/secrets/api-key/versions/latest"}).payload.data.decode()
print(json.dumps(out))
'''


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) to give the client its own /etc/hosts")
def test_unmodified_clients_reach_keyless_through_the_universe(srv: KeylessServer, tmp_path: Path) -> None:
    port = srv.tls_port  # type: ignore[attr-defined]
    universe = f"{UNIVERSE}:{port}"
    token = srv.keyless("token", "github", "--repository", "my-org/my-repo", "--audience", f"https:{AUDIENCE}",
                        "--server", srv.base_url).stdout.strip()
    (tmp_path / "token").write_text(token)
    config = {
        "universe_domain": universe, "type": "external_account", "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"https://sts.{universe}/v1/token",
        "service_account_impersonation_url":
            f"https://iamcredentials.{universe}/v1/projects/-/serviceAccounts/{SA}:generateAccessToken",
        "credential_source": {"file": str(tmp_path / "token")},
    }
    (tmp_path / "cred.json").write_text(json.dumps(config))
    env_out = srv.keyless("env", "--universe-domain", UNIVERSE, "--tls-port", str(port)).stdout
    env = {k: v for k, v in (line[len("export "):].split("=", 1) for line in env_out.splitlines()
                             if line.startswith("export "))}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GOOGLE_")}, **env,
           "GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "cred.json")}  # no GOOGLE_CLOUD_PROJECT: ADC asks CRM
    (tmp_path / "client.py").write_text(CLIENT)
    got = run_in_universe(srv, tmp_path, UNIVERSE, [sys.executable, str(tmp_path / "client.py"), universe, SA], env)
    assert got == {"project": "my-project", "id_token_email": SA, "object": "hello from keyless.test",
                   "secret": "s3cr3t"}
    # the machine's own /etc/hosts was never touched
    assert f"sts.{UNIVERSE}" not in Path("/etc/hosts").read_text()
