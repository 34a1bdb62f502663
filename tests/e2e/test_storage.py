"""Cloud Storage end to end: the seeds' `storage.Client(...).bucket('my-bucket').blob('data.txt')
.download_to_filename(...)` with real credentials, gcloud storage, bucket/project IAM with custom
roles and conditions, Data Access audit entries, and hostile uploads that must store nothing."""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path
from typing import Any

import google.oauth2.credentials
import pytest
from google.api_core import exceptions
from google.cloud import storage
from sqlalchemy import select

from keyless.store.models import AuditEntry, StorageObject
from tests.api.helpers import audit_data_access, server_state, token_for_service_account
from tests.conftest import Gcloud, KeylessServer

PROJECT = "my-project"
READER = f"reader-sa@{PROJECT}.iam.gserviceaccount.com"
WRITER = f"writer-sa@{PROJECT}.iam.gserviceaccount.com"
CUSTOM = f"custom-sa@{PROJECT}.iam.gserviceaccount.com"
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]


def _client(srv: KeylessServer, token: str) -> storage.Client:
    return storage.Client(project=PROJECT, credentials=google.oauth2.credentials.Credentials(token),
                          client_options={"api_endpoint": srv.base_url})


def _add_project_binding(srv: KeylessServer, role: str, member: str, condition: dict[str, str] | None = None) -> None:
    path = f"/cloudresourcemanager/v1/projects/{PROJECT}"
    policy = srv.call("POST", path + ":getIamPolicy", body={"options": {"requestedPolicyVersion": 3}}).json()
    binding: dict[str, Any] = {"role": role, "members": [member]}
    if condition:
        binding["condition"] = condition
    policy.setdefault("bindings", []).append(binding)
    policy["version"] = 3
    r = srv.call("POST", path + ":setIamPolicy", body={"policy": policy, "updateMask": "bindings,etag,auditConfigs"})
    assert r.status_code == 200, r.text


def _add_bucket_binding(srv: KeylessServer, bucket: str, role: str, member: str) -> None:
    policy = srv.call("GET", f"/storage/v1/b/{bucket}/iam").json()
    policy["bindings"].append({"role": role, "members": [member]})
    r = srv.call("PUT", f"/storage/v1/b/{bucket}/iam", body=policy)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def world(module_server: KeylessServer) -> KeylessServer:
    srv = module_server
    assert srv.keyless("projects", "create", PROJECT, "--number", "123456789012").returncode == 0
    for account in ("reader-sa", "writer-sa", "custom-sa", "doomed-sa"):
        r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account})
        assert r.status_code == 200, r.text
    owner = _client(srv, srv.owner_token)
    for name in ("my-bucket", "other-bucket", "public-bucket"):
        owner.create_bucket(name)
        owner.bucket(name).blob("data.txt").upload_from_string(f"hello from {name}")
    return srv


def test_seed_download_with_a_key_file(world: KeylessServer, tmp_path: Path) -> None:
    """The seed snippet as written, with credentials from a key file made by `keys create`."""
    from google.oauth2 import service_account

    srv = world
    _add_bucket_binding(srv, "my-bucket", "roles/storage.objectViewer", f"serviceAccount:{READER}")
    created = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{READER}/keys", body={}).json()
    key = tmp_path / "key.json"
    key.write_bytes(base64.b64decode(created["privateKeyData"]))
    creds = service_account.Credentials.from_service_account_file(str(key), scopes=SCOPES)
    client = storage.Client(project=PROJECT, credentials=creds, client_options={"api_endpoint": srv.base_url})
    bucket = client.bucket("my-bucket")
    blob = bucket.blob("data.txt")
    blob.download_to_filename(str(tmp_path / "data.txt"))
    assert (tmp_path / "data.txt").read_text() == "hello from my-bucket"
    # the bucket-level grant covers that bucket only: an out-of-scope call is denied
    with pytest.raises(exceptions.Forbidden) as denied:
        client.bucket("other-bucket").blob("data.txt").download_as_bytes()
    assert f"{READER} does not have storage.objects.get access to the Google Cloud Storage object" in str(denied.value)
    with pytest.raises(exceptions.Forbidden, match="storage.objects.create"):
        bucket.blob("new.txt").upload_from_string("nope")


