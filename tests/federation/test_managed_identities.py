"""Managed Workload Identity (issue #20) over HTTP, as an attacker and an auditor see it: who may
change namespaces, managed identities and attestation rules, what the pool's mode allows, that
nothing reaches another project's pool, that oversized input is refused without being stored,
and the Admin Activity / Data Access entries Google writes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from keyless.federation import managed_identities as mwi
from keyless.store.models import (
    AuditEntry,
    WorkloadIdentityPool,
    WorkloadIdentityPoolManagedIdentity,
    WorkloadIdentityPoolNamespace,
)
from tests.api.helpers import audit_data_access, server_state, token_for_user
from tests.conftest import KeylessServer

OWN, OTHER = "mwi-own", "mwi-other"
V1 = "/iam/v1/projects"
WIF = "google.iam.v1.WorkloadIdentityPools."
RULE = "//compute.googleapis.com/projects/123/type/Instance/attached_service_account.email/vm@p.iam.gserviceaccount.com"


def pools(project: str) -> str:
    return f"{V1}/{project}/locations/global/workloadIdentityPools"


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["status"] == code, body
    return str(body["error"]["message"])


def grant(srv: KeylessServer, project: str, role: str, member: str) -> None:
    path = f"/cloudresourcemanager/v1/projects/{project}"
    policy = ok(srv.call("POST", path + ":getIamPolicy", body={}))
    policy.setdefault("bindings", []).append({"role": role, "members": [member]})
    ok(srv.call("POST", path + ":setIamPolicy", body={"policy": policy}))


def entries(srv: KeylessServer, method: str) -> list[dict[str, Any]]:
    with server_state(srv).db.read() as s:
        return [r.entry for r in s.scalars(select(AuditEntry).where(AuditEntry.method_name == method)
                                           .order_by(AuditEntry.id)).all()]


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    for project in (OWN, OTHER):
        ok(module_server.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": project}))
        ok(module_server.call("POST", f"{pools(project)}?workloadIdentityPoolId=td-pool",
                              body={"mode": "TRUST_DOMAIN"}))
        ok(module_server.call("POST", f"{pools(project)}/td-pool/namespaces?workloadIdentityPoolNamespaceId=ns",
                              body={}))
        ok(module_server.call("POST", f"{pools(project)}/td-pool/namespaces/ns/managedIdentities"
                                      "?workloadIdentityPoolManagedIdentityId=mi", body={}))
    ok(module_server.call("POST", f"{pools(OWN)}?workloadIdentityPoolId=fed-pool", body={}))
    grant(module_server, OWN, "roles/iam.workloadIdentityPoolViewer", "user:viewer@example.com")
    grant(module_server, OWN, "roles/iam.workloadIdentityPoolAdmin", "user:admin@example.com")
    return module_server


def test_a_viewer_reads_but_cannot_change_anything(srv: KeylessServer) -> None:
    viewer = token_for_user(srv, "viewer@example.com")
    ns, mi = f"{pools(OWN)}/td-pool/namespaces/ns", f"{pools(OWN)}/td-pool/namespaces/ns/managedIdentities/mi"
    assert ok(srv.call("GET", ns, token=viewer))["state"] == "ACTIVE"
    assert ok(srv.call("GET", f"{ns}/managedIdentities", token=viewer))["workloadIdentityPoolManagedIdentities"]
    assert ok(srv.call("GET", f"{mi}:listAttestationRules", token=viewer)) == {}
    refusals = [
        ("POST", f"{pools(OWN)}/td-pool/namespaces?workloadIdentityPoolNamespaceId=viewer-ns", {},
         "iam.workloadIdentityPoolNamespaces.create"),
        ("PATCH", f"{ns}?updateMask=description", {"description": "x"}, "iam.workloadIdentityPoolNamespaces.update"),
        ("DELETE", ns, None, "iam.workloadIdentityPoolNamespaces.delete"),
        ("POST", f"{ns}/managedIdentities?workloadIdentityPoolManagedIdentityId=viewer-mi", {},
         "iam.workloadIdentityPoolManagedIdentities.create"),
        ("DELETE", mi, None, "iam.workloadIdentityPoolManagedIdentities.delete"),
        ("POST", f"{mi}:addAttestationRule", {"attestationRule": {"googleCloudResource": RULE}},
         "iam.workloadIdentityPoolManagedIdentities.setAttestationRules"),
        ("POST", f"{mi}:setAttestationRules", {"attestationRules": []},
         "iam.workloadIdentityPoolManagedIdentities.setAttestationRules"),
        ("POST", f"{pools(OWN)}/td-pool:addAttestationRule", {"attestationRule": {"googleCloudResource": RULE}},
         "iam.workloadIdentityPools.setAttestationRules"),
    ]
    for method, path, body, permission in refusals:
        assert permission in error(srv.call(method, path, body=body, token=viewer), 403, "PERMISSION_DENIED")
    # nothing the viewer tried exists
    assert ok(srv.call("GET", f"{pools(OWN)}/td-pool/namespaces", params={"showDeleted": "true"})) \
        ["workloadIdentityPoolNamespaces"][0]["name"].endswith("/namespaces/ns")
    assert ok(srv.call("GET", mi))["state"] == "ACTIVE"
    # the admin of the project may, and only on its own project
    admin = token_for_user(srv, "admin@example.com")
    ok(srv.call("POST", f"{mi}:addAttestationRule", body={"attestationRule": {"googleCloudResource": RULE}},
                token=admin))
    other_mi = f"{pools(OTHER)}/td-pool/namespaces/ns/managedIdentities/mi"
    error(srv.call("POST", f"{other_mi}:addAttestationRule", token=admin,
                   body={"attestationRule": {"googleCloudResource": RULE}}), 403, "PERMISSION_DENIED")
    error(srv.call("GET", f"{other_mi}:listAttestationRules", token=viewer), 403, "PERMISSION_DENIED")


def test_another_projects_pool_cannot_be_reached_through_the_path(srv: KeylessServer) -> None:
    """The pool is named by the path's project: project OWN's admin names OTHER's pool under OWN's
    path, or smuggles segments into an id, and finds nothing of OTHER's."""
    admin = token_for_user(srv, "admin@example.com")
    other_number = ok(srv.call("GET", f"/cloudresourcemanager/v1/projects/{OTHER}"))["projectNumber"]
    ok(srv.call("DELETE", f"{pools(OTHER)}/td-pool/namespaces/ns/managedIdentities/mi"))
    ok(srv.call("POST", f"{pools(OTHER)}/td-pool/namespaces?workloadIdentityPoolNamespaceId=other-only", body={}))
    tricks = [
        f"{pools(OWN)}/td-pool/namespaces/other-only",
        f"{pools(OWN)}/td-pool/namespaces/..%2F..%2F..%2F..%2F{other_number}%2Flocations%2Fglobal%2F"
        "workloadIdentityPools%2Ftd-pool%2Fnamespaces%2Fother-only",
        f"{pools(OWN)}/td-pool%2F..%2F..%2F..%2F{OTHER}/namespaces/other-only",
    ]
    for path in tricks:
        r = srv.call("GET", path, token=admin)
        assert r.status_code == 404, (path, r.text)
    r = srv.call("POST", f"{pools(OWN)}/td-pool/namespaces/other-only:undelete", body={}, token=admin)
    assert r.status_code == 404, r.text
    # OTHER's deleted managed identity stays deleted: OWN's admin cannot undelete it by any path
    r = srv.call("POST", f"{pools(OTHER)}/td-pool/namespaces/ns/managedIdentities/mi:undelete", body={}, token=admin)
    error(r, 403, "PERMISSION_DENIED")
    assert ok(srv.call("GET", f"{pools(OTHER)}/td-pool/namespaces/ns/managedIdentities/mi"))["state"] == "DELETED"


