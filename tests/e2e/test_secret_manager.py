"""The seeds' Secret Manager snippet, unmodified but for the endpoint, with google-cloud-secret-manager's
REST transport and credentials from Keyless (a service account token, and a GitHub-style token
through an external-account file); and the real gcloud's `secrets` commands.

The REST transport joins `api_endpoint` and the method's URI as `{host}{uri}`, keeping an
`http://` scheme, so `client_options={"api_endpoint": f"{server}/secretmanager"}` (no trailing
slash) reaches `/secretmanager/v1/projects/...`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from keyless.store.models import AuditEntry
from tests.api.helpers import audit_data_access, server_state, token_for_service_account
from tests.conftest import Gcloud, KeylessServer, fresh_database_url

NUMBER = "123456789"
POOL = f"projects/{NUMBER}/locations/global/workloadIdentityPools/github-pool"
AUDIENCE = f"//iam.googleapis.com/{POOL}/providers/github-provider"
REPO_SET = f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/my-org/my-repo"
APP_SA = "app-sa@my-project.iam.gserviceaccount.com"
IAM = "/iam/v1/projects/my-project"
SM = "/secretmanager/v1/projects/my-project"
ACCESS = "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion"


def ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    server = KeylessServer(tmp_path_factory.mktemp("sm") / "data", fresh_database_url(), "--allow-insecure-issuers")
    assert server.keyless("projects", "create", "my-project", "--number", NUMBER).returncode == 0
    ok(server.call("POST", f"{IAM}/serviceAccounts", body={"accountId": "app-sa"}))
    ok(server.call("POST", f"{IAM}/locations/global/workloadIdentityPools", params={"workloadIdentityPoolId": "github-pool"},
                   body={}))
    ok(server.call("POST", f"{IAM}/locations/global/workloadIdentityPools/github-pool/providers",
                   params={"workloadIdentityPoolProviderId": "github-provider"},
                   body={"attributeMapping": {"google.subject": "assertion.sub",
                                              "attribute.repository": "assertion.repository"},
                         "oidc": {"issuerUri": f"{server.base_url}/idp/github"}}))
    for secret, value in (("api-key", b"s3cr3t-value"), ("other-key", b"not-yours")):
        ok(server.call("POST", f"{SM}/secrets", params={"secretId": secret}, body={"replication": {"automatic": {}}}))
        ok(server.call("POST", f"{SM}/secrets/{secret}:addVersion",
                       body={"payload": {"data": __import__("base64").b64encode(value).decode()}}))
    # Least privilege: each identity may read api-key and nothing else.
    ok(server.call("POST", f"{SM}/secrets/api-key:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{APP_SA}", REPO_SET]}]}}))
    audit_data_access(server, "my-project", {"secretmanager.googleapis.com": ["DATA_READ"]})
    yield server
    server.stop()


def client(srv: KeylessServer, credentials: Any) -> Any:
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient(
        credentials=credentials, transport="rest", client_options={"api_endpoint": f"{srv.base_url}/secretmanager"})


def seed_snippet(client: Any, secret: str) -> str:
    """The seeds' "Secret Manager Access" snippet (PROJECT_ID filled in)."""
    secret_name = f"projects/my-project/secrets/{secret}/versions/latest"
    response = client.access_secret_version(request={"name": secret_name})
    api_key = response.payload.data.decode('UTF-8')
    return str(api_key)


def entries(srv: KeylessServer, subject_or_email: str, count: int) -> list[dict[str, Any]]:
    """The caller's AccessSecretVersion entries, once `count` are written (Data Access entries are
    written after the answer, in order per worker but not before the next call returns)."""
    deadline = time.monotonic() + 10
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with server_state(srv).db.read() as s:
            rows = s.scalars(select(AuditEntry).where(AuditEntry.method_name == ACCESS)).all()
        found = [r.entry for r in rows if subject_or_email in json.dumps(r.entry["protoPayload"]["authenticationInfo"])]
        if len(found) >= count:
            break
        time.sleep(0.1)
    return found


