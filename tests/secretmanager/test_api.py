"""Secret Manager v1 over HTTP against a real `keyless serve`: names with the project number,
versions and their states, checksums, IAM on one secret, audit entries, and hostile input."""

from __future__ import annotations

import base64
import time
from typing import Any

import google_crc32c
import httpx
import pytest
from sqlalchemy import func, select

from keyless.store.models import AuditEntry, SmSecret, SmSecretVersion
from tests.api.helpers import server_state, token_for_service_account
from tests.conftest import KeylessServer

NUMBER = "246813579024"
SM = "/secretmanager/v1/projects/sm-project"
APP_SA = "app-sa@sm-project.iam.gserviceaccount.com"
AUTO = {"replication": {"automatic": {}}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


def error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == status and body["error"]["status"] == code, body
    return str(body["error"]["message"])


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    out = module_server.keyless("projects", "create", "sm-project", "--number", NUMBER)
    assert out.returncode == 0, out.stderr
    ok(module_server.call("POST", "/iam/v1/projects/sm-project/serviceAccounts", body={"accountId": "app-sa"}))
    return module_server


def create(srv: KeylessServer, secret_id: str, data: bytes | None = None, **body: Any) -> dict[str, Any]:
    secret = ok(srv.call("POST", f"{SM}/secrets", params={"secretId": secret_id}, body={**AUTO, **body}))
    if data is not None:
        ok(srv.call("POST", f"{SM}/secrets/{secret_id}:addVersion", body={"payload": {"data": b64(data)}}))
    return dict(secret)


def count(srv: KeylessServer, model: Any) -> int:
    with server_state(srv).db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_create_get_list_patch_delete(srv: KeylessServer) -> None:
    secret = create(srv, "crud-secret", labels={"env": "prod"}, annotations={"owner.team": "infra"})
    assert secret["name"] == f"projects/{NUMBER}/secrets/crud-secret"  # the number, though called with the id
    assert secret["replication"] == {"automatic": {}} and secret["labels"] == {"env": "prod"}
    assert secret["annotations"] == {"owner.team": "infra"}
    assert secret["etag"].startswith('"') and secret["createTime"].endswith("Z")
    assert ok(srv.call("GET", f"/secretmanager/v1/projects/{NUMBER}/secrets/crud-secret")) == secret
    msg = error(srv.call("POST", f"{SM}/secrets", params={"secretId": "crud-secret"}, body=AUTO), 409, "ALREADY_EXISTS")
    assert msg == f"Secret [projects/{NUMBER}/secrets/crud-secret] already exists."

    listed = ok(srv.call("GET", f"{SM}/secrets", params={"filter": "labels.env=prod"}))
    assert [s["name"] for s in listed["secrets"]] == [secret["name"]] and listed["totalSize"] == 1
    assert ok(srv.call("GET", f"{SM}/secrets", params={"filter": "labels.env=dev"})) == {}

    patched = ok(srv.call("PATCH", f"{SM}/secrets/crud-secret", params={"updateMask": "labels"},
                          body={"labels": {"env": "staging"}, "annotations": {"ignored": "x"}}))
    assert patched["labels"] == {"env": "staging"} and patched["annotations"] == {"owner.team": "infra"}
    assert patched["etag"] != secret["etag"]
    error(srv.call("PATCH", f"{SM}/secrets/crud-secret", params={"updateMask": "replication"}, body=AUTO),
          400, "INVALID_ARGUMENT")

    error(srv.call("DELETE", f"{SM}/secrets/crud-secret", params={"etag": secret["etag"]}), 409, "ABORTED")
    assert ok(srv.call("DELETE", f"{SM}/secrets/crud-secret", params={"etag": patched["etag"]})) == {}
    msg = error(srv.call("GET", f"{SM}/secrets/crud-secret"), 404, "NOT_FOUND")
    assert msg == f"Secret [projects/{NUMBER}/secrets/crud-secret] not found."


def test_versions_states_and_latest(srv: KeylessServer) -> None:
    create(srv, "db-password")
    base = f"{SM}/secrets/db-password"
    msg = error(srv.call("GET", f"{base}/versions/latest:access"), 404, "NOT_FOUND")
    assert msg == f"Secret [projects/{NUMBER}/secrets/db-password] not found or has no versions."
    v1 = ok(srv.call("POST", f"{base}:addVersion",
                     body={"payload": {"data": b64(b"one"), "dataCrc32c": str(crc(b"one"))}}))
    assert v1["name"] == f"projects/{NUMBER}/secrets/db-password/versions/1" and v1["state"] == "ENABLED"
    assert v1["clientSpecifiedPayloadChecksum"] is True and v1["replicationStatus"] == {"automatic": {}}
    v2 = ok(srv.call("POST", f"{base}:addVersion", body={"payload": {"data": b64(b"two")}}))
    assert v2["name"].endswith("/versions/2") and "clientSpecifiedPayloadChecksum" not in v2

    latest = ok(srv.call("GET", f"{base}/versions/latest:access"))
    assert latest == {"name": f"projects/{NUMBER}/secrets/db-password/versions/2",
                      "payload": {"data": b64(b"two"), "dataCrc32c": str(crc(b"two"))}}
    assert ok(srv.call("GET", f"{base}/versions/latest"))["name"].endswith("/versions/2")
    assert [v["name"][-1] for v in ok(srv.call("GET", f"{base}/versions"))["versions"]] == ["2", "1"]

    disabled = ok(srv.call("POST", f"{base}/versions/2:disable", body={}))
    assert disabled["state"] == "DISABLED"
    msg = error(srv.call("GET", f"{base}/versions/latest:access"), 400, "FAILED_PRECONDITION")
    assert msg == f"Secret Version [projects/{NUMBER}/secrets/db-password/versions/2] is in DISABLED state."
    assert ok(srv.call("GET", f"{base}/versions", params={"filter": "state:DISABLED"}))["totalSize"] == 1
    assert ok(srv.call("POST", f"{base}/versions/2:enable", body={}))["state"] == "ENABLED"

    destroyed = ok(srv.call("POST", f"{base}/versions/1:destroy", body={"etag": v1["etag"]}))
    assert destroyed["state"] == "DESTROYED" and "destroyTime" in destroyed
    msg = error(srv.call("GET", f"{base}/versions/1:access"), 400, "FAILED_PRECONDITION")
    assert msg.endswith("/versions/1] is in DESTROYED state.")
    error(srv.call("POST", f"{base}/versions/1:enable", body={}), 400, "FAILED_PRECONDITION")
    with server_state(srv).db.read() as s:
        row = s.scalars(select(SmSecretVersion).join(SmSecret, SmSecret.uid == SmSecretVersion.secret_uid)
                        .where(SmSecret.secret_id == "db-password", SmSecretVersion.version == 1)).one()
        assert row.payload is None  # the payload is gone, the metadata stays
    assert ok(srv.call("GET", f"{base}/versions/1"))["state"] == "DESTROYED"
    msg = error(srv.call("GET", f"{base}/versions/7"), 404, "NOT_FOUND")
    assert msg == f"Secret Version [projects/{NUMBER}/secrets/db-password/versions/7] not found."
    v3 = ok(srv.call("POST", f"{base}:addVersion", body={"payload": {"data": b64(b"three")}}))
    assert v3["name"].endswith("/versions/3")  # numbers keep increasing


def test_user_managed_replication_is_reported_on_versions(srv: KeylessServer) -> None:
    replicas = [{"location": "us-east1"}, {"location": "europe-west1"}]
    secret = create(srv, "regional", b"r", replication={"userManaged": {"replicas": replicas}})
    assert secret["replication"] == {"userManaged": {"replicas": replicas}}
    version = ok(srv.call("GET", f"{SM}/secrets/regional/versions/1"))
    assert version["replicationStatus"] == {"userManaged": {"replicas": replicas}}
    error(srv.call("POST", f"{SM}/secrets", params={"secretId": "dup-replicas"},
                   body={"replication": {"userManaged": {"replicas": replicas + replicas[:1]}}}), 400, "INVALID_ARGUMENT")


def test_hostile_input_is_refused_and_nothing_is_stored(srv: KeylessServer) -> None:
    create(srv, "guarded", b"original")
    base = f"{SM}/secrets/guarded"
    secrets_before, versions_before = count(srv, SmSecret), count(srv, SmSecretVersion)
    for bad in ("has.dot", "x" * 256, "sp ace", "semi;colon"):
        msg = error(srv.call("POST", f"{SM}/secrets", params={"secretId": bad}, body=AUTO), 400, "INVALID_ARGUMENT")
        assert "does not match the expected format [projects/*/secrets/*]" in msg
    error(srv.call("POST", f"{SM}/secrets", params={"secretId": "no-replication"}, body={}), 400, "INVALID_ARGUMENT")
    msg = error(srv.call("POST", f"{SM}/secrets", params={"secretId": "unknown-field"}, body={**AUTO, "bogus": 1}),
                400, "INVALID_ARGUMENT")
    assert msg == "Invalid JSON payload received. Unknown name \"bogus\" at 'secret': Cannot find field."
    error(srv.call("POST", f"{SM}/secrets", params={"secretId": "bad-labels"},
                   body={**AUTO, "labels": {"Upper": "x"}}), 400, "INVALID_ARGUMENT")
    error(srv.call("POST", f"{SM}/secrets", params={"secretId": "bad-repl"},
                   body={"replication": {"userManaged": {"replicas": []}}}), 400, "INVALID_ARGUMENT")

    # A NUL is refused (issue #23: one rule for every JSON body, as PostgreSQL cannot store it);
    # other odd characters round-trip exactly; never a 500.
    msg = error(srv.call("POST", f"{SM}/secrets", params={"secretId": "nul-annotations"},
                         body={**AUTO, "annotations": {"k.1": "a\u0000b"}}), 400, "INVALID_ARGUMENT")
    assert "NUL" in msg
    odd = ok(srv.call("POST", f"{SM}/secrets", params={"secretId": "odd-annotations"},
                      body={**AUTO, "annotations": {"k.1": "a\tb\U0001F600\u200b"}}))
    assert ok(srv.call("GET", f"{SM}/secrets/odd-annotations"))["annotations"] == odd["annotations"]
    assert odd["annotations"] == {"k.1": "a\tb\U0001F600\u200b"}
    error(srv.call("POST", f"{SM}/secrets", params={"secretId": "huge-annotations"},
                   body={**AUTO, "annotations": {"k": "x" * 17000}}), 400, "INVALID_ARGUMENT")
    secrets_before += 1
    msg = error(srv.call("POST", f"{base}:addVersion",
                         body={"payload": {"data": b64(b"x" * (64 * 1024 + 1))}}), 400, "INVALID_ARGUMENT")
    assert msg == "Secret payload data length must be at most [65536] bytes."
    assert ok(srv.call("POST", f"{base}:addVersion", body={"payload": {"data": b64(b"x" * 65536)}}))
    versions_before += 1
    msg = error(srv.call("POST", f"{base}:addVersion", body={"payload": {"data": "not base64!"}}),
                400, "INVALID_ARGUMENT")
    assert msg.startswith("Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding failed")
    msg = error(srv.call("POST", f"{base}:addVersion",
                         body={"payload": {"data": b64(b"abc"), "dataCrc32c": str(crc(b"abd"))}}),
                400, "INVALID_ARGUMENT")
    assert "Checksum mismatch" in msg
    msg = error(srv.call("POST", f"{base}:addVersion", body={"payload": {"data": b64(b"abc"), "dataCrc32c": "x1"}}),
                400, "INVALID_ARGUMENT")
    assert msg.startswith("Invalid value at 'payload.data_crc32c' (TYPE_INT64)")
    # Google's JSON mapping also takes the proto field name, as the data-integrity doc's curl does.
    ok(srv.call("POST", f"{base}:addVersion", body={"payload": {"data": b64(b"abc"), "data_crc32c": crc(b"abc")}}))
    versions_before += 1
    error(srv.call("POST", f"{base}:addVersion", body={"payload": {"data": b64(b"abc"), "extra": 1}}),
          400, "INVALID_ARGUMENT")
    error(srv.call("POST", f"{base}:addVersion", raw=b"{not json"), 400, "INVALID_ARGUMENT")
    for version in ("0", "-1", "abc", "latest2", "9" * 12):
        msg = error(srv.call("GET", f"{base}/versions/{version}:access"), 400, "INVALID_ARGUMENT")
        assert "does not match the expected format [projects/*/secrets/*/versions/*]" in msg
    error(srv.call("GET", f"{SM}/secrets", params={"filter": "name:("}), 400, "INVALID_ARGUMENT")
    error(srv.call("GET", f"{SM}/secrets", params={"pageToken": "zzz"}), 400, "INVALID_ARGUMENT")
    assert count(srv, SmSecret) == secrets_before and count(srv, SmSecretVersion) == versions_before
    assert ok(srv.call("GET", f"{base}/versions/1:access"))["payload"]["data"] == b64(b"original")


def test_unknown_project_and_missing_credentials(srv: KeylessServer) -> None:
    msg = error(srv.call("GET", "/secretmanager/v1/projects/no-such-project/secrets"), 403, "PERMISSION_DENIED")
    assert msg == ("Permission 'secretmanager.secrets.list' denied for resource 'projects/no-such-project' "
                   "(or it may not exist).")
    error(srv.call("GET", "/secretmanager/v1/projects/no-such-project/secrets/s/versions/latest:access"),
          403, "PERMISSION_DENIED")
    error(srv.call("GET", f"{SM}/secrets", token=""), 401, "UNAUTHENTICATED")


def test_secret_accessor_on_one_secret_grants_exactly_that_secret(srv: KeylessServer) -> None:
    create(srv, "api-key", b"k3y")
    create(srv, "other-key", b"0ther")
    ok(srv.call("POST", f"{SM}/secrets/api-key:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{APP_SA}"]}]}}))
    policy = ok(srv.call("GET", f"{SM}/secrets/api-key:getIamPolicy", params={"options.requestedPolicyVersion": 3}))
    assert policy["bindings"] == [{"role": "roles/secretmanager.secretAccessor",
                                   "members": [f"serviceAccount:{APP_SA}"]}]
    token = token_for_service_account(srv, APP_SA)
    got = ok(srv.call("GET", f"{SM}/secrets/api-key/versions/latest:access", token=token))
    assert base64.b64decode(got["payload"]["data"]) == b"k3y"
    msg = error(srv.call("GET", f"{SM}/secrets/other-key/versions/latest:access", token=token), 403, "PERMISSION_DENIED")
    assert msg == ("Permission 'secretmanager.versions.access' denied for resource "
                   "'projects/sm-project/secrets/other-key/versions/latest' (or it may not exist).")
    # Accessor is not viewer: no metadata, no listing, no policy changes.
    error(srv.call("GET", f"{SM}/secrets/api-key", token=token), 403, "PERMISSION_DENIED")
    error(srv.call("GET", f"{SM}/secrets", token=token), 403, "PERMISSION_DENIED")
    error(srv.call("POST", f"{SM}/secrets/api-key:addVersion", token=token,
                   body={"payload": {"data": b64(b"evil")}}), 403, "PERMISSION_DENIED")
    error(srv.call("POST", f"{SM}/secrets/api-key:setIamPolicy", token=token, body={"policy": {}}),
          403, "PERMISSION_DENIED")
    tested = ok(srv.call("POST", f"{SM}/secrets/api-key:testIamPermissions", token=token, body={
        "permissions": ["secretmanager.versions.access", "secretmanager.secrets.get"]}))
    assert tested == {"permissions": ["secretmanager.versions.access"]}
    # Deleting the secret deletes its policy: a new secret of the same name grants nothing.
    ok(srv.call("DELETE", f"{SM}/secrets/api-key"))
    create(srv, "api-key", b"new")
    error(srv.call("GET", f"{SM}/secrets/api-key/versions/latest:access", token=token), 403, "PERMISSION_DENIED")