def test_upload_list_ranges_preconditions(world: KeylessServer) -> None:
    import google_crc32c

    bucket = _client(world, world.owner_token).bucket("my-bucket")
    for name in ("logs/a.txt", "logs/b.txt", "logs/2024/c.txt", "logs/2025/d.txt", "readme"):
        bucket.blob(name).upload_from_string(name * 3)
    client = _client(world, world.owner_token)
    it = client.list_blobs("my-bucket", prefix="logs/", delimiter="/")
    assert [b.name for b in it] == ["logs/a.txt", "logs/b.txt"]
    assert it.prefixes == {"logs/2024/", "logs/2025/"}
    pages = list(client.list_blobs("my-bucket", prefix="logs/", max_results=10, page_size=2).pages)
    assert len(pages) == 2 and sum(p.num_items for p in pages) == 4

    blob = bucket.get_blob("readme")
    assert blob.size == 18 and blob.content_type == "text/plain"
    expected_crc = base64.b64encode(google_crc32c.value(b"readme" * 3).to_bytes(4, "big")).decode()
    assert blob.crc32c == expected_crc
    assert bucket.blob("readme").download_as_bytes(start=6, end=11) == b"readme"
    r = world.call("GET", "/download/storage/v1/b/my-bucket/o/readme", params={"alt": "media"},
                   headers={"Range": "bytes=-4"})
    assert r.status_code == 206 and r.content == b"adme" and r.headers["content-range"] == "bytes 14-17/18"
    r = world.call("GET", "/storage/v1/b/my-bucket/o/readme", params={"alt": "media"},
                   headers={"Range": "bytes=100-"})
    assert r.status_code == 416 and r.json()["error"]["errors"][0]["reason"] == "requestedRangeNotSatisfiable"

    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("readme").upload_from_string("clobber", if_generation_match=0)
    bucket.blob("readme").upload_from_string("v2", if_generation_match=blob.generation)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("readme").delete(if_generation_match=blob.generation)
    assert bucket.blob("readme").download_as_bytes() == b"v2"


def test_resumable_upload_of_a_large_object(world: KeylessServer) -> None:
    data = bytes(range(256)) * (40 * 1024 + 3)  # ~10 MiB: the client switches to resumable, in chunks
    blob = _client(world, world.owner_token).bucket("my-bucket").blob("big.bin", chunk_size=4 * 1024 * 1024)
    blob.upload_from_string(data)
    again = _client(world, world.owner_token).bucket("my-bucket").blob("big.bin")
    assert again.download_as_bytes() == data


def test_project_binding_custom_role_and_condition(world: KeylessServer) -> None:
    srv = world
    # project-level objectAdmin: every bucket
    _add_project_binding(srv, "roles/storage.objectAdmin", f"serviceAccount:{WRITER}")
    writer = _client(srv, token_for_service_account(srv, WRITER))
    for name in ("my-bucket", "other-bucket"):
        writer.bucket(name).blob("w.txt").upload_from_string("w")
        assert writer.bucket(name).blob("w.txt").download_as_bytes() == b"w"
    # a custom role, granted on objects under public/ of one bucket only (IAM condition)
    r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/roles", body={
        "roleId": "appObjectReader", "role": {"title": "App Object Reader", "stage": "GA",
                                              "includedPermissions": ["storage.objects.get", "storage.objects.list"]}})
    assert r.status_code == 200, r.text
    _add_project_binding(srv, f"projects/{PROJECT}/roles/appObjectReader", f"serviceAccount:{CUSTOM}", {
        "title": "public-only",
        "expression": 'resource.name.startsWith("projects/_/buckets/my-bucket/objects/public/") && '
                      'resource.type == "storage.googleapis.com/Object" && '
                      'resource.service == "storage.googleapis.com"'})
    _client(srv, srv.owner_token).bucket("my-bucket").blob("public/p.txt").upload_from_string("p")
    custom = _client(srv, token_for_service_account(srv, CUSTOM))
    assert custom.bucket("my-bucket").blob("public/p.txt").download_as_bytes() == b"p"
    with pytest.raises(exceptions.Forbidden, match="storage.objects.get"):
        custom.bucket("my-bucket").blob("data.txt").download_as_bytes()
    with pytest.raises(exceptions.Forbidden):
        custom.bucket("other-bucket").blob("public/p.txt").download_as_bytes()


