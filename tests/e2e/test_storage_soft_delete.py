"""Bucket soft delete and buckets.restore, and object IAM (issue #20), through the real
google-cloud-storage and gcloud: a deleted bucket under a soft delete policy is listed and read with
softDeleted=true, restored by generation with its policy and soft-deleted objects, refused while a
new bucket has its name; objects.getIamPolicy/setIamPolicy answer Google's uniform bucket-level
access refusal, objects.testIamPermissions the caller's real permissions on the object."""

from __future__ import annotations

from typing import Any

import google.oauth2.credentials
import pytest
from google.api_core import exceptions
from google.cloud import storage
from sqlalchemy import select

from keyless.store.models import AuditEntry
from tests.api.helpers import server_state, token_for_service_account
from tests.conftest import Gcloud, KeylessServer

PROJECT = "softdel-project"
OTHER = "softdel-other"
ADMIN = f"bucket-admin@{PROJECT}.iam.gserviceaccount.com"  # storage.objectAdmin on buckets, nothing on the project
READER = f"reader@{PROJECT}.iam.gserviceaccount.com"
WEEK = 7 * 24 * 3600


def _client(srv: KeylessServer, token: str, project: str = PROJECT) -> storage.Client:
    return storage.Client(project=project, credentials=google.oauth2.credentials.Credentials(token),
                          client_options={"api_endpoint": srv.base_url})


def _bind(srv: KeylessServer, bucket: str, role: str, member: str) -> None:
    policy = srv.call("GET", f"/storage/v1/b/{bucket}/iam").json()
    policy["bindings"].append({"role": role, "members": [member]})
    assert srv.call("PUT", f"/storage/v1/b/{bucket}/iam", body=policy).status_code == 200


def _entries(srv: KeylessServer, method: str, resource: str) -> list[AuditEntry]:
    with server_state(srv).db.read() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.method_name == method,
                                                       AuditEntry.resource_name == resource)).all())


@pytest.fixture(scope="module")
def world(module_server: KeylessServer) -> KeylessServer:
    srv = module_server
    for project, number in ((PROJECT, "323456789012"), (OTHER, "323456789013")):
        assert srv.keyless("projects", "create", project, "--number", number).returncode == 0
    for account in ("bucket-admin", "reader"):
        r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account})
        assert r.status_code == 200, r.text
    return srv


def test_bucket_soft_delete_and_restore(world: KeylessServer) -> None:
    srv = world
    owner = _client(srv, srv.owner_token)
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
    other = _client(srv, srv.owner_token, OTHER)
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
    admin = _client(srv, admin_token).bucket("soft-bucket")
    assert [b.generation for b in _client(srv, admin_token).list_blobs(admin, soft_deleted=True)] == [object_generation]
    back = admin.restore_blob("keep.txt", generation=object_generation)
    assert back.download_as_bytes() == b"precious"
    with pytest.raises(exceptions.NotFound):  # restored once: that generation is no longer soft-deleted
        owner.restore_bucket("soft-bucket", generation=first_generation)
    assert _entries(srv, "storage.buckets.restore", "projects/_/buckets/soft-bucket")
    assert _entries(srv, "storage.buckets.delete", "projects/_/buckets/soft-bucket")


def test_soft_deleted_listing_permissions_and_pages(world: KeylessServer) -> None:
    srv = world
    owner = _client(srv, srv.owner_token)
    generations = []
    for _ in range(2):  # two soft-deleted generations of one name, and another name
        b = owner.create_bucket("paged-bucket")
        generations.append(b.generation)
        b.delete()
    owner.create_bucket("paged-other").delete()
    first = srv.call("GET", "/storage/v1/b", params={"project": PROJECT, "softDeleted": "true", "prefix": "paged-",
                                                     "maxResults": "2"}).json()
    assert [(b["name"], b["generation"]) for b in first["items"]] == [("paged-bucket", str(g)) for g in generations]
    second = srv.call("GET", "/storage/v1/b", params={"project": PROJECT, "softDeleted": "true", "prefix": "paged-",
                                                      "pageToken": first["nextPageToken"]}).json()
    assert [b["name"] for b in second["items"]] == ["paged-other"] and "nextPageToken" not in second
    assert all("softDeleteTime" in b and "hardDeleteTime" in b for b in first["items"] + second["items"])
    # without storage.buckets.list on the project: neither the list nor one of them
    reader = token_for_service_account(srv, READER)
    r = srv.call("GET", "/storage/v1/b", token=reader, params={"project": PROJECT, "softDeleted": "true"})
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
    doomed = _client(srv, srv.owner_token, OTHER).create_bucket("doomed-bucket")
    doomed.delete()
    assert srv.call("DELETE", f"/cloudresourcemanager/v1/projects/{OTHER}").status_code == 200
    r = srv.call("POST", "/storage/v1/b/doomed-bucket/restore", params={"generation": str(doomed.generation)})
    assert r.status_code == 400 and "pending deletion" in r.json()["error"]["message"]
    # beyond int64 (the store's column) on the read paths too: 400, never a 500
    r = srv.call("GET", "/storage/v1/b/paged-bucket", params={"softDeleted": "true", "generation": "9" * 20})
    assert r.status_code == 400
    # a soft-deleted bucket is parked under a key no bucket name can spell: not reachable by it
    assert srv.call("GET", "/storage/v1/b/~1/o", params={"softDeleted": "true"}).status_code == 400


def test_object_iam(world: KeylessServer) -> None:
    srv = world
    owner = _client(srv, srv.owner_token)
    bucket = owner.create_bucket("iam-objects")
    bucket.blob("doc.txt").upload_from_string("x")
    bucket.blob("x/iam").upload_from_string("named like the IAM path")
    _bind(srv, "iam-objects", "roles/storage.objectViewer", f"serviceAccount:{READER}")
    reader = token_for_service_account(srv, READER)
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
def test_gcloud_soft_deleted_buckets(world: KeylessServer, module_gcloud: Gcloud) -> None:
    """gcloud storage buckets list --soft-deleted, then gcloud storage restore gs://B#GENERATION."""
    srv, g = world, module_gcloud
    owner = _client(srv, srv.owner_token)
    generation = owner.create_bucket("gcloud-soft").generation
    owner.bucket("gcloud-soft").delete()
    listed = g.json("alpha", "storage", "buckets", "list", "--soft-deleted", f"--project={PROJECT}")  # alpha in gcloud 528
    assert [(b["name"], str(b["generation"])) for b in listed if b["name"] == "gcloud-soft"] == [
        ("gcloud-soft", str(generation))]
    g.run("storage", "restore", f"gs://gcloud-soft#{generation}", f"--project={PROJECT}")
    assert owner.get_bucket("gcloud-soft").generation == generation
