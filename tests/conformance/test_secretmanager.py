"""Secret Manager (secretmanager.googleapis.com v1) through Google's discovery-based client: every
served method called in a realistic order, each answer checked against its response schema
(issue #19)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import google_crc32c
import pytest

from tests.conformance import harness
from tests.conformance.harness import Flow, Step

DOC = "secretmanager.v1"
PROJECT = "conformance-secrets"
P = f"projects/{PROJECT}"
PAYLOAD = b"s3cr3t value"


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
])


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any]) -> dict[str, Any]:
    client("cloudresourcemanager.v1").projects().create(body={"projectId": PROJECT}).execute()
    return harness.run(client(DOC), FLOW, {})


def test_every_served_method_has_a_step() -> None:
    assert not FLOW.unflowed(harness.served_methods(DOC))


def test_flow(flowed: dict[str, Any]) -> None:
    assert flowed["called"] == [s.method for s in FLOW.steps]


@pytest.mark.parametrize("method_id", harness.body_methods(FLOW))
def test_every_defined_request_field_is_known(client: Callable[[str], Any], flowed: dict[str, Any],
                                              method_id: str) -> None:
    harness.probe_fields(client(DOC), FLOW, method_id, flowed, {"secretId": "fields-probe"})