def test_denial_shape_and_anonymous_callers(world: KeylessServer) -> None:
    srv = world
    token = token_for_service_account(srv, READER)
    r = srv.call("GET", "/storage/v1/b/other-bucket/o/data.txt", token=token)
    assert r.status_code == 403
    message = (f"{READER} does not have storage.objects.get access to the Google Cloud Storage object. "
               "Permission 'storage.objects.get' denied on resource (or it may not exist).")
    assert r.json() == {"error": {"code": 403, "message": message,
                                  "errors": [{"message": message, "domain": "global", "reason": "forbidden"}]}}
    r = srv.call("GET", "/storage/v1/b/no-such-bucket/o/x", token=token)
    assert r.status_code == 404 and r.json()["error"]["message"] == "The specified bucket does not exist."
    r = srv.call("GET", "/storage/v1/b/my-bucket/o/missing.txt", token=token)
    assert r.status_code == 404 and r.json()["error"]["message"] == "No such object: my-bucket/missing.txt"
    # anonymous: 401 naming the permission, until allUsers is granted on the bucket
    r = srv.call("GET", "/download/storage/v1/b/public-bucket/o/data.txt", token="", params={"alt": "media"})
    assert r.status_code == 401 and r.json()["error"]["message"].startswith(
        "Anonymous caller does not have storage.objects.get access")
    _add_bucket_binding(srv, "public-bucket", "roles/storage.objectViewer", "allUsers")
    r = srv.call("GET", "/download/storage/v1/b/public-bucket/o/data.txt", token="", params={"alt": "media"})
    assert r.status_code == 200 and r.content == b"hello from public-bucket"
    r = srv.call("GET", "/storage/v1/b/public-bucket/iam/testPermissions", token=token,
                 params=[("permissions", "storage.objects.get"), ("permissions", "storage.buckets.delete")])
    assert r.json() == {"kind": "storage#testIamPermissionsResponse", "permissions": ["storage.objects.get"]}


def test_disabled_service_account_is_refused_at_once(world: KeylessServer) -> None:
    srv = world
    sa = f"doomed-sa@{PROJECT}.iam.gserviceaccount.com"
    _add_bucket_binding(srv, "my-bucket", "roles/storage.objectViewer", f"serviceAccount:{sa}")
    token = token_for_service_account(srv, sa)
    assert srv.call("GET", "/storage/v1/b/my-bucket/o/data.txt", token=token).status_code == 200
    assert srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{sa}:disable", body={}).status_code == 200
    r = srv.call("GET", "/storage/v1/b/my-bucket/o/data.txt", token=token)
    assert r.status_code == 401 and r.json()["error"]["errors"][0]["reason"] == "required"


def _entries(srv: KeylessServer, method: str, resource: str) -> list[AuditEntry]:
    with server_state(srv).db.read() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.method_name == method,
                                                       AuditEntry.resource_name == resource)).all())


