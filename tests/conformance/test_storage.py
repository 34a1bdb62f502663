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


def kind(expected: str) -> Callable[[dict[str, Any], Any], None]:
    def check(ctx: dict[str, Any], answer: Any) -> None:
        assert answer["kind"] == expected, answer
    return check


FLOW = Flow(DOC, [
    Step("storage.buckets.insert", lambda c: {"project": PROJECT, "body": {
        "name": BUCKET, "location": "US", "storageClass": "STANDARD", "labels": {"team": "conformance"},
        "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": True}},
        "id": "ignored", "kind": "storage#bucket", "timeCreated": "2000-01-01T00:00:00Z"}},
         present=["kind", "id", "name", "projectNumber", "metageneration", "location", "storageClass", "etag",
                  "timeCreated", "updated"], check=kind("storage#bucket")),
    Step("storage.buckets.get", lambda c: {"bucket": BUCKET, "userProject": PROJECT},
         present=["kind", "id", "name", "location", "etag"]),
    Step("storage.buckets.list", lambda c: {"project": PROJECT, "maxResults": 10, "prefix": "conformance-"},
         check=lambda c, a: [b["name"] for b in a["items"]] == [BUCKET] and a["kind"] == "storage#buckets"
         or pytest.fail(str(a))),
    Step("storage.buckets.getIamPolicy", lambda c: {"bucket": BUCKET, "optionsRequestedPolicyVersion": 3},
         save="policy", present=["kind", "resourceId", "bindings", "etag"], check=kind("storage#policy")),
    Step("storage.buckets.setIamPolicy", lambda c: {"bucket": BUCKET, "body": {
        **c["policy"], "bindings": [*c["policy"]["bindings"],
                                    {"role": "roles/storage.objectViewer", "members": ["user:reader@example.com"]}]}},
         present=["bindings", "etag"]),
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
    Step("storage.objects.delete", lambda c: {"bucket": BUCKET, "object": "dir/object.txt"}),
    Step("storage.buckets.delete", lambda c: {"bucket": BUCKET}),
    Step("storage.buckets.get", lambda c: {"bucket": BUCKET}, error=404),
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
