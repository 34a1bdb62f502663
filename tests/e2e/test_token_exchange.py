"""Seed 001 end to end: a GitHub-Actions-shaped token is exchanged at STS for a federated token,
which impersonates a service account through IAM Credentials; google-auth does it unmodified."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import server_state
from tests.conftest import KeylessServer, fresh_database_url

NUMBER = "123456789"
POOL = f"projects/{NUMBER}/locations/global/workloadIdentityPools/github-pool"
PROVIDER = f"{POOL}/providers/github-provider"
AUDIENCE = f"//iam.googleapis.com/{PROVIDER}"
IAM = "/iam/v1/projects/my-project"
REPO_SET = f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/my-org/my-repo"
DEPLOY_SA = "deploy-sa@my-project.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    server = KeylessServer(tmp_path_factory.mktemp("sts") / "data", fresh_database_url(), "--allow-insecure-issuers")
    assert server.keyless("projects", "create", "my-project", "--number", NUMBER).returncode == 0
    ok = lambda r: r.status_code == 200 or pytest.fail(r.text)  # noqa: E731
    ok(server.call("POST", f"{IAM}/locations/global/workloadIdentityPools", params={"workloadIdentityPoolId": "github-pool"},
                   body={"displayName": "GitHub Actions pool"}))
    ok(server.call("POST", f"{IAM}/locations/global/workloadIdentityPools/github-pool/providers",
                   params={"workloadIdentityPoolProviderId": "github-provider"},
                   body={"displayName": "GitHub provider",
                         "attributeMapping": {"google.subject": "assertion.sub",
                                              "attribute.repository": "assertion.repository",
                                              "attribute.ref": "assertion.ref"},
                         "attributeCondition": "assertion.repository_owner == 'my-org'",
                         "oidc": {"issuerUri": f"{server.base_url}/idp/github"}}))
    ok(server.call("POST", f"{IAM}/serviceAccounts", body={"accountId": "deploy-sa"}))
    ok(server.call("POST", f"/iam/v1/projects/-/serviceAccounts/{DEPLOY_SA}:setIamPolicy",
                   body={"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [REPO_SET]}]}}))
    policy = server.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy", body={}).json()
    policy["bindings"].append({"role": "roles/viewer", "members": [f"serviceAccount:{DEPLOY_SA}"]})
    policy["auditConfigs"] = [{"service": "iam.googleapis.com", "auditLogConfigs": [{"logType": "DATA_READ"}]}]
    ok(server.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy",
                   body={"policy": policy, "updateMask": "bindings,etag,auditConfigs"}))
    yield server
    server.stop()


def github_token(srv: KeylessServer, repository: str = "my-org/my-repo", audience: str = f"https:{AUDIENCE}",
                 **extra: str) -> str:
    args = ["token", "github", "--repository", repository, "--audience", audience, "--server", srv.base_url]
    for k, v in extra.items():
        args += [f"--{k.replace('_', '-')}", v]
    out = srv.keyless(*args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def exchange(srv: KeylessServer, token: str, audience: str = AUDIENCE, **fields: str) -> httpx.Response:
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "audience": audience,
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "subject_token": token, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", **fields}
    return httpx.post(f"{srv.base_url}/sts/v1/token", data=form, timeout=30)


def test_exchange_issues_a_federated_token(srv: KeylessServer) -> None:
    r = exchange(srv, github_token(srv))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "Bearer" and 3500 <= body["expires_in"] <= 3600
    info = httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": body["access_token"]}).json()
    assert info["sub"] == (f"principal://iam.googleapis.com/{POOL}/subject/"
                           "repo:my-org/my-repo:ref:refs/heads/main")


@pytest.mark.parametrize("case, want", [
    ("other org", ("unauthorized_client", "The given credential is rejected by the attribute condition.")),
    ("wrong audience", ("invalid_grant", "does not match the expected audience")),
    ("unknown provider", ("invalid_target", 'The target service indicated by the "audience" parameters is invalid')),
    ("malformed audience", ("invalid_request", 'Invalid value for "audience"')),
    ("garbage token", ("invalid_grant", "Unable to parse the ID Token.")),
    ("wrong grant", ("unsupported_grant_type", "")),
])
def test_exchange_refusals(srv: KeylessServer, case: str, want: tuple[str, str]) -> None:
    token = github_token(srv)
    if case == "other org":
        r = exchange(srv, github_token(srv, repository="evil-org/my-repo"))
    elif case == "wrong audience":
        r = exchange(srv, github_token(srv, audience="https://someone-else"))
    elif case == "unknown provider":
        r = exchange(srv, token, audience=AUDIENCE.replace("github-provider", "nope-provider"))
    elif case == "malformed audience":
        r = exchange(srv, token, audience="projects/123/github-pool")
    elif case == "garbage token":
        r = exchange(srv, "not.a.jwt")
    else:
        r = exchange(srv, token, grant_type="client_credentials")
    assert r.status_code == 400, r.text
    assert r.json()["error"] == want[0]
    assert want[1] in r.json()["error_description"]


def test_disabled_provider_refuses_at_once(srv: KeylessServer) -> None:
    base = f"{IAM}/locations/global/workloadIdentityPools/github-pool/providers"
    assert srv.call("POST", base, params={"workloadIdentityPoolProviderId": "short-provider"},
                    body={"attributeMapping": {"google.subject": "assertion.sub"},
                          "oidc": {"issuerUri": f"{srv.base_url}/idp/github"}}).status_code == 200
    audience = AUDIENCE.replace("github-provider", "short-provider")
    token = github_token(srv, audience=f"https:{audience}")
    assert exchange(srv, token, audience=audience).status_code == 200
    assert srv.call("PATCH", f"{base}/short-provider", params={"updateMask": "disabled"},
                    body={"disabled": True}).status_code == 200
    assert exchange(srv, token, audience=audience).json()["error"] == "invalid_target"


def external_account(tmp_path: Path, srv: KeylessServer, token: str, *, impersonate: bool) -> Path:
    """The file `gcloud iam workload-identity-pools create-cred-config` writes, pointed at Keyless."""
    (tmp_path / "token").write_text(token)
    config = {
        "universe_domain": "localhost",  # keeps google-auth's background lookups off Google (research §0.3)
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{srv.base_url}/sts/v1/token",
        "credential_source": {"file": str(tmp_path / "token")},
    }
    if impersonate:
        config["service_account_impersonation_url"] = (
            f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{DEPLOY_SA}:generateAccessToken")
    path = tmp_path / "cred.json"
    path.write_text(json.dumps(config))
    return path


def test_google_auth_external_account_with_impersonation(srv: KeylessServer, tmp_path: Path) -> None:
    import google.auth
    import google.auth.transport.requests

    path = external_account(tmp_path, srv, github_token(srv), impersonate=True)
    creds, _ = google.auth.load_credentials_from_file(str(path))
    creds = creds.with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
    creds.refresh(google.auth.transport.requests.Request())
    # the service account's token reads the project it was granted viewer on
    r = srv.call("GET", "/cloudresourcemanager/v1/projects/my-project", token=creds.token)
    assert r.status_code == 200, r.text
    info = httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": creds.token}).json()
    assert info["email"] == DEPLOY_SA
    # Data Access logging is on for iam.googleapis.com in this project: the impersonation is recorded
    st = server_state(srv)
    from sqlalchemy import select

    from keyless.store.models import AuditEntry
    deadline = time.monotonic() + 30  # the audit writer's first start, under a loaded CI
    entries: list = []
    while time.monotonic() < deadline and not entries:
        with st.db.read() as s:
            entries = s.scalars(select(AuditEntry).where(AuditEntry.method_name == "GenerateAccessToken")).all()
        time.sleep(0.1)
    assert entries, "no GenerateAccessToken audit entry"
    auth = entries[-1].entry["protoPayload"]["authenticationInfo"]
    assert auth["principalSubject"].startswith(f"principal://iam.googleapis.com/{POOL}/subject/repo:my-org/my-repo")
    assert entries[-1].entry["logName"].endswith("cloudaudit.googleapis.com%2Fdata_access")


def test_google_auth_direct_access_token_lacks_the_service_accounts_rights(srv: KeylessServer, tmp_path: Path) -> None:
    import google.auth
    import google.auth.transport.requests

    path = external_account(tmp_path, srv, github_token(srv), impersonate=False)
    creds, _ = google.auth.load_credentials_from_file(str(path))
    creds = creds.with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
    creds.refresh(google.auth.transport.requests.Request())
    assert creds.token.startswith("ya29.")
    # the federated principal itself holds no role on the project
    assert srv.call("GET", "/cloudresourcemanager/v1/projects/my-project", token=creds.token).status_code == 403


def test_impersonation_refused_for_other_repositories(srv: KeylessServer) -> None:
    sts = exchange(srv, github_token(srv, repository="my-org/other-repo")).json()["access_token"]
    r = httpx.post(f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{DEPLOY_SA}:generateAccessToken",
                   json={"scope": ["https://www.googleapis.com/auth/cloud-platform"]},
                   headers={"Authorization": f"Bearer {sts}"})
    assert r.status_code == 403 and "iam.serviceAccounts.getAccessToken" in r.json()["error"]["message"]


def test_id_token_verifies_with_google_auth(srv: KeylessServer) -> None:
    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    sts = exchange(srv, github_token(srv)).json()["access_token"]
    # workloadIdentityUser includes getOpenIdToken
    r = httpx.post(f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{DEPLOY_SA}:generateIdToken",
                   json={"audience": "https://run-service.example.com", "includeEmail": True},
                   headers={"Authorization": f"Bearer {sts}"})
    assert r.status_code == 200, r.text
    claims = id_token.verify_token(r.json()["token"], Request(), audience="https://run-service.example.com",
                                   certs_url=f"{srv.base_url}/oauth2/v3/certs")
    assert claims["email"] == DEPLOY_SA and claims["email_verified"] is True


def _impersonating_config(tmp_path: Path, srv: KeylessServer, source: dict) -> Path:
    config = {
        "universe_domain": "localhost", "type": "external_account", "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": f"{srv.base_url}/sts/v1/token",
        "credential_source": source,
        "service_account_impersonation_url":
            f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{DEPLOY_SA}:generateAccessToken",
    }
    path = tmp_path / "cred.json"
    path.write_text(json.dumps(config))
    return path


def _refresh_and_check(srv: KeylessServer, path: Path) -> None:
    import google.auth
    import google.auth.transport.requests

    creds, _ = google.auth.load_credentials_from_file(str(path))
    creds = creds.with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
    creds.refresh(google.auth.transport.requests.Request())
    assert srv.call("GET", "/cloudresourcemanager/v1/projects/my-project", token=creds.token).status_code == 200


def test_google_auth_url_source_through_the_actions_token_endpoint(srv: KeylessServer, tmp_path: Path) -> None:
    """As google-github-actions/auth does: ask ACTIONS_ID_TOKEN_REQUEST_URL for a token with our audience."""
    from urllib.parse import quote

    out = srv.keyless("token", "github-actions-env", "--repository", "my-org/my-repo", "--server", srv.base_url)
    env = dict(line.split("=", 1) for line in out.stdout.splitlines())
    url = env["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=" + quote(f"https:{AUDIENCE}", safe="")
    _refresh_and_check(srv, _impersonating_config(tmp_path, srv, {
        "url": url, "headers": {"Authorization": f"Bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"},
        "format": {"type": "json", "subject_token_field_name": "value"}}))
    # a forged request token gets nothing
    r = httpx.get(url, headers={"Authorization": "Bearer " + env["ACTIONS_ID_TOKEN_REQUEST_TOKEN"][:-4] + "AAAA"})
    assert r.status_code == 401


def test_google_auth_executable_source(srv: KeylessServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    token = github_token(srv)
    script = tmp_path / "issue-token.py"
    script.write_text(
        "import json, time\n"
        f"print(json.dumps({{'version': 1, 'success': True, 'token_type': 'urn:ietf:params:oauth:token-type:jwt',"
        f" 'id_token': {token!r}, 'expiration_time': int(time.time()) + 300}}))\n")
    monkeypatch.setenv("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")
    _refresh_and_check(srv, _impersonating_config(tmp_path, srv, {
        "executable": {"command": f"{sys.executable} {script}", "timeout_millis": 30000}}))


def test_sign_blob_and_sign_jwt_verify_against_published_certificates(srv: KeylessServer) -> None:
    import base64 as b64

    from google.auth import crypt, jwt

    owner = srv.owner_token
    # the owner may not sign as the account until granted Token Creator (roles/owner lacks signBlob)
    base = f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{DEPLOY_SA}"
    denied = httpx.post(f"{base}:signBlob", json={"payload": b64.b64encode(b"x").decode()},
                        headers={"Authorization": f"Bearer {owner}"})
    assert denied.status_code == 403
    policy = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{DEPLOY_SA}:getIamPolicy", body={}).json()
    policy["bindings"].append({"role": "roles/iam.serviceAccountTokenCreator", "members": ["user:owner@keyless.dev"]})
    assert srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{DEPLOY_SA}:setIamPolicy",
                    body={"policy": policy}).status_code == 200
    signed = httpx.post(f"{base}:signBlob", json={"payload": b64.b64encode(b"hello").decode()},
                        headers={"Authorization": f"Bearer {owner}"}).json()
    certs = httpx.get(f"{srv.base_url}/robot/v1/metadata/x509/{DEPLOY_SA}").json()
    verifier = crypt.RSAVerifier.from_string(certs[signed["keyId"]])
    assert verifier.verify(b"hello", b64.b64decode(signed["signedBlob"]))
    assert not verifier.verify(b"hellO", b64.b64decode(signed["signedBlob"]))
    now = int(time.time())
    claims = {"iss": DEPLOY_SA, "aud": "https://example.com", "iat": now, "exp": now + 600}
    out = httpx.post(f"{base}:signJwt", json={"payload": json.dumps(claims)},
                     headers={"Authorization": f"Bearer {owner}"}).json()
    assert jwt.decode(out["signedJwt"], certs=certs, audience="https://example.com")["iss"] == DEPLOY_SA
    # the Google-managed key is listed, and cannot be deleted by users
    keys = srv.call("GET", f"/iam/v1/projects/-/serviceAccounts/{DEPLOY_SA}/keys",
                    params={"keyTypes": "SYSTEM_MANAGED"}).json()["keys"]
    assert [k["keyType"] for k in keys] == ["SYSTEM_MANAGED"]
    assert srv.call("DELETE", f"/iam/v1/{keys[0]['name']}").status_code == 400



def test_impersonated_credentials_with_delegates(srv: KeylessServer) -> None:
    """google.auth.impersonated_credentials: owner -> hop-sa (delegate) -> deploy-sa."""
    from google.auth import impersonated_credentials
    from google.auth.transport.requests import Request
    from google.oauth2.credentials import Credentials

    assert srv.call("POST", f"{IAM}/serviceAccounts", body={"accountId": "hop-sa"}).status_code == 200
    hop = "hop-sa@my-project.iam.gserviceaccount.com"
    for account, member in ((hop, "user:owner@keyless.dev"), (DEPLOY_SA, f"serviceAccount:{hop}")):
        policy = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{account}:getIamPolicy", body={}).json()
        policy.setdefault("bindings", []).append({"role": "roles/iam.serviceAccountTokenCreator", "members": [member]})
        assert srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{account}:setIamPolicy",
                        body={"policy": policy}).status_code == 200
    source = Credentials(token=srv.owner_token)
    target = impersonated_credentials.Credentials(
        source_credentials=source, target_principal=DEPLOY_SA,
        target_scopes=["https://www.googleapis.com/auth/cloud-platform"],
        delegates=[f"projects/-/serviceAccounts/{hop}"],
        iam_endpoint_override=f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{DEPLOY_SA}:generateAccessToken")
    target.refresh(Request())
    info = httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": target.token}).json()
    assert info["email"] == DEPLOY_SA
    # remove the middle hop's right: the chain breaks at that hop
    policy = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{DEPLOY_SA}:getIamPolicy", body={}).json()
    for b in policy["bindings"]:
        b["members"] = [m for m in b["members"] if m != f"serviceAccount:{hop}"]
    assert srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{DEPLOY_SA}:setIamPolicy",
                    body={"policy": policy}).status_code == 200
    from google.auth import exceptions
    with pytest.raises(exceptions.RefreshError):
        impersonated_credentials.Credentials(
            source_credentials=source, target_principal=DEPLOY_SA,
            target_scopes=["https://www.googleapis.com/auth/cloud-platform"],
            delegates=[f"projects/-/serviceAccounts/{hop}"],
            iam_endpoint_override=f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{DEPLOY_SA}"
                                  ":generateAccessToken").refresh(Request())


@pytest.mark.gcloud
def test_gcloud_auth_login_with_cred_file(srv: KeylessServer, tmp_path: Path) -> None:
    """`gcloud auth login --cred-file=CONFIG`, then print-access-token: gcloud exchanges through Keyless."""
    import os
    import shutil
    import subprocess

    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is not installed: this test needs the Google Cloud CLI on PATH")
    path = _impersonating_config(tmp_path, srv, {"file": str(tmp_path / "token")})
    (tmp_path / "token").write_text(github_token(srv))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_")}
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), CLOUDSDK_CORE_DISABLE_PROMPTS="1",
               CLOUDSDK_CORE_DISABLE_USAGE_REPORTING="1", CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK="1",
               CLOUDSDK_METRICS_ENVIRONMENT="keyless", CLOUDSDK_CORE_CHECK_GCE_METADATA="false")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([gcloud, *args], capture_output=True, text=True, env=env, timeout=120)

    login = run("auth", "login", f"--cred-file={path}")
    assert login.returncode == 0, login.stderr
    printed = run("auth", "print-access-token")
    assert printed.returncode == 0, printed.stderr
    info = httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": printed.stdout.strip()}).json()
    assert info["email"] == DEPLOY_SA
    listed = run("auth", "list", "--format=value(account)")
    assert DEPLOY_SA in listed.stdout


@pytest.mark.gcloud
def test_create_cred_config_output_consumed_by_google_auth(srv: KeylessServer, tmp_path: Path) -> None:
    """gcloud writes Google's hosts into the file; pointed at Keyless, google-auth uses it as is."""
    import os
    import shutil
    import subprocess

    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is not installed: this test needs the Google Cloud CLI on PATH")
    (tmp_path / "token").write_text(github_token(srv))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDSDK_")}
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), CLOUDSDK_CORE_DISABLE_PROMPTS="1",
               CLOUDSDK_METRICS_ENVIRONMENT="keyless", CLOUDSDK_CORE_CHECK_GCE_METADATA="false")
    out = subprocess.run([gcloud, "iam", "workload-identity-pools", "create-cred-config", PROVIDER,
                          f"--service-account={DEPLOY_SA}", f"--output-file={tmp_path / 'cred.json'}",
                          f"--credential-source-file={tmp_path / 'token'}"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    config = json.loads((tmp_path / "cred.json").read_text())
    assert config["audience"] == AUDIENCE and config["token_url"] == "https://sts.googleapis.com/v1/token"
    config["token_url"] = f"{srv.base_url}/sts/v1/token"
    config["service_account_impersonation_url"] = config["service_account_impersonation_url"].replace(
        "https://iamcredentials.googleapis.com", f"{srv.base_url}/iamcredentials")
    config["universe_domain"] = "localhost"
    (tmp_path / "cred.json").write_text(json.dumps(config))
    _refresh_and_check(srv, tmp_path / "cred.json")


def test_cross_project_impersonation_needs_token_creator(srv: KeylessServer) -> None:
    """Seed 000 grants roles/iam.serviceAccountUser for "impersonation"; on Google that role allows
    actAs only. Minting B's token needs roles/iam.serviceAccountTokenCreator."""
    from tests.api.helpers import token_for_service_account

    assert srv.keyless("projects", "create", "project-a", "--number", "111111111111").returncode == 0
    assert srv.keyless("projects", "create", "project-b", "--number", "222222222222").returncode == 0
    a, b = "service-account-a@project-a.iam.gserviceaccount.com", "service-account-b@project-b.iam.gserviceaccount.com"
    for project, account in (("project-a", "service-account-a"), ("project-b", "service-account-b")):
        assert srv.call("POST", f"/iam/v1/projects/{project}/serviceAccounts", body={"accountId": account}).status_code == 200
    url = f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{b}:generateAccessToken"
    body = {"scope": ["https://www.googleapis.com/auth/cloud-platform"]}
    token_a = token_for_service_account(srv, a)

    def grant(role: str) -> None:
        assert srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{b}:setIamPolicy", body={"policy": {
            "bindings": [{"role": role, "members": [f"serviceAccount:{a}"]}]}}).status_code == 200

    grant("roles/iam.serviceAccountUser")
    assert httpx.post(url, json=body, headers={"Authorization": f"Bearer {token_a}"}).status_code == 403
    grant("roles/iam.serviceAccountTokenCreator")
    r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {token_a}"})
    assert r.status_code == 200, r.text
    info = httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": r.json()["accessToken"]}).json()
    assert info["email"] == b


def test_id_token_discovery(srv: KeylessServer) -> None:
    doc = httpx.get(f"{srv.base_url}/oauth2/.well-known/openid-configuration").json()
    assert doc["jwks_uri"] == f"{srv.base_url}/oauth2/v3/certs"
    assert httpx.get(doc["jwks_uri"]).json()["keys"]
