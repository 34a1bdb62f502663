"""Cloud Storage's bucket and object updates and server-side writes (issue #20) through the real
google-cloud-storage and gcloud: buckets.patch/update with metageneration preconditions,
objects.patch/update, copy, rewrite in several calls, compose, move; bucket soft delete and
buckets.restore; object IAM; each IAM-enforced, audited, and refusing hostile input in Cloud
Storage's error shape."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import google.oauth2.credentials
import google_crc32c
import httpx
import pytest
from google.api_core import exceptions
from google.cloud import storage
from google.cloud.storage.blob import ObjectContexts, ObjectCustomContextPayload
from sqlalchemy import select

from keyless.store.models import AuditEntry
from tests.api.helpers import audit_data_access, server_state, token_for_service_account
from tests.conftest import Gcloud, KeylessServer

PROJECT = "objects-project"
READER = f"reader-sa@{PROJECT}.iam.gserviceaccount.com"
WRITER = f"writer-sa@{PROJECT}.iam.gserviceaccount.com"
MIB = 1024 * 1024


def _client(srv: KeylessServer, token: str) -> storage.Client:
    return storage.Client(project=PROJECT, credentials=google.oauth2.credentials.Credentials(token),
                          client_options={"api_endpoint": srv.base_url})


def _bind(srv: KeylessServer, bucket: str, role: str, member: str) -> None:
    policy = srv.call("GET", f"/storage/v1/b/{bucket}/iam").json()
    policy["bindings"].append({"role": role, "members": [member]})
    r = srv.call("PUT", f"/storage/v1/b/{bucket}/iam", body=policy)
    assert r.status_code == 200, r.text


def _entries(srv: KeylessServer, method: str, resource: str) -> list[AuditEntry]:
    with server_state(srv).db.read() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.method_name == method,
                                                       AuditEntry.resource_name == resource)).all())


def _crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


@pytest.fixture(scope="module")
def world(module_server: KeylessServer) -> KeylessServer:
    srv = module_server
    assert srv.keyless("projects", "create", PROJECT, "--number", "223456789012").returncode == 0
    for account in ("reader-sa", "writer-sa"):
        r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account})
        assert r.status_code == 200, r.text
    owner = _client(srv, srv.owner_token)
    for name in ("src-bucket", "dst-bucket"):
        owner.create_bucket(name)
    _bind(srv, "src-bucket", "roles/storage.objectViewer", f"serviceAccount:{READER}")
    _bind(srv, "src-bucket", "roles/storage.objectUser", f"serviceAccount:{WRITER}")
    return srv


def test_bucket_patch_and_update(world: KeylessServer) -> None:
    srv = world
    bucket = _client(srv, srv.owner_token).get_bucket("src-bucket")
    assert bucket.metageneration == 1
    bucket.labels = {"team": "data", "env": "dev"}
    bucket.versioning_enabled = True
    bucket.add_lifecycle_delete_rule(age=30)
    bucket.retention_period = 3600
    bucket.patch(if_metageneration_match=1)
    again = _client(srv, srv.owner_token).get_bucket("src-bucket")
    assert again.metageneration == 2 and again.labels == {"team": "data", "env": "dev"}
    assert again.versioning_enabled and again.retention_period == 3600
    assert again.retention_policy_effective_time is not None
    assert [dict(r) for r in again.lifecycle_rules] == [{"action": {"type": "Delete"}, "condition": {"age": 30}}]
    assert again.iam_configuration.uniform_bucket_level_access_enabled
    # the retention policy holds objects: no delete, overwrite or move before their time
    held = again.blob("held.txt")
    held.upload_from_string("held")
    mover = _client(srv, token_for_service_account(srv, WRITER)).bucket("src-bucket")
    for attempt in (lambda: held.delete(), lambda: held.upload_from_string("over"),
                    lambda: mover.move_blob(mover.blob("held.txt"), "elsewhere.txt")):
        with pytest.raises(exceptions.Forbidden, match="subject to bucket's retention policy"):
            attempt()
    r = srv.call("DELETE", "/storage/v1/b/src-bucket/o/held.txt")
    assert r.status_code == 403 and r.json()["error"]["errors"][0]["reason"] == "retentionPolicyNotMet"
    assert again.blob("held.txt").download_as_bytes() == b"held"
    # a stale metageneration: 412 conditionNotMet, nothing changed
    again.labels = {"team": "other"}
    with pytest.raises(exceptions.PreconditionFailed):
        again.patch(if_metageneration_match=1)
    r = srv.call("PATCH", "/storage/v1/b/src-bucket", body={"labels": {"x": "y"}},
                 params={"ifMetagenerationNotMatch": "2"})
    assert r.status_code == 412 and r.json()["error"]["errors"][0]["reason"] == "conditionNotMet"
    # a label removed by patch (null), the rest kept
    r = srv.call("PATCH", "/storage/v1/b/src-bucket", body={"labels": {"env": None}})
    assert r.status_code == 200 and r.json()["labels"] == {"team": "data"} and r.json()["metageneration"] == "3"
    # update (PUT) replaces: fields left out are cleared
    fresh = _client(srv, srv.owner_token).get_bucket("src-bucket")
    fresh.labels = {"only": "this"}
    fresh.update(if_metageneration_match=3)
    assert fresh.labels == {"only": "this"} and fresh.retention_period == 3600 and fresh.metageneration == 4
    whole = {k: v for k, v in srv.call("GET", "/storage/v1/b/src-bucket").json().items()
             if k not in ("retentionPolicy", "lifecycle")}
    r = srv.call("PUT", "/storage/v1/b/src-bucket", body=whole)
    final = r.json()
    assert "retentionPolicy" not in final and "lifecycle" not in final and final["labels"] == {"only": "this"}
    assert final["versioning"] == {"enabled": True} and final["metageneration"] == "5"
    held.delete()  # the policy is gone: the object goes (noncurrent, the bucket is versioned)
    # Keyless has no ACLs: turning uniform bucket-level access off is refused by name
    r = srv.call("PATCH", "/storage/v1/b/src-bucket",
                 body={"iamConfiguration": {"uniformBucketLevelAccess": {"enabled": False}}})
    assert r.status_code == 400 and "access control lists" in r.json()["error"]["message"]
    for hostile in ({"versioning": "yes"}, {"retentionPolicy": {"retentionPeriod": "-1"}}, {"name": "renamed"},
                    {"location": "EU"}, {"labels": {"k": "v" * 64}}, {"nonsense": 1}, {"storageClass": "GOLD"}):
        r = srv.call("PATCH", "/storage/v1/b/src-bucket", body=hostile)
        assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid", (hostile, r.text)
    assert srv.call("GET", "/storage/v1/b/src-bucket").json()["metageneration"] == "5"
    # IAM: an object user may not change the bucket; the Admin Activity entry is written
    writer = _client(srv, token_for_service_account(srv, WRITER)).bucket("src-bucket")
    writer.labels = {"mine": "now"}
    with pytest.raises(exceptions.Forbidden, match="storage.buckets.update access to the Google Cloud Storage bucket"):
        writer.patch()
    deadline = time.monotonic() + 10
    while len(_entries(srv, "storage.buckets.update", "projects/_/buckets/src-bucket")) < 6 \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    entries = _entries(srv, "storage.buckets.update", "projects/_/buckets/src-bucket")
    assert {e.log_name.rsplit("%2F", 1)[1] for e in entries} == {"activity"}
    assert any(e.entry["protoPayload"].get("status", {}).get("code") == 7 for e in entries)  # the denied one


def test_object_patch_and_update(world: KeylessServer) -> None:
    srv = world
    blob = _client(srv, srv.owner_token).bucket("src-bucket").blob("meta.txt")
    blob.upload_from_string("meta", content_type="text/plain")
    generation = blob.generation
    blob.metadata = {"a": "1", "b": "2"}
    blob.cache_control = "no-store"
    blob.patch(if_metageneration_match=1)
    assert blob.metageneration == 2 and blob.generation == generation and blob.metadata == {"a": "1", "b": "2"}
    blob.metadata = {"a": None}
    blob.patch()
    assert blob.metadata == {"b": "2"} and blob.cache_control == "no-store" and blob.content_type == "text/plain"
    with pytest.raises(exceptions.PreconditionFailed):
        blob.patch(if_metageneration_match=1)
    blob.content_type = "application/json"
    blob.cache_control = None
    blob.update(if_generation_match=generation)
    got = srv.call("GET", "/storage/v1/b/src-bucket/o/meta.txt").json()
    assert got["contentType"] == "application/json" and "cacheControl" not in got and got["metageneration"] == "4"
    assert _client(srv, srv.owner_token).bucket("src-bucket").blob("meta.txt").download_as_bytes() == b"meta"
    r = srv.call("PATCH", "/storage/v1/b/src-bucket/o/meta.txt", body={"metadata": {"k": "v" * 9000}})
    assert r.status_code == 400 and "8 KiB" in r.json()["error"]["message"]
    r = srv.call("PATCH", "/storage/v1/b/src-bucket/o/meta.txt", body={"kmsKeyName": "k"})
    assert r.status_code == 400
    r = srv.call("PATCH", "/storage/v1/b/src-bucket/o/meta.txt", params={"generation": "1"}, body={})
    assert r.status_code == 404 and r.json()["error"]["errors"][0]["reason"] == "notFound"
    reader = _client(srv, token_for_service_account(srv, READER)).bucket("src-bucket").blob("meta.txt")
    reader.metadata = {"evil": "1"}
    with pytest.raises(exceptions.Forbidden, match="storage.objects.update"):
        reader.patch()
    assert "evil" not in srv.call("GET", "/storage/v1/b/src-bucket/o/meta.txt").json().get("metadata", {})


def test_copy_rewrite_compose_move(world: KeylessServer) -> None:
    srv = world
    client = _client(srv, srv.owner_token)
    src, dst = client.bucket("src-bucket"), client.bucket("dst-bucket")
    audit_data_access(srv, PROJECT, {"storage.googleapis.com": ["DATA_READ", "DATA_WRITE"]})
    src.blob("a dir/copy me.txt").upload_from_string("copied", content_type="text/csv")
    copied = src.copy_blob(src.blob("a dir/copy me.txt"), dst, "b/copied.txt")
    assert copied.download_as_bytes() == b"copied" and copied.content_type == "text/csv"
    assert copied.crc32c == _crc(b"copied")

    big = bytes(range(256)) * (3 * MIB // 256 + 1000)  # a little over 3 MiB
    src.blob("big.bin").upload_from_string(big)
    calls = []
    target = dst.blob("big-copy.bin")
    token, done, total = target.rewrite(src.blob("big.bin"))
    assert token is None and done == total == len(big)  # no limit: one call
    target = dst.blob("big-rewrite.bin")
    token = None
    while True:
        r = srv.call("POST", "/storage/v1/b/src-bucket/o/big.bin/rewriteTo/b/dst-bucket/o/big-rewrite.bin",
                     params={"maxBytesRewrittenPerCall": str(MIB), **({"rewriteToken": token} if token else {})})
        assert r.status_code == 200, r.text
        calls.append(r.json())
        if r.json()["done"]:
            break
        token = r.json()["rewriteToken"]
        assert dst.get_blob("big-rewrite.bin") is None  # nothing visible until done
    assert [c["totalBytesRewritten"] for c in calls] == [str(MIB), str(2 * MIB), str(3 * MIB), str(len(big))]
    assert calls[-1]["resource"]["crc32c"] == _crc(big) and target.download_as_bytes() == big

    parts = [src.blob(f"part-{i}") for i in range(3)]
    for i, p in enumerate(parts):
        p.upload_from_string(f"part {i};")
    composite = src.blob("composite.txt")
    composite.content_type = "text/plain"
    composite.compose(parts, if_generation_match=0)
    assert composite.download_as_bytes() == b"part 0;part 1;part 2;"
    assert composite.crc32c == _crc(b"part 0;part 1;part 2;") and composite.md5_hash is None
    assert composite.component_count == 3
    twice = src.blob("twice.txt")
    twice.compose([composite, parts[0]])
    assert twice.component_count == 4 and twice.download_as_bytes() == b"part 0;part 1;part 2;part 0;"
    with pytest.raises(exceptions.PreconditionFailed):
        src.blob("stale.txt").compose(parts, if_source_generation_match=[1, 1, 1])

    # storage.objects.move is in objectUser/objectAdmin, not in the legacy roles a project owner holds
    with pytest.raises(exceptions.Forbidden, match="storage.objects.move"):
        src.move_blob(src.blob("part-2"), "moved/part-2")
    mover = _client(srv, token_for_service_account(srv, WRITER)).bucket("src-bucket")
    moved = mover.move_blob(mover.blob("part-2"), "moved/part-2", if_generation_match=0)
    assert moved.name == "moved/part-2" and moved.download_as_bytes() == b"part 2;"
    assert src.get_blob("part-2") is None
    renamed = src.rename_blob(src.blob("moved/part-2"), "renamed")  # copy + delete in the client
    assert renamed.download_as_bytes() == b"part 2;"

    wanted = [("storage.objects.create", "projects/_/buckets/dst-bucket/objects/b/copied.txt"),
              ("storage.objects.get", "projects/_/buckets/src-bucket/objects/a dir/copy me.txt"),
              ("storage.objects.delete", "projects/_/buckets/src-bucket/objects/part-2"),
              ("storage.objects.create", "projects/_/buckets/src-bucket/objects/moved/part-2")]
    deadline = time.monotonic() + 10
    while not all(_entries(srv, *w) for w in wanted) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [w for w in wanted if not _entries(srv, *w)] == []
    [moved_entry] = _entries(srv, "storage.objects.delete", "projects/_/buckets/src-bucket/objects/part-2")
    assert moved_entry.principal_email == WRITER and moved_entry.log_name.endswith("data_access")


def test_rewrite_and_compose_refuse_what_google_refuses(world: KeylessServer) -> None:
    srv = world
    owner = _client(srv, srv.owner_token).bucket("src-bucket")
    owner.blob("r.bin").upload_from_string(b"r" * (2 * MIB + 1))
    path = "/storage/v1/b/src-bucket/o/r.bin/rewriteTo/b/src-bucket/o/r2.bin"
    r = srv.call("POST", path, params={"maxBytesRewrittenPerCall": "1000"})
    assert r.status_code == 400 and "multiple of 1048576" in r.json()["error"]["message"]
    r = srv.call("POST", path, params={"maxBytesRewrittenPerCall": str(MIB)})
    token = r.json()["rewriteToken"]
    # the token is the owner's, for that source and destination only
    writer = token_for_service_account(srv, WRITER)
    r = srv.call("POST", path, token=writer, params={"rewriteToken": token})
    assert r.status_code == 400 and r.json()["error"]["message"] == "The rewrite token is invalid."
    r = srv.call("POST", path.replace("r2.bin", "elsewhere"), params={"rewriteToken": token})
    assert r.status_code == 400
    for forged in ("../../uploads/x", "A" * 40, token[:-2] + "xx"):
        r = srv.call("POST", path, params={"rewriteToken": forged})
        assert r.status_code == 400, forged
    # a rewrite token is no upload session, and an upload session is no rewrite token
    r = srv.call("POST", "/upload/storage/v1/b/src-bucket/o", body={"name": "up.bin"},
                 params={"uploadType": "resumable"})
    upload_id = r.headers["x-guploader-uploadid"]
    r = srv.call("POST", path, params={"rewriteToken": upload_id})
    assert r.status_code == 400 and r.json()["error"]["message"] == "The rewrite token is invalid."
    r = srv.call("PUT", "/upload/storage/v1/b/src-bucket/o", raw=b"x", params={"uploadType": "resumable",
                 "upload_id": token}, headers={"Content-Range": "bytes 0-0/1"})
    assert r.status_code == 404 and owner.get_blob("r2.bin") is None
    r = srv.call("GET", "/storage/v1/b/src-bucket/o", params={"versions": "true", "pageToken": "bm90IGpzb24"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "Invalid page token."
    # the source replaced mid-rewrite: the bucket is versioned, so the pinned generation is still read...
    pinned = owner.get_blob("r.bin").generation
    owner.blob("r.bin").upload_from_string(b"new")
    r = srv.call("POST", path, params={"rewriteToken": token, "maxBytesRewrittenPerCall": str(MIB)})
    assert r.status_code == 200 and r.json()["totalBytesRewritten"] == str(2 * MIB)
    # ...until that generation is deleted: then the rewrite ends in 404 and writes nothing
    owner.blob("r.bin", generation=pinned).delete()
    r = srv.call("POST", path, params={"rewriteToken": token})
    assert r.status_code == 404 and owner.get_blob("r2.bin") is None
    # a reader cannot write the destination; a writer cannot read what it was not granted
    r = srv.call("POST", path, token=token_for_service_account(srv, READER))
    assert r.status_code == 403 and "storage.objects.create" in r.json()["error"]["message"]
    r = srv.call("POST", "/storage/v1/b/dst-bucket/o/b%2Fcopied.txt/copyTo/b/src-bucket/o/stolen", token=writer)
    assert r.status_code == 403 and "storage.objects.get" in r.json()["error"]["message"]
    # a name holding the separator is one encoded segment and stays one name
    tricky = "x/copyTo/b/dst-bucket/o/y"
    owner.blob(tricky).upload_from_string("tricky")
    r = srv.call("POST", "/storage/v1/b/src-bucket/o/x%2FcopyTo%2Fb%2Fdst-bucket%2Fo%2Fy/copyTo/b/src-bucket/o/t")
    assert r.status_code == 200 and r.json()["name"] == "t" and r.json()["size"] == "6"
    compose = "/storage/v1/b/src-bucket/o/c/compose"
    r = srv.call("POST", compose, body={"sourceObjects": [{"name": "t"}] * 33})
    assert r.status_code == 400 and "exceeds the maximum (32)" in r.json()["error"]["message"]
    r = srv.call("POST", compose, body={"sourceObjects": [{"name": "t"}], "destination": {"bucket": "dst-bucket"}})
    assert r.status_code == 400
    r = srv.call("POST", compose, body={"sourceObjects": [{"name": "t", "generation": "x"}]})
    assert r.status_code == 400
    r = srv.call("POST", compose, body={"sourceObjects": [{"name": "missing"}]})
    assert r.status_code == 404
    r = srv.call("POST", "/storage/v1/b/src-bucket/o/t/moveTo/o/t")
    assert r.status_code == 400
    r = srv.call("POST", "/storage/v1/b/src-bucket/o/t/moveTo/o/u", token=token_for_service_account(srv, READER))
    assert r.status_code == 403 and "storage.objects.move" in r.json()["error"]["message"]
    assert owner.get_blob("c") is None and owner.get_blob("u") is None


@pytest.mark.store_independent  # gcloud's side of the wire: SQLite leg only; the PostgreSQL leg drives the same methods with the discovery client (tests/conformance)
def test_gcloud_storage_updates(world: KeylessServer, module_gcloud: Gcloud) -> None:
    """gcloud's own paths to each: buckets update (patch), cp between buckets (rewrite), mv (getStorageLayout,
    then move), objects update (patch). Setup and checks go through the client, gcloud only where it is the point."""
    g = module_gcloud
    owner = _client(world, world.owner_token)
    owner.create_bucket("gcloud-objects").blob("f.txt").upload_from_string("gcloud bytes")
    g.run("storage", "buckets", "update", "gs://gcloud-objects", "--versioning", "--update-labels=team=ops")
    described: dict[str, Any] = world.call("GET", "/storage/v1/b/gcloud-objects").json()
    assert described["versioning"] == {"enabled": True} and described["labels"] == {"team": "ops"}
    g.run("storage", "cp", "gs://gcloud-objects/f.txt", "gs://src-bucket/from-gcloud.txt")
    assert owner.bucket("src-bucket").blob("from-gcloud.txt").download_as_bytes() == b"gcloud bytes"
    g.run("storage", "mv", "gs://gcloud-objects/f.txt", "gs://gcloud-objects/g.txt")
    g.run("storage", "objects", "update", "gs://gcloud-objects/g.txt", "--custom-metadata=k=v",
          "--content-type=text/x-test")
    got = world.call("GET", "/storage/v1/b/gcloud-objects/o/g.txt").json()
    assert got["metadata"] == {"k": "v"} and got["contentType"] == "text/x-test"
    assert world.call("GET", "/storage/v1/b/gcloud-objects/o/f.txt").status_code == 404


def test_versions_soft_delete_and_restore(world: KeylessServer) -> None:
    srv = world
    client = _client(srv, srv.owner_token)
    bucket = client.create_bucket("versioned-bucket")
    bucket.versioning_enabled = True
    bucket.patch()
    blob = bucket.blob("doc.txt")
    blob.upload_from_string("v1")
    first = blob.generation
    blob.upload_from_string("v2")
    second = blob.generation
    assert second > first
    assert bucket.blob("doc.txt", generation=first).download_as_bytes() == b"v1"
    assert bucket.get_blob("doc.txt", generation=first).time_deleted is not None
    versions = list(client.list_blobs(bucket, versions=True))
    assert [(b.name, b.generation) for b in versions] == [("doc.txt", first), ("doc.txt", second)]
    assert [b.generation for b in client.list_blobs(bucket)] == [second]
    bucket.blob("doc.txt").delete()  # the live one becomes noncurrent
    assert bucket.get_blob("doc.txt") is None
    assert len(list(client.list_blobs(bucket, versions=True))) == 2
    with pytest.raises(exceptions.Conflict, match="not empty"):
        bucket.delete()
    # paging over versions: one per page, every generation once
    pages = list(client.list_blobs(bucket, versions=True, page_size=1).pages)
    assert [b.generation for p in pages for b in p] == [first, second]

    # soft delete: a deleted generation stays restorable, listed only with softDeleted=true
    bucket.soft_delete_policy.retention_duration_seconds = 7 * 24 * 3600
    bucket.versioning_enabled = False
    bucket.patch()
    assert bucket.soft_delete_policy.retention_duration_seconds == 7 * 24 * 3600
    bucket.blob("doc.txt", generation=first).delete()
    soft = list(client.list_blobs(bucket, soft_deleted=True))
    assert [(b.generation, b.soft_delete_time is not None) for b in soft] == [(first, True)]
    assert [b.generation for b in client.list_blobs(bucket, versions=True)] == [second]
    with pytest.raises(exceptions.NotFound):
        bucket.blob("doc.txt", generation=first).download_as_bytes()  # restore first, as on Google
    reader_token = token_for_service_account(srv, READER)
    _bind(srv, "versioned-bucket", "roles/storage.objectViewer", f"serviceAccount:{READER}")
    r = srv.call("POST", "/storage/v1/b/versioned-bucket/o/doc.txt/restore", token=reader_token,
                 params={"generation": str(first)})
    assert r.status_code == 403 and "storage.objects.restore" in r.json()["error"]["message"]
    restored = bucket.restore_blob("doc.txt", generation=first)
    assert restored.generation > second and restored.download_as_bytes() == b"v1"
    assert list(client.list_blobs(bucket, soft_deleted=True)) == []
    r = srv.call("POST", "/storage/v1/b/versioned-bucket/o/doc.txt/restore", params={"generation": str(first)})
    assert r.status_code == 404
    r = srv.call("POST", "/storage/v1/b/versioned-bucket/o/doc.txt/restore")
    assert r.status_code == 400
    # overwrite without versioning: the old generation is soft-deleted, not lost
    third = restored.generation
    restored.upload_from_string("v3")
    assert [b.generation for b in client.list_blobs(bucket, soft_deleted=True)] == [third]
    # deleting the bucket under its soft delete policy keeps it, and its soft-deleted generations' bytes
    # (tests/e2e/test_storage_soft_delete.py); with the policy off it takes them with it
    for b in client.list_blobs(bucket, versions=True):
        b.delete()
    files_before = sum(1 for p in (srv.data_dir / "storage" / "blobs").rglob("*") if p.is_file())
    bucket.delete()
    assert sum(1 for p in (srv.data_dir / "storage" / "blobs").rglob("*") if p.is_file()) == files_before
    generation = next(b.generation for b in client.list_buckets(soft_deleted=True) if b.name == "versioned-bucket")
    bucket = client.restore_bucket("versioned-bucket", generation=generation)
    bucket.soft_delete_policy.retention_duration_seconds = 0
    bucket.patch()
    bucket.delete()
    files_after = sum(1 for p in (srv.data_dir / "storage" / "blobs").rglob("*") if p.is_file())
    assert files_before - files_after == 3  # v2 (noncurrent, then soft-deleted), v1 restored then replaced, v3


def test_managed_folders_grant_on_objects_beneath(world: KeylessServer, module_gcloud: Gcloud) -> None:
    srv, g = world, module_gcloud
    folder_sa = f"folder-sa@{PROJECT}.iam.gserviceaccount.com"
    assert srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "folder-sa"}).is_success
    base = "/storage/v1/b/dst-bucket/managedFolders"
    assert srv.call("POST", base, body={"name": "team-a/"}).status_code == 200
    r = srv.call("POST", base, body={"name": "team-a/sub"})
    assert r.status_code == 200 and r.json()["name"] == "team-a/sub/" and r.json()["kind"] == "storage#managedFolder"
    assert srv.call("POST", base, body={"name": "team-a/"}).status_code == 409
    for bad in ("", "/x/", "a//b/", "..", "x" * 1100):
        assert srv.call("POST", base, body={"name": bad}).status_code == 400, bad
    listed = srv.call("GET", base, params={"prefix": "team-a/", "pageSize": "1"}).json()
    assert [f["name"] for f in listed["items"]] == ["team-a/"]
    more = srv.call("GET", base, params={"prefix": "team-a/", "pageToken": listed["nextPageToken"]}).json()
    assert [f["name"] for f in more["items"]] == ["team-a/sub/"] and "nextPageToken" not in more
    assert srv.call("GET", base + "/team-a%2F").json()["id"] == "dst-bucket/team-a/"

    token = token_for_service_account(srv, folder_sa)
    sa = _client(srv, token).bucket("dst-bucket")
    with pytest.raises(exceptions.Forbidden, match="storage.objects.create"):
        sa.blob("team-a/sub/x.txt").upload_from_string("x")
    g.run("storage", "managed-folders", "add-iam-policy-binding", "gs://dst-bucket/team-a/",
          f"--member=serviceAccount:{folder_sa}", "--role=roles/storage.objectUser")
    policy = srv.call("GET", base + "/team-a%2F/iam").json()
    assert {"role": "roles/storage.objectUser", "members": [f"serviceAccount:{folder_sa}"]} in policy["bindings"]
    assert policy["resourceId"] == "projects/_/buckets/dst-bucket/managedFolders/team-a/"
    sa.blob("team-a/sub/x.txt").upload_from_string("x")  # a nested folder inherits its parent's grant
    assert sa.blob("team-a/sub/x.txt").download_as_bytes() == b"x"
    with pytest.raises(exceptions.Forbidden):
        sa.blob("team-b/x.txt").upload_from_string("x")  # beside the folder: nothing granted
    with pytest.raises(exceptions.Forbidden):
        sa.blob("team-a").upload_from_string("x")  # the name without the slash is not beneath it
    tested = srv.call("GET", base + "/team-a%2Fsub%2F/iam/testPermissions", token=token,
                      params=[("permissions", "storage.objects.get"),
                              ("permissions", "storage.managedFolders.setIamPolicy")])
    assert tested.json()["permissions"] == ["storage.objects.get"]
    r = srv.call("PUT", base + "/team-a%2F/iam", token=token, body={"bindings": []})
    assert r.status_code == 403 and "storage.managedFolders.setIamPolicy access to the Google Cloud Storage " \
        "managed folder" in r.json()["error"]["message"]
    r = srv.call("PUT", base + "/team-a%2F/iam", body={"bindings": [{"role": "roles/nope", "members": ["x"]}]})
    assert r.status_code == 400
    r = srv.call("DELETE", base + "/team-a%2F")
    assert r.status_code == 409 and r.json()["error"]["errors"][0]["reason"] == "conflict"
    assert srv.call("DELETE", base + "/team-a%2Fsub%2F", params={"allowNonEmpty": "true"}).status_code == 204
    assert srv.call("DELETE", base + "/team-a%2F", params={"allowNonEmpty": "true"}).status_code == 204
    with pytest.raises(exceptions.Forbidden):
        sa.blob("team-a/sub/x.txt").download_as_bytes()  # the grant went with the folder
    assert srv.call("GET", base + "/team-a%2F").status_code == 404
    assert srv.call("GET", base + "/team-a%2F/iam").status_code == 404
    deadline = time.monotonic() + 10
    wanted = [("storage.managedFolders.create", "projects/_/buckets/dst-bucket/managedFolders/team-a/"),
              ("storage.managedFolders.setIamPolicy", "projects/_/buckets/dst-bucket/managedFolders/team-a/"),
              ("storage.managedFolders.delete", "projects/_/buckets/dst-bucket/managedFolders/team-a/")]
    while not all(_entries(srv, *w) for w in wanted) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [w for w in wanted if not _entries(srv, *w)] == []


def test_object_holds_and_bucket_lock(world: KeylessServer) -> None:
    """Object holds and bucket lock (issue #20): a held object can be neither deleted, replaced nor
    moved; a locked retention policy can be lengthened, never shortened or removed."""
    srv = world
    client = _client(srv, srv.owner_token)
    bucket = client.create_bucket("holds-bucket")
    _bind(srv, "holds-bucket", "roles/storage.objectViewer", f"serviceAccount:{READER}")
    _bind(srv, "holds-bucket", "roles/storage.objectUser", f"serviceAccount:{WRITER}")
    mover = _client(srv, token_for_service_account(srv, WRITER)).bucket("holds-bucket")
    blob = bucket.blob("temp.txt")
    blob.upload_from_string("t")
    blob.temporary_hold = True
    blob.patch()
    assert bucket.get_blob("temp.txt").temporary_hold is True
    for attempt in (lambda: blob.delete(), lambda: bucket.blob("temp.txt").upload_from_string("over"),
                    lambda: mover.move_blob(mover.blob("temp.txt"), "moved.txt")):
        with pytest.raises(exceptions.Forbidden, match="under active Temporary hold"):
            attempt()
    r = srv.call("DELETE", "/storage/v1/b/holds-bucket/o/temp.txt")
    assert r.status_code == 403 and r.json()["error"]["errors"][0]["reason"] == "retentionPolicyNotMet"
    assert bucket.blob("temp.txt").download_as_bytes() == b"t"
    copy = bucket.copy_blob(blob, bucket, "copy.txt")  # a copy does not take its source's hold
    assert not copy.temporary_hold
    copy.delete()
    r = srv.call("PATCH", "/storage/v1/b/holds-bucket/o/temp.txt", body={"temporaryHold": "no"})
    assert r.status_code == 400 and bucket.get_blob("temp.txt").temporary_hold is True
    reader = _client(srv, token_for_service_account(srv, READER)).bucket("holds-bucket").blob("temp.txt")
    reader.temporary_hold = False
    with pytest.raises(exceptions.Forbidden, match="storage.objects.update access"):
        reader.patch()
    blob.temporary_hold = False
    blob.patch()
    blob.delete()

    # the bucket's default event-based hold holds every new object until released
    bucket.default_event_based_hold = True
    bucket.patch()
    event = bucket.blob("event.txt")
    event.upload_from_string("e")
    assert bucket.get_blob("event.txt").event_based_hold is True
    with pytest.raises(exceptions.Forbidden, match="under active Event-Based hold"):
        event.delete()
    # released under a retention policy, the period starts at the release (the "event")
    bucket.default_event_based_hold = False
    bucket.retention_period = 3600
    bucket.patch()
    event.event_based_hold = False
    before = time.time()
    event.patch()
    assert abs(event.retention_expiration_time.timestamp() - (before + 3600)) < 60
    with pytest.raises(exceptions.Forbidden, match="subject to bucket's retention policy"):
        event.delete()

    # lockRetentionPolicy: ifMetagenerationMatch required and checked; the writer may not lock
    path = "/storage/v1/b/holds-bucket/lockRetentionPolicy"
    r = srv.call("POST", path)
    assert r.status_code == 400 and "ifMetagenerationMatch" in r.json()["error"]["message"]
    assert srv.call("POST", path, params={"ifMetagenerationMatch": "1"}).status_code == 412
    current = str(bucket.metageneration)
    r = srv.call("POST", path, params={"ifMetagenerationMatch": current}, token=token_for_service_account(srv, READER))
    assert r.status_code == 403 and "storage.buckets.update" in r.json()["error"]["message"]
    r = srv.call("PATCH", "/storage/v1/b/holds-bucket", body={"retentionPolicy": {"retentionPeriod": "60",
                                                                                  "isLocked": True}})
    assert r.status_code == 400  # locking is lockRetentionPolicy's alone
    bucket.lock_retention_policy()
    assert bucket.retention_policy_locked and bucket.retention_period == 3600
    locked_metageneration = bucket.metageneration
    bucket.retention_period = 60
    with pytest.raises(exceptions.Forbidden, match="Cannot reduce"):
        bucket.patch()
    r = srv.call("PATCH", "/storage/v1/b/holds-bucket", body={"retentionPolicy": None})
    assert r.status_code == 403 and r.json()["error"]["message"] == "Cannot remove a locked retention policy."
    whole = {k: v for k, v in srv.call("GET", "/storage/v1/b/holds-bucket").json().items() if k != "retentionPolicy"}
    assert srv.call("PUT", "/storage/v1/b/holds-bucket", body=whole).status_code == 403
    r = srv.call("PATCH", "/storage/v1/b/holds-bucket",
                 body={"retentionPolicy": {"retentionPeriod": "60", "isLocked": False}})
    assert r.status_code == 403
    again = client.get_bucket("holds-bucket")
    assert again.metageneration == locked_metageneration and again.retention_period == 3600
    again.retention_period = 7200  # lengthening is allowed, and it stays locked
    again.patch()
    assert again.retention_policy_locked and again.retention_period == 7200
    r = srv.call("POST", path, params={"ifMetagenerationMatch": str(again.metageneration)})
    assert r.status_code == 200 and r.json()["retentionPolicy"]["isLocked"] is True
    def succeeded() -> list[AuditEntry]:
        return [e for e in _entries(srv, "storage.buckets.update", "projects/_/buckets/holds-bucket")
                if not e.entry["protoPayload"].get("status", {}).get("code")]

    deadline = time.monotonic() + 10  # two patches, the lock, the lengthening, the second lock
    while len(succeeded()) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    entries = _entries(srv, "storage.buckets.update", "projects/_/buckets/holds-bucket")
    assert len(succeeded()) == 5 and {e.log_name.rsplit("%2F", 1)[1] for e in entries} == {"activity"}
    assert any(e.entry["protoPayload"].get("status", {}).get("code") == 7 for e in entries)  # the reader's


def test_bulk_restore_and_bucket_operations(world: KeylessServer) -> None:
    """objects.bulkRestore (issue #20): the newest soft-deleted generation of each name matching the
    globs made live, live objects kept unless allowOverwrite, held ones never; the operation is read
    back with buckets.operations.get/list, and goes with its bucket."""
    srv = world
    audit_data_access(srv, PROJECT, {"storage.googleapis.com": ["DATA_WRITE", "ADMIN_READ"]})
    client = _client(srv, srv.owner_token)
    bucket = client.create_bucket("bulk-bucket")
    _bind(srv, "bulk-bucket", "roles/storage.objectViewer", f"serviceAccount:{READER}")
    bucket.soft_delete_policy.retention_duration_seconds = 7 * 24 * 3600
    bucket.patch()
    for name, data in (("logs/a.log", "a1"), ("logs/a.log", "a2"), ("logs/sub/b.log", "b"), ("data/c.csv", "c"),
                       ("keep.txt", "k"), ("data/deep/d.csv", "d"), ("a" * 1000, "long")):
        bucket.blob(name).upload_from_string(data)
        bucket.blob(name).delete()
    bucket.blob("data/c.csv").upload_from_string("live")
    path = "/storage/v1/b/bulk-bucket/o/bulkRestore"
    r = srv.call("POST", path, body={"matchGlobs": ["logs/**", "data/*.csv"]})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["kind"] == "storage#operation" and first["done"] is True and "error" not in first
    assert first["name"].startswith("projects/_/buckets/bulk-bucket/operations/")
    assert first["metadata"]["commonMetadata"]["type"] == "bulk-restore-objects"
    live = {b.name: b.download_as_bytes() for b in client.list_blobs(bucket)}
    assert live == {"logs/a.log": b"a2", "logs/sub/b.log": b"b", "data/c.csv": b"live"}
    # allowOverwrite: a held live object is not displaced, and the operation says so
    held = bucket.blob("data/c.csv")
    held.temporary_hold = True
    held.patch()
    r = srv.call("POST", path, body={"matchGlobs": ["data/c.csv"], "allowOverwrite": True})
    second = r.json()
    assert second["done"] is True and second["error"]["code"] == 9 and "data/c.csv" in second["error"]["message"]
    held.temporary_hold = False
    held.patch()
    r = srv.call("POST", path, body={"matchGlobs": ["data/c.csv"], "allowOverwrite": True})
    assert "error" not in r.json() and bucket.blob("data/c.csv").download_as_bytes() == b"c"
    assert [b.size for b in client.list_blobs(bucket, soft_deleted=True)
            if b.name == "data/c.csv"] == [len("live")]  # the displaced one is soft-deleted in its turn
    # operations.get and list (paged)
    op_id = first["name"].rsplit("/", 1)[1]
    r = srv.call("GET", f"/storage/v1/b/bulk-bucket/operations/{op_id}")
    assert r.status_code == 200 and {k: v for k, v in r.json().items() if k != "selfLink"} == \
        {k: v for k, v in first.items() if k != "selfLink"}
    assert srv.call("GET", "/storage/v1/b/bulk-bucket/operations/nope").status_code == 404
    names, token = [], None
    while True:
        page = srv.call("GET", "/storage/v1/b/bulk-bucket/operations",
                        params={"pageSize": "1", **({"pageToken": token} if token else {})}).json()
        assert page["kind"] == "storage#operations" and len(page["operations"]) == 1
        names += [o["name"] for o in page["operations"]]
        token = page.get("nextPageToken")
        if not token:
            break
    assert len(names) == 3 and first["name"] in names
    # IAM: a reader may neither restore nor read the bucket's operations
    reader = token_for_service_account(srv, READER)
    r = srv.call("POST", path, body={}, token=reader)
    assert r.status_code == 403 and "storage.objects.restore" in r.json()["error"]["message"]
    r = srv.call("GET", f"/storage/v1/b/bulk-bucket/operations/{op_id}", token=reader)
    assert r.status_code == 403 and "storage.bucketOperations.get" in r.json()["error"]["message"]
    r = srv.call("GET", "/storage/v1/b/bulk-bucket/operations", token=reader)
    assert r.status_code == 403 and "storage.bucketOperations.list" in r.json()["error"]["message"]
    # hostile requests: 400 in storage's shape, nothing restored
    for hostile in ({"matchGlobs": ["["]}, {"matchGlobs": ["x"] * 101}, {"matchGlobs": ["{a,b}" * 7]},
                    {"matchGlobs": "logs/**"}, {"matchGlobs": [7]}, {"softDeletedAfterTime": "yesterday"},
                    {"allowOverwrite": "yes"}, {"nonsense": 1}):
        r = srv.call("POST", path, body=hostile)
        assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid", (hostile, r.text)
    started = time.monotonic()  # a glob built to backtrack costs no more than its length
    r = srv.call("POST", path, body={"matchGlobs": ["*a" * 200 + "b"]})
    assert r.status_code == 200 and time.monotonic() - started < 5
    assert "keep.txt" not in {b.name for b in client.list_blobs(bucket)}
    # Data Access entries: the restore (DATA_WRITE), reading operations (ADMIN_READ)
    deadline = time.monotonic() + 10
    while not _entries(srv, "storage.buckets.operations.list", "projects/_/buckets/bulk-bucket") \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {e.log_name.rsplit("%2F", 1)[1] for e in _entries(srv, "storage.objects.bulkRestore",
                                                             "projects/_/buckets/bulk-bucket")} == {"data_access"}
    assert _entries(srv, "storage.buckets.operations.get", first["name"])
    # the bucket's operations go with it: a new bucket of the name does not see them
    for b in client.list_blobs(bucket):
        b.delete()
    bucket.delete()
    client.create_bucket("bulk-bucket")
    assert "operations" not in srv.call("GET", "/storage/v1/b/bulk-bucket/operations").json()
    assert srv.call("GET", f"/storage/v1/b/bulk-bucket/operations/{op_id}").status_code == 404


# -- bucket soft delete and buckets.restore, object IAM (issue #20) ---------------------------------
# A soft-deleted bucket is listed and read with softDeleted=true, restored by generation with its
# policy and soft-deleted objects, refused while a new bucket has its name; objects.getIamPolicy and
# setIamPolicy answer Google's uniform bucket-level access refusal, objects.testIamPermissions the
# caller's real permissions on the object.

SOFT_PROJECT = "softdel-project"
OTHER = "softdel-other"
ADMIN = f"bucket-admin@{SOFT_PROJECT}.iam.gserviceaccount.com"  # storage.objectAdmin on buckets, nothing on the project
SOFT_READER = f"reader@{SOFT_PROJECT}.iam.gserviceaccount.com"
WEEK = 7 * 24 * 3600


def _soft_client(srv: KeylessServer, token: str, project: str = SOFT_PROJECT) -> storage.Client:
    return storage.Client(project=project, credentials=google.oauth2.credentials.Credentials(token),
                          client_options={"api_endpoint": srv.base_url})


@pytest.fixture(scope="module")
def soft_world(module_server: KeylessServer) -> KeylessServer:
    """Projects of their own on the module's server, so bucket listings see only these tests' buckets."""
    srv = module_server
    for project, number in ((SOFT_PROJECT, "323456789012"), (OTHER, "323456789013")):
        assert srv.keyless("projects", "create", project, "--number", number).returncode == 0
    for account in ("bucket-admin", "reader"):
        r = srv.call("POST", f"/iam/v1/projects/{SOFT_PROJECT}/serviceAccounts", body={"accountId": account})
        assert r.status_code == 200, r.text
    return srv


def test_bucket_soft_delete_and_restore(soft_world: KeylessServer) -> None:
    srv = soft_world
    owner = _soft_client(srv, srv.owner_token)
    bucket = owner.create_bucket("soft-bucket")
    # Google's default for new buckets: 7 days of soft delete
    assert bucket.soft_delete_policy.retention_duration_seconds == WEEK
    first_generation = bucket.generation
    assert first_generation and srv.call("GET", "/storage/v1/b/soft-bucket").json()["generation"] == str(
        first_generation)
    blob = bucket.blob("keep.txt")
    blob.upload_from_string("precious")
    object_generation = blob.generation
    _bind(srv, "soft-bucket", "roles/storage.objectAdmin", f"serviceAccount:{ADMIN}")
    blob.delete()
    bucket.delete()

    # gone from the live namespace, listed and read as soft-deleted
    with pytest.raises(exceptions.NotFound):
        owner.get_bucket("soft-bucket")
    assert [b.name for b in owner.list_buckets()] == []
    soft = list(owner.list_buckets(soft_deleted=True))
    assert [(b.name, b.generation) for b in soft] == [("soft-bucket", first_generation)]
    assert soft[0].soft_delete_time is not None and soft[0].hard_delete_time is not None
    assert (soft[0].hard_delete_time - soft[0].soft_delete_time).total_seconds() == pytest.approx(WEEK, abs=2)
    got = owner.get_bucket("soft-bucket", generation=first_generation, soft_deleted=True)
    assert got.generation == first_generation and got.soft_delete_time == soft[0].soft_delete_time
    r = srv.call("GET", "/storage/v1/b/soft-bucket", params={"softDeleted": "true"})
    assert r.status_code == 400 and "generation" in r.json()["error"]["message"]
    r = srv.call("GET", "/storage/v1/b/soft-bucket", params={"softDeleted": "true", "generation": "12"})
    assert r.status_code == 404 and r.json()["error"]["errors"][0]["reason"] == "notFound"

    # the name is free at once; a new bucket of it sees none of the old one's objects
    other = _soft_client(srv, srv.owner_token, OTHER)
    squatter = other.create_bucket("soft-bucket")
    assert squatter.generation != first_generation
    assert list(other.list_blobs(squatter, soft_deleted=True)) == []
    r = srv.call("POST", "/storage/v1/b/soft-bucket/o/keep.txt/restore", params={"generation": str(object_generation)})
    assert r.status_code == 404  # the old bucket's soft-deleted object is not the new bucket's
    with pytest.raises(exceptions.Conflict, match="live bucket with the same name"):
        owner.restore_bucket("soft-bucket", generation=first_generation)
    squatter.soft_delete_policy.retention_duration_seconds = 0  # this one goes for good
    squatter.patch()
    squatter.delete()
    assert [b.name for b in other.list_buckets(soft_deleted=True)] == []

    # restore: the bucket, its policy; its objects come back soft-deleted, restorable
    admin_token = token_for_service_account(srv, ADMIN)
    r = srv.call("POST", "/storage/v1/b/soft-bucket/restore", token=admin_token,
                 params={"generation": str(first_generation)})
    assert r.status_code == 403 and "storage.buckets.restore" in r.json()["error"]["message"]  # a bucket role is not enough
    r = srv.call("POST", "/storage/v1/b/soft-bucket/restore", token="", params={"generation": str(first_generation)})
    assert r.status_code == 401
    r = srv.call("POST", "/storage/v1/b/soft-bucket/restore")
    assert r.status_code == 400
    restored = owner.restore_bucket("soft-bucket", generation=first_generation)
    assert restored.name == "soft-bucket" and restored.generation == first_generation
    assert restored.soft_delete_time is None and restored.hard_delete_time is None
    assert list(owner.list_buckets(soft_deleted=True)) == []
    policy = srv.call("GET", "/storage/v1/b/soft-bucket/iam").json()
    assert {"role": "roles/storage.objectAdmin", "members": [f"serviceAccount:{ADMIN}"]} in policy["bindings"]
    assert restored.get_blob("keep.txt") is None
    admin = _soft_client(srv, admin_token).bucket("soft-bucket")
    assert [b.generation for b in _soft_client(srv, admin_token).list_blobs(admin, soft_deleted=True)] == [object_generation]
    back = admin.restore_blob("keep.txt", generation=object_generation)
    assert back.download_as_bytes() == b"precious"
    with pytest.raises(exceptions.NotFound):  # restored once: that generation is no longer soft-deleted
        owner.restore_bucket("soft-bucket", generation=first_generation)
    assert _entries(srv, "storage.buckets.restore", "projects/_/buckets/soft-bucket")
    assert _entries(srv, "storage.buckets.delete", "projects/_/buckets/soft-bucket")


def test_soft_deleted_listing_permissions_and_pages(soft_world: KeylessServer) -> None:
    srv = soft_world
    owner = _soft_client(srv, srv.owner_token)
    generations = []
    for _ in range(2):  # two soft-deleted generations of one name, and another name
        b = owner.create_bucket("paged-bucket")
        generations.append(b.generation)
        b.delete()
    owner.create_bucket("paged-other").delete()
    first = srv.call("GET", "/storage/v1/b", params={"project": SOFT_PROJECT, "softDeleted": "true", "prefix": "paged-",
                                                     "maxResults": "2"}).json()
    assert [(b["name"], b["generation"]) for b in first["items"]] == [("paged-bucket", str(g)) for g in generations]
    second = srv.call("GET", "/storage/v1/b", params={"project": SOFT_PROJECT, "softDeleted": "true", "prefix": "paged-",
                                                      "pageToken": first["nextPageToken"]}).json()
    assert [b["name"] for b in second["items"]] == ["paged-other"] and "nextPageToken" not in second
    assert all("softDeleteTime" in b and "hardDeleteTime" in b for b in first["items"] + second["items"])
    # without storage.buckets.list on the project: neither the list nor one of them
    reader = token_for_service_account(srv, SOFT_READER)
    r = srv.call("GET", "/storage/v1/b", token=reader, params={"project": SOFT_PROJECT, "softDeleted": "true"})
    assert r.status_code == 403 and "storage.buckets.list" in r.json()["error"]["message"]
    r = srv.call("GET", "/storage/v1/b/paged-bucket", token=reader,
                 params={"softDeleted": "true", "generation": str(generations[0])})
    assert r.status_code == 403 and "storage.buckets.list" in r.json()["error"]["message"]
    for bad in ({"generation": "x"}, {"generation": "-1' OR 1=1"}, {"generation": "9" * 20}, {"generation": "1" * 5000}):
        r = srv.call("POST", "/storage/v1/b/paged-bucket/restore", params=bad)
        assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid"
    r = srv.call("POST", "/storage/v1/b/..bad../restore", params={"generation": "1"})
    assert r.status_code == 400
    # not into a project pending deletion
    doomed = _soft_client(srv, srv.owner_token, OTHER).create_bucket("doomed-bucket")
    doomed.delete()
    assert srv.call("DELETE", f"/cloudresourcemanager/v1/projects/{OTHER}").status_code == 200
    r = srv.call("POST", "/storage/v1/b/doomed-bucket/restore", params={"generation": str(doomed.generation)})
    assert r.status_code == 400 and "pending deletion" in r.json()["error"]["message"]
    # beyond int64 (the store's column) on the read paths too: 400, never a 500
    r = srv.call("GET", "/storage/v1/b/paged-bucket", params={"softDeleted": "true", "generation": "9" * 20})
    assert r.status_code == 400
    # a soft-deleted bucket is parked under a key no bucket name can spell: not reachable by it
    assert srv.call("GET", "/storage/v1/b/~1/o", params={"softDeleted": "true"}).status_code == 400


def test_object_iam(soft_world: KeylessServer) -> None:
    srv = soft_world
    owner = _soft_client(srv, srv.owner_token)
    bucket = owner.create_bucket("iam-objects")
    bucket.blob("doc.txt").upload_from_string("x")
    bucket.blob("x/iam").upload_from_string("named like the IAM path")
    _bind(srv, "iam-objects", "roles/storage.objectViewer", f"serviceAccount:{SOFT_READER}")
    reader = token_for_service_account(srv, SOFT_READER)
    o = "/storage/v1/b/iam-objects/o"
    # uniform bucket-level access: Google refuses object policies, after the permission check
    for method, body in (("GET", None), ("PUT", {"bindings": []})):
        r = srv.call(method, o + "/doc.txt/iam", body=body)
        assert r.status_code == 400, r.text
        error: dict[str, Any] = r.json()["error"]
        assert error["errors"][0]["reason"] == "invalid" and error["message"].startswith(
            "Object policies are disabled for bucket 'iam-objects' when uniform bucket-level access is enabled.")
    r = srv.call("GET", o + "/doc.txt/iam", token=reader)
    assert r.status_code == 403 and "storage.objects.getIamPolicy" in r.json()["error"]["message"]
    r = srv.call("PUT", o + "/doc.txt/iam", token=reader, body={"bindings": []})
    assert r.status_code == 403 and "storage.objects.setIamPolicy" in r.json()["error"]["message"]
    assert _entries(srv, "storage.setIamPermissions", "projects/_/buckets/iam-objects/objects/doc.txt")
    # testIamPermissions: what the caller holds on that object
    wanted = [("permissions", p) for p in ("storage.objects.get", "storage.objects.delete",
                                           "storage.objects.getIamPolicy")]
    r = srv.call("GET", o + "/doc.txt/iam/testPermissions", token=reader, params=wanted)
    assert r.json() == {"kind": "storage#testIamPermissionsResponse", "permissions": ["storage.objects.get"]}
    r = srv.call("GET", o + "/doc.txt/iam/testPermissions", params=wanted)
    assert r.json()["permissions"] == [p for _, p in wanted]
    r = srv.call("GET", o + "/doc.txt/iam/testPermissions", token="", params=wanted)
    assert r.json() == {"kind": "storage#testIamPermissionsResponse"}  # anonymous: nothing, allUsers is not bound
    assert srv.call("GET", o + "/missing.txt/iam/testPermissions", params=wanted).status_code == 404
    assert srv.call("GET", o + "/doc.txt/iam/testPermissions").status_code == 400
    too_many = [("permissions", f"storage.objects.p{i}") for i in range(101)]
    assert srv.call("GET", o + "/doc.txt/iam/testPermissions", params=too_many).status_code == 400
    # an object named like the IAM path, sent as one escaped segment, is still an object
    got = srv.call("GET", o + "/x%2Fiam").json()
    assert got["name"] == "x/iam" and got["kind"] == "storage#object"
    assert bucket.blob("x/iam").download_as_bytes() == b"named like the IAM path"
    r = srv.call("GET", o + "/x%2Fiam/iam/testPermissions", token=reader, params=wanted)
    assert r.json()["permissions"] == ["storage.objects.get"]


@pytest.mark.store_independent  # gcloud's side of the wire: SQLite leg only; both legs drive the methods above
def test_gcloud_soft_deleted_buckets(soft_world: KeylessServer, module_gcloud: Gcloud) -> None:
    """gcloud storage buckets list --soft-deleted, then gcloud storage restore gs://B#GENERATION."""
    srv, g = soft_world, module_gcloud
    owner = _soft_client(srv, srv.owner_token)
    generation = owner.create_bucket("gcloud-soft").generation
    owner.bucket("gcloud-soft").delete()
    listed = g.json("alpha", "storage", "buckets", "list", "--soft-deleted", f"--project={SOFT_PROJECT}")  # alpha in gcloud 528
    assert [(b["name"], str(b["generation"])) for b in listed if b["name"] == "gcloud-soft"] == [
        ("gcloud-soft", str(generation))]
    g.run("storage", "restore", f"gs://gcloud-soft#{generation}", f"--project={SOFT_PROJECT}")
    assert owner.get_bucket("gcloud-soft").generation == generation


# -- object contexts and objects.viewFullContext (issue #20) ----------------------------------------

def _with_contexts(bucket: Any, name: str, contexts: dict[str, str]) -> Any:
    blob = bucket.blob(name)
    blob.contexts = ObjectContexts(blob, custom={k: ObjectCustomContextPayload(v) for k, v in contexts.items()})
    return blob


def test_object_contexts(world: KeylessServer) -> None:
    """Contexts on upload, patch, update and copy through google-cloud-storage, each change needing
    its own permission; objects.list's filter on them; objects.viewFullContext."""
    srv = world
    audit_data_access(srv, PROJECT, {"storage.googleapis.com": ["DATA_READ", "DATA_WRITE", "ADMIN_READ"]})
    _client(srv, srv.owner_token).create_bucket("ctx-bucket")
    r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/roles", body={
        "roleId": "noContexts", "role": {"title": "Objects, no contexts", "includedPermissions": [
            "storage.objects.get", "storage.objects.list", "storage.objects.create", "storage.objects.update",
            "storage.objects.delete"]}})
    assert r.status_code == 200, r.text
    plain = f"plain-sa@{PROJECT}.iam.gserviceaccount.com"
    assert srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "plain-sa"}
                    ).status_code == 200
    _bind(srv, "ctx-bucket", "roles/storage.objectUser", f"serviceAccount:{WRITER}")
    _bind(srv, "ctx-bucket", "roles/storage.objectViewer", f"serviceAccount:{READER}")
    _bind(srv, "ctx-bucket", f"projects/{PROJECT}/roles/noContexts", f"serviceAccount:{plain}")
    writer_token, reader_token = token_for_service_account(srv, WRITER), token_for_service_account(srv, READER)
    plain_token = token_for_service_account(srv, plain)
    bucket = _client(srv, writer_token).bucket("ctx-bucket")
    a = _with_contexts(bucket, "a.txt", {"team": "data", "stage": "raw"})
    a.upload_from_string("a")
    _with_contexts(bucket, "b.txt", {"stage": "raw"}).upload_from_string("b")
    bucket.blob("c.txt").upload_from_string("c")
    a.reload()
    assert {k: p.value for k, p in a.contexts.custom.items()} == {"team": "data", "stage": "raw"}
    created = a.contexts.custom["stage"].create_time
    assert created is not None and a.contexts.custom["stage"].update_time == created
    # objects.list's filter (the reader's storage.objects.list is enough); prefixes are exempt
    reader_bucket = _client(srv, reader_token).bucket("ctx-bucket")
    for expression, names in (('contexts."stage"="raw"', ["a.txt", "b.txt"]), ('contexts."team":*', ["a.txt"]),
                              ('-contexts."team":*', ["b.txt", "c.txt"]),
                              ('contexts."stage"="raw" AND NOT contexts."team":*', ["b.txt"]),
                              ("contexts.stage=raw", ["a.txt", "b.txt"]), ('contexts."stage"="none"', [])):
        assert [b.name for b in reader_bucket.list_blobs(filter_=expression)] == names, expression
    assert [b.name for b in reader_bucket.list_blobs(filter_='contexts."team":*', versions=True)] == ["a.txt"]
    for hostile in ('name="a.txt"', 'contexts."stage"="raw" OR contexts."team":*', "contexts." + "a" * 5000,
                    'contexts."stage"=', "contexts.\"a\"\\\"=1"):
        r = srv.call("GET", "/storage/v1/b/ctx-bucket/o", params={"filter": hostile})
        assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid", (hostile, r.text)
    # patch: a context changed (its createTime kept), one added, one removed
    r = srv.call("PATCH", "/storage/v1/b/ctx-bucket/o/a.txt", token=writer_token, body={"contexts": {"custom": {
        "stage": {"value": "clean"}, "owner": {"value": "me"}, "team": None}}})
    assert r.status_code == 200, r.text
    custom = r.json()["contexts"]["custom"]
    assert {k: p["value"] for k, p in custom.items()} == {"stage": "clean", "owner": "me"}
    assert custom["stage"]["createTime"] == a.contexts.custom["stage"]["createTime"]
    assert custom["stage"]["updateTime"] > custom["stage"]["createTime"]
    # each change needs its permission: without them, nothing changes (an update that drops them too)
    plain_bucket = _client(srv, plain_token).bucket("ctx-bucket")
    with pytest.raises(exceptions.Forbidden, match="storage.objects.createContext"):
        _with_contexts(plain_bucket, "d.txt", {"team": "x"}).upload_from_string("d")
    assert not bucket.blob("d.txt").exists()
    for change, permission in (({"stage": {"value": "x"}}, "updateContext"), ({"new": {"value": "x"}}, "createContext"),
                               ({"owner": None}, "deleteContext")):
        r = srv.call("PATCH", "/storage/v1/b/ctx-bucket/o/a.txt", token=plain_token,
                     body={"contexts": {"custom": change}})
        assert r.status_code == 403 and f"storage.objects.{permission}" in r.text, (change, r.text)
    r = srv.call("PUT", "/storage/v1/b/ctx-bucket/o/a.txt", token=plain_token, body={"contentType": "text/plain"})
    assert r.status_code == 403 and "storage.objects.deleteContext" in r.text, r.text
    r = srv.call("PATCH", "/storage/v1/b/ctx-bucket/o/a.txt", token=plain_token, body={"metadata": {"k": "v"}})
    assert r.status_code == 200 and set(r.json()["contexts"]["custom"]) == {"stage", "owner"}, r.text
    # copies keep the source's contexts
    copied = bucket.copy_blob(bucket.blob("a.txt"), bucket, "copy.txt")
    assert {k: p.value for k, p in copied.contexts.custom.items()} == {"stage": "clean", "owner": "me"}
    # refused contexts: Google's shape, nothing stored
    for hostile in ({"custom": {"-x": {"value": "v"}}}, {"custom": {"k": {"value": "v" * 257}}},
                    {"custom": {f"k{i}": {"value": "v"} for i in range(51)}}, {"custom": ["k"]},
                    {"custom": {"k": {"other": "v"}}}, {"custom": {"k": {"value": 7}}}, {"other": {}},
                    {"custom": {"k": {"value": "a\u0000b"}}}, "k=v"):
        r = srv.call("PATCH", "/storage/v1/b/ctx-bucket/o/b.txt", token=writer_token, body={"contexts": hostile})
        assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid", (hostile, r.text)
    assert {k: p.value for k, p in bucket.get_blob("b.txt").contexts.custom.items()} == {"stage": "raw"}
    # objects.viewFullContext: storage.objects.viewFullContext (Storage Object User), not the viewer's get
    path = "/storage/v1/b/ctx-bucket/o/a.txt/viewFullContext"
    r = srv.call("GET", path, token=writer_token, params={"contextKey": "stage"})
    assert r.status_code == 200, r.text
    assert r.json() == {"kind": "storage#objectFullContext", "key": "stage", "type": "CUSTOM", "value": "clean",
                        "createTime": custom["stage"]["createTime"], "updateTime": custom["stage"]["updateTime"]}
    r = srv.call("GET", path, token=reader_token, params={"contextKey": "stage"})
    assert r.status_code == 403 and "storage.objects.viewFullContext" in r.text, r.text
    assert srv.call("GET", path, token=writer_token, params={"contextKey": "nope"}).status_code == 404
    assert srv.call("GET", path, token=writer_token).status_code == 400
    # an object named x/viewFullContext is still objects.get's
    bucket.blob("x/viewFullContext").upload_from_string("named so")
    assert bucket.blob("x/viewFullContext").download_as_bytes() == b"named so"
    deadline = time.monotonic() + 10
    while not _entries(srv, "storage.objects.viewFullContext", "projects/_/buckets/ctx-bucket/objects/a.txt") \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert {e.log_name.rsplit("%2F", 1)[1] for e in _entries(
        srv, "storage.objects.viewFullContext", "projects/_/buckets/ctx-bucket/objects/a.txt")} == {"data_access"}