def test_seed_snippet_with_a_service_account_token(srv: KeylessServer) -> None:
    import google.oauth2.credentials
    import google_crc32c
    from google.api_core import exceptions  # REST errors map by HTTP status: 403 is Forbidden

    creds = google.oauth2.credentials.Credentials(token_for_service_account(srv, APP_SA))
    sm = client(srv, creds)
    assert seed_snippet(sm, "api-key") == "s3cr3t-value"
    response = sm.access_secret_version(request={"name": "projects/my-project/secrets/api-key/versions/latest"})
    assert response.name == f"projects/{NUMBER}/secrets/api-key/versions/1"
    assert response.payload.data_crc32c == int(google_crc32c.value(b"s3cr3t-value"))
    with pytest.raises(exceptions.Forbidden) as denied:
        seed_snippet(sm, "other-key")
    assert "Permission 'secretmanager.versions.access' denied for resource " \
           "'projects/my-project/secrets/other-key/versions/latest'" in denied.value.message
    # The seeds' audit trail: both calls are in the Data Access log, the denial with its status.
    found = entries(srv, APP_SA, 3)  # two reads, then the denial
    assert {e["protoPayload"]["status"].get("code", 0) for e in found} == {0, 7}
    assert all(e["logName"].endswith("cloudaudit.googleapis.com%2Fdata_access") for e in found)


