"""Cloud Resource Manager (v1 and v3) and Service Usage through Google's discovery-based client:
every served method called in a realistic order, each answer checked against its response schema
(issue #19)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import harness
from tests.conformance.harness import Flow, Step

V1, V3, SU = "cloudresourcemanager.v1", "cloudresourcemanager.v3", "serviceusage.v1"
PROJECT = "conformance-crm"
V3_PROJECT = "conformance-crm-v3"
CONSTRAINT = "constraints/iam.disableServiceAccountKeyCreation"
CAPABILITY = "conf-capability"


def done(ctx: dict[str, Any], answer: dict[str, Any]) -> None:
    assert answer.get("done") is True, answer


def has(field: str, value: Any) -> Callable[[dict[str, Any], Any], None]:
    def check(ctx: dict[str, Any], answer: Any) -> None:
        assert answer.get(field) == value, answer
    return check


FLOWS = [
    Flow(V1, [
        Step("cloudresourcemanager.projects.create", lambda c: {"body": {
            "projectId": PROJECT, "name": "Conformance", "labels": {"team": "conformance"},
            "projectNumber": "1", "lifecycleState": "DELETE_REQUESTED", "createTime": "2000-01-01T00:00:00Z"}},
             save="op", check=done),
        Step("cloudresourcemanager.operations.get", lambda c: {"name": c["op"]["name"]}, check=done),
        Step("cloudresourcemanager.projects.get", lambda c: {"projectId": PROJECT},
             present=["projectNumber", "projectId", "lifecycleState", "name", "createTime"],
             check=has("lifecycleState", "ACTIVE")),
        Step("cloudresourcemanager.projects.list", lambda c: {"filter": f"id:{PROJECT}", "pageSize": 10},
             check=lambda c, a: [p["projectId"] for p in a["projects"]] == [PROJECT] or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.getAncestry", lambda c: {"projectId": PROJECT, "body": {}},
             check=lambda c, a: a["ancestor"][0]["resourceId"] == {"type": "project", "id": PROJECT}
             or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.getIamPolicy", lambda c: {"resource": PROJECT, "body": {
            "options": {"requestedPolicyVersion": 3}}}, save="policy", present=["etag", "version"]),
        Step("cloudresourcemanager.projects.setIamPolicy", lambda c: {"resource": PROJECT, "body": {
            "policy": {**c["policy"], "bindings": [*c["policy"].get("bindings", []), {
                "role": "roles/viewer", "members": ["user:viewer@example.com"],
                "condition": {"title": "until 2030", "expression": "request.time < timestamp('2030-01-01T00:00:00Z')"}}],
                "version": 3}, "updateMask": "bindings,etag,version"}}, present=["etag", "bindings"]),
        Step("cloudresourcemanager.projects.testIamPermissions", lambda c: {"resource": PROJECT, "body": {
            "permissions": ["resourcemanager.projects.get", "iam.serviceAccounts.create"]}},
             check=lambda c, a: len(a["permissions"]) == 2 or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.setOrgPolicy", lambda c: {"resource": f"projects/{PROJECT}", "body": {
            "policy": {"constraint": CONSTRAINT, "booleanPolicy": {"enforced": True}}}},
             save="org_policy", present=["constraint", "etag"]),
        Step("cloudresourcemanager.projects.listOrgPolicies", lambda c: {"resource": f"projects/{PROJECT}", "body": {
            "pageSize": 10}}, check=lambda c, a: [p["constraint"] for p in a["policies"]] == [CONSTRAINT]
             or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.listAvailableOrgPolicyConstraints", lambda c: {
            "resource": f"projects/{PROJECT}", "body": {}},
             check=lambda c, a: CONSTRAINT in [k["name"] for k in a["constraints"]] or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.getOrgPolicy", lambda c: {"resource": f"projects/{PROJECT}", "body": {
            "constraint": CONSTRAINT}}, check=lambda c, a: a["booleanPolicy"]["enforced"] is True
             or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.getEffectiveOrgPolicy", lambda c: {"resource": f"projects/{PROJECT}",
                                                                              "body": {"constraint": CONSTRAINT}},
             present=["constraint"]),
        Step("cloudresourcemanager.projects.clearOrgPolicy", lambda c: {"resource": f"projects/{PROJECT}", "body": {
            "constraint": CONSTRAINT, "etag": c["org_policy"]["etag"]}}),
        Step("cloudresourcemanager.projects.update", lambda c: {"projectId": PROJECT, "body": {
            "projectId": PROJECT, "name": "Renamed", "labels": {"team": "platform"}, "lifecycleState": "ACTIVE",
            "parent": {"type": "organization", "id": "123456789"}}},
             present=["projectNumber", "projectId", "lifecycleState", "name"],
             check=lambda c, a: (a["name"], a["labels"], a["parent"]) == (
                 "Renamed", {"team": "platform"}, {"type": "organization", "id": "123456789"})
             or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.update", lambda c: {"projectId": PROJECT, "body": {
            "name": "Renamed", "parent": {"type": "folder", "id": "1"}}}, error=400),  # a move, not an update
        Step("cloudresourcemanager.projects.delete", lambda c: {"projectId": PROJECT}),
        Step("cloudresourcemanager.projects.update", lambda c: {"projectId": PROJECT, "body": {"name": "x"}},
             error=400),  # pending deletion: FAILED_PRECONDITION
        Step("cloudresourcemanager.projects.undelete", lambda c: {"projectId": PROJECT, "body": {}}),
        Step("cloudresourcemanager.projects.create", lambda c: {"body": {"projectId": PROJECT}}, error=409),
    ]),
    Flow(V3, [
        Step("cloudresourcemanager.projects.create", lambda c: {"body": {
            "projectId": V3_PROJECT, "displayName": "Conformance v3", "labels": {"team": "conformance"},
            "name": "projects/1", "state": "DELETE_REQUESTED", "etag": "x"}}, save="op", check=done),
        Step("cloudresourcemanager.operations.get", lambda c: {"name": c["op"]["name"]}, check=done),
        Step("cloudresourcemanager.projects.get", lambda c: {"name": f"projects/{V3_PROJECT}"},
             present=["name", "projectId", "state", "displayName", "createTime", "etag"], check=has("state", "ACTIVE")),
        Step("cloudresourcemanager.projects.list", lambda c: {"parent": "organizations/0", "showDeleted": False}),
        Step("cloudresourcemanager.projects.search", lambda c: {"query": f"id:{V3_PROJECT}", "pageSize": 5},
             check=lambda c, a: [p["projectId"] for p in a["projects"]] == [V3_PROJECT] or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.getIamPolicy", lambda c: {"resource": f"projects/{V3_PROJECT}",
                                                                      "body": {"options": {"requestedPolicyVersion": 1}}},
             save="policy", present=["etag"]),
        Step("cloudresourcemanager.projects.setIamPolicy", lambda c: {"resource": f"projects/{V3_PROJECT}", "body": {
            "policy": {**c["policy"], "bindings": [*c["policy"].get("bindings", []), {
                "role": "roles/viewer", "members": ["user:viewer@example.com"]}]}}}, present=["etag"]),
        Step("cloudresourcemanager.projects.testIamPermissions", lambda c: {"resource": f"projects/{V3_PROJECT}",
                                                                           "body": {"permissions": [
                                                                               "resourcemanager.projects.get"]}},
             check=lambda c, a: a["permissions"] == ["resourcemanager.projects.get"] or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.patch", lambda c: {"name": f"projects/{V3_PROJECT}",
                                                               "updateMask": "displayName",
                                                               "body": {"displayName": "Patched", "labels": {"x": "y"}}},
             check=lambda c, a: (a["done"], a["response"]["displayName"], a["response"]["labels"]) == (
                 True, "Patched", {"team": "conformance"}) or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.patch", lambda c: {"name": f"projects/{V3_PROJECT}",
                                                               "updateMask": "projectId",
                                                               "body": {"projectId": "other-id"}}, error=400),
        Step("cloudresourcemanager.projects.move", lambda c: {"name": f"projects/{V3_PROJECT}", "body": {
            "destinationParent": "folders/42"}},
             check=lambda c, a: a["response"]["parent"] == "folders/42" or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.move", lambda c: {"name": f"projects/{V3_PROJECT}", "body": {
            "destinationParent": "projects/elsewhere"}}, error=400),
        # projects.capabilityConfigs (issue #20): the project itself as its management project
        Step("cloudresourcemanager.projects.capabilityConfigs.create", lambda c: {
            "parent": f"projects/{V3_PROJECT}", "capabilityConfigId": CAPABILITY, "body": {
                "displayName": "App Hub Config", "types": ["APP_MANAGEMENT"],
                "boundaries": [f"projects/{V3_PROJECT}/boundaries/b1"], "managementProject": c["op"]["response"]["name"],
                "state": "STATE_UNSPECIFIED", "etag": "ignored"}},
             save="cc", check=lambda c, a: (a["done"], a["response"]["name"], a["response"]["state"],
                                            a["metadata"]["@type"].endswith("CreateCapabilityConfigMetadata")) == (
                 True, f"{c['op']['response']['name']}/capabilityConfigs/{CAPABILITY}", "ACTIVE", True)
             or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.capabilityConfigs.create", lambda c: {
            "parent": f"projects/{V3_PROJECT}", "capabilityConfigId": CAPABILITY, "body": {
                "types": ["APP_MANAGEMENT"], "managementProject": c["op"]["response"]["name"]}}, error=409),
        Step("cloudresourcemanager.projects.capabilityConfigs.create", lambda c: {
            "parent": f"projects/{V3_PROJECT}", "capabilityConfigId": "no-management",
            "body": {"types": ["APP_MANAGEMENT"]}}, error=400),  # Keyless makes no management project
        Step("cloudresourcemanager.projects.capabilityConfigs.create", lambda c: {
            "parent": f"projects/{V3_PROJECT}", "capabilityConfigId": "bad-display", "body": {
                "displayName": "ab", "types": ["APP_MANAGEMENT"], "managementProject": c["op"]["response"]["name"]}},
             error=400),
        Step("cloudresourcemanager.projects.capabilityConfigs.get", lambda c: {
            "name": f"projects/{V3_PROJECT}/capabilityConfigs/{CAPABILITY}"}, save="config",
             present=["name", "displayName", "types", "boundaries", "managementProject", "state", "createTime",
                      "updateTime", "etag"],
             check=lambda c, a: a == {k: v for k, v in c["cc"]["response"].items() if k != "@type"}
             or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.capabilityConfigs.list", lambda c: {
            "parent": f"projects/{V3_PROJECT}", "pageSize": 500},
             check=lambda c, a: [x["name"] for x in a["capabilityConfigs"]] == [c["config"]["name"]]
             or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.capabilityConfigs.patch", lambda c: {
            "name": f"projects/{V3_PROJECT}/capabilityConfigs/{CAPABILITY}", "updateMask": "displayName,types",
            "body": {"displayName": "Stale", "types": ["AGENT_MANAGEMENT"], "etag": "BwX/////////"}}, error=409),
        Step("cloudresourcemanager.projects.capabilityConfigs.patch", lambda c: {
            "name": f"projects/{V3_PROJECT}/capabilityConfigs/{CAPABILITY}", "updateMask": "display_name,types",
            "body": {"displayName": "Agents 'n' Apps!", "types": ["APP_MANAGEMENT", "AGENT_MANAGEMENT"],
                     "boundaries": [], "etag": c["config"]["etag"]}},
             check=lambda c, a: (a["response"]["displayName"], a["response"]["types"], a["response"]["boundaries"],
                                 a["response"]["etag"] != c["config"]["etag"]) == (
                 "Agents 'n' Apps!", ["APP_MANAGEMENT", "AGENT_MANAGEMENT"], [f"projects/{V3_PROJECT}/boundaries/b1"],
                 True) or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.capabilityConfigs.patch", lambda c: {
            "name": f"projects/{V3_PROJECT}/capabilityConfigs/{CAPABILITY}",
            "body": {"managementProject": "projects/999999"}}, error=400),  # immutable
        Step("cloudresourcemanager.projects.capabilityConfigs.delete", lambda c: {
            "name": f"projects/{V3_PROJECT}/capabilityConfigs/{CAPABILITY}"},
             check=lambda c, a: (a["done"], a["response"]["@type"]) == (True, "type.googleapis.com/google.protobuf.Empty")
             or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.capabilityConfigs.get", lambda c: {
            "name": f"projects/{V3_PROJECT}/capabilityConfigs/{CAPABILITY}"}, error=404),
        Step("cloudresourcemanager.projects.delete", lambda c: {"name": f"projects/{V3_PROJECT}"},
             check=lambda c, a: (a["response"]["state"] == "DELETE_REQUESTED" and "deleteTime" in a["response"])
             or pytest.fail(str(a))),
        Step("cloudresourcemanager.projects.get", lambda c: {"name": f"projects/{V3_PROJECT}"},
             check=has("state", "DELETE_REQUESTED")),
        Step("cloudresourcemanager.projects.delete", lambda c: {"name": f"projects/{V3_PROJECT}"}, error=400),
        Step("cloudresourcemanager.projects.undelete", lambda c: {"name": f"projects/{V3_PROJECT}", "body": {}},
             check=lambda c, a: (a["response"]["state"] == "ACTIVE" and "deleteTime" not in a["response"])
             or pytest.fail(str(a))),
    ]),
    Flow(SU, [
        Step("serviceusage.services.enable", lambda c: {"name": f"projects/{PROJECT}/services/iam.googleapis.com",
                                                        "body": {}}, save="op", check=done),
        Step("serviceusage.operations.get", lambda c: {"name": c["op"]["name"]}, check=done),
    ]),
]


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any]) -> dict[str, dict[str, Any]]:
    return {flow.document: harness.run(client(flow.document), flow, {}) for flow in FLOWS}


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.document)
def test_every_served_method_has_a_step(flow: Flow) -> None:
    assert not flow.unflowed(harness.served_methods(flow.document))


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.document)
def test_flow(flowed: dict[str, dict[str, Any]], flow: Flow) -> None:
    assert flowed[flow.document]["called"] == [s.method for s in flow.steps]


@pytest.mark.parametrize("flow, method_id", [(f, m) for f in FLOWS for m in harness.body_methods(f)],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_defined_request_field_is_known(client: Callable[[str], Any], flowed: dict[str, dict[str, Any]],
                                              flow: Flow, method_id: str) -> None:
    harness.probe_fields(client(flow.document), flow, method_id, flowed[flow.document])


def test_a_project_deleted_30_days_ago_is_gone(module_server: Any) -> None:
    """Undeletable for 30 days (issue #20), then gone: not found to its owner, not listed, not restored,
    and its id stays taken."""
    from datetime import UTC, datetime, timedelta

    from keyless.store.models import Project
    from tests.api.helpers import server_state

    srv = module_server
    assert srv.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": "purged-project"}).status_code == 200
    assert srv.call("DELETE", "/cloudresourcemanager/v3/projects/purged-project").status_code == 200
    with server_state(srv).db.write() as s:  # 31 days pass
        row = s.get(Project, "purged-project")
        assert row is not None and row.lifecycle_state == "DELETE_REQUESTED"
        row.settings = {**row.settings, "deleteTime": (datetime.now(UTC) - timedelta(days=31)).isoformat()}
    assert srv.call("GET", "/cloudresourcemanager/v3/projects/purged-project").status_code == 403
    assert srv.call("POST", "/cloudresourcemanager/v3/projects/purged-project:undelete", body={}).status_code == 403
    listed = srv.call("GET", "/cloudresourcemanager/v1/projects").json()["projects"]
    assert "purged-project" not in [p["projectId"] for p in listed]
    again = srv.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": "purged-project"})
    assert again.status_code == 409, again.text
