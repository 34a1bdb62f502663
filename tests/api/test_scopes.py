"""OAuth scopes enforced per method, as on Google (issue #19): a token minted for
devstorage.read_only reads objects but cannot write them, nor read a secret or an IAM policy;
cloud-platform covers all. Google's error bodies: ACCESS_TOKEN_SCOPE_INSUFFICIENT (ErrorInfo)
on the Cloud APIs, "Provided scope(s) are not authorized" on Cloud Storage's JSON API."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import google.oauth2.credentials
import pytest
from google.api_core import exceptions
from google.cloud import secretmanager, storage

from keyless.api import scopes
from keyless.app import PREFIXES
from keyless.iam.service_accounts import find_by_email
from keyless.state import service_account_principal
from tests.api.helpers import server_state
from tests.conftest import Gcloud, KeylessServer, _need_gcloud, fresh_database_url

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "my-project"
APP_SA = f"app-sa@{PROJECT}.iam.gserviceaccount.com"
AUTH = "https://www.googleapis.com/auth/"
READ_ONLY = AUTH + "devstorage.read_only"
READ_WRITE = AUTH + "devstorage.read_write"
CLOUD_PLATFORM = AUTH + "cloud-platform"
CLOUD_PLATFORM_READ = AUTH + "cloud-platform.read-only"
SM = f"/secretmanager/v1/projects/{PROJECT}"


def test_the_shipped_table_is_what_the_discovery_documents_say() -> None:
    """scripts/scope_table.py --check: the table matches Google's discovery documents and lists
    every route Keyless serves under a Google API prefix (the script fails on a route it cannot
    match)."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "scope_table.py"), "--check"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr


def test_every_google_api_route_has_its_documents_scopes() -> None:
    table = scopes.table()
    checked = 0
    for prefix, routes in PREFIXES.items():
        if prefix not in scopes.PREFIX_SERVICES:
            continue
        for route in routes(None):  # type: ignore[arg-type]
            for method in route.methods or ():
                if method != "HEAD":
                    assert scopes.route_key(method, f"/{prefix}{route.path}") in table, (method, prefix, route.path)
                    checked += 1
    assert checked > 100
    # what the discovery documents say, for the methods the seeds use
    access = scopes.for_route("secretmanager", "GET", "/v1/projects/{project}/secrets/{secret}/versions/{v}:access")
    assert access == scopes.MethodScopes("secretmanager.googleapis.com",
                                         "secretmanager.projects.secrets.versions.access", frozenset({CLOUD_PLATFORM}))
    get_object = scopes.for_route("storage", "GET", "/v1/b/{bucket}/o/{object:path}")
    assert get_object is not None and get_object.method == "storage.objects.get"
    assert get_object.accepted == {CLOUD_PLATFORM, CLOUD_PLATFORM_READ, READ_ONLY, READ_WRITE,
                                   AUTH + "devstorage.full_control"}
    upload = scopes.for_route("upload", "POST", "/storage/v1/b/{bucket}/o")
    assert upload is not None and READ_ONLY not in upload.accepted and READ_WRITE in upload.accepted
    # methods whose documents list no scope need no credential (the GKE issuer's keys)
    assert scopes.for_route("container", "GET", "/v1/projects/{p}/locations/{l}/clusters/{c}/jwks") is None
    # a route the table does not list (a new one, before the table is regenerated) takes cloud-platform only
    assert scopes.for_route("iam", "GET", "/v9/unknown").accepted == {CLOUD_PLATFORM}  # type: ignore[union-attr]
    assert scopes.for_route("doctor", "GET", "/v1/access") is None


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    server = KeylessServer(tmp_path_factory.mktemp("scopes") / "data", fresh_database_url())
    assert server.keyless("projects", "create", PROJECT, "--number", "123456789012").returncode == 0
    r = server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "app-sa"})
    assert r.status_code == 200, r.text
    owner = storage.Client(project=PROJECT, credentials=google.oauth2.credentials.Credentials(server.owner_token),
                           client_options={"api_endpoint": server.base_url})
    owner.create_bucket("my-bucket").blob("data.txt").upload_from_string("hello")
    r = server.call("POST", f"{SM}/secrets", params={"secretId": "api-key"}, body={"replication": {"automatic": {}}})
    assert r.status_code == 200, r.text
    r = server.call("POST", f"{SM}/secrets/api-key:addVersion",
                    body={"payload": {"data": base64.b64encode(b"s3cr3t").decode()}})
    assert r.status_code == 200, r.text
    # the account may do everything: only its token's scopes stand in the way
    path = f"/cloudresourcemanager/v1/projects/{PROJECT}"
    policy = server.call("POST", path + ":getIamPolicy", body={}).json()
    for role in ("roles/owner", "roles/iam.serviceAccountTokenCreator"):
        policy["bindings"].append({"role": role, "members": [f"serviceAccount:{APP_SA}"]})
    assert server.call("POST", path + ":setIamPolicy", body={"policy": policy}).status_code == 200
    yield server
    server.stop()


