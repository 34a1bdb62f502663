"""Restarting the server loses nothing; every mutation leaves an Admin Activity audit entry."""

from __future__ import annotations

from sqlalchemy import select

from keyless.store.models import AuditEntry
from tests.api.helpers import server_state, token_for_user
from tests.conftest import KeylessServer, fresh_database_url

IAM = "/iam/v1"
CRM = "/cloudresourcemanager/v1"


def test_restart_loses_nothing_and_old_tokens_still_verify(server: KeylessServer) -> None:
    assert server.call("POST", f"{CRM}/projects", body={"projectId": "durable-project"}).status_code == 200
    sa = server.call("POST", f"{IAM}/projects/durable-project/serviceAccounts", body={"accountId": "durable-sa"}).json()
    policy = server.call("POST", f"{CRM}/projects/durable-project:getIamPolicy", body={}).json()
    policy["bindings"].append({"role": "roles/viewer", "members": [f"serviceAccount:{sa['email']}"]})
    assert server.call("POST", f"{CRM}/projects/durable-project:setIamPolicy", body={"policy": policy}).status_code == 200
    token = server.owner_token
    server.restart()
    assert server.call("GET", f"{CRM}/projects/durable-project", token=token).status_code == 200
    got = server.call("GET", f"{IAM}/projects/-/serviceAccounts/{sa['email']}").json()
    assert got["uniqueId"] == sa["uniqueId"]
    after = server.call("POST", f"{CRM}/projects/durable-project:getIamPolicy", body={}).json()
    assert {"role": "roles/viewer", "members": [f"serviceAccount:{sa['email']}"]} in after["bindings"]


def test_mutations_write_admin_activity_entries(server: KeylessServer) -> None:
    assert server.call("POST", f"{CRM}/projects", body={"projectId": "audited-project"}).status_code == 200
    r = server.call("POST", f"{IAM}/projects/audited-project/serviceAccounts", body={"accountId": "audited-sa"})
    assert r.status_code == 200
    stranger = token_for_user(server, "stranger@example.com")
    denied = server.call("POST", f"{IAM}/projects/audited-project/serviceAccounts", token=stranger,
                         body={"accountId": "sneaky-sa"})
    assert denied.status_code == 403
    with server_state(server).db.read() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.project_id == "audited-project")
                            .order_by(AuditEntry.id)).all()
        methods = [(e.method_name, e.principal_email, e.status_code) for e in entries]
        created = [e.entry for e in entries if e.method_name == "google.iam.admin.v1.CreateServiceAccount"]
    assert ("CreateProject", "owner@keyless.dev", 0) in methods
    assert ("google.iam.admin.v1.CreateServiceAccount", "owner@keyless.dev", 0) in methods
    assert ("google.iam.admin.v1.CreateServiceAccount", "stranger@example.com", 7) in methods
    ok = next(e for e in created if not e["protoPayload"]["status"])
    assert ok["logName"] == "projects/audited-project/logs/cloudaudit.googleapis.com%2Factivity"
    assert ok["resource"]["type"] == "service_account"
    assert ok["protoPayload"]["authorizationInfo"] == [{
        "resource": "projects/audited-project", "permission": "iam.serviceAccounts.create", "granted": True}]
    # reads are not Admin Activity
    assert not any(m[0].startswith("Get") for m in methods)


def test_two_workers_share_settings_store_and_tokens(tmp_path) -> None:
    """--workers 2: every worker gets the flags (here --allow-insecure-issuers) and one store."""
    import httpx

    srv = KeylessServer(tmp_path / "data", fresh_database_url(), "--workers", "2", "--allow-insecure-issuers")
    try:
        assert srv.call("POST", f"{CRM}/projects", body={"projectId": "multi-worker"}).status_code == 200
        pools = "/iam/v1/projects/multi-worker/locations/global/workloadIdentityPools"
        assert srv.call("POST", pools, params={"workloadIdentityPoolId": "local-pool"}, body={}).status_code == 200
        for i in range(8):  # requests land on both workers; each must accept the loopback issuer
            r = srv.call("POST", f"{pools}/local-pool/providers", params={"workloadIdentityPoolProviderId": f"prov-{i}"},
                         body={"attributeMapping": {"google.subject": "assertion.sub"},
                               "oidc": {"issuerUri": f"{srv.base_url}/idp/github"}})
            assert r.status_code == 200, r.text
        listed = srv.call("GET", f"{pools}/local-pool/providers").json()["workloadIdentityPoolProviders"]
        assert len(listed) == 8
        for _ in range(8):
            assert httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo",
                             params={"access_token": srv.owner_token}).status_code == 200
            # every worker knows the URL it is reached at (not the default port)
            doc = httpx.get(f"{srv.base_url}/idp/github/.well-known/openid-configuration").json()
            assert doc["jwks_uri"] == f"{srv.base_url}/idp/github/jwks"
    finally:
        srv.stop()
