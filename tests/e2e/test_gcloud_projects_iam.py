"""The seeds' project and IAM-policy commands, run with the real gcloud against keyless serve."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import Gcloud, KeylessServer

pytestmark = pytest.mark.gcloud
# Each test but the concurrent one is gcloud's side of the wire: SQLite leg only; the PostgreSQL leg
# drives the same methods with the discovery client (tests/conformance).
POOL_MEMBER = ("principalSet://iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/"
               "github-pool/attribute.repository/my-org/my-repo")


@pytest.fixture(scope="module")
def g(module_gcloud: Gcloud, module_server: KeylessServer) -> Gcloud:
    out = module_server.keyless("projects", "create", "my-project", "--number", "123456789")
    assert out.returncode == 0, out.stderr
    return module_gcloud


@pytest.mark.store_independent
def test_projects_create_describe_list(g: Gcloud) -> None:
    g.run("projects", "create", "created-by-gcloud", "--name=Created by gcloud")
    desc = g.json("projects", "describe", "created-by-gcloud")
    assert desc["projectId"] == "created-by-gcloud"
    assert desc["lifecycleState"] == "ACTIVE"
    assert desc["projectNumber"].isdigit() and len(desc["projectNumber"]) == 12
    assert desc["name"] == "Created by gcloud"
    ids = [p["projectId"] for p in g.json("projects", "list")]
    assert {"my-project", "created-by-gcloud"} <= set(ids)
    # the creator (the owner) was made owner of the new project, as on Google
    policy = g.json("projects", "get-iam-policy", "created-by-gcloud")
    assert {"role": "roles/owner", "members": ["user:owner@keyless.dev"]} in policy["bindings"]


@pytest.mark.store_independent
def test_project_number_lookup_as_in_the_tenant_42_story(g: Gcloud) -> None:
    number = g.run("projects", "describe", "my-project", "--format=value(projectNumber)").stdout.strip()
    assert number == "123456789"


@pytest.mark.store_independent
def test_describe_unknown_project_fails_like_google(g: Gcloud) -> None:
    r = g.run("projects", "describe", "no-such-project", check=False)
    assert r.returncode != 0
    assert "not found" in r.stderr.lower() or "permission" in r.stderr.lower()


@pytest.mark.store_independent
def test_add_and_remove_binding_direct_access(g: Gcloud) -> None:
    g.run("projects", "add-iam-policy-binding", "my-project", "--role=roles/storage.objectViewer",
          f"--member={POOL_MEMBER}")
    policy = g.json("projects", "get-iam-policy", "my-project")
    assert any(b["role"] == "roles/storage.objectViewer" and POOL_MEMBER in b["members"] for b in policy["bindings"])
    g.run("projects", "remove-iam-policy-binding", "my-project", "--role=roles/storage.objectViewer",
          f"--member={POOL_MEMBER}")
    policy = g.json("projects", "get-iam-policy", "my-project")
    assert not any(POOL_MEMBER in b["members"] for b in policy.get("bindings", []))


@pytest.mark.store_independent
def test_conditional_binding_from_seed_002(g: Gcloud) -> None:
    g.run("iam", "service-accounts", "create", "app-gsa", "--display-name=App workload identity GSA",
          "--project=my-project")
    g.run("projects", "add-iam-policy-binding", "my-project",
          "--member=serviceAccount:app-gsa@my-project.iam.gserviceaccount.com",
          "--role=roles/storage.objectViewer",
          '--condition=expression=resource.name.startsWith("projects/_/buckets/my-app-bucket"),title=only-app-bucket')
    policy = g.json("projects", "get-iam-policy", "my-project")
    assert policy["version"] == 3
    (binding,) = [b for b in policy["bindings"] if b["role"] == "roles/storage.objectViewer"]
    assert binding["members"] == ["serviceAccount:app-gsa@my-project.iam.gserviceaccount.com"]
    assert binding["condition"] == {"expression": 'resource.name.startsWith("projects/_/buckets/my-app-bucket")',
                                    "title": "only-app-bucket"}
    g.run("projects", "remove-iam-policy-binding", "my-project",
          "--member=serviceAccount:app-gsa@my-project.iam.gserviceaccount.com",
          "--role=roles/storage.objectViewer", "--condition=expression=resource.name.startsWith("
          '"projects/_/buckets/my-app-bucket"),title=only-app-bucket')
    policy = g.json("projects", "get-iam-policy", "my-project")
    assert not any(b["role"] == "roles/storage.objectViewer" for b in policy.get("bindings", []))


@pytest.mark.store_independent
def test_ksa_only_direct_model_member_is_accepted(g: Gcloud) -> None:
    number = g.run("projects", "describe", "my-project", "--format=value(projectNumber)").stdout.strip()
    member = (f"principal://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/"
              "my-project.svc.id.goog/subject/ns/tenant-42/sa/app-ksa")
    g.run("projects", "add-iam-policy-binding", "my-project", "--role=roles/storage.objectViewer",
          f"--member={member}",
          '--condition=expression=resource.name.startsWith("projects/_/buckets/tenant-42-data"),title=tenant-42-bucket')
    policy = g.json("projects", "get-iam-policy", "my-project")
    assert any(member in b["members"] and b.get("condition", {}).get("title") == "tenant-42-bucket"
               for b in policy["bindings"])


@pytest.mark.store_independent
def test_malformed_member_is_rejected_by_the_server(g: Gcloud) -> None:
    r = g.run("projects", "add-iam-policy-binding", "my-project", "--role=roles/viewer",
              "--member=principalSet://iam.googleapis.com/projects/abc/locations/global/workloadIdentityPools/p/*",
              "--condition=None", check=False)
    assert r.returncode != 0
    assert "INVALID_ARGUMENT" in r.stderr or "invalid" in r.stderr.lower()


@pytest.mark.store_independent
def test_unknown_role_is_rejected(g: Gcloud) -> None:
    r = g.run("projects", "add-iam-policy-binding", "my-project", "--role=roles/notARealRole",
              "--member=user:a@example.com", "--condition=None", check=False)
    assert r.returncode != 0
    assert "does not exist" in r.stderr


@pytest.mark.store_independent
def test_audit_configs_round_trip_through_set_iam_policy(g: Gcloud, tmp_path) -> None:
    policy = g.json("projects", "get-iam-policy", "my-project")
    policy["auditConfigs"] = [{"service": "iam.googleapis.com", "auditLogConfigs": [
        {"logType": "ADMIN_READ"}, {"logType": "DATA_READ", "exemptedMembers": ["user:noisy@example.com"]}]}]
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    g.run("projects", "set-iam-policy", "my-project", str(path))
    # the seed's check: gcloud projects get-iam-policy my-project --format=json | jq '.auditConfigs'
    got = g.json("projects", "get-iam-policy", "my-project")
    assert got["auditConfigs"] == policy["auditConfigs"]


# on both stores: concurrent read-modify-write is the store's to get right
def test_concurrent_add_iam_policy_binding_loses_nothing(g: Gcloud) -> None:
    """gcloud's read-modify-write does not retry a 409 (docs/gcloud-wire.md): under contention
    some calls fail with Google's ABORTED message, but no call that succeeded is ever lost."""
    members = [f"user:parallel-{i}@example.com" for i in range(6)]

    def grant(member: str) -> subprocess.CompletedProcess[str]:
        return g.run("projects", "add-iam-policy-binding", "my-project", "--role=roles/browser",
                     f"--member={member}", "--condition=None", check=False)

    with ThreadPoolExecutor(len(members)) as pool:
        results = dict(zip(members, pool.map(grant, members), strict=True))
    succeeded = {m for m, r in results.items() if r.returncode == 0}
    for r in results.values():
        if r.returncode != 0:
            assert "There were concurrent policy changes" in r.stderr, r.stderr
    assert succeeded
    policy = g.json("projects", "get-iam-policy", "my-project")
    (binding,) = [b for b in policy["bindings"] if b["role"] == "roles/browser"]
    assert set(binding["members"]) == succeeded
    # what a script does with the losers: run them again; then everything is there
    for m in set(members) - succeeded:
        assert grant(m).returncode == 0
    policy = g.json("projects", "get-iam-policy", "my-project")
    (binding,) = [b for b in policy["bindings"] if b["role"] == "roles/browser"]
    assert sorted(binding["members"]) == sorted(members)