def token(srv: KeylessServer, *granted: str) -> str:
    st = server_state(srv)
    with st.db.read() as s:
        row = find_by_email(s, APP_SA)
    assert row is not None
    return st.tokens.mint(service_account_principal(row), list(granted), 3600).token


def scope_error(service: str, method: str) -> dict[str, object]:
    return {"code": 403, "message": "Request had insufficient authentication scopes.", "status": "PERMISSION_DENIED",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                         "domain": "googleapis.com", "metadata": {"service": service, "method": method}}]}


def test_read_only_storage_token_reads_objects_and_nothing_else(srv: KeylessServer) -> None:
    tok = token(srv, READ_ONLY)
    client = storage.Client(project=PROJECT, credentials=google.oauth2.credentials.Credentials(tok),
                            client_options={"api_endpoint": srv.base_url})
    assert client.bucket("my-bucket").blob("data.txt").download_as_bytes() == b"hello"
    assert [b.name for b in client.list_blobs("my-bucket")] == ["data.txt"]
    # a write: Cloud Storage's own words, in its own error shape
    with pytest.raises(exceptions.Forbidden) as denied:
        client.bucket("my-bucket").blob("new.txt").upload_from_string("nope")
    assert "Provided scope(s) are not authorized" in str(denied.value)
    r = srv.call("DELETE", "/storage/v1/b/my-bucket/o/data.txt", token=tok)
    assert r.status_code == 403
    assert r.json() == {"error": {"code": 403, "message": "Provided scope(s) are not authorized", "errors": [
        {"message": "Provided scope(s) are not authorized", "domain": "global", "reason": "forbidden"}]}}
    assert srv.call("GET", "/storage/v1/b/my-bucket/o/data.txt", token=tok).status_code == 200  # still there
    # the account is owner, yet the token reaches neither IAM policies nor secrets
    r = srv.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy", token=tok, body={})
    assert r.status_code == 403
    assert r.json()["error"] == scope_error("cloudresourcemanager.googleapis.com",
                                            "cloudresourcemanager.projects.getIamPolicy")
    r = srv.call("GET", f"{SM}/secrets/api-key/versions/latest:access", token=tok)
    assert r.json()["error"] == scope_error("secretmanager.googleapis.com",
                                            "secretmanager.projects.secrets.versions.access")
    r = srv.call("POST", f"/iamcredentials/v1/projects/-/serviceAccounts/{APP_SA}:generateAccessToken", token=tok,
                 body={"scope": [CLOUD_PLATFORM]})
    assert r.status_code == 403 and r.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"


def test_read_write_and_full_scopes(srv: KeylessServer) -> None:
    rw = storage.Client(project=PROJECT, credentials=google.oauth2.credentials.Credentials(token(srv, READ_WRITE)),
                        client_options={"api_endpoint": srv.base_url})
    rw.bucket("my-bucket").blob("rw.txt").upload_from_string("written")
    assert rw.bucket("my-bucket").blob("rw.txt").download_as_bytes() == b"written"
    # bucket IAM needs devstorage.full_control (or cloud-platform)
    with pytest.raises(exceptions.Forbidden, match="Provided scope"):
        rw.bucket("my-bucket").get_iam_policy()
    full = token(srv, AUTH + "devstorage.full_control")
    assert srv.call("GET", "/storage/v1/b/my-bucket/iam", token=full).status_code == 200
    # cloud-platform covers all; cloud-platform.read-only reads where the document says so
    every = token(srv, CLOUD_PLATFORM)
    assert srv.call("GET", f"{SM}/secrets/api-key/versions/latest:access", token=every).status_code == 200
    assert srv.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy", token=every,
                    body={}).status_code == 200
    read = token(srv, CLOUD_PLATFORM_READ)
    assert srv.call("GET", f"/cloudresourcemanager/v1/projects/{PROJECT}", token=read).status_code == 200
    assert srv.call("GET", "/storage/v1/b/my-bucket/o/data.txt", token=read).status_code == 200
    # ... and not where it does not: IAM's document lists cloud-platform alone, even for reads
    r = srv.call("GET", f"/iam/v1/projects/{PROJECT}/serviceAccounts", token=read)
    assert r.json()["error"] == scope_error("iam.googleapis.com", "iam.projects.serviceAccounts.list")
    r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", token=read, body={"accountId": "nope-sa"})
    assert r.json()["error"] == scope_error("iam.googleapis.com", "iam.projects.serviceAccounts.create")
    assert srv.call("GET", f"/iam/v1/projects/{PROJECT}/serviceAccounts/nope-sa@{PROJECT}.iam.gserviceaccount.com"
                    ).status_code == 404  # nothing was created
    # one accepted scope among others is enough
    both = token(srv, AUTH + "userinfo.email", READ_ONLY)
    assert srv.call("GET", "/storage/v1/b/my-bucket/o/data.txt", token=both).status_code == 200
    nothing = token(srv, AUTH + "userinfo.email")
    assert srv.call("GET", "/storage/v1/b/my-bucket/o/data.txt", token=nothing).status_code == 403