def test_the_pools_mode_decides_what_it_holds(srv: KeylessServer) -> None:
    fed = f"{pools(OWN)}/fed-pool"
    assert "TRUST_DOMAIN" in error(srv.call("POST", f"{fed}/namespaces?workloadIdentityPoolNamespaceId=ns",
                                            body={}), 400, "FAILED_PRECONDITION")
    error(srv.call("POST", f"{fed}:addAttestationRule", body={"attestationRule": {"googleCloudResource": RULE}}),
          400, "FAILED_PRECONDITION")
    error(srv.call("POST", f"{pools(OWN)}?workloadIdentityPoolId=system-pool", body={"mode": "SYSTEM_TRUST_DOMAIN"}),
          400, "INVALID_ARGUMENT")
    error(srv.call("PATCH", f"{pools(OWN)}/td-pool?updateMask=mode", body={"mode": "FEDERATION_ONLY"}),
          400, "INVALID_ARGUMENT")
    assert ok(srv.call("GET", f"{pools(OWN)}/td-pool"))["mode"] == "TRUST_DOMAIN"
    error(srv.call("POST", f"{pools(OWN)}/td-pool/providers?workloadIdentityPoolProviderId=oidc", body={
        "oidc": {"issuerUri": "https://issuer.example.com"}, "attributeMapping": {"google.subject": "assertion.sub"}}),
          400, "FAILED_PRECONDITION")