@pytest.mark.store_independent
def test_get_ancestors_iam_policy(g: Gcloud) -> None:
    out = g.json("projects", "get-ancestors-iam-policy", "my-project")
    assert out[0]["id"] == "my-project" and out[0]["type"] == "project"
    assert "policy" in out[0]


@pytest.mark.store_independent
def test_projects_update_delete_and_undelete(g: Gcloud) -> None:
    g.run("projects", "create", "short-lived-project", "--no-enable-cloud-apis")
    g.run("projects", "update", "short-lived-project", "--name=Renamed by gcloud")  # v1 projects.update (issue #20)
    assert g.json("projects", "describe", "short-lived-project")["name"] == "Renamed by gcloud"
    g.run("projects", "delete", "short-lived-project", "--quiet")
    assert g.json("projects", "describe", "short-lived-project")["lifecycleState"] == "DELETE_REQUESTED"
    assert "short-lived-project" not in [p["projectId"] for p in g.json("projects", "list")]
    # a project pending deletion refuses use of its resources, and cannot be renamed
    refused = g.run("iam", "service-accounts", "list", "--project=short-lived-project", check=False)
    assert refused.returncode != 0 and "pending deletion" in refused.stderr, refused.stderr
    refused = g.run("projects", "update", "short-lived-project", "--name=Too late", check=False)
    assert refused.returncode != 0 and "pending deletion" in refused.stderr, refused.stderr
    g.run("projects", "undelete", "short-lived-project")
    restored = g.json("projects", "describe", "short-lived-project")
    assert restored["lifecycleState"] == "ACTIVE" and restored["name"] == "Renamed by gcloud"
    g.run("iam", "service-accounts", "list", "--project=short-lived-project")


