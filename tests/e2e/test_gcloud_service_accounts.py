"""Service accounts, their policies and keys, and custom roles, through the real gcloud."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.api.helpers import server_state, token_for_service_account
from tests.conftest import Gcloud, KeylessServer

pytestmark = [pytest.mark.gcloud, pytest.mark.store_independent]  # gcloud's side of the wire: SQLite leg only; the PostgreSQL leg drives the same methods with the discovery client (tests/conformance)
CRM = "/cloudresourcemanager/v1"


@pytest.fixture(scope="module")
def g(module_gcloud: Gcloud, module_server: KeylessServer) -> Gcloud:
    for pid, number in (("my-project", "123456789"), ("project-a", "111111111111"), ("project-b", "222222222222")):
        out = module_server.keyless("projects", "create", pid, "--number", number)
        assert out.returncode == 0, out.stderr
    return module_gcloud


def test_service_account_lifecycle(g: Gcloud) -> None:
    g.run("iam", "service-accounts", "create", "my-app-gsa", "--display-name=My Application GSA",
          "--project=my-project")
    email = "my-app-gsa@my-project.iam.gserviceaccount.com"
    sa = g.json("iam", "service-accounts", "describe", email, "--project=my-project")
    assert sa["email"] == email and sa["displayName"] == "My Application GSA"
    assert sa["uniqueId"].isdigit() and len(sa["uniqueId"]) == 21
    assert sa["name"] == f"projects/my-project/serviceAccounts/{email}"
    assert email in [a["email"] for a in g.json("iam", "service-accounts", "list", "--project=my-project")]

    g.run("iam", "service-accounts", "update", email, "--display-name=Renamed", "--project=my-project")
    assert g.json("iam", "service-accounts", "describe", email)["displayName"] == "Renamed"

    g.run("iam", "service-accounts", "disable", email, "--project=my-project")
    assert g.json("iam", "service-accounts", "describe", email)["disabled"] is True
    g.run("iam", "service-accounts", "enable", email, "--project=my-project")
    assert "disabled" not in g.json("iam", "service-accounts", "describe", email)

    dup = g.run("iam", "service-accounts", "create", "my-app-gsa", "--project=my-project", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr

    g.run("iam", "service-accounts", "delete", email, "--project=my-project", "--quiet")
    gone = g.run("iam", "service-accounts", "describe", email, check=False)
    assert gone.returncode != 0 and ("NOT_FOUND" in gone.stderr or "not found" in gone.stderr.lower()
                                     or "Unknown service account" in gone.stderr)
    g.run("iam", "service-accounts", "undelete", sa["uniqueId"], "--project=my-project")
    assert g.json("iam", "service-accounts", "describe", email)["uniqueId"] == sa["uniqueId"]


def test_disabled_service_account_tokens_stop_at_once(g: Gcloud, module_server: KeylessServer) -> None:
    g.run("iam", "service-accounts", "create", "short-lived", "--project=my-project")
    email = "short-lived@my-project.iam.gserviceaccount.com"
    g.run("projects", "add-iam-policy-binding", "my-project", "--role=roles/viewer", f"--member=serviceAccount:{email}")
    token = token_for_service_account(module_server, email)
    assert module_server.call("GET", f"{CRM}/projects/my-project", token=token).status_code == 200
    g.run("iam", "service-accounts", "disable", email)
    assert module_server.call("GET", f"{CRM}/projects/my-project", token=token).status_code == 401
    g.run("iam", "service-accounts", "enable", email)
    assert module_server.call("GET", f"{CRM}/projects/my-project", token=token).status_code == 200
    g.run("iam", "service-accounts", "delete", email, "--quiet")
    assert module_server.call("GET", f"{CRM}/projects/my-project", token=token).status_code == 401


def test_workload_identity_user_binding_from_seeds(g: Gcloud) -> None:
    g.run("iam", "service-accounts", "create", "deploy-sa", "--project=my-project")
    member = ("principalSet://iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/"
              "github-pool/attribute.repository/my-org/my-repo")
    g.run("iam", "service-accounts", "add-iam-policy-binding", "deploy-sa@my-project.iam.gserviceaccount.com",
          "--project=my-project", "--role=roles/iam.workloadIdentityUser", f"--member={member}")
    g.run("iam", "service-accounts", "add-iam-policy-binding", "deploy-sa@my-project.iam.gserviceaccount.com",
          "--role=roles/iam.workloadIdentityUser", "--member=serviceAccount:my-project.svc.id.goog[my-namespace/my-ksa]")
    policy = g.json("iam", "service-accounts", "get-iam-policy", "deploy-sa@my-project.iam.gserviceaccount.com")
    (binding,) = policy["bindings"]
    assert binding["role"] == "roles/iam.workloadIdentityUser"
    assert sorted(binding["members"]) == sorted([member, "serviceAccount:my-project.svc.id.goog[my-namespace/my-ksa]"])
    g.run("iam", "service-accounts", "remove-iam-policy-binding", "deploy-sa@my-project.iam.gserviceaccount.com",
          "--role=roles/iam.workloadIdentityUser", f"--member={member}")
    policy = g.json("iam", "service-accounts", "get-iam-policy", "deploy-sa@my-project.iam.gserviceaccount.com")
    assert policy["bindings"][0]["members"] == ["serviceAccount:my-project.svc.id.goog[my-namespace/my-ksa]"]


def test_cross_project_binding_from_seed_000(g: Gcloud) -> None:
    g.run("iam", "service-accounts", "create", "service-account-a", "--project=project-a")
    g.run("iam", "service-accounts", "create", "service-account-b", "--project=project-b")
    g.run("iam", "service-accounts", "add-iam-policy-binding", "service-account-b@project-b.iam.gserviceaccount.com",
          "--role=roles/iam.serviceAccountUser",
          "--member=serviceAccount:service-account-a@project-a.iam.gserviceaccount.com")
    policy = g.json("iam", "service-accounts", "get-iam-policy", "service-account-b@project-b.iam.gserviceaccount.com")
    assert policy["bindings"] == [{"role": "roles/iam.serviceAccountUser",
                                   "members": ["serviceAccount:service-account-a@project-a.iam.gserviceaccount.com"]}]
    r = g.run("iam", "service-accounts", "add-iam-policy-binding",
              "service-account-b@project-b.iam.gserviceaccount.com", "--role=roles/iam.serviceAccountUser",
              "--member=serviceAccount:nobody@project-a.iam.gserviceaccount.com", check=False)
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_keys_create_list_disable_delete(g: Gcloud, tmp_path: Path, module_server: KeylessServer) -> None:
    g.run("iam", "service-accounts", "create", "legacy-sa", "--project=my-project")
    email = "legacy-sa@my-project.iam.gserviceaccount.com"
    key_path = tmp_path / "key.json"
    g.run("iam", "service-accounts", "keys", "create", str(key_path), f"--iam-account={email}")
    key = json.loads(key_path.read_text())
    assert key["type"] == "service_account" and key["client_email"] == email
    assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert key["token_uri"] == f"{module_server.base_url}/oauth2/token"
    listed = g.json("iam", "service-accounts", "keys", "list", f"--iam-account={email}")
    assert [k["name"].rsplit("/", 1)[1] for k in listed] == [key["private_key_id"]]
    # the server keeps only the public half: its certificate matches the private key we were given
    st = server_state(module_server)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from keyless.store.models import ServiceAccountKey
    with st.db.read() as s:
        row = s.get(ServiceAccountKey, key["private_key_id"])
        assert "PRIVATE" not in row.public_key_pem
        cert = x509.load_pem_x509_certificate(row.public_key_pem.encode())
    private = serialization.load_pem_private_key(key["private_key"].encode(), None)
    assert cert.public_key().public_numbers() == private.public_key().public_numbers()

    g.run("iam", "service-accounts", "keys", "disable", key["private_key_id"], f"--iam-account={email}")
    listed = g.json("iam", "service-accounts", "keys", "list", f"--iam-account={email}")
    assert listed[0].get("disabled") is True
    g.run("iam", "service-accounts", "keys", "enable", key["private_key_id"], f"--iam-account={email}")
    assert "disabled" not in g.json("iam", "service-accounts", "keys", "list", f"--iam-account={email}")[0]
    g.run("iam", "service-accounts", "keys", "delete", key["private_key_id"], f"--iam-account={email}", "--quiet")
    assert g.json("iam", "service-accounts", "keys", "list", f"--iam-account={email}") in ([], None)


def test_at_most_ten_user_managed_keys(g: Gcloud, tmp_path: Path, module_server: KeylessServer) -> None:
    g.run("iam", "service-accounts", "create", "many-keys", "--project=my-project")
    email = "many-keys@my-project.iam.gserviceaccount.com"
    path = f"/iam/v1/projects/-/serviceAccounts/{email}/keys"
    for _ in range(10):
        assert module_server.call("POST", path, body={}).status_code == 200
    r = g.run("iam", "service-accounts", "keys", "create", str(tmp_path / "k11.json"), f"--iam-account={email}",
              check=False)
    assert r.returncode != 0 and "Precondition check failed" in r.stderr
    assert not (tmp_path / "k11.json").exists() or (tmp_path / "k11.json").stat().st_size == 0


def test_key_creation_can_be_disabled_per_project(g: Gcloud, tmp_path: Path, module_server: KeylessServer) -> None:
    """The seeds' advice: enforce iam.disableServiceAccountKeyCreation (here per project)."""
    g.run("iam", "service-accounts", "create", "no-keys-sa", "--project=project-a")
    g.run("resource-manager", "org-policies", "enable-enforce", "iam.disableServiceAccountKeyCreation",
          "--project=project-a")
    described = g.json("resource-manager", "org-policies", "describe", "iam.disableServiceAccountKeyCreation",
                       "--project=project-a")
    assert described["booleanPolicy"] == {"enforced": True}
    r = g.run("iam", "service-accounts", "keys", "create", str(tmp_path / "k.json"),
              "--iam-account=no-keys-sa@project-a.iam.gserviceaccount.com", check=False)
    assert r.returncode != 0 and "Key creation is not allowed" in r.stderr
    # other projects are unaffected; lifting the constraint allows keys again
    g.run("iam", "service-accounts", "create", "keys-ok-sa", "--project=project-b")
    g.run("iam", "service-accounts", "keys", "create", str(tmp_path / "ok.json"),
          "--iam-account=keys-ok-sa@project-b.iam.gserviceaccount.com")
    g.run("resource-manager", "org-policies", "disable-enforce", "iam.disableServiceAccountKeyCreation",
          "--project=project-a")
    g.run("iam", "service-accounts", "keys", "create", str(tmp_path / "k2.json"),
          "--iam-account=no-keys-sa@project-a.iam.gserviceaccount.com")