def test_conditional_grant_on_resource_name(srv: KeylessServer) -> None:
    create(srv, "cond-a", b"a")
    create(srv, "cond-b", b"b")
    policy = ok(srv.call("POST", "/cloudresourcemanager/v1/projects/sm-project:getIamPolicy", body={}))
    policy["bindings"].append({"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{APP_SA}"],
                               "condition": {"title": "only cond-a", "expression":
                                             f'resource.name.startsWith("projects/{NUMBER}/secrets/cond-a/")'}})
    policy["version"] = 3
    ok(srv.call("POST", "/cloudresourcemanager/v1/projects/sm-project:setIamPolicy", body={"policy": policy}))
    token = token_for_service_account(srv, APP_SA)
    assert ok(srv.call("GET", f"{SM}/secrets/cond-a/versions/1:access", token=token))["payload"]["data"] == b64(b"a")
    error(srv.call("GET", f"{SM}/secrets/cond-b/versions/1:access", token=token), 403, "PERMISSION_DENIED")


def _entries(srv: KeylessServer, method: str) -> list[dict[str, Any]]:
    with server_state(srv).db.read() as s:
        return [r.entry for r in s.scalars(select(AuditEntry).where(AuditEntry.method_name == method)
                                           .order_by(AuditEntry.id)).all()]