# -- bucket relocation (issue #20) ---------------------------------------------------------------
# buckets.relocate: the dry run born done; the no-downtime type (a placement within the bucket's
# multi-region) completing by itself; the write-downtime type syncing until advanceRelocateBucket,
# refusing writes in its final step, then swapping the location; cancel before the final step only;
# a final step past its ttl back to syncing. Keyless's steps last RELOCATION_STEP (5 s).

def _op(srv: KeylessServer, bucket: str, op: dict[str, Any]) -> dict[str, Any]:
    r = srv.call("GET", f"/storage/v1/b/{bucket}/operations/{op['name'].rsplit('/', 1)[1]}")
    assert r.status_code == 200, r.text
    return r.json()


def _until_done(srv: KeylessServer, bucket: str, op: dict[str, Any], seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while not (found := _op(srv, bucket, op))["done"]:
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    return found


def _refused(r: Any, status: int, words: str) -> None:
    assert r.status_code == status and words in r.json()["error"]["message"], r.text
    assert r.json()["error"]["errors"][0]["domain"] == "global"


def test_bucket_relocation(world: KeylessServer) -> None:
    srv = world
    client = _client(srv, srv.owner_token)
    for name in ("reloc-down", "reloc-nodown", "reloc-ttl"):
        client.create_bucket(name, location="US")
    _bind(srv, "reloc-down", "roles/storage.objectUser", f"serviceAccount:{WRITER}")
    down = client.bucket("reloc-down")
    down.blob("kept.txt").upload_from_string("kept")
    path = "/storage/v1/b/{}/relocate"
    # the no-downtime type: US to a configurable dual-region within US; it completes by itself
    r = srv.call("POST", path.format("reloc-nodown"), body={
        "destinationLocation": "us", "destinationCustomPlacementConfig": {"dataLocations": ["us-central1", "us-east1"]}})
    assert r.status_code == 200, r.text
    nodown = r.json()
    assert nodown["done"] is False and nodown["metadata"]["writeDowntime"] is False
    assert nodown["metadata"]["sourceLocation"] == "US" and nodown["metadata"]["commonMetadata"]["type"] == \
        "relocate-bucket"
    _refused(srv.call("POST", f"/storage/v1/b/reloc-nodown/operations/{nodown['name'].rsplit('/', 1)[1]}"
                              "/advanceRelocateBucket", body={}), 400, "without write downtime")
    # the dry run: checked, born done, nothing moves or locks
    r = srv.call("POST", path.format("reloc-down"), body={"destinationLocation": "EU", "validateOnly": True})
    assert r.status_code == 200 and r.json()["done"] is True and "error" not in r.json(), r.text
    assert client.get_bucket("reloc-down").location == "US"
    # the write-downtime type: syncs (writes allowed, configuration locked) until advanced
    r = srv.call("POST", path.format("reloc-down"), body={"destinationLocation": "eu"})
    first = r.json()
    assert r.status_code == 200 and first["done"] is False and first["metadata"]["state"] == "SYNCING", r.text
    assert first["selfLink"].endswith(f"/storage/v1/b/reloc-down/operations/{first['name'].rsplit('/', 1)[1]}")
    _refused(srv.call("POST", path.format("reloc-down"), body={"destinationLocation": "ASIA"}), 400,
             "already being relocated")
    _refused(srv.call("PATCH", "/storage/v1/b/reloc-down", body={"labels": {"a": "b"}}), 400,
             "cannot change while it is being relocated")
    _refused(srv.call("DELETE", "/storage/v1/b/reloc-down"), 400, "cannot change while it is being relocated")
    down.blob("during-sync.txt").upload_from_string("ok")
    # IAM: cancel needs storage.bucketOperations.cancel, advance storage.buckets.relocate
    op_path = f"/storage/v1/b/reloc-down/operations/{first['name'].rsplit('/', 1)[1]}"
    reader = token_for_service_account(srv, READER)
    writer = token_for_service_account(srv, WRITER)
    _refused(srv.call("POST", op_path + "/cancel", token=reader), 403, "storage.bucketOperations.cancel")
    _refused(srv.call("POST", op_path + "/advanceRelocateBucket", body={}, token=writer), 403,
             "storage.buckets.relocate")
    _refused(srv.call("POST", path.format("reloc-down"), body={"destinationLocation": "EU"}, token=writer), 403,
             "storage.buckets.relocate")
    # cancel before the final step: CANCELLED, the bucket stays; a done operation is not cancelled again
    assert srv.call("POST", op_path + "/cancel").status_code == 204
    cancelled = _op(srv, "reloc-down", first)
    assert cancelled["done"] is True and cancelled["error"]["code"] == 1
    assert cancelled["metadata"]["commonMetadata"]["requestedCancellation"] is True
    _refused(srv.call("POST", op_path + "/cancel"), 400, "already completed")
    _refused(srv.call("POST", op_path + "/advanceRelocateBucket", body={}), 400, "already completed")
    bucket = client.get_bucket("reloc-down")
    assert bucket.location == "US"
    bucket.labels = {"after": "cancel"}
    bucket.patch()  # unlocked again
    # again, to the end: advance starts the write downtime
    second = srv.call("POST", path.format("reloc-down"), body={"destinationLocation": "EU"}).json()
    op_path = f"/storage/v1/b/reloc-down/operations/{second['name'].rsplit('/', 1)[1]}"
    resumable = down.blob("in-flight.bin").create_resumable_upload_session(size=4)  # begun before the downtime
    r = srv.call("POST", op_path + "/advanceRelocateBucket", body={"ttl": "3600s"})
    assert r.status_code == 204, r.text
    final = _op(srv, "reloc-down", second)
    assert final["done"] is False and final["metadata"]["state"] == "FINALIZING"
    assert final["metadata"]["writeDowntimeExpireTime"]
    # write downtime: uploads (a resumable one begun before too), deletes, updates, copies refused; reads not
    with pytest.raises(exceptions.BadRequest, match="write downtime"):
        down.blob("new.txt").upload_from_string("no")
    r = httpx.put(resumable, content=b"late", headers={"Content-Range": "bytes 0-3/4"}, timeout=30)
    assert r.status_code == 400 and "write downtime" in r.text, r.text
    _refused(srv.call("DELETE", "/storage/v1/b/reloc-down/o/kept.txt"), 400, "write downtime")
    _refused(srv.call("PATCH", "/storage/v1/b/reloc-down/o/kept.txt", body={"metadata": {"a": "b"}}), 400,
             "write downtime")
    _refused(srv.call("POST", "/storage/v1/b/reloc-down/o/kept.txt/rewriteTo/b/reloc-down/o/copy.txt", body={}),
             400, "write downtime")
    _refused(srv.call("POST", "/storage/v1/b/reloc-down/o/bulkRestore", body={}), 400, "write downtime")
    _refused(srv.call("POST", op_path + "/cancel"), 400, "final synchronization")
    _refused(srv.call("POST", op_path + "/advanceRelocateBucket", body={}), 400, "final synchronization")
    assert down.blob("kept.txt").download_as_bytes() == b"kept"
    # (while the final step runs) a final step past its ttl reverts to syncing: writes resume, and it can be cancelled again
    third = srv.call("POST", path.format("reloc-ttl"), body={"destinationLocation": "ASIA"}).json()
    op_path = f"/storage/v1/b/reloc-ttl/operations/{third['name'].rsplit('/', 1)[1]}"
    assert srv.call("POST", op_path + "/advanceRelocateBucket", body={"ttl": "1s"}).status_code == 204
    deadline = time.monotonic() + 20
    while _op(srv, "reloc-ttl", third)["metadata"]["state"] != "SYNCING":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    client.bucket("reloc-ttl").blob("x").upload_from_string("x")
    assert srv.call("POST", op_path + "/cancel").status_code == 204
    assert client.get_bucket("reloc-ttl").location == "US"
    # refused requests: Google's shape, nothing started
    for hostile in ({}, {"destinationLocation": "EU", "nonsense": 1}, {"destinationLocation": "../EU"},
                    {"destinationLocation": "E" * 65}, {"destinationLocation": 7}, {"destinationLocation": "US"},
                    {"destinationLocation": "EU", "validateOnly": "yes"},
                    {"destinationLocation": "US", "destinationCustomPlacementConfig": {"dataLocations": ["a"]}},
                    {"destinationLocation": "US", "destinationCustomPlacementConfig": {"dataLocations": "ab"}},
                    {"destinationLocation": "US-EAST1", "destinationCustomPlacementConfig": {
                        "dataLocations": ["us-east1", "us-east4"]}},
                    {"destinationLocation": "EU", "destinationKmsKeyName": "projects/p/../x"}):
        r = srv.call("POST", path.format("reloc-ttl"), body=hostile)
        assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid", (hostile, r.text)
    fourth = srv.call("POST", path.format("reloc-ttl"), body={"destinationLocation": "EU"}).json()
    op_path = f"/storage/v1/b/reloc-ttl/operations/{fourth['name'].rsplit('/', 1)[1]}"
    for hostile in ({"ttl": "-5s"}, {"ttl": "12h"}, {"ttl": "0s"}, {"ttl": "9" * 12 + "s"}, {"ttl": "1s" * 20},
                    {"ttl": "60s", "expireTime": "2030-01-01T00:00:00Z"}, {"expireTime": "2001-01-01T00:00:00Z"},
                    {"expireTime": "tomorrow"}, {"other": 1}):
        r = srv.call("POST", op_path + "/advanceRelocateBucket", body=hostile)
        assert r.status_code == 400, (hostile, r.text)
    assert _op(srv, "reloc-ttl", fourth)["metadata"]["state"] == "SYNCING"
    assert srv.call("POST", "/storage/v1/b/reloc-ttl/operations/nope/cancel").status_code == 404
    assert srv.call("POST", "/storage/v1/b/reloc-ttl/operations/" + "x" * 5000 + "/cancel").status_code == 404
    assert srv.call("POST", op_path + "/cancel").status_code == 204
    # buckets Google does not relocate
    client.create_bucket("reloc-hns", location="US")
    srv.call("PATCH", "/storage/v1/b/reloc-hns")  # nothing to change; the field is set at creation
    r = srv.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={
        "name": "reloc-hns2", "hierarchicalNamespace": {"enabled": True}})
    assert r.status_code == 200, r.text
    _refused(srv.call("POST", path.format("reloc-hns2"), body={"destinationLocation": "EU"}), 400,
             "hierarchical namespace")
    # the final step ends: the location swaps, writes resume
    done = _until_done(srv, "reloc-down", second)
    assert done["response"]["@type"] == "type.googleapis.com/google.protobuf.Empty" and "error" not in done
    assert done["metadata"]["commonMetadata"]["progressPercent"] == 100
    relocated = client.get_bucket("reloc-down")
    assert relocated.location == "EU" and relocated.metageneration == bucket.metageneration + 1
    assert [b.name for b in client.list_blobs("reloc-down")] == ["during-sync.txt", "kept.txt"]
    down.blob("after.txt").upload_from_string("after")
    # the no-downtime one has completed by now: US with its placement
    _until_done(srv, "reloc-nodown", nodown)
    placed = srv.call("GET", "/storage/v1/b/reloc-nodown").json()
    assert placed["location"] == "US" and placed["customPlacementConfig"] == {
        "dataLocations": ["US-CENTRAL1", "US-EAST1"]}
    # Admin Activity entries, the operation's name as the resource of cancel and advance
    assert {e.log_name.rsplit("%2F", 1)[1] for e in _entries(srv, "storage.buckets.relocate",
                                                             "projects/_/buckets/reloc-down")} == {"activity"}
    assert _entries(srv, "storage.buckets.operations.cancel", first["name"])
    assert _entries(srv, "storage.buckets.operations.advanceRelocateBucket", second["name"])