def test_seed_snippet_with_a_federated_github_identity(srv: KeylessServer, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth
    from google.api_core import exceptions  # REST errors map by HTTP status: 403 is Forbidden

    out = srv.keyless("token", "github", "--repository", "my-org/my-repo", "--audience", f"https:{AUDIENCE}",
                      "--server", srv.base_url)
    assert out.returncode == 0, out.stderr
    (tmp_path / "token").write_text(out.stdout.strip())
    (tmp_path / "cred.json").write_text(json.dumps({
        "universe_domain": "localhost", "type": "external_account", "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": f"{srv.base_url}/sts/v1/token",
        "credential_source": {"file": str(tmp_path / "token")}}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "cred.json"))
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-project")  # no project lookup at Google (research §0.2)
    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    sm = client(srv, creds)
    assert seed_snippet(sm, "api-key") == "s3cr3t-value"
    with pytest.raises(exceptions.Forbidden):
        seed_snippet(sm, "other-key")
    found = entries(srv, f"principal://iam.googleapis.com/{POOL}/subject/", 2)
    assert {e["protoPayload"]["status"].get("code", 0) for e in found} == {0, 7}
    assert all(e["protoPayload"]["authenticationInfo"]["principalSubject"].startswith(
        f"principal://iam.googleapis.com/{POOL}/subject/") for e in found)


def test_client_library_lifecycle_with_rest_transport(srv: KeylessServer) -> None:
    import google.oauth2.credentials
    import google_crc32c
    from google.api_core import exceptions  # REST errors map by HTTP status: 403 is Forbidden

    sm = client(srv, google.oauth2.credentials.Credentials(srv.owner_token))
    secret = sm.create_secret(request={"parent": "projects/my-project", "secret_id": "lib-secret",
                                       "secret": {"replication": {"automatic": {}}, "labels": {"team": "infra"}}})
    assert secret.name == f"projects/{NUMBER}/secrets/lib-secret" and secret.labels["team"] == "infra"
    data = b"library payload"
    version = sm.add_secret_version(request={"parent": secret.name, "payload": {
        "data": data, "data_crc32c": int(google_crc32c.value(data))}})
    assert version.name.endswith("/versions/1") and version.client_specified_payload_checksum
    with pytest.raises(exceptions.BadRequest, match="Checksum mismatch"):
        sm.add_secret_version(request={"parent": secret.name, "payload": {"data": data, "data_crc32c": 12345}})
    assert [v.name for v in sm.list_secret_versions(request={"parent": secret.name})] == [version.name]
    assert "lib-secret" in [s.name.rsplit("/", 1)[1] for s in sm.list_secrets(request={"parent": "projects/my-project"})]
    sm.disable_secret_version(request={"name": version.name})
    with pytest.raises(exceptions.BadRequest, match="is in DISABLED state"):
        sm.access_secret_version(request={"name": version.name})
    sm.enable_secret_version(request={"name": version.name})
    assert sm.access_secret_version(request={"name": version.name}).payload.data == data
    destroyed = sm.destroy_secret_version(request={"name": version.name})
    assert destroyed.state.name == "DESTROYED"
    policy = sm.get_iam_policy(request={"resource": secret.name})
    policy.bindings.add(role="roles/secretmanager.viewer", members=[f"serviceAccount:{APP_SA}"])
    sm.set_iam_policy(request={"resource": secret.name, "policy": policy})
    assert sm.get_iam_policy(request={"resource": secret.name}).bindings[0].role == "roles/secretmanager.viewer"
    sm.delete_secret(request={"name": secret.name})
    with pytest.raises(exceptions.NotFound):
        sm.get_secret(request={"name": secret.name})


@pytest.mark.gcloud
@pytest.mark.store_independent  # gcloud's side of the wire: SQLite leg only; the PostgreSQL leg drives the same methods with the discovery client (tests/conformance)
def test_gcloud_secrets_commands(gcloud: Gcloud, server: KeylessServer) -> None:
    g = gcloud
    assert server.keyless("projects", "create", "my-project", "--number", NUMBER).returncode == 0
    ok(server.call("POST", f"{IAM}/serviceAccounts", body={"accountId": "app-sa"}))
    g.run("secrets", "create", "api-key", "--data-file=-", "--project=my-project", stdin="first-value")
    g.run("secrets", "versions", "add", "api-key", "--data-file=-", stdin="second-value")
    assert g.run("secrets", "versions", "access", "latest", "--secret=api-key").stdout == "second-value"
    assert g.run("secrets", "versions", "access", "1", "--secret=api-key").stdout == "first-value"
    # a regional secret of the same id is another secret (issue #20)
    g.run("secrets", "create", "api-key", "--location=us-central1", "--data-file=-", stdin="regional-value")
    assert g.run("secrets", "versions", "access", "latest", "--secret=api-key", "--location=us-central1"
                 ).stdout == "regional-value"
    listed = g.json("secrets", "list")
    assert [s["name"] for s in listed] == [f"projects/{NUMBER}/secrets/api-key"]
    g.run("secrets", "add-iam-policy-binding", "api-key", "--role=roles/secretmanager.secretAccessor",
          f"--member=serviceAccount:{APP_SA}")
    policy = g.json("secrets", "get-iam-policy", "api-key")
    assert policy["bindings"] == [{"role": "roles/secretmanager.secretAccessor",
                                   "members": [f"serviceAccount:{APP_SA}"]}]
    token = token_for_service_account(server, APP_SA)
    assert ok(server.call("GET", f"{SM}/secrets/api-key/versions/latest:access", token=token))

    g.run("secrets", "versions", "disable", "2", "--secret=api-key")
    denied = g.run("secrets", "versions", "access", "latest", "--secret=api-key", check=False)
    assert denied.returncode != 0 and "is in DISABLED state" in denied.stderr
    g.run("secrets", "versions", "destroy", "1", "--secret=api-key", "--quiet")
    versions = {v["name"].rsplit("/", 1)[1]: v["state"] for v in g.json("secrets", "versions", "list", "api-key")}
    assert versions == {"1": "DESTROYED", "2": "DISABLED"}
    g.run("secrets", "update", "api-key", "--update-labels=env=prod")
    assert g.json("secrets", "describe", "api-key")["labels"] == {"env": "prod"}
    missing = g.run("secrets", "versions", "access", "latest", "--secret=nope", check=False)
    assert missing.returncode != 0 and f"Secret [projects/{NUMBER}/secrets/nope] not found or has no versions." \
        in missing.stderr
    g.run("secrets", "delete", "api-key", "--quiet")
    assert g.json("secrets", "list") in ([], None)


def test_seed_snippet_with_a_key_file_sends_self_signed_jwts(srv: KeylessServer, tmp_path: Path) -> None:
    """The "before" identity path: a key file. The GAPIC client never asks the token endpoint; it
    sends a self-signed JWT (aud https://secretmanager.googleapis.com/), which Keyless verifies
    against the key it issued."""
    import base64

    from google.oauth2 import service_account

    created = ok(srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{APP_SA}/keys", body={}))
    key_file = tmp_path / "app-sa.json"
    key_file.write_bytes(base64.b64decode(created["privateKeyData"]))
    credentials = service_account.Credentials.from_service_account_file(
        str(key_file), scopes=["https://www.googleapis.com/auth/cloud-platform"])
    sm = client(srv, credentials)
    assert seed_snippet(sm, "api-key") == "s3cr3t-value"
    assert credentials.token is None  # the token endpoint was never asked: the client sent self-signed JWTs
    from google.api_core import exceptions

    with pytest.raises(exceptions.Forbidden):
        seed_snippet(sm, "other-key")
