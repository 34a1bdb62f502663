"""Credential Access Boundaries (issue #19): the real `google.auth.downscoped.Credentials` exchanges
a key file's access token at STS (as Google's docs show it, in universe keyless.test:PORT over TLS,
resolved by a private /etc/hosts) and google-cloud-storage uses the downscoped token: the allowed
prefix is readable, another prefix, another bucket and a write are refused; Secret Manager refuses
the token outright. STS refusals of bad boundaries, and attacks on the boundary, over plain HTTP."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.api.helpers import token_for_service_account
from tests.conftest import KeylessServer, free_port, fresh_database_url
from tests.e2e.universe import run_in_universe

PROJECT = "my-project"
APP_SA = f"app-sa@{PROJECT}.iam.gserviceaccount.com"
UNIVERSE = "keyless.test"
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    tls_port = free_port()
    server = KeylessServer(tmp_path_factory.mktemp("cab") / "data", fresh_database_url(),
                           "--tls-port", str(tls_port), "--universe-domain", UNIVERSE)
    server.tls_port = tls_port  # type: ignore[attr-defined]
    assert server.keyless("projects", "create", PROJECT, "--number", "123456789012").returncode == 0
    ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "app-sa"}))
    for bucket in ("my-bucket", "other-bucket"):
        ok(server.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": bucket}))
        for name in ("reports/2026.txt", "private/key.txt"):
            ok(server.call("POST", f"/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": name},
                           raw=f"{bucket}/{name}".encode(), headers={"Content-Type": "text/plain"}))
    # IAM lets the account do everything in storage, and read secrets: only the boundary stands in the way
    path = f"/cloudresourcemanager/v1/projects/{PROJECT}"
    policy = ok(server.call("POST", path + ":getIamPolicy", body={}))
    for role in ("roles/storage.admin", "roles/secretmanager.secretAccessor"):
        policy["bindings"].append({"role": role, "members": [f"serviceAccount:{APP_SA}"]})
    ok(server.call("POST", path + ":setIamPolicy", body={"policy": policy}))
    yield server
    server.stop()


def boundary(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"accessBoundary": {"accessBoundaryRules": list(rules)}}


def rule(bucket: str = "my-bucket", roles: tuple[str, ...] = ("roles/storage.objectViewer",),
         expression: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"availableResource": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
                         "availablePermissions": [f"inRole:{role}" for role in roles]}
    if expression is not None:
        r["availabilityCondition"] = {"expression": expression, "title": "reports only"}
    return r


REPORTS = ("resource.name.startsWith('projects/_/buckets/my-bucket/objects/reports/') || "
           "api.getAttribute('storage.googleapis.com/objectListPrefix', '').startsWith('reports/')")


def downscope(srv: KeylessServer, source: str, options: Any, *, quoted: bool = True) -> httpx.Response:
    """The exchange as google.auth.downscoped sends it: `options` URL-quoted JSON inside the form."""
    text = json.dumps(options) if not isinstance(options, str) else options
    return httpx.post(f"{srv.base_url}/sts/v1/token", data={
        "grant_type": GRANT, "subject_token": source, "subject_token_type": ACCESS,
        "requested_token_type": ACCESS, "options": quote(text) if quoted else text}, timeout=30)


CLIENT = r'''
import json, sys
from google.api_core import exceptions
from google.auth import downscoped
from google.auth.transport.requests import Request
from google.cloud import secretmanager, storage
from google.oauth2 import service_account

universe, base, key, bucket_rules = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
key["token_uri"] = base + "/oauth2/token"
source = service_account.Credentials.from_service_account_info(
    key, scopes=["https://www.googleapis.com/auth/cloud-platform"])
rules = [downscoped.AccessBoundaryRule(
    available_resource=r["availableResource"], available_permissions=r["availablePermissions"],
    availability_condition=downscoped.AvailabilityCondition(**r["availabilityCondition"])
    if "availabilityCondition" in r else None) for r in bucket_rules]
creds = downscoped.Credentials(source_credentials=source,
                               credential_access_boundary=downscoped.CredentialAccessBoundary(rules=rules),
                               universe_domain=universe)
creds.refresh(Request())
out = {"token": creds.token}
client = storage.Client(project="my-project", credentials=creds,
                        client_options={"api_endpoint": base, "universe_domain": universe})

def attempt(name, fn):
    try:
        out[name] = fn()
    except exceptions.GoogleAPICallError as e:
        out[name] = {"error": e.code, "message": e.message}

attempt("reports", lambda: client.bucket("my-bucket").blob("reports/2026.txt").download_as_bytes().decode())
attempt("listed", lambda: [b.name for b in client.list_blobs("my-bucket", prefix="reports/")])
attempt("list_all", lambda: [b.name for b in client.list_blobs("my-bucket")])
attempt("private", lambda: client.bucket("my-bucket").blob("private/key.txt").download_as_bytes().decode())
attempt("other_bucket", lambda: client.bucket("other-bucket").blob("reports/2026.txt").download_as_bytes().decode())
attempt("write", lambda: client.bucket("my-bucket").blob("reports/new.txt").upload_from_string("x") or "written")
sm = secretmanager.SecretManagerServiceClient(credentials=creds, transport="rest", client_options={
    "api_endpoint": base + "/secretmanager", "universe_domain": universe})
attempt("secret", lambda: sm.list_secrets(request={"parent": "projects/my-project"}) and "listed")
print(json.dumps(out))
'''


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare(1) to give the client its own /etc/hosts (STS at sts.UNIVERSE)")
def test_google_auth_downscoped_credentials_with_google_cloud_storage(srv: KeylessServer, tmp_path: Path) -> None:
    port = srv.tls_port  # type: ignore[attr-defined]
    created = ok(srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{APP_SA}/keys", body={}))
    key = json.loads(base64.b64decode(created["privateKeyData"]))
    (tmp_path / "client.py").write_text(CLIENT)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GRPC_"))},
           "REQUESTS_CA_BUNDLE": str(srv.data_dir / "tls" / "bundle.pem")}
    out = run_in_universe(srv, tmp_path, UNIVERSE, [sys.executable, str(tmp_path / "client.py"), f"{UNIVERSE}:{port}",
                                                    srv.base_url, json.dumps(key), json.dumps([rule(expression=REPORTS)])],
                          env, timeout=180)
    assert out["reports"] == "my-bucket/reports/2026.txt"
    assert out["listed"] == ["reports/2026.txt"]
    denied_get = f"{APP_SA} does not have storage.objects.get access to the Google Cloud Storage object."
    assert out["private"]["error"] == 403 and denied_get in out["private"]["message"]
    assert out["other_bucket"]["error"] == 403 and denied_get in out["other_bucket"]["message"]
    assert out["list_all"]["error"] == 403 and "storage.objects.list" in out["list_all"]["message"]
    assert out["write"]["error"] == 403 and "storage.objects.create" in out["write"]["message"]
    assert out["secret"]["error"] == 401  # Credential Access Boundaries work with Cloud Storage only
    # nothing was written, and the token says who it is
    assert srv.call("GET", "/storage/v1/b/my-bucket/o/reports%2Fnew.txt").status_code == 404
    info = ok(srv.call("GET", "/oauth2/v3/tokeninfo", token="", params={"access_token": out["token"]}))
    assert info["email"] == APP_SA and info["scope"] == "https://www.googleapis.com/auth/cloud-platform"


def test_downscoped_token_over_http(srv: KeylessServer) -> None:
    source = token_for_service_account(srv, APP_SA)
    answer = ok(downscope(srv, source, boundary(rule(expression=REPORTS), rule("other-bucket"))))
    assert answer["issued_token_type"] == ACCESS and answer["token_type"] == "Bearer"
    assert 3500 < answer["expires_in"] <= 3600  # the source token's expiry
    token = answer["access_token"]
    get = lambda bucket, name: srv.call("GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}",  # noqa: E731
                                        token=token, params={"alt": "media"})
    assert get("my-bucket", "reports/2026.txt").content == b"my-bucket/reports/2026.txt"
    assert get("my-bucket", "private/key.txt").status_code == 403
    assert get("other-bucket", "private/key.txt").content == b"other-bucket/private/key.txt"  # no condition there
    # a list without the allowed prefix, or with a prefix that only starts like it, is refused
    assert srv.call("GET", "/storage/v1/b/my-bucket/o", token=token, params={"prefix": "private/"}).status_code == 403
    assert srv.call("GET", "/storage/v1/b/my-bucket/o", token=token, params={"prefix": "reports"}).status_code == 403
    # bucket-level calls: the condition names objects, and objectViewer has no bucket permissions
    assert srv.call("GET", "/storage/v1/b/my-bucket", token=token).status_code == 403
    assert srv.call("GET", "/storage/v1/b", token=token, params={"project": PROJECT}).status_code == 403
    assert srv.call("DELETE", "/storage/v1/b/other-bucket/o/reports%2F2026.txt", token=token).status_code == 403
    tested = ok(srv.call("GET", "/storage/v1/b/other-bucket/iam/testPermissions", token=token, params={
        "permissions": ["storage.objects.get", "storage.objects.delete", "storage.buckets.delete"]}))
    assert tested.get("permissions") == ["storage.objects.get"]
    # every other API refuses a downscoped token
    for method, path in (("GET", f"/secretmanager/v1/projects/{PROJECT}/secrets"),
                         ("GET", f"/iam/v1/projects/{PROJECT}/serviceAccounts"),
                         ("POST", f"/iamcredentials/v1/projects/-/serviceAccounts/{APP_SA}:generateAccessToken")):
        r = srv.call(method, path, token=token, body={"scope": ["https://www.googleapis.com/auth/cloud-platform"]}
                     if method == "POST" else None)
        assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED", (path, r.text)
    # a downscoped token is not downscoped again (it could otherwise shed its boundary)
    again = downscope(srv, token, boundary(rule("other-bucket", ("roles/storage.objectAdmin",))))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # a boundary with objectAdmin leaves writes available (IAM allows them to the account)
    admin = ok(downscope(srv, token_for_service_account(srv, APP_SA),
                         boundary(rule("my-bucket", ("roles/storage.objectAdmin",)))))["access_token"]
    r = srv.call("POST", "/upload/storage/v1/b/my-bucket/o", token=admin, params={"uploadType": "media", "name": "w"},
                 raw=b"w", headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text


def test_the_boundary_is_signed_into_the_token(srv: KeylessServer) -> None:
    """Editing the boundary inside a downscoped token (or dropping it) breaks the token."""
    token = ok(downscope(srv, token_for_service_account(srv, APP_SA), boundary(rule())))["access_token"]
    prefix, kid, payload, tag = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["b"] == [["my-bucket", ["roles/storage.objectViewer"], ""]]
    for forged in ({**claims, "b": [["other-bucket", ["roles/storage.admin"], ""]]},
                   {k: v for k, v in claims.items() if k != "b"}):
        body = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
        r = srv.call("GET", "/storage/v1/b/other-bucket/o/private%2Fkey.txt", token=f"{prefix}.{kid}.{body}.{tag}")
        assert r.status_code == 401


@pytest.mark.parametrize("options, expected", [
    (None, 'Missing required parameter: "options"'),
    ("{not json", "not a valid JSON object"),
    ({"accessBoundary": {"accessBoundaryRules": []}}, "at least one access boundary rule"),
    (boundary(*[rule()] * 11), "at most 10 access boundary rules"),
    (boundary({**rule(), "availableResource": "//pubsub.googleapis.com/projects/p/topics/t"}), "Cloud Storage buckets only"),
    (boundary({**rule(), "availablePermissions": ["storage.objects.get"]}), "prefix inRole:"),
    (boundary(rule(roles=("roles/no.suchRole",))), "not a predefined role"),
    (boundary(rule(expression="resource.name.startsWith(")), "Invalid availabilityCondition expression"),
    (boundary(rule(expression="x" * 9000)), "too long (at most 8192 characters of JSON)"),
    (boundary(rule(expression="'" + "x" * 2100 + "' != ''")), "expression is too long"),
    (boundary(*[rule(expression="'" + "x" * 300 + "' != ''")] * 6), "accessBoundary is too long"),
])
def test_bad_boundaries_get_invalid_request(srv: KeylessServer, options: Any, expected: str) -> None:
    source = token_for_service_account(srv, APP_SA)
    form = {"grant_type": GRANT, "subject_token": source, "subject_token_type": ACCESS, "requested_token_type": ACCESS}
    if options is not None:
        form["options"] = quote(options if isinstance(options, str) else json.dumps(options))
    r = httpx.post(f"{srv.base_url}/sts/v1/token", data=form, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request" and expected in r.json()["error_description"]


def test_subject_token_must_be_a_live_access_token(srv: KeylessServer) -> None:
    for bad in ("ya29.forged.token.value", "not-a-token", token_for_service_account(srv, APP_SA, lifetime=-10)):
        r = downscope(srv, bad, boundary(rule()))
        assert r.status_code == 400 and r.json() == {"error": "invalid_grant",
                                                     "error_description": "The subject token is invalid or expired."}
    # unquoted JSON (a client that does not quote it) is read too
    assert downscope(srv, token_for_service_account(srv, APP_SA), boundary(rule()), quoted=False).status_code == 200