@pytest.mark.store_independent  # the client matrix; the conformance flow runs these methods on both stores
def test_gcloud_bucket_relocation(world: KeylessServer, module_gcloud: Gcloud) -> None:
    """gcloud storage buckets relocate (a relocation, then --finalize --ttl) and gcloud storage
    operations cancel, as a user runs them."""
    srv, g = world, module_gcloud
    _client(srv, srv.owner_token).create_bucket("reloc-gcloud", location="US")
    started = g.json("storage", "buckets", "relocate", "gs://reloc-gcloud", "--location=eu")
    assert started["done"] is False and started["metadata"]["destinationLocation"] == "EU"
    g.run("storage", "operations", "cancel", started["name"])
    described = _op(srv, "reloc-gcloud", started)
    assert described["done"] is True and described["error"]["code"] == 1
    again = srv.call("POST", "/storage/v1/b/reloc-gcloud/relocate", body={"destinationLocation": "EU"}).json()
    before = datetime.now(UTC)
    finalized = g.run("storage", "buckets", "relocate", f"--operation={again['name']}", "--finalize", "--ttl=7h")
    assert "Sent request to advance relocation" in finalized.stderr
    expire = datetime.fromisoformat(_op(srv, "reloc-gcloud", again)["metadata"]["writeDowntimeExpireTime"])
    assert timedelta(hours=7) <= expire - before < timedelta(hours=7, minutes=1)
