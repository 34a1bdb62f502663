"""Secret Manager (secretmanager.googleapis.com v1) through Google's discovery-based client: every
served method called in a realistic order, each answer checked against its response schema
(issue #19)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import google_crc32c
import pytest

from tests.conformance import harness
from tests.conformance.harness import Flow, Step

DOC = "secretmanager.v1"
PROJECT = "conformance-secrets"
P = f"projects/{PROJECT}"
PAYLOAD = b"s3cr3t value"
REGION = "us-central1"


def in_a_day() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def rsecret(c: dict[str, Any]) -> str:
    return str(c["rsecret"]["name"])


def rversion(c: dict[str, Any]) -> str:
    return str(c["rversion"]["name"])


def secret(c: dict[str, Any]) -> str:
    return str(c["secret"]["name"])


def version(c: dict[str, Any]) -> str:
    return str(c["version"]["name"])


def state(expected: str) -> Callable[[dict[str, Any], Any], None]:
    def check(ctx: dict[str, Any], answer: Any) -> None:
        assert answer["state"] == expected, answer
    return check


FLOW = Flow(DOC, [
    Step("secretmanager.projects.secrets.create", lambda c: {"parent": P, "secretId": "conformance-secret", "body": {
        "replication": {"automatic": {}}, "labels": {"team": "conformance"},
        "annotations": {"owner": "conformance suite"}, "name": "ignored", "createTime": "2000-01-01T00:00:00Z",
        "secretType": "OTHER", "policyMember": {"uidBasedPolicyMember": "ignored"}}},
         save="secret", present=["name", "replication", "createTime", "etag"]),
    Step("secretmanager.projects.secrets.get", lambda c: {"name": secret(c)},
         present=["name", "replication.automatic", "createTime", "labels", "etag"],
         check=lambda c, a: (a["secretType"] == "OTHER" and "policyMember" not in a) or pytest.fail(str(a))),
    Step("secretmanager.projects.secrets.list", lambda c: {"parent": P, "pageSize": 10, "filter": "labels.team=conformance"},
         check=lambda c, a: [s["name"] for s in a["secrets"]] == [secret(c)] or pytest.fail(str(a))),
    Step("secretmanager.projects.secrets.patch", lambda c: {"name": secret(c), "updateMask": "labels", "body": {
        "labels": {"team": "patched"}}}, check=lambda c, a: a["labels"] == {"team": "patched"} or pytest.fail(str(a))),
    Step("secretmanager.projects.secrets.addVersion", lambda c: {"parent": secret(c), "body": {"payload": {
        "data": base64.b64encode(PAYLOAD).decode(), "dataCrc32c": str(google_crc32c.value(PAYLOAD))}}},
         save="version", present=["name", "createTime", "state", "etag"], check=state("ENABLED")),
    Step("secretmanager.projects.secrets.versions.get", lambda c: {"name": version(c)},
         present=["name", "createTime", "state", "etag"]),
    Step("secretmanager.projects.secrets.versions.list", lambda c: {"parent": secret(c), "pageSize": 5},
         check=lambda c, a: [v["name"] for v in a["versions"]] == [version(c)] and a["totalSize"] == 1
         or pytest.fail(str(a))),
    Step("secretmanager.projects.secrets.versions.access", lambda c: {"name": f"{secret(c)}/versions/latest"},
         present=["name", "payload.data", "payload.dataCrc32c"],
         check=lambda c, a: base64.b64decode(a["payload"]["data"]) == PAYLOAD or pytest.fail(str(a))),
    Step("secretmanager.projects.secrets.versions.disable", lambda c: {"name": version(c), "body": {
        "etag": c["version"]["etag"]}}, save="disabled", check=state("DISABLED")),
    Step("secretmanager.projects.secrets.versions.enable", lambda c: {"name": version(c), "body": {
        "etag": c["disabled"]["etag"]}}, check=state("ENABLED")),
    Step("secretmanager.projects.secrets.versions.destroy", lambda c: {"name": version(c), "body": {}},
         present=["destroyTime"], check=state("DESTROYED")),
    Step("secretmanager.projects.secrets.getIamPolicy", lambda c: {"resource": secret(c),
                                                                   "options_requestedPolicyVersion": 3},
         save="policy", present=["etag"]),
    Step("secretmanager.projects.secrets.setIamPolicy", lambda c: {"resource": secret(c), "body": {
        "policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor",
                                 "members": ["user:reader@example.com"]}], "etag": c["policy"]["etag"]},
        "updateMask": "bindings,etag"}}, present=["etag", "bindings"]),
    Step("secretmanager.projects.secrets.testIamPermissions", lambda c: {"resource": secret(c), "body": {
        "permissions": ["secretmanager.versions.access", "secretmanager.secrets.delete"]}},
         check=lambda c, a: len(a["permissions"]) == 2 or pytest.fail(str(a))),
    Step("secretmanager.projects.secrets.delete", lambda c: {"name": secret(c)}),
    Step("secretmanager.projects.secrets.get", lambda c: {"name": secret(c)}, error=404),
    # Regional secrets (issue #20): the same resources under projects/P/locations/L.
    Step("secretmanager.projects.locations.list", lambda c: {"name": P, "pageSize": 100},
         check=lambda c, a: f"{P}/locations/{REGION}" in [x["name"] for x in a["locations"]] or pytest.fail(str(a))),
    Step("secretmanager.projects.locations.get", lambda c: {"name": f"{P}/locations/{REGION}"},
         present=["name", "locationId"]),
    Step("secretmanager.projects.locations.secrets.create", lambda c: {
        "parent": f"{P}/locations/{REGION}", "secretId": "regional-secret", "body": {
            "labels": {"team": "conformance"}, "topics": [{"name": f"{P}/topics/rotations"}],
            "rotation": {"nextRotationTime": in_a_day(), "rotationPeriod": "86400s"},
            "versionDestroyTtl": "172800s"}},
         save="rsecret", present=["name", "createTime", "etag", "rotation.nextRotationTime", "versionDestroyTtl"],
         check=lambda c, a: ("/locations/us-central1/secrets/regional-secret" in a["name"]
                             and "replication" not in a) or pytest.fail(str(a))),
    Step("secretmanager.projects.locations.secrets.get", lambda c: {"name": rsecret(c)},
         present=["name", "topics", "rotation.rotationPeriod"]),
    Step("secretmanager.projects.locations.secrets.list", lambda c: {"parent": f"{P}/locations/{REGION}"},
         check=lambda c, a: [x["name"] for x in a["secrets"]] == [rsecret(c)] or pytest.fail(str(a))),
    Step("secretmanager.projects.locations.secrets.patch", lambda c: {"name": rsecret(c), "updateMask": "ttl",
                                                                      "body": {"ttl": "3600s"}},
         present=["expireTime"]),
    Step("secretmanager.projects.locations.secrets.addVersion", lambda c: {"parent": rsecret(c), "body": {
        "payload": {"data": base64.b64encode(PAYLOAD).decode()}}}, save="rversion", check=state("ENABLED")),
    Step("secretmanager.projects.locations.secrets.versions.get", lambda c: {"name": rversion(c)},
         present=["name", "state", "etag"]),
    Step("secretmanager.projects.locations.secrets.versions.list", lambda c: {"parent": rsecret(c)},
         check=lambda c, a: [v["name"] for v in a["versions"]] == [rversion(c)] or pytest.fail(str(a))),
    Step("secretmanager.projects.locations.secrets.versions.access", lambda c: {"name": f"{rsecret(c)}/versions/1"},
         check=lambda c, a: base64.b64decode(a["payload"]["data"]) == PAYLOAD or pytest.fail(str(a))),
    Step("secretmanager.projects.locations.secrets.versions.disable", lambda c: {"name": rversion(c), "body": {}},
         check=state("DISABLED")),
    Step("secretmanager.projects.locations.secrets.versions.enable", lambda c: {"name": rversion(c), "body": {}},
         check=state("ENABLED")),
    Step("secretmanager.projects.locations.secrets.versions.destroy", lambda c: {"name": rversion(c), "body": {}},
         present=["scheduledDestroyTime"], check=state("DISABLED")),
    Step("secretmanager.projects.locations.secrets.getIamPolicy", lambda c: {"resource": rsecret(c)},
         save="rpolicy", present=["etag"]),
    Step("secretmanager.projects.locations.secrets.setIamPolicy", lambda c: {"resource": rsecret(c), "body": {
        "policy": {"bindings": [{"role": "roles/secretmanager.secretAccessor",
                                 "members": ["user:reader@example.com"]}], "etag": c["rpolicy"]["etag"]}}},
         present=["bindings"]),
    Step("secretmanager.projects.locations.secrets.testIamPermissions", lambda c: {"resource": rsecret(c), "body": {
        "permissions": ["secretmanager.versions.access"]}},
         check=lambda c, a: a["permissions"] == ["secretmanager.versions.access"] or pytest.fail(str(a))),
    Step("secretmanager.projects.locations.secrets.delete", lambda c: {"name": rsecret(c)}),
    Step("secretmanager.projects.locations.secrets.get", lambda c: {"name": rsecret(c)}, error=404),
])


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any]) -> dict[str, Any]:
    crm = client("cloudresourcemanager.v1")
    crm.projects().create(body={"projectId": PROJECT}).execute()
    # the regional secret's topic, publishable by the Secret Manager service agent (issue #20)
    number = crm.projects().get(projectId=PROJECT).execute()["projectNumber"]
    topics = client("pubsub.v1").projects().topics()
    topics.create(name=f"{P}/topics/rotations", body={}).execute()
    topics.setIamPolicy(resource=f"{P}/topics/rotations", body={"policy": {"bindings": [{
        "role": "roles/pubsub.publisher",
        "members": [f"serviceAccount:service-{number}@gcp-sa-secretmanager.iam.gserviceaccount.com"]}]}}).execute()
    return harness.run(client(DOC), FLOW, {})


def test_every_served_method_has_a_step() -> None:
    assert not FLOW.unflowed(harness.served_methods(DOC))


def test_flow(flowed: dict[str, Any]) -> None:
    assert flowed["called"] == [s.method for s in FLOW.steps]


@pytest.mark.parametrize("method_id", harness.body_methods(FLOW))
def test_every_defined_request_field_is_known(client: Callable[[str], Any], flowed: dict[str, Any],
                                              method_id: str) -> None:
    harness.probe_fields(client(DOC), FLOW, method_id, flowed, {"secretId": "fields-probe"})