def test_audit_admin_activity_always_data_access_when_configured(server: KeylessServer) -> None:
    srv = server
    assert srv.keyless("projects", "create", "sm-project", "--number", NUMBER).returncode == 0
    base = f"{SM}/secrets/audited"
    create(srv, "audited", b"v1")
    ok(srv.call("GET", f"{base}/versions/latest:access"))
    created = _entries(srv, "google.cloud.secretmanager.v1.SecretManagerService.CreateSecret")
    assert len(created) == 1
    entry = created[0]
    assert entry["logName"] == "projects/sm-project/logs/cloudaudit.googleapis.com%2Factivity"
    assert entry["resource"]["type"] == "audited_resource"
    assert entry["resource"]["labels"]["service"] == "secretmanager.googleapis.com"
    assert entry["protoPayload"]["resourceName"] == f"projects/{NUMBER}/secrets/audited"
    added = _entries(srv, "google.cloud.secretmanager.v1.SecretManagerService.AddSecretVersion")
    assert added[0]["protoPayload"]["resourceName"] == f"projects/{NUMBER}/secrets/audited/versions/1"
    server_state(srv).audit.flush()
    time.sleep(0.3)
    access = "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion"
    assert _entries(srv, access) == []  # Data Access is off by default, as on Google

    policy = ok(srv.call("POST", "/cloudresourcemanager/v1/projects/sm-project:getIamPolicy", body={}))
    policy["auditConfigs"] = [{"service": "secretmanager.googleapis.com",
                               "auditLogConfigs": [{"logType": "DATA_READ"}]}]
    ok(srv.call("POST", "/cloudresourcemanager/v1/projects/sm-project:setIamPolicy",
                body={"policy": policy, "updateMask": "bindings,etag,auditConfigs"}))
    ok(srv.call("GET", f"{base}/versions/latest:access"))
    ok(srv.call("GET", f"{base}"))  # ADMIN_READ: not enabled, not logged
    deadline = time.monotonic() + 10
    while not _entries(srv, access) and time.monotonic() < deadline:
        time.sleep(0.1)
    entries = _entries(srv, access)
    assert len(entries) == 1
    payload = entries[0]["protoPayload"]
    assert entries[0]["logName"] == "projects/sm-project/logs/cloudaudit.googleapis.com%2Fdata_access"
    assert payload["resourceName"] == f"projects/{NUMBER}/secrets/audited/versions/1"
    assert payload["authorizationInfo"][0]["permission"] == "secretmanager.versions.access"
    assert payload["authorizationInfo"][0]["granted"] is True
    assert _entries(srv, "google.cloud.secretmanager.v1.SecretManagerService.GetSecret") == []