@pytest.mark.store_independent
def test_predefined_roles_list(g: Gcloud) -> None:
    names = [r["name"] for r in g.json("iam", "roles", "list")]
    assert {"roles/owner", "roles/iam.workloadIdentityUser", "roles/storage.objectViewer"} <= set(names)


@pytest.mark.store_independent
def test_list_grantable_roles_and_auditable_services(g: Gcloud) -> None:
    """`gcloud iam list-grantable-roles` (roles.queryGrantableRoles) and queryAuditableServices, asked
    only by those who may read the resource's policy (issue #20)."""
    from tests.api.helpers import token_for_user

    project = "//cloudresourcemanager.googleapis.com/projects/my-project"
    names = [r["name"] for r in g.json("iam", "list-grantable-roles", project)]
    assert {"roles/owner", "roles/iam.workloadIdentityUser", "roles/storage.objectViewer"} <= set(names)
    assert g.server.call("POST", "/iam/v1/projects/my-project/serviceAccounts",
                         body={"accountId": "grantable-sa"}).status_code == 200
    account = "//iam.googleapis.com/projects/my-project/serviceAccounts/grantable-sa@my-project.iam.gserviceaccount.com"
    on_account = [r["name"] for r in g.json("iam", "list-grantable-roles", account)]
    assert "roles/iam.serviceAccountUser" in on_account and "roles/storage.objectViewer" not in on_account

    srv = g.server
    stranger = token_for_user(srv, "stranger@example.com")
    for path, body in (("/iam/v1/roles:queryGrantableRoles", {"fullResourceName": project}),
                       ("/iam/v1/iamPolicies:queryAuditableServices", {"fullResourceName": project}),
                       ("/iam/v1/iamPolicies:lintPolicy", {"fullResourceName": project,
                                                           "condition": {"title": "t", "expression": "true"}})):
        denied = srv.call("POST", path, token=stranger, body=body)
        assert denied.status_code == 403 and denied.json()["error"]["status"] == "PERMISSION_DENIED", denied.text
    services = srv.call("POST", "/iam/v1/iamPolicies:queryAuditableServices", body={"fullResourceName": project})
    assert {"name": "storage.googleapis.com"} in services.json()["services"]
    missing = srv.call("POST", "/iam/v1/roles:queryGrantableRoles",
                       body={"fullResourceName": "//cloudresourcemanager.googleapis.com/projects/no-such-project"})
    assert missing.status_code == 404, missing.text


@pytest.mark.store_independent
def test_organization_custom_role_through_gcloud(g: Gcloud) -> None:
    """`gcloud iam roles create --organization` (issue #20): the role is granted on a project and
    its permissions apply there; only who holds iam.roles.create at the root may make one."""
    from tests.api.helpers import token_for_user

    g.run("iam", "roles", "create", "objectReader", "--organization=123456789", "--title=Object reader",
          "--permissions=storage.objects.get,storage.objects.list", "--stage=GA")
    role = g.json("iam", "roles", "describe", "objectReader", "--organization=123456789")
    assert role["name"] == "organizations/123456789/roles/objectReader"
    assert role["includedPermissions"] == ["storage.objects.get", "storage.objects.list"]
    # (the rest through the API, gcloud being slow: its list/delete/undelete are the same calls as for projects)
    srv = g.server
    policy = srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy",
                      body={"options": {"requestedPolicyVersion": 3}}).json()  # other tests' conditions kept
    policy["bindings"].append({"role": "organizations/123456789/roles/objectReader",
                               "members": ["user:org-reader@example.com"]})
    granted = srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy", body={"policy": policy})
    assert granted.status_code == 200, granted.text
    reader = token_for_user(srv, "org-reader@example.com")
    tested = srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:testIamPermissions", token=reader,
                      body={"permissions": ["storage.objects.get", "storage.objects.delete"]})
    assert tested.json() == {"permissions": ["storage.objects.get"]}, tested.text
    role_path = "/iam/v1/organizations/123456789/roles/objectReader"
    assert srv.call("DELETE", role_path).status_code == 200
    tested = srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:testIamPermissions", token=reader,
                      body={"permissions": ["storage.objects.get"]})
    assert tested.json() == {}, tested.text  # a deleted role grants nothing
    assert srv.call("POST", role_path + ":undelete", body={}).status_code == 200

    denied = srv.call("POST", "/iam/v1/organizations/123456789/roles", token=reader,
                      body={"roleId": "sneaky", "role": {"includedPermissions": ["iam.roles.create"]}})
    assert denied.status_code == 403 and denied.json()["error"]["status"] == "PERMISSION_DENIED", denied.text