def test_ids_soft_delete_and_reuse(srv: KeylessServer) -> None:
    base = f"{pools(OWN)}/td-pool/namespaces"
    for bad in ("a", "gcp-ns", "-ns", "ns-", "Ns", "n_s", "n" * 64):
        error(srv.call("POST", f"{base}?workloadIdentityPoolNamespaceId={bad}", body={}), 400, "INVALID_ARGUMENT")
    ok(srv.call("POST", f"{base}?workloadIdentityPoolNamespaceId=n2", body={}))
    ok(srv.call("POST", f"{base}?workloadIdentityPoolNamespaceId={'n' * 63}", body={}))
    ok(srv.call("POST", f"{base}/n2/managedIdentities?workloadIdentityPoolManagedIdentityId=m2", body={}))
    deleted = ok(srv.call("DELETE", f"{base}/n2"))["response"]
    assert deleted["state"] == "DELETED" and deleted["expireTime"]
    # a deleted namespace's id is not reusable, takes no identities, and hides from list
    error(srv.call("POST", f"{base}?workloadIdentityPoolNamespaceId=n2", body={}), 409, "ALREADY_EXISTS")
    error(srv.call("POST", f"{base}/n2/managedIdentities?workloadIdentityPoolManagedIdentityId=m3", body={}),
          400, "FAILED_PRECONDITION")
    assert f"{base}/n2".split("/projects/")[1] not in str(ok(srv.call("GET", base)))
    error(srv.call("PATCH", f"{base}/n2?updateMask=description", body={"description": "x"}), 400,
          "FAILED_PRECONDITION")
    ok(srv.call("POST", f"{base}/n2:undelete", body={}))
    error(srv.call("POST", f"{base}/n2:undelete", body={}), 400, "FAILED_PRECONDITION")
    # the update mask names only what may change
    error(srv.call("PATCH", f"{base}/n2?updateMask=name", body={"name": "x"}), 400, "INVALID_ARGUMENT")
    assert ok(srv.call("PATCH", f"{base}/n2?updateMask=disabled", body={"disabled": True}))["response"]["disabled"]


def test_oversized_and_malformed_input_is_refused_and_nothing_is_stored(srv: KeylessServer) -> None:
    mi = f"{pools(OWN)}/td-pool/namespaces/ns/managedIdentities/mi"
    ok(srv.call("POST", f"{mi}:setAttestationRules", body={"attestationRules": [{"googleCloudResource": RULE}]}))
    rule = "//compute.googleapis.com/projects/1/uid/zones/z/instances/"
    cases: list[tuple[str, Any]] = [
        (":setAttestationRules", {"attestationRules": [{"googleCloudResource": f"{rule}{i}"} for i in range(51)]}),
        (":setAttestationRules", {"attestationRules": [{"googleCloudResource": f"{rule}1"}] * 2}),
        (":setAttestationRules", {"attestationRules": "nope"}),
        (":addAttestationRule", {"attestationRule": {"googleCloudResource": rule + "1" * 600}}),
        (":addAttestationRule", {"attestationRule": {"googleCloudResource": "//compute.googleapis.com/projects/1/"
                                                                           "uid/zones/z/instances/../../x"}}),
        (":addAttestationRule", {"attestationRule": {"googleCloudResource": "https://compute.googleapis.com/x"}}),
        (":addAttestationRule", {"attestationRule": {"googleCloudResource": 7}}),
        (":addAttestationRule", {"attestationRule": {"googleCloudResource": RULE, "extra": 1}}),
        (":addAttestationRule", {}),
    ]
    for suffix, body in cases:
        error(srv.call("POST", mi + suffix, body=body), 400, "INVALID_ARGUMENT")
    error(srv.call("GET", f"{mi}:listAttestationRules", params={"filter": "container_ids(" + "x" * 3000 + ")"}),
          400, "INVALID_ARGUMENT")
    error(srv.call("GET", f"{mi}:listAttestationRules", params={"filter": "container_ids(projects/abc)"}),
          400, "INVALID_ARGUMENT")
    error(srv.call("PATCH", f"{mi}?updateMask=description", body={"description": "d" * 257}), 400, "INVALID_ARGUMENT")
    error(srv.call("POST", f"{pools(OWN)}/td-pool/namespaces/ns/managedIdentities"
                           f"?workloadIdentityPoolManagedIdentityId={'m' * 5000}", body={}), 400, "INVALID_ARGUMENT")
    r = srv.call("POST", f"{mi}:setAttestationRules", raw=b'{"attestationRules":[' + b'{},' * 4_000_000 + b"{}]}")
    assert 400 <= r.status_code < 500, r.status_code
    with server_state(srv).db.read() as s:
        row = s.get(WorkloadIdentityPoolManagedIdentity, ok(srv.call("GET", mi))["name"])
        assert row is not None and row.attestation_rules == [RULE] and row.description == ""
    # 50 rules are Google's limit: the 51st is refused by add too
    ok(srv.call("POST", f"{mi}:setAttestationRules",
                body={"attestationRules": [{"googleCloudResource": f"{rule}{i}"} for i in range(50)]}))
    error(srv.call("POST", f"{mi}:addAttestationRule", body={"attestationRule": {"googleCloudResource": RULE}}),
          400, "FAILED_PRECONDITION")
    page = ok(srv.call("GET", f"{mi}:listAttestationRules"))  # 50 by default, at most 100 a page
    assert len(page["attestationRules"]) == 50 and "nextPageToken" not in page
    page = ok(srv.call("GET", f"{mi}:listAttestationRules", params={"pageSize": 30}))
    rest = ok(srv.call("GET", f"{mi}:listAttestationRules", params={"pageToken": page["nextPageToken"]}))
    assert len(page["attestationRules"]) + len(rest["attestationRules"]) == 50


