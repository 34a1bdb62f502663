"""Resource Manager v3 projects.capabilityConfigs (issue #20): IAM on the parent project (the
sibling Capability resource's permissions, keyless.api.resourcemanager.rest says why), the
management project the caller must be able to see, the Admin Activity entries, etags, and bad input
refused with Google's error shape and nothing stored."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.api.helpers import token_for_user
from tests.conftest import KeylessServer

PROJECT = "capability-project"
HIDDEN = "capability-hidden"
V3 = "/cloudresourcemanager/v3/projects"
CONFIGS = f"{V3}/{PROJECT}/capabilityConfigs"
VIEWER, EDITOR = "viewer@example.com", "editor@example.com"


def ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    srv = module_server
    for project in (PROJECT, HIDDEN):
        ok(srv.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": project}))
    policy = ok(srv.call("POST", f"{V3}/{PROJECT}:getIamPolicy", body={}))
    policy.setdefault("bindings", []).extend([{"role": "roles/viewer", "members": [f"user:{VIEWER}"]},
                                              {"role": "roles/editor", "members": [f"user:{EDITOR}"]}])
    ok(srv.call("POST", f"{V3}/{PROJECT}:setIamPolicy", body={"policy": policy}))
    return srv


def number(srv: KeylessServer, project: str) -> str:
    return str(ok(srv.call("GET", f"{V3}/{project}"))["name"])


def create(srv: KeylessServer, config_id: str, token: str | None = None, **body: Any) -> Any:
    body = {"types": ["APP_MANAGEMENT"], "managementProject": number(srv, PROJECT), **body}
    return srv.call("POST", CONFIGS, token=token, params={"capabilityConfigId": config_id}, body=body)


def test_roles_decide_who_reads_and_who_writes(srv: KeylessServer) -> None:
    viewer, editor = token_for_user(srv, VIEWER), token_for_user(srv, EDITOR)
    stranger = token_for_user(srv, "stranger@example.com")
    denied = create(srv, "by-viewer", viewer)
    assert denied.status_code == 403 and "resourcemanager.capabilities.update" in denied.json()["error"]["message"]
    op = ok(create(srv, "by-editor", editor, displayName="Editor's Config"))
    name = op["response"]["name"]
    assert name == f"{number(srv, PROJECT)}/capabilityConfigs/by-editor"
    assert ok(srv.call("GET", f"{CONFIGS}/by-editor", token=viewer))["displayName"] == "Editor's Config"
    assert [c["name"] for c in ok(srv.call("GET", CONFIGS, token=viewer))["capabilityConfigs"]] == [name]
    assert srv.call("DELETE", f"{CONFIGS}/by-editor", token=viewer).status_code == 403
    for method, path in (("GET", f"{CONFIGS}/by-editor"), ("GET", CONFIGS), ("DELETE", f"{CONFIGS}/by-editor")):
        assert srv.call(method, path, token=stranger).status_code == 403
    # an unknown project is denied, never confirmed missing
    assert srv.call("GET", f"{V3}/no-such-project-x/capabilityConfigs", token=stranger).status_code == 403
    assert ok(srv.call("DELETE", f"{CONFIGS}/by-editor", token=editor))["done"] is True
    assert srv.call("GET", f"{CONFIGS}/by-editor").status_code == 404


def test_management_project_must_be_visible_to_the_caller(srv: KeylessServer) -> None:
    """The editor of PROJECT names HIDDEN (which it may not see) as the management project: without
    the check it would link a project it cannot read and learn that its number exists."""
    editor = token_for_user(srv, EDITOR)
    messages = []
    for management in (number(srv, HIDDEN), "projects/987654321987"):  # hidden, and missing: the same answer
        r = create(srv, "linked-hidden", editor, managementProject=management)
        assert r.status_code == 403, r.text
        messages.append(r.json()["error"]["message"].replace(management.split("/")[1], "N"))
    assert messages[0] == messages[1] and "resourcemanager.projects.get" in messages[0], messages
    assert srv.call("GET", f"{CONFIGS}/linked-hidden").status_code == 404
    assert ok(create(srv, "linked-hidden", managementProject=number(srv, HIDDEN)))["done"]  # the owner sees both


def test_etag_guards_patch_and_delete(srv: KeylessServer) -> None:
    config = ok(create(srv, "etag-guarded"))["response"]
    stale = srv.call("PATCH", f"{CONFIGS}/etag-guarded", params={"updateMask": "displayName"},
                     body={"displayName": "Too late", "etag": "BwX/////////"})
    assert stale.status_code == 409 and stale.json()["error"]["status"] == "ABORTED"
    patched = ok(srv.call("PATCH", f"{CONFIGS}/etag-guarded", params={"updateMask": "displayName"},
                          body={"displayName": "In time", "etag": config["etag"]}))["response"]
    assert patched["displayName"] == "In time" and patched["etag"] != config["etag"]
    assert srv.call("DELETE", f"{CONFIGS}/etag-guarded", params={"etag": config["etag"]}).status_code == 409
    assert ok(srv.call("GET", f"{CONFIGS}/etag-guarded"))["displayName"] == "In time"
    assert ok(srv.call("DELETE", f"{CONFIGS}/etag-guarded", params={"etag": patched["etag"]}))["done"] is True


def test_admin_activity_entries(srv: KeylessServer) -> None:
    ok(create(srv, "audited-config"))
    ok(srv.call("PATCH", f"{CONFIGS}/audited-config", body={"types": ["AGENT_MANAGEMENT"]}))
    ok(srv.call("DELETE", f"{CONFIGS}/audited-config"))
    body = {"resourceNames": [f"projects/{PROJECT}"], "orderBy": "timestamp asc",
            "filter": 'protoPayload.methodName:"CapabilityConfig" AND '
                      'protoPayload.resourceName:"capabilityConfigs/audited-config"'}
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(found) < 3:
        found = ok(srv.call("POST", "/logging/v2/entries:list", body=body)).get("entries", [])
        time.sleep(0.1)
    assert [e["protoPayload"]["methodName"] for e in found] == [
        "CreateCapabilityConfig", "UpdateCapabilityConfig", "DeleteCapabilityConfig"], found
    assert all(e["logName"].endswith("cloudaudit.googleapis.com%2Factivity") for e in found)
    assert found[0]["protoPayload"]["resourceName"] == f"{number(srv, PROJECT)}/capabilityConfigs/audited-config"
    assert found[0]["protoPayload"]["authorizationInfo"][0]["permission"] == "resourcemanager.capabilities.update"


@pytest.mark.parametrize(("config_id", "body", "status"), [
    ("short", {}, 400),  # 5 characters
    ("x" * 31, {}, 400),
    ("9starts-with-digit", {}, 400),
    ("trailing-hyphen-", {}, 400),
    ("Upper-Case-Id", {}, 400),
    ("good-config-id", {"displayName": "abc"}, 400),  # under 4 characters
    ("good-config-id", {"displayName": "x" * 31}, 400),
    ("good-config-id", {"displayName": "semi;colon"}, 400),
    ("good-config-id", {"types": []}, 400),
    ("good-config-id", {"types": ["TYPE_UNSPECIFIED"]}, 400),
    ("good-config-id", {"types": ["APP_MANAGEMENT", "APP_MANAGEMENT"]}, 400),
    ("good-config-id", {"types": "APP_MANAGEMENT"}, 400),
    ("good-config-id", {"boundaries": ["projects/p/boundary/b"]}, 400),
    ("good-config-id", {"boundaries": [f"projects/p/boundaries/b{i}" for i in range(101)]}, 400),
    ("good-config-id", {"managementProject": "projects/my-project-id"}, 400),  # a number, not an id
    ("good-config-id", {"managementProject": None}, 400),  # Keyless creates no management project
    ("good-config-id", {"secret": "x"}, 400),
])
def test_bad_create_gets_google_s_error_and_stores_nothing(srv: KeylessServer, config_id: str, body: dict[str, Any],
                                                           status: int) -> None:
    r = create(srv, config_id, **body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == status and r.json()["error"]["message"]
    listed = ok(srv.call("GET", CONFIGS)).get("capabilityConfigs", [])
    assert not [c for c in listed if c["name"].endswith(("/good-config-id", f"/{config_id}"))]


@pytest.mark.parametrize(("params", "body"), [
    ({"updateMask": "managementProject"}, {"managementProject": "projects/1"}),
    ({"updateMask": "state"}, {"state": "ACTIVE"}),
    ({}, {"name": "projects/1/capabilityConfigs/another"}),
    ({}, {"types": ["NOPE"]}),
    ({}, {"displayName": "<script>"}),
])
def test_bad_patch_changes_nothing(srv: KeylessServer, params: dict[str, str], body: dict[str, Any]) -> None:
    if srv.call("GET", f"{CONFIGS}/patch-target").status_code == 404:
        ok(create(srv, "patch-target", displayName="Before"))
    before = ok(srv.call("GET", f"{CONFIGS}/patch-target"))
    r = srv.call("PATCH", f"{CONFIGS}/patch-target", params=params, body=body)
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT", r.text
    assert ok(srv.call("GET", f"{CONFIGS}/patch-target")) == before


def test_list_pages_at_most_100(srv: KeylessServer) -> None:
    for i in range(3):
        ok(create(srv, f"paged-config-{i}"))
    first = ok(srv.call("GET", CONFIGS, params={"pageSize": "2"}))
    assert len(first["capabilityConfigs"]) == 2 and first["nextPageToken"]
    rest = ok(srv.call("GET", CONFIGS, params={"pageSize": "1000", "pageToken": first["nextPageToken"]}))
    names = [c["name"] for c in first["capabilityConfigs"] + rest["capabilityConfigs"]]
    assert names == sorted(names) and len(set(names)) == len(names) >= 3


def test_reads_write_data_access_entries_when_asked(srv: KeylessServer) -> None:
    from tests.api.helpers import audit_data_access

    ok(create(srv, "read-audited"))
    viewer = token_for_user(srv, VIEWER)
    audit_data_access(srv, PROJECT, {"cloudresourcemanager.googleapis.com": ["ADMIN_READ"]})
    ok(srv.call("GET", f"{CONFIGS}/read-audited", token=viewer))
    ok(srv.call("GET", CONFIGS, token=viewer))
    body = {"resourceNames": [f"projects/{PROJECT}"], "orderBy": "timestamp asc",
            "filter": f'logName="projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Fdata_access" AND '
                      f'protoPayload.authenticationInfo.principalEmail="{VIEWER}"'}
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(found) < 2:
        found = ok(srv.call("POST", "/logging/v2/entries:list", body=body)).get("entries", [])
        time.sleep(0.1)
    assert [e["protoPayload"]["methodName"] for e in found] == ["GetCapabilityConfig", "ListCapabilityConfigs"]
    assert found[0]["protoPayload"]["authorizationInfo"][0]["permission"] == "resourcemanager.capabilities.get"
