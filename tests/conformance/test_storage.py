"""Cloud Storage's JSON API (storage.googleapis.com v1) through Google's discovery-based client:
every served method called in a realistic order, each answer checked against its response schema
(issue #19). The client reaches Keyless with `api_endpoint` = the server itself: storage's paths
(servicePath `storage/v1/`, uploads at `/upload/storage/v1/`) are Google's own."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from googleapiclient.http import MediaInMemoryUpload

from tests.conformance import harness
from tests.conformance.harness import Flow, Step

DOC = "storage.v1"
PROJECT = "conformance-storage"
BUCKET = "conformance-bucket-19"
DATA = b"conformance object bytes\n"
RELOCATED = "conformance-relocated-20"


def kind(expected: str) -> Callable[[dict[str, Any], Any], None]:
    def check(ctx: dict[str, Any], answer: Any) -> None:
        assert answer["kind"] == expected, answer
    return check


FLOW = Flow(DOC, [
    Step("storage.buckets.insert", lambda c: {"project": PROJECT, "body": {
        "name": BUCKET, "location": "US", "storageClass": "STANDARD", "labels": {"team": "conformance"},
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}},
        "id": "ignored", "kind": "storage#bucket", "timeCreated": "2000-01-01T00:00:00Z"}},
         save="bucket", present=["kind", "id", "name", "projectNumber", "metageneration", "location", "storageClass",
                                 "etag", "generation", "timeCreated", "updated", "softDeletePolicy"],
         check=kind("storage#bucket")),
    Step("storage.buckets.get", lambda c: {"bucket": BUCKET, "userProject": PROJECT},
         present=["kind", "id", "name", "location", "etag"]),
    Step("storage.buckets.list", lambda c: {"project": PROJECT, "maxResults": 10, "prefix": "conformance-"},
         check=lambda c, a: [b["name"] for b in a["items"]] == [BUCKET] and a["kind"] == "storage#buckets"
         or pytest.fail(str(a))),
    Step("storage.buckets.getIamPolicy", lambda c: {"bucket": BUCKET, "optionsRequestedPolicyVersion": 3},
         save="policy", present=["kind", "resourceId", "bindings", "etag"], check=kind("storage#policy")),
    Step("storage.buckets.setIamPolicy", lambda c: {"bucket": BUCKET, "body": {
        **c["policy"], "bindings": [*c["policy"]["bindings"],
                                    {"role": "roles/storage.objectViewer", "members": ["user:reader@example.com"]},
                                    {"role": "roles/storage.objectUser", "members": ["user:owner@keyless.dev"]}]}},
         present=["bindings", "etag"]),
    Step("storage.buckets.patch", lambda c: {"bucket": BUCKET, "ifMetagenerationMatch": 1, "body": {
        "labels": {"env": "test"}, "versioning": {"enabled": True}, "lifecycle": {"rule": [
            {"action": {"type": "Delete"}, "condition": {"age": 7}}]}}},
         present=["kind", "name", "metageneration", "labels", "versioning", "etag"],
         check=lambda c, a: (a["labels"] == {"team": "conformance", "env": "test"} and a["metageneration"] == "2")
         or pytest.fail(str(a))),
    Step("storage.buckets.patch", lambda c: {"bucket": BUCKET, "ifMetagenerationMatch": 1, "body": {}}, error=412),
    Step("storage.buckets.update", lambda c: {"bucket": BUCKET, "ifMetagenerationNotMatch": 1, "body": {
        "name": BUCKET, "labels": {"env": "prod"}, "lifecycle": {"rule": [
            {"action": {"type": "SetStorageClass", "storageClass": "NEARLINE"}, "condition": {"age": 30}}]}}},
         present=["kind", "name", "metageneration", "lifecycle"],
         check=lambda c, a: (a["labels"] == {"env": "prod"} and "versioning" not in a
                             and a["lifecycle"]["rule"][0]["action"]["storageClass"] == "NEARLINE")
         or pytest.fail(str(a))),
    Step("storage.buckets.getStorageLayout", lambda c: {"bucket": BUCKET},
         check=lambda c, a: (a["kind"] == "storage#storageLayout" and a["bucket"] == BUCKET
                             and a["hierarchicalNamespace"] == {"enabled": False}) or pytest.fail(str(a))),
    Step("storage.buckets.testIamPermissions", lambda c: {"bucket": BUCKET, "permissions": [
        "storage.buckets.get", "storage.objects.create"]},
         check=lambda c, a: a["kind"] == "storage#testIamPermissionsResponse" and len(a["permissions"]) == 2
         or pytest.fail(str(a))),
    Step("storage.objects.insert", lambda c: {"bucket": BUCKET, "name": "dir/object.txt", "body": {
        "contentType": "text/plain", "metadata": {"origin": "conformance"}, "cacheControl": "no-cache"},
        "media_body": MediaInMemoryUpload(DATA, mimetype="text/plain")},
         present=["kind", "id", "name", "bucket", "generation", "metageneration", "contentType", "size", "md5Hash",
                  "crc32c", "etag", "timeCreated", "updated", "storageClass", "mediaLink"],
         check=lambda c, a: (a["size"] == str(len(DATA))
                             and base64.b64decode(a["md5Hash"]) == hashlib.md5(DATA).digest()) or pytest.fail(str(a))),
    Step("storage.objects.get", lambda c: {"bucket": BUCKET, "object": "dir/object.txt"},
         present=["kind", "name", "bucket", "generation", "size", "md5Hash", "crc32c", "etag"],
         check=lambda c, a: a["metadata"] == {"origin": "conformance"} or pytest.fail(str(a))),
    Step("storage.objects.list", lambda c: {"bucket": BUCKET, "prefix": "dir/", "maxResults": 5},
         check=lambda c, a: [o["name"] for o in a["items"]] == ["dir/object.txt"] or pytest.fail(str(a))),
    Step("storage.objects.patch", lambda c: {"bucket": BUCKET, "object": "dir/object.txt", "ifMetagenerationMatch": 1,
                                             "body": {"metadata": {"origin": None, "stage": "patched"}}},
         present=["kind", "name", "metageneration", "etag"],
         check=lambda c, a: (a["metadata"] == {"stage": "patched"} and a["metageneration"] == "2"
                             and a["cacheControl"] == "no-cache") or pytest.fail(str(a))),
    Step("storage.objects.update", lambda c: {"bucket": BUCKET, "object": "dir/object.txt", "body": {
        "contentType": "text/csv"}},
         check=lambda c, a: (a["contentType"] == "text/csv" and "metadata" not in a and "cacheControl" not in a
                             and a["metageneration"] == "3") or pytest.fail(str(a))),
    Step("storage.objects.copy", lambda c: {
        "sourceBucket": BUCKET, "sourceObject": "dir/object.txt", "destinationBucket": BUCKET,
        "destinationObject": "copy.txt", "ifGenerationMatch": 0, "body": {}},
         present=["kind", "name", "generation", "size", "crc32c", "md5Hash"],
         check=lambda c, a: (a["size"] == str(len(DATA)) and a["contentType"] == "text/csv") or pytest.fail(str(a))),
    Step("storage.objects.rewrite", lambda c: {
        "sourceBucket": BUCKET, "sourceObject": "copy.txt", "destinationBucket": BUCKET,
        "destinationObject": "rewritten.txt", "maxBytesRewrittenPerCall": 1048576, "body": {}},
         present=["kind", "totalBytesRewritten", "objectSize", "done", "resource"],
         check=lambda c, a: (a["done"] is True and a["resource"]["name"] == "rewritten.txt") or pytest.fail(str(a))),
    Step("storage.objects.compose", lambda c: {"destinationBucket": BUCKET, "destinationObject": "composite.txt",
                                               "body": {"sourceObjects": [{"name": "copy.txt"},
                                                                          {"name": "rewritten.txt"}],
                                                        "destination": {"contentType": "text/plain"}}},
         present=["kind", "name", "size", "crc32c", "componentCount"],
         check=lambda c, a: (a["size"] == str(2 * len(DATA)) and a["componentCount"] == 2 and "md5Hash" not in a)
         or pytest.fail(str(a))),
    Step("storage.objects.move", lambda c: {"bucket": BUCKET, "sourceObject": "composite.txt",
                                            "destinationObject": "moved.txt", "ifGenerationMatch": 0},
         present=["kind", "name", "generation"], check=lambda c, a: a["name"] == "moved.txt" or pytest.fail(str(a))),
    Step("storage.buckets.patch", lambda c: {"bucket": BUCKET, "body": {
        "softDeletePolicy": {"retentionDurationSeconds": "604800"}}},
         check=lambda c, a: a["softDeletePolicy"]["retentionDurationSeconds"] == "604800" or pytest.fail(str(a))),
    Step("storage.objects.get", lambda c: {"bucket": BUCKET, "object": "dir/object.txt"}, save="live"),
    # object IAM (issue #20): the bucket has uniform bucket-level access, so Google refuses object policies
    Step("storage.objects.getIamPolicy", lambda c: {"bucket": BUCKET, "object": "dir/object.txt"}, error=400),
    Step("storage.objects.setIamPolicy", lambda c: {"bucket": BUCKET, "object": "dir/object.txt", "body": {
        "bindings": [{"role": "roles/storage.objectViewer", "members": ["allUsers"]}]}}, error=400),
    Step("storage.objects.testIamPermissions", lambda c: {
        "bucket": BUCKET, "object": "dir/object.txt", "permissions": ["storage.objects.get", "storage.objects.nope"]},
         check=lambda c, a: (a["kind"] == "storage#testIamPermissionsResponse"
                             and a["permissions"] == ["storage.objects.get"]) or pytest.fail(str(a))),
    Step("storage.objects.delete", lambda c: {"bucket": BUCKET, "object": "dir/object.txt"}),
    Step("storage.objects.list", lambda c: {"bucket": BUCKET, "softDeleted": True},
         check=lambda c, a: [(o["name"], o["generation"]) for o in a["items"]] == [
             ("dir/object.txt", c["live"]["generation"])] or pytest.fail(str(a))),
    Step("storage.objects.restore", lambda c: {"bucket": BUCKET, "object": "dir/object.txt",
                                               "generation": c["live"]["generation"]},
         present=["kind", "name", "generation", "size"],
         check=lambda c, a: int(a["generation"]) > int(c["live"]["generation"]) or pytest.fail(str(a))),
    # object holds and objects.bulkRestore (issue #20)
    Step("storage.objects.patch", lambda c: {"bucket": BUCKET, "object": "dir/object.txt",
                                             "body": {"temporaryHold": True}},
         check=lambda c, a: a["temporaryHold"] is True or pytest.fail(str(a))),
    Step("storage.objects.delete", lambda c: {"bucket": BUCKET, "object": "dir/object.txt"}, error=403),
    Step("storage.objects.patch", lambda c: {"bucket": BUCKET, "object": "dir/object.txt",
                                             "body": {"temporaryHold": False}},
         check=lambda c, a: a["temporaryHold"] is False or pytest.fail(str(a))),
    Step("storage.objects.delete", lambda c: {"bucket": BUCKET, "object": "copy.txt"}),
    Step("storage.objects.bulkRestore", lambda c: {"bucket": BUCKET, "body": {
        "matchGlobs": ["*.txt"], "allowOverwrite": False, "softDeletedAfterTime": "2000-01-01T00:00:00Z"}},
         save="bulk", present=["kind", "name", "done", "metadata"],
         check=lambda c, a: (a["done"] is True and "error" not in a and a["name"].startswith(
             f"projects/_/buckets/{BUCKET}/operations/")) or pytest.fail(str(a))),
    Step("storage.objects.get", lambda c: {"bucket": BUCKET, "object": "copy.txt"},
         present=["kind", "name", "generation"]),
    # object contexts (issue #20)
    Step("storage.objects.patch", lambda c: {"bucket": BUCKET, "object": "copy.txt", "body": {
        "contexts": {"custom": {"stage": {"value": "raw"}}}}},
         check=lambda c, a: a["contexts"]["custom"]["stage"]["value"] == "raw" or pytest.fail(str(a))),
    Step("storage.objects.list", lambda c: {"bucket": BUCKET, "filter": 'contexts."stage"="raw"'},
         check=lambda c, a: [o["name"] for o in a["items"]] == ["copy.txt"] or pytest.fail(str(a))),
    Step("storage.objects.viewFullContext", lambda c: {"bucket": BUCKET, "object": "copy.txt", "contextKey": "stage"},
         present=["kind", "key", "type", "value", "createTime", "updateTime"],
         check=lambda c, a: a["value"] == "raw" or pytest.fail(str(a))),
    Step("storage.buckets.operations.get", lambda c: {"bucket": BUCKET,
                                                      "operationId": c["bulk"]["name"].rsplit("/", 1)[1]},
         check=lambda c, a: a["name"] == c["bulk"]["name"] or pytest.fail(str(a))),
    Step("storage.buckets.operations.list", lambda c: {"bucket": BUCKET, "pageSize": 10},
         check=lambda c, a: [o["name"] for o in a["operations"]] == [c["bulk"]["name"]] or pytest.fail(str(a))),
    Step("storage.managedFolders.insert", lambda c: {"bucket": BUCKET, "body": {"name": "team/"}},
         present=["kind", "id", "name", "bucket", "metageneration", "createTime", "updateTime"],
         check=kind("storage#managedFolder")),
    Step("storage.managedFolders.get", lambda c: {"bucket": BUCKET, "managedFolder": "team/"},
         present=["kind", "name", "bucket"]),
    Step("storage.managedFolders.list", lambda c: {"bucket": BUCKET, "pageSize": 5},
         check=lambda c, a: [f["name"] for f in a["items"]] == ["team/"] or pytest.fail(str(a))),
    Step("storage.managedFolders.getIamPolicy", lambda c: {"bucket": BUCKET, "managedFolder": "team/"},
         save="folder_policy", present=["kind", "resourceId", "etag"], check=kind("storage#policy")),
    Step("storage.managedFolders.setIamPolicy", lambda c: {"bucket": BUCKET, "managedFolder": "team/", "body": {
        "bindings": [{"role": "roles/storage.objectViewer", "members": ["user:reader@example.com"]}],
        "etag": c["folder_policy"]["etag"]}},
         present=["bindings", "etag"]),
    Step("storage.managedFolders.testIamPermissions", lambda c: {
        "bucket": BUCKET, "managedFolder": "team/", "permissions": ["storage.managedFolders.get"]},
         check=lambda c, a: a["permissions"] == ["storage.managedFolders.get"] or pytest.fail(str(a))),
    Step("storage.managedFolders.delete", lambda c: {"bucket": BUCKET, "managedFolder": "team/"}),
    Step("storage.objects.delete", lambda c: {"bucket": BUCKET, "object": "dir/object.txt"}),
    Step("storage.objects.delete", lambda c: {"bucket": BUCKET, "object": "copy.txt"}),
    Step("storage.objects.delete", lambda c: {"bucket": BUCKET, "object": "rewritten.txt"}),
    Step("storage.objects.delete", lambda c: {"bucket": BUCKET, "object": "moved.txt"}),
    # bucket lock (issue #20): the bucket is empty, so a locked policy does not keep it
    Step("storage.buckets.patch", lambda c: {"bucket": BUCKET, "body": {"retentionPolicy": {"retentionPeriod": "60"}}},
         save="unlocked", check=lambda c, a: a["retentionPolicy"]["retentionPeriod"] == "60" or pytest.fail(str(a))),
    Step("storage.buckets.lockRetentionPolicy", lambda c: {"bucket": BUCKET,
                                                           "ifMetagenerationMatch": c["unlocked"]["metageneration"]},
         present=["kind", "name", "metageneration", "retentionPolicy"],
         check=lambda c, a: a["retentionPolicy"]["isLocked"] is True or pytest.fail(str(a))),
    Step("storage.buckets.patch", lambda c: {"bucket": BUCKET, "body": {"retentionPolicy": None}}, error=403),
    Step("storage.buckets.delete", lambda c: {"bucket": BUCKET}),
    Step("storage.buckets.get", lambda c: {"bucket": BUCKET}, error=404),
    # bucket soft delete (issue #20): the deleted bucket is kept under its soft delete policy, restorable
    Step("storage.buckets.list", lambda c: {"project": PROJECT, "softDeleted": True, "prefix": BUCKET},
         check=lambda c, a: [(b["name"], b["generation"]) for b in a["items"]] == [
             (BUCKET, c["bucket"]["generation"])] and "softDeleteTime" in a["items"][0] or pytest.fail(str(a))),
    Step("storage.buckets.get", lambda c: {"bucket": BUCKET, "softDeleted": True,
                                           "generation": c["bucket"]["generation"]},
         present=["kind", "name", "generation", "softDeleteTime", "hardDeleteTime"]),
    Step("storage.buckets.restore", lambda c: {"bucket": BUCKET, "generation": c["bucket"]["generation"]},
         present=["kind", "name", "generation", "metageneration", "retentionPolicy"],
         check=lambda c, a: ("softDeleteTime" not in a and a["retentionPolicy"]["isLocked"] is True)
         or pytest.fail(str(a))),
    Step("storage.buckets.restore", lambda c: {"bucket": BUCKET, "generation": c["bucket"]["generation"]},
         error=404),
    Step("storage.buckets.get", lambda c: {"bucket": BUCKET}, present=["kind", "name", "generation"]),
    # bucket relocation (issue #20): a dry run, a relocation cancelled, another advanced to its final step
    Step("storage.buckets.insert", lambda c: {"project": PROJECT, "body": {"name": RELOCATED, "location": "US"}},
         present=["name", "location"]),
    Step("storage.buckets.relocate", lambda c: {"bucket": RELOCATED, "body": {
        "destinationLocation": "EU", "validateOnly": True}}, present=["kind", "name", "done", "metadata"],
         check=lambda c, a: a["done"] is True or pytest.fail(str(a))),
    Step("storage.buckets.relocate", lambda c: {"bucket": RELOCATED, "body": {"destinationLocation": "EU"}},
         save="relocation", check=lambda c, a: a["done"] is False or pytest.fail(str(a))),
    Step("storage.buckets.operations.cancel", lambda c: {
        "bucket": RELOCATED, "operationId": c["relocation"]["name"].rsplit("/", 1)[1]}),
    Step("storage.buckets.operations.get", lambda c: {
        "bucket": RELOCATED, "operationId": c["relocation"]["name"].rsplit("/", 1)[1]},
         check=lambda c, a: (a["done"] is True and a["error"]["code"] == 1) or pytest.fail(str(a))),
    Step("storage.buckets.relocate", lambda c: {"bucket": RELOCATED, "body": {"destinationLocation": "EU"}},
         save="relocation"),
    Step("storage.buckets.operations.advanceRelocateBucket", lambda c: {
        "bucket": RELOCATED, "operationId": c["relocation"]["name"].rsplit("/", 1)[1], "body": {"ttl": "43200s"}}),
    Step("storage.buckets.operations.get", lambda c: {
        "bucket": RELOCATED, "operationId": c["relocation"]["name"].rsplit("/", 1)[1]},
         check=lambda c, a: a["metadata"]["state"] == "FINALIZING" or a["done"] or pytest.fail(str(a))),
])


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any]) -> dict[str, Any]:
    client("cloudresourcemanager.v1").projects().create(body={"projectId": PROJECT}).execute()
    return harness.run(client(DOC), FLOW, {})


def test_every_served_method_has_a_step() -> None:
    assert not FLOW.unflowed(harness.served_methods(DOC))


def test_flow(flowed: dict[str, Any]) -> None:
    assert flowed["called"] == [s.method for s in FLOW.steps]


def test_media_download_through_the_client(client: Callable[[str], Any], flowed: dict[str, Any]) -> None:
    storage = client(DOC)
    storage.buckets().insert(project=PROJECT, body={"name": BUCKET + "-media"}).execute()
    storage.objects().insert(bucket=BUCKET + "-media", name="a b.txt",
                             media_body=MediaInMemoryUpload(DATA, mimetype="text/plain")).execute()
    assert storage.objects().get_media(bucket=BUCKET + "-media", object="a b.txt").execute() == DATA


@pytest.mark.parametrize("method_id", harness.body_methods(FLOW))
def test_every_defined_request_field_is_known(client: Callable[[str], Any], flowed: dict[str, Any],
                                              method_id: str) -> None:
    harness.probe_fields(client(DOC), FLOW, method_id, flowed)
