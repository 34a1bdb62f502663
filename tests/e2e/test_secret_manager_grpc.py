"""google-cloud-secret-manager with its DEFAULT transport, gRPC, against Keyless's TLS port (issue
#4): the client trusts Keyless's CA through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (read when grpc
loads, so the client runs in a subprocess) and reaches `secretmanager.keyless.test:PORT` through
its universe setting, resolved by a private /etc/hosts (`unshare -m`, as test_universe_tls.py).
Answers, denials, error codes and audit entries are the REST API's."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import audit_data_access, token_for_service_account
from tests.conftest import KeylessServer, free_port, fresh_database_url
from tests.e2e.universe import run_in_universe

NUMBER = "123456789"
APP_SA = "app-sa@my-project.iam.gserviceaccount.com"
SM = "/secretmanager/v1/projects/my-project"
UNIVERSE = "keyless.test"
ACCESS = "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare(1) to give the client its own /etc/hosts")


def ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    tls_port = free_port()
    server = KeylessServer(tmp_path_factory.mktemp("smgrpc") / "data", fresh_database_url(),
                           "--tls-port", str(tls_port), "--universe-domain", UNIVERSE)
    server.tls_port = tls_port  # type: ignore[attr-defined]
    assert server.keyless("projects", "create", "my-project", "--number", NUMBER).returncode == 0
    ok(server.call("POST", "/iam/v1/projects/my-project/serviceAccounts", body={"accountId": "app-sa"}))
    for secret, value in (("api-key", b"s3cr3t-value"), ("other-key", b"not-yours")):
        ok(server.call("POST", f"{SM}/secrets", params={"secretId": secret}, body={"replication": {"automatic": {}}}))
        ok(server.call("POST", f"{SM}/secrets/{secret}:addVersion",
                       body={"payload": {"data": base64.b64encode(value).decode()}}))
    ok(server.call("POST", f"{SM}/secrets/api-key:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{APP_SA}"]}]}}))
    audit_data_access(server, "my-project", {"secretmanager.googleapis.com": ["DATA_READ"]})
    yield server
    server.stop()


# The client: calls named on the command line, each answer or error as one JSON line.
CLIENT = r'''
import json, sys
import google.auth.credentials
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials
from google.cloud import secretmanager

universe, token, script = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
creds = Credentials(token, universe_domain=universe) if token else AnonymousCredentials()
if not token:
    creds._universe_domain = universe
client = secretmanager.SecretManagerServiceClient(credentials=creds, client_options={"universe_domain": universe})
out = {"transport": type(client._transport).__name__}
for step, (method, request) in enumerate(script):
    try:
        if method == "create_add_access":
            secret = client.create_secret(request={"parent": "projects/my-project", "secret_id": request,
                                                   "secret": {"replication": {"automatic": {}}}})
            version = client.add_secret_version(request={"parent": secret.name, "payload": {"data": b"round trip"}})
            got = client.access_secret_version(request={"name": version.name})
            listed = [v.name for v in client.list_secret_versions(request={"parent": secret.name})]
            destroyed = client.destroy_secret_version(request={"name": version.name})
            policy = client.get_iam_policy(request={"resource": secret.name})
            policy.bindings.add(role="roles/secretmanager.secretAccessor", members=["user:dev@example.com"])
            client.set_iam_policy(request={"resource": secret.name, "policy": policy})
            roles = [b.role for b in client.get_iam_policy(request={"resource": secret.name}).bindings]
            perms = client.test_iam_permissions(request={"resource": secret.name, "permissions": [
                "secretmanager.secrets.get", "secretmanager.versions.access"]}).permissions
            client.delete_secret(request={"name": secret.name})
            out[step] = {"secret": secret.name, "version": version.name, "data": got.payload.data.decode(),
                         "crc32c": got.payload.data_crc32c, "listed": listed, "destroyed": destroyed.state.name,
                         "roles": roles, "permissions": list(perms)}
        elif method == "regional_round_trip":  # a regional secret: the RPCs' additional bindings
            parent = "projects/my-project/locations/us-central1"
            secret = client.create_secret(request={"parent": parent, "secret_id": request, "secret": {}})
            version = client.add_secret_version(request={"parent": secret.name, "payload": {"data": b"regional"}})
            got = client.access_secret_version(request={"name": secret.name + "/versions/latest"})
            listed = [s.name for s in client.list_secrets(request={"parent": parent})]
            perms = client.test_iam_permissions(request={"resource": secret.name, "permissions": [
                "secretmanager.versions.access"]}).permissions
            client.delete_secret(request={"name": secret.name})
            out[step] = {"secret": secret.name, "version": version.name, "data": got.payload.data.decode(),
                         "listed": listed, "permissions": list(perms)}
        else:
            response = getattr(client, method)(request=request)
            out[step] = {"name": response.name, "data": response.payload.data.decode()}
    except exceptions.GoogleAPICallError as e:
        out[step] = {"error": type(e).__name__, "grpc": e.grpc_status_code.name if e.grpc_status_code else None,
                     "message": e.message, "reason": e.reason}
print(json.dumps(out))
'''


def run_client(srv: KeylessServer, tmp_path: Path, token: str, script: list[Any]) -> dict[str, Any]:
    port = srv.tls_port  # type: ignore[attr-defined]
    (tmp_path / "client.py").write_text(CLIENT)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GRPC_"))},
           "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(srv.data_dir / "tls" / "ca.pem")}
    out = run_in_universe(srv, tmp_path, UNIVERSE, [sys.executable, str(tmp_path / "client.py"), f"{UNIVERSE}:{port}",
                                                    token, json.dumps(script)], env)
    assert out.pop("transport") == "SecretManagerServiceGrpcTransport"  # the default: gRPC, not REST
    return out


def latest(secret: str) -> dict[str, str]:
    return {"name": f"projects/my-project/secrets/{secret}/versions/latest"}


def test_access_granted_and_denied_as_google_answers(srv: KeylessServer, tmp_path: Path) -> None:
    token = token_for_service_account(srv, APP_SA)
    out = run_client(srv, tmp_path, token, [("access_secret_version", latest("api-key")),
                                            ("access_secret_version", latest("other-key"))])
    assert out["0"] == {"name": f"projects/{NUMBER}/secrets/api-key/versions/1", "data": "s3cr3t-value"}
    # The REST API's denial, word for word, as a gRPC PERMISSION_DENIED with its ErrorInfo.
    rest = srv.call("GET", f"{SM}/secrets/other-key/versions/latest:access", token=token).json()["error"]
    assert out["1"] == {"error": "PermissionDenied", "grpc": "PERMISSION_DENIED", "message": rest["message"],
                        "reason": "IAM_PERMISSION_DENIED"}
    assert rest["message"] == ("Permission 'secretmanager.versions.access' denied for resource "
                               "'projects/my-project/secrets/other-key/versions/latest' (or it may not exist).")


def test_not_found_unauthenticated_and_malformed_names(srv: KeylessServer, tmp_path: Path) -> None:
    out = run_client(srv, tmp_path, srv.owner_token, [
        ("access_secret_version", latest("nope")),
        ("access_secret_version", {"name": "projects/my-project/secrets/api-key"}),  # not a version name
    ])
    assert out["0"]["error"] == "NotFound" and out["0"]["grpc"] == "NOT_FOUND"
    assert out["0"]["message"] == f"Secret [projects/{NUMBER}/secrets/nope] not found or has no versions."
    assert out["1"]["grpc"] == "INVALID_ARGUMENT"
    anonymous = run_client(srv, tmp_path, "", [("access_secret_version", latest("api-key"))])
    assert anonymous["0"]["error"] == "Unauthenticated" and anonymous["0"]["grpc"] == "UNAUTHENTICATED"
    assert anonymous["0"]["message"].startswith("Request is missing required authentication credential.")
    bogus = run_client(srv, tmp_path, "ya29.not-a-token", [("access_secret_version", latest("api-key"))])
    assert bogus["0"]["grpc"] == "UNAUTHENTICATED"
    assert bogus["0"]["message"].startswith("Request had invalid authentication credentials.")


def test_create_add_access_iam_round_trip(srv: KeylessServer, tmp_path: Path) -> None:
    import google_crc32c

    out = run_client(srv, tmp_path, srv.owner_token, [("create_add_access", "grpc-secret"),
                                                      ("regional_round_trip", "grpc-regional")])
    secret = f"projects/{NUMBER}/secrets/grpc-secret"
    assert out["0"] == {"secret": secret, "version": f"{secret}/versions/1", "data": "round trip",
                        "crc32c": int(google_crc32c.value(b"round trip")), "listed": [f"{secret}/versions/1"],
                        "destroyed": "DESTROYED", "roles": ["roles/secretmanager.secretAccessor"],
                        "permissions": ["secretmanager.secrets.get", "secretmanager.versions.access"]}
    regional = f"projects/{NUMBER}/locations/us-central1/secrets/grpc-regional"
    assert out["1"] == {"secret": regional, "version": f"{regional}/versions/1", "data": "regional",
                        "listed": [regional], "permissions": ["secretmanager.versions.access"]}
    # they were deleted over gRPC: REST agrees
    assert srv.call("GET", f"{SM}/secrets/grpc-secret").status_code == 404
    assert srv.call("GET", f"{SM}/locations/us-central1/secrets/grpc-regional").status_code == 404


def test_grpc_access_writes_the_data_access_entry(srv: KeylessServer, tmp_path: Path) -> None:
    token = token_for_service_account(srv, APP_SA)
    run_client(srv, tmp_path, token, [("access_secret_version", latest("api-key")),
                                      ("access_secret_version", latest("other-key"))])
    body = {"resourceNames": ["projects/my-project"], "orderBy": "timestamp desc",
            "filter": f'protoPayload.methodName="{ACCESS}" AND '
                      f'protoPayload.authenticationInfo.principalEmail="{APP_SA}" AND '
                      'protoPayload.requestMetadata.callerSuppliedUserAgent:"grpc-python"'}
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(found) < 2:
        found = ok(srv.call("POST", "/logging/v2/entries:list", body=body)).get("entries", [])
        time.sleep(0.2)
    assert len(found) >= 2
    assert {e["protoPayload"]["status"].get("code", 0) for e in found[:2]} == {0, 7}
    assert all(e["logName"] == "projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access" for e in found)
    assert {e["protoPayload"]["requestMetadata"]["callerIp"] for e in found} == {"127.0.0.1"}
    assert {e["protoPayload"]["resourceName"] for e in found[:2]} == {
        f"projects/{NUMBER}/secrets/api-key/versions/1", f"projects/{NUMBER}/secrets/other-key/versions/latest"}


def test_insufficient_scopes_over_grpc_as_over_rest(srv: KeylessServer, tmp_path: Path) -> None:
    """A token without cloud-platform (here devstorage.read_only) is refused over gRPC as over REST:
    PERMISSION_DENIED, Google's message, ErrorInfo reason ACCESS_TOKEN_SCOPE_INSUFFICIENT (issue #19)."""
    from keyless.iam.service_accounts import find_by_email
    from keyless.state import service_account_principal
    from tests.api.helpers import server_state

    st = server_state(srv)
    with st.db.read() as s:
        row = find_by_email(s, APP_SA)
    assert row is not None
    token = st.tokens.mint(service_account_principal(row), ["https://www.googleapis.com/auth/devstorage.read_only"],
                           600).token
    out = run_client(srv, tmp_path, token, [("access_secret_version", latest("api-key"))])
    assert out["0"] == {"error": "PermissionDenied", "grpc": "PERMISSION_DENIED",
                        "message": "Request had insufficient authentication scopes.",
                        "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}
    rest = srv.call("GET", f"{SM}/secrets/api-key/versions/latest:access", token=token).json()["error"]
    assert rest["message"] == out["0"]["message"] and rest["status"] == "PERMISSION_DENIED"