def test_data_access_entries_follow_audit_configs(world: KeylessServer) -> None:
    srv = world
    resource = "projects/_/buckets/my-bucket/objects/audited.txt"
    owner = _client(srv, srv.owner_token).bucket("my-bucket")
    owner.blob("audited.txt").upload_from_string("a")
    reader = _client(srv, token_for_service_account(srv, READER)).bucket("my-bucket")
    reader.blob("audited.txt").download_as_bytes()
    time.sleep(1.5)  # the server batches audit writes
    assert _entries(srv, "storage.objects.get", resource) == []
    assert _entries(srv, "storage.objects.create", resource) == []
    audit_data_access(srv, PROJECT, {"storage.googleapis.com": ["DATA_READ"]})
    reader.blob("audited.txt").download_as_bytes()
    owner.blob("audited.txt").upload_from_string("b")  # DATA_WRITE stays off
    deadline = time.monotonic() + 30  # the audit writer's first start, under a loaded CI
    while not _entries(srv, "storage.objects.get", resource) and time.monotonic() < deadline:
        time.sleep(0.2)
    [entry] = _entries(srv, "storage.objects.get", resource)
    assert entry.principal_email == READER and entry.log_name.endswith("cloudaudit.googleapis.com%2Fdata_access")
    assert entry.entry["resource"] == {"type": "gcs_bucket", "labels": {
        "project_id": PROJECT, "bucket_name": "my-bucket", "location": "us"}}
    assert entry.entry["protoPayload"]["serviceName"] == "storage.googleapis.com"
    assert _entries(srv, "storage.objects.create", resource) == []
    # Admin Activity for bucket changes is always written
    assert _entries(srv, "storage.buckets.create", "projects/_/buckets/my-bucket")
    assert _entries(srv, "storage.setIamPermissions", "projects/_/buckets/my-bucket")


def _object_names(srv: KeylessServer, bucket: str) -> set[str]:
    with server_state(srv).db.read() as s:
        return set(s.scalars(select(StorageObject.name).where(StorageObject.bucket == bucket)).all())


def _blob_files(srv: KeylessServer) -> int:
    return sum(1 for p in (srv.data_dir / "storage").rglob("*") if p.is_file())


def test_hostile_uploads_store_nothing(world: KeylessServer) -> None:
    srv = world
    before_names, before_files = _object_names(srv, "my-bucket"), _blob_files(srv)
    media = "/upload/storage/v1/b/my-bucket/o"

    for bad in ("..", ".", "a\x00b", "x" * 1025, "é" * 600_000):  # the last is a 1.2 MB name
        body = _multipart({"name": bad}, b"data")
        r = srv.call("POST", media, raw=body, params={"uploadType": "multipart"},
                     headers={"Content-Type": "multipart/related; boundary=BOUNDARY"})
        assert r.status_code == 400, (bad[:10], r.text)
        assert "errors" in r.json()["error"]
    r = srv.call("GET", "/storage/v1/b/my-bucket/o/a%00b")
    assert r.status_code == 400
    # bad crc32c in the metadata: 400 and nothing stored
    r = srv.call("POST", media, raw=_multipart({"name": "crc.txt", "crc32c": "AAAAAA=="}, b"payload"),
                 params={"uploadType": "multipart"}, headers={"Content-Type": "multipart/related; boundary=BOUNDARY"})
    assert r.status_code == 400 and "doesn't match calculated CRC32C" in r.json()["error"]["message"]
    # bad md5 in X-Goog-Hash on a media upload
    r = srv.call("POST", media, raw=b"payload", params={"uploadType": "media", "name": "md5.txt"},
                 headers={"X-Goog-Hash": "md5=AAAAAAAAAAAAAAAAAAAAAA==", "Content-Type": "text/plain"})
    assert r.status_code == 400 and "MD5" in r.json()["error"]["message"]
    # over the size limit: refused from the headers alone
    answer = _raw_upload(srv, f"{media}?uploadType=media&name=huge.bin", 10 * 1024**4, b"x", wait=True)
    assert answer.startswith(b"HTTP/1.1 413") and b"uploadTooLarge" in answer
    # a declared 1 GB upload whose client sends 10 bytes and hangs up
    _raw_upload(srv, f"{media}?uploadType=media&name=short.bin", 1_000_000_000, b"0123456789", wait=False)
    # a resumable session declared at 1 GB, finished after 10 bytes
    r = srv.call("POST", media, body={"name": "resumable.bin"}, params={"uploadType": "resumable"},
                 headers={"X-Upload-Content-Length": "1000000000"})
    assert r.status_code == 200
    session = r.headers["location"]
    import httpx
    r = httpx.put(session, content=b"0123456789", headers={"Content-Range": "bytes 0-9/10"})
    assert r.status_code == 400
    # bad JSON and unknown fields on bucket insert
    r = srv.call("POST", "/storage/v1/b", raw=b"{not json", params={"project": PROJECT})
    assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid"
    r = srv.call("POST", "/storage/v1/b", body={"name": "UPPER"}, params={"project": PROJECT})
    assert r.status_code == 400 and r.json()["error"]["message"] == "Invalid bucket name: 'UPPER'"
    time.sleep(0.5)
    assert _object_names(srv, "my-bucket") == before_names
    assert _blob_files(srv) == before_files