def test_token_lifetime_over_an_hour_needs_the_lifetime_extension_constraint(
        g: Gcloud, module_server: KeylessServer) -> None:
    """generateAccessToken allows up to 12 h only for accounts the list constraint
    iam.allowServiceAccountCredentialLifetimeExtension allows on the account's project."""
    g.run("iam", "service-accounts", "create", "long-lived-sa", "--project=project-b")
    g.run("iam", "service-accounts", "create", "short-lived-sa", "--project=project-b")
    g.run("projects", "add-iam-policy-binding", "project-b", "--member=user:owner@keyless.dev",
          "--role=roles/iam.serviceAccountTokenCreator")
    path = "/iamcredentials/v1/projects/-/serviceAccounts/{}@project-b.iam.gserviceaccount.com:generateAccessToken"
    body = {"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "7200s"}
    refused = module_server.call("POST", path.format("long-lived-sa"), body=body)
    assert refused.status_code == 400 and "allowServiceAccountCredentialLifetimeExtension" in refused.text
    g.run("resource-manager", "org-policies", "allow", "iam.allowServiceAccountCredentialLifetimeExtension",
          "long-lived-sa@project-b.iam.gserviceaccount.com", "--project=project-b")
    granted = module_server.call("POST", path.format("long-lived-sa"), body=body)
    assert granted.status_code == 200, granted.text
    info = module_server.call("GET", "/oauth2/v3/tokeninfo?access_token=" + granted.json()["accessToken"])
    assert 7100 < int(info.json()["expires_in"]) <= 7200
    # only the allowed account, and never beyond 12 hours
    assert module_server.call("POST", path.format("short-lived-sa"), body=body).status_code == 400
    too_long = module_server.call("POST", path.format("long-lived-sa"), body={**body, "lifetime": "43201s"})
    assert too_long.status_code == 400


ROLE_YAML = """title: "App Object Reader"
stage: "GA"
includedPermissions:
- storage.objects.get
- storage.objects.list
"""


def test_custom_role_from_seed_002(g: Gcloud, tmp_path: Path) -> None:
    (tmp_path / "role.yaml").write_text(ROLE_YAML)
    g.run("iam", "roles", "create", "appObjectReader", "--project=my-project", f"--file={tmp_path / 'role.yaml'}")
    role = g.json("iam", "roles", "describe", "appObjectReader", "--project=my-project")
    assert role["name"] == "projects/my-project/roles/appObjectReader"
    assert role["title"] == "App Object Reader" and role["stage"] == "GA"
    assert role["includedPermissions"] == ["storage.objects.get", "storage.objects.list"]
    assert "projects/my-project/roles/appObjectReader" in [
        r["name"] for r in g.json("iam", "roles", "list", "--project=my-project")]

    g.run("iam", "roles", "update", "appObjectReader", "--project=my-project", "--add-permissions=storage.buckets.get")
    role = g.json("iam", "roles", "describe", "appObjectReader", "--project=my-project")
    assert role["includedPermissions"] == ["storage.buckets.get", "storage.objects.get", "storage.objects.list"]

    g.run("projects", "add-iam-policy-binding", "my-project", "--role=projects/my-project/roles/appObjectReader",
          "--member=user:reader@example.com")

    g.run("iam", "roles", "delete", "appObjectReader", "--project=my-project")
    assert g.json("iam", "roles", "describe", "appObjectReader", "--project=my-project").get("deleted") is True
    g.run("iam", "roles", "undelete", "appObjectReader", "--project=my-project")
    assert "deleted" not in g.json("iam", "roles", "describe", "appObjectReader", "--project=my-project")

    bad = tmp_path / "bad.yaml"
    bad.write_text('title: "Bad"\nincludedPermissions:\n- storage.objects.teleport\n')
    r = g.run("iam", "roles", "create", "badRole", "--project=my-project", f"--file={bad}", check=False)
    assert r.returncode != 0 and "storage.objects.teleport" in r.stderr


def test_predefined_role_describe(g: Gcloud) -> None:
    role = g.json("iam", "roles", "describe", "roles/iam.workloadIdentityUser")
    assert "iam.serviceAccounts.getAccessToken" in role["includedPermissions"]
    viewer = g.json("iam", "roles", "describe", "roles/storage.objectViewer")
    assert "storage.objects.get" in viewer["includedPermissions"]


def test_key_file_private_data_is_base64_json(module_server: KeylessServer) -> None:
    r = module_server.call("POST", "/iam/v1/projects/my-project/serviceAccounts", body={"accountId": "raw-key-sa"})
    email = r.json()["email"]
    created = module_server.call("POST", f"/iam/v1/projects/-/serviceAccounts/{email}/keys", body={}).json()
    assert json.loads(base64.b64decode(created["privateKeyData"]))["private_key_id"] == created["name"].rsplit("/", 1)[1]


def test_deleted_account_shows_as_deleted_member_and_comes_back_on_undelete(g: Gcloud) -> None:
    g.run("iam", "service-accounts", "create", "come-and-go", "--project=my-project")
    email = "come-and-go@my-project.iam.gserviceaccount.com"
    uid = g.json("iam", "service-accounts", "describe", email)["uniqueId"]
    g.run("projects", "add-iam-policy-binding", "my-project", "--role=roles/logging.viewer",
          f"--member=serviceAccount:{email}", "--condition=None")
    g.run("iam", "service-accounts", "delete", email, "--quiet")
    (binding,) = [b for b in g.json("projects", "get-iam-policy", "my-project")["bindings"]
                  if b["role"] == "roles/logging.viewer"]
    assert binding["members"] == [f"deleted:serviceAccount:{email}?uid={uid}"]
    # the project's policy can still be edited while it names a deleted account
    g.run("projects", "add-iam-policy-binding", "my-project", "--role=roles/logging.viewer",
          "--member=user:someone@example.com", "--condition=None")
    g.run("iam", "service-accounts", "undelete", uid)
    (binding,) = [b for b in g.json("projects", "get-iam-policy", "my-project")["bindings"]
                  if b["role"] == "roles/logging.viewer"]
    assert binding["members"] == [f"serviceAccount:{email}", "user:someone@example.com"]