def test_admin_activity_and_data_access_entries(srv: KeylessServer) -> None:
    ns = f"{pools(OWN)}/td-pool/namespaces/audited"
    ok(srv.call("POST", f"{pools(OWN)}/td-pool/namespaces?workloadIdentityPoolNamespaceId=audited", body={}))
    ok(srv.call("POST", f"{ns}/managedIdentities?workloadIdentityPoolManagedIdentityId=mi", body={}))
    ok(srv.call("POST", f"{ns}/managedIdentities/mi:addAttestationRule",
                body={"attestationRule": {"googleCloudResource": RULE}}))
    number = ok(srv.call("GET", f"/cloudresourcemanager/v1/projects/{OWN}"))["projectNumber"]
    name = f"projects/{number}/locations/global/workloadIdentityPools/td-pool/namespaces/audited"
    created = [e for e in entries(srv, WIF + "CreateWorkloadIdentityPoolNamespace")
               if e["protoPayload"]["resourceName"] == name]
    assert len(created) == 1 and created[0]["logName"].endswith("cloudaudit.googleapis.com%2Factivity")
    assert created[0]["protoPayload"]["authorizationInfo"][0]["permission"] == \
        "iam.workloadIdentityPoolNamespaces.create"
    added = [e for e in entries(srv, WIF + "AddAttestationRule")
             if e["protoPayload"]["resourceName"] == f"{name}/managedIdentities/mi"]
    assert len(added) == 1
    # reads are ADMIN_READ: written only once the project's auditConfigs ask for them
    method = WIF + "GetWorkloadIdentityPoolNamespace"
    ok(srv.call("GET", ns))
    server_state(srv).audit.flush()
    assert entries(srv, method) == []
    audit_data_access(srv, OWN, {"iam.googleapis.com": ["ADMIN_READ"]})
    ok(srv.call("GET", ns))
    deadline = time.monotonic() + 10
    while not entries(srv, method) and time.monotonic() < deadline:
        server_state(srv).audit.flush()
        time.sleep(0.1)
    found = entries(srv, method)
    assert [e["protoPayload"]["resourceName"] for e in found] == [name]
    assert found[0]["logName"] == f"projects/{OWN}/logs/cloudaudit.googleapis.com%2Fdata_access"


def expire(srv: KeylessServer, model: Any, name: str) -> None:
    """Move a soft-deleted resource's purge time into the past, as 30 days would."""
    with server_state(srv).db.write() as s:
        row = s.get(model, name)
        assert row is not None and row.state == "DELETED"
        row.expire_time = datetime.now(UTC) - timedelta(seconds=1)