def _raw_upload(srv: KeylessServer, target: str, declared: int, body: bytes, wait: bool) -> bytes:
    """Send a request whose Content-Length lies (no HTTP client library will)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall((f"POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.owner_token}\r\n"
                      f"Content-Length: {declared}\r\n\r\n").encode() + body)
        if not wait:
            time.sleep(0.3)
            return b""
        answer = b""
        while b"}}" not in answer:  # the status line and the JSON body may arrive apart
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def _multipart(metadata: dict[str, Any], data: bytes) -> bytes:
    return (b"--BOUNDARY\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" + json.dumps(metadata).encode()
            + b"\r\n--BOUNDARY\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--BOUNDARY--\r\n")


def test_bucket_lifecycle(world: KeylessServer) -> None:
    srv = world
    client = _client(srv, srv.owner_token)
    r = srv.call("POST", "/storage/v1/b", body={"name": "my-bucket"}, params={"project": PROJECT})
    assert r.status_code == 409 and r.json()["error"]["errors"][0]["reason"] == "conflict"
    bucket = client.create_bucket("short-lived", location="europe-west1")
    assert bucket.location == "EUROPE-WEST1" and bucket.location_type == "region"
    assert "short-lived" in {b.name for b in client.list_buckets()}
    bucket.blob("x").upload_from_string("x")
    with pytest.raises(exceptions.Conflict, match="not empty"):
        bucket.delete()
    bucket.blob("x").delete()
    bucket.delete()
    with pytest.raises(exceptions.NotFound):
        client.get_bucket("short-lived")
    reader = _client(srv, token_for_service_account(srv, READER))
    with pytest.raises(exceptions.Forbidden, match="storage.buckets.create access to the Google Cloud project"):
        reader.create_bucket("not-yours")


@pytest.mark.store_independent  # gcloud's side of the wire: SQLite leg only; the PostgreSQL leg drives the same methods with the discovery client (tests/conformance)
def test_gcloud_storage(world: KeylessServer, module_gcloud: Gcloud, tmp_path: Path) -> None:
    g = module_gcloud
    g.run("storage", "buckets", "create", "gs://gcloud-bucket")
    assert "gs://gcloud-bucket/" in g.run("storage", "ls").stdout
    src = tmp_path / "report.csv"
    src.write_text("a,b\n1,2\n")
    g.run("storage", "cp", str(src), "gs://gcloud-bucket/reports/report.csv")
    assert g.run("storage", "ls", "gs://gcloud-bucket/reports/").stdout.split() == [
        "gs://gcloud-bucket/reports/report.csv"]
    assert g.run("storage", "cat", "gs://gcloud-bucket/reports/report.csv").stdout == "a,b\n1,2\n"
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 40_000)  # ~10 MB: gcloud uses a resumable upload
    g.run("storage", "cp", str(big), "gs://gcloud-bucket/big.bin")
    g.run("storage", "cp", "gs://gcloud-bucket/big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    g.run("storage", "buckets", "add-iam-policy-binding", "gs://gcloud-bucket",
          f"--member=serviceAccount:{READER}", "--role=roles/storage.objectViewer")
    reader = _client(world, token_for_service_account(world, READER))
    assert reader.bucket("gcloud-bucket").blob("reports/report.csv").download_as_bytes() == b"a,b\n1,2\n"
    g.run("storage", "rm", "gs://gcloud-bucket/reports/report.csv", "gs://gcloud-bucket/big.bin")
    assert g.run("storage", "ls", "gs://gcloud-bucket/reports/", check=False).returncode != 0
    g.run("storage", "buckets", "delete", "gs://gcloud-bucket")