def test_secret_manager_client_gets_google_s_error(srv: KeylessServer) -> None:
    creds = google.oauth2.credentials.Credentials(token(srv, READ_ONLY))
    client = secretmanager.SecretManagerServiceClient(
        credentials=creds, transport="rest", client_options={"api_endpoint": f"{srv.base_url}/secretmanager"})
    with pytest.raises(exceptions.Forbidden) as denied:  # REST: the HTTP status's class
        client.access_secret_version(request={"name": f"projects/{PROJECT}/secrets/api-key/versions/latest"})
    assert denied.value.message.endswith(": Request had insufficient authentication scopes.")
    assert denied.value.reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    assert denied.value.domain == "googleapis.com"


def test_tokeninfo_shows_the_scopes(srv: KeylessServer) -> None:
    tok = token(srv, READ_ONLY, AUTH + "userinfo.email")
    info = srv.call("GET", "/oauth2/v3/tokeninfo", token="", params={"access_token": tok}).json()
    assert info["scope"] == f"{READ_ONLY} {AUTH}userinfo.email"
    assert info["email"] == APP_SA


def test_key_file_with_scopes_and_impersonation_with_target_scopes(srv: KeylessServer, tmp_path: Path) -> None:
    """The real google-auth: a key file's JWT-bearer grant with `scope`, and generateAccessToken's
    `scope` list, each give a token with just those scopes."""
    from google.auth import impersonated_credentials
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    created = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{APP_SA}/keys", body={}).json()
    info = json.loads(base64.b64decode(created["privateKeyData"]))
    info["token_uri"] = f"{srv.base_url}/oauth2/token"
    keyed = service_account.Credentials.from_service_account_info(info, scopes=[READ_ONLY])
    keyed.refresh(Request())
    got = srv.call("GET", "/oauth2/v3/tokeninfo", token="", params={"access_token": keyed.token}).json()
    assert got["scope"] == READ_ONLY
    client = storage.Client(project=PROJECT, credentials=keyed, client_options={"api_endpoint": srv.base_url})
    assert client.bucket("my-bucket").blob("data.txt").download_as_bytes() == b"hello"
    with pytest.raises(exceptions.Forbidden, match="Provided scope"):
        client.bucket("my-bucket").blob("k.txt").upload_from_string("nope")

    # the self-signed JWT of AIP-4111 with a `scope` claim (google-auth's always_use_jwt_access) has those scopes
    signed = service_account.Credentials.from_service_account_info(info, scopes=[READ_ONLY], always_use_jwt_access=True)
    signed.refresh(Request())
    assert not signed.token.startswith("ya29.") and signed.token.count(".") == 2
    assert srv.call("GET", "/storage/v1/b/my-bucket/o/data.txt", token=signed.token).status_code == 200
    r = srv.call("GET", f"{SM}/secrets/api-key/versions/latest:access", token=signed.token)
    assert r.status_code == 403 and r.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"

    # impersonation re-scopes a key file's credentials to .../auth/iam (google-auth's _IAM_SCOPE),
    # which IAM Credentials accepts although its discovery document lists cloud-platform alone
    narrowed = impersonated_credentials.Credentials(
        source_credentials=keyed, target_principal=APP_SA, target_scopes=[READ_ONLY], lifetime=600,
        iam_endpoint_override=f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{APP_SA}"
                              ":generateAccessToken")
    narrowed.refresh(Request())
    source = srv.call("GET", "/oauth2/v3/tokeninfo", token="",
                      params={"access_token": narrowed._source_credentials.token}).json()
    assert source["scope"] == AUTH + "iam"
    r = srv.call("GET", f"{SM}/secrets/api-key/versions/latest:access", token=narrowed.token)
    assert r.status_code == 403 and r.json()["error"]["message"] == "Request had insufficient authentication scopes."
    assert srv.call("GET", "/storage/v1/b/my-bucket/o/data.txt", token=narrowed.token).status_code == 200


def test_gcloud_with_a_read_only_token(srv: KeylessServer, tmp_path: Path) -> None:
    """The real gcloud, its bearer token from a file: storage reads work, a secret is refused with
    Google's message."""
    _need_gcloud()
    g = Gcloud(srv, tmp_path / "gcloud")
    token_file = tmp_path / "ro.token"
    token_file.write_text(token(srv, READ_ONLY))
    assert g.run("storage", "cat", "gs://my-bucket/data.txt", f"--access-token-file={token_file}").stdout == "hello"
    refused = g.run("secrets", "versions", "access", "latest", "--secret=api-key", f"--access-token-file={token_file}",
                    check=False)
    assert refused.returncode != 0
    assert "Request had insufficient authentication scopes." in refused.stderr
    owner = g.run("secrets", "versions", "access", "latest", "--secret=api-key")
    assert owner.stdout == "s3cr3t"