def test_a_purged_pool_or_namespace_comes_back_empty(srv: KeylessServer) -> None:
    """A pool created again under a purged pool's id holds none of the purged pool's providers,
    keys, namespaces or identities (an old provider would otherwise accept tokens into it)."""
    number = ok(srv.call("GET", f"/cloudresourcemanager/v1/projects/{OWN}"))["projectNumber"]
    td, fed = f"{pools(OWN)}/reborn-td", f"{pools(OWN)}/reborn-fed"
    ok(srv.call("POST", f"{pools(OWN)}?workloadIdentityPoolId=reborn-td", body={"mode": "TRUST_DOMAIN"}))
    ok(srv.call("POST", f"{td}/namespaces?workloadIdentityPoolNamespaceId=ns", body={}))
    ok(srv.call("POST", f"{td}/namespaces/ns/managedIdentities?workloadIdentityPoolManagedIdentityId=mi", body={}))
    ok(srv.call("POST", f"{pools(OWN)}?workloadIdentityPoolId=reborn-fed", body={}))
    ok(srv.call("POST", f"{fed}/providers?workloadIdentityPoolProviderId=old-provider", body={
        "oidc": {"issuerUri": "https://issuer.example.com"}, "attributeMapping": {"google.subject": "assertion.sub"}}))
    ok(srv.call("POST", f"{fed}/providers/old-provider/keys?workloadIdentityPoolProviderKeyId=old-key",
                body={"use": "ENCRYPTION", "keyData": {"keySpec": "RSA_2048"}}))
    # a namespace purged and created again has no identities
    ok(srv.call("DELETE", f"{td}/namespaces/ns"))
    prefix = f"projects/{number}/locations/global/workloadIdentityPools"
    expire(srv, WorkloadIdentityPoolNamespace, f"{prefix}/reborn-td/namespaces/ns")
    error(srv.call("GET", f"{td}/namespaces/ns"), 404, "NOT_FOUND")
    ok(srv.call("POST", f"{td}/namespaces?workloadIdentityPoolNamespaceId=ns", body={}))
    assert ok(srv.call("GET", f"{td}/namespaces/ns/managedIdentities", params={"showDeleted": "true"})) == {}
    ok(srv.call("POST", f"{td}/namespaces/ns/managedIdentities?workloadIdentityPoolManagedIdentityId=mi", body={}))
    for pool, pool_id, mode in ((td, "reborn-td", "TRUST_DOMAIN"), (fed, "reborn-fed", "FEDERATION_ONLY")):
        ok(srv.call("DELETE", pool))
        expire(srv, WorkloadIdentityPool, f"{prefix}/{pool_id}")
        ok(srv.call("POST", f"{pools(OWN)}?workloadIdentityPoolId={pool_id}", body={"mode": mode}))
    assert ok(srv.call("GET", f"{td}/namespaces", params={"showDeleted": "true"})) == {}
    error(srv.call("GET", f"{td}/namespaces/ns/managedIdentities/mi"), 404, "NOT_FOUND")
    assert ok(srv.call("GET", f"{fed}/providers", params={"showDeleted": "true"})) == {}
    ok(srv.call("POST", f"{fed}/providers?workloadIdentityPoolProviderId=old-provider", body={
        "oidc": {"issuerUri": "https://issuer.example.com"}, "attributeMapping": {"google.subject": "assertion.sub"}}))
    assert ok(srv.call("GET", f"{fed}/providers/old-provider/keys", params={"showDeleted": "true"})) == {}


def test_a_deleted_namespace_freezes_its_identities_rules(srv: KeylessServer) -> None:
    ns = f"{pools(OWN)}/td-pool/namespaces/frozen"
    ok(srv.call("POST", f"{pools(OWN)}/td-pool/namespaces?workloadIdentityPoolNamespaceId=frozen", body={}))
    ok(srv.call("POST", f"{ns}/managedIdentities?workloadIdentityPoolManagedIdentityId=mi", body={}))
    ok(srv.call("DELETE", ns))
    error(srv.call("POST", f"{ns}/managedIdentities/mi:addAttestationRule",
                   body={"attestationRule": {"googleCloudResource": RULE}}), 400, "FAILED_PRECONDITION")
    error(srv.call("POST", f"{ns}/managedIdentities/mi:setAttestationRules", body={"attestationRules": []}),
          400, "FAILED_PRECONDITION")
    assert ok(srv.call("GET", f"{ns}/managedIdentities/mi:listAttestationRules")) == {}


@pytest.mark.store_independent
def test_attestation_rule_forms() -> None:
    for good in ("//compute.googleapis.com/projects/123/uid/zones/us-central1-a/instances/12345",
                 "//compute.googleapis.com/projects/123/type/Instance/attached_service_account.uid/12345", RULE):
        assert mwi.check_rule({"googleCloudResource": good}, compute_only=True) == good
    run = "//run.googleapis.com/projects/123/type/Service/*"
    assert mwi.check_rule({"googleCloudResource": run}, compute_only=False) == run
    for bad in (run, "//compute.googleapis.com/projects/123/type/Instance/anything/1",
                "//compute.googleapis.com/projects/abc/uid/zones/z/instances/1",
                "//compute.googleapis.com/projects/123/uid/zones/z/instances/1/", "compute.googleapis.com/projects/1"):
        with pytest.raises(mwi.InvalidArgument):
            mwi.check_rule({"googleCloudResource": bad}, compute_only=True)
