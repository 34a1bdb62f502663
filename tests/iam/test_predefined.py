"""The predefined-role catalogue: shape of the data file and Google's real permission lists."""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest

from keyless.iam.predefined import (
    PREDEFINED_ETAG,
    expand_permissions,
    get_predefined_role,
    known_permissions,
    permission_aliases,
    predefined_roles,
    role_to_json,
)

pytestmark = pytest.mark.store_independent  # no store: the SQLite leg only (tests/conftest.py)

REQUIRED_ROLES = """
owner editor viewer browser
iam.workloadIdentityUser iam.serviceAccountTokenCreator iam.serviceAccountUser iam.serviceAccountAdmin
iam.serviceAccountKeyAdmin iam.serviceAccountCreator iam.workloadIdentityPoolAdmin
iam.workloadIdentityPoolViewer iam.roleAdmin iam.roleViewer iam.securityAdmin iam.securityReviewer
iam.serviceAccountOpenIdTokenCreator
resourcemanager.projectIamAdmin resourcemanager.projectCreator
storage.admin storage.objectAdmin storage.objectViewer storage.objectCreator storage.objectUser
storage.legacyBucketReader storage.legacyBucketOwner storage.legacyObjectReader
secretmanager.admin secretmanager.secretAccessor secretmanager.viewer secretmanager.secretVersionManager
secretmanager.secretVersionAdder
pubsub.publisher pubsub.subscriber pubsub.viewer pubsub.editor pubsub.admin
bigquery.dataViewer bigquery.dataEditor bigquery.user bigquery.jobUser bigquery.admin
logging.viewer logging.privateLogViewer logging.logWriter logging.admin logging.configWriter
container.admin container.developer container.viewer container.clusterViewer
container.defaultNodeServiceAccount
run.admin run.developer run.invoker
compute.viewer cloudsql.client artifactregistry.reader artifactregistry.writer
""".split()

# service.resource.verb, or Google's service-qualified form iam.googleapis.com/resource.verb
PERMISSION = re.compile(r"^[a-z][a-z0-9]*(\.googleapis\.com/|\.)[a-zA-Z][a-zA-Z0-9]*\.[a-zA-Z][a-zA-Z0-9]*$")
STAGES = {"ALPHA", "BETA", "GA", "DEPRECATED", "DISABLED", "EAP"}


@pytest.fixture(scope="module")
def raw() -> dict:
    text = resources.files("keyless.iam").joinpath("predefined_roles.json").read_text(encoding="utf-8")
    return json.loads(text)


def perms(name: str) -> set[str]:
    role = get_predefined_role(name)
    assert role is not None, name
    return set(role.listed_permissions)


def covered(permissions: set[str], services: list[str]) -> set[str]:
    return {p for p in permissions if p.split(".", 1)[0] in services}


# -- the data file ------------------------------------------------------------------------------


def test_file_loads_and_is_well_formed(raw: dict) -> None:
    assert isinstance(raw["roles"], list) and raw["roles"]
    names = [r["name"] for r in raw["roles"]]
    assert len(names) == len(set(names)), "duplicate role names"
    assert names == sorted(names)
    for r in raw["roles"]:
        assert r["name"].startswith("roles/")
        assert r["title"] and isinstance(r["description"], str)
        assert r["stage"] in STAGES
        listed = r["includedPermissions"]
        assert listed, r["name"]
        assert listed == sorted(set(listed)), f"{r['name']}: permissions not sorted/unique"
        for p in listed:
            assert PERMISSION.match(p), f"{r['name']}: malformed permission {p!r}"


def test_top_level_permissions_is_the_union_of_all_roles(raw: dict) -> None:
    union = sorted({p for r in raw["roles"] for p in r["includedPermissions"]})
    assert raw["permissions"] == union


@pytest.mark.parametrize("role", REQUIRED_ROLES)
def test_required_role_exists(role: str) -> None:
    r = get_predefined_role(f"roles/{role}")
    assert r is not None
    assert r.name == f"roles/{role}"
    assert r.included_permissions


def test_lookup_and_mapping() -> None:
    roles = predefined_roles()
    assert predefined_roles() is roles  # loaded once
    assert get_predefined_role("roles/doesNotExist") is None
    assert get_predefined_role("projects/p/roles/viewer") is None
    assert len(roles) >= len(REQUIRED_ROLES)
    with pytest.raises(TypeError):
        roles["roles/x"] = roles["roles/viewer"]  # type: ignore[index]


def test_role_to_json_matches_google_role_resource() -> None:
    role = get_predefined_role("roles/iam.workloadIdentityUser")
    assert role is not None
    assert role_to_json(role) == {
        "name": "roles/iam.workloadIdentityUser",
        "title": "Workload Identity User",
        "description": "Impersonate service accounts from federated workloads.",
        "includedPermissions": [
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.getAccessToken",
            "iam.serviceAccounts.getOpenIdToken",
            "iam.serviceAccounts.list",
        ],
        "stage": "GA",
        "etag": PREDEFINED_ETAG,
    }
    assert PREDEFINED_ETAG == "AA=="
    beta = get_predefined_role("roles/iam.workloadIdentityPoolAdmin")
    assert beta is not None and role_to_json(beta)["stage"] == "BETA"


# -- basic roles ----------------------------------------------------------------------------------


def test_basic_roles_nest(raw: dict) -> None:
    services = raw["about"]["coveredServices"]
    owner, editor, viewer = perms("roles/owner"), perms("roles/editor"), perms("roles/viewer")
    assert covered(viewer, services) <= covered(editor, services) <= covered(owner, services)
    assert viewer < editor < owner
    for p in owner | editor | viewer:  # the basic roles are cut down to the covered services
        assert p.split(".", 1)[0] in services


def test_basic_role_split_for_iam_and_resourcemanager() -> None:
    owner, editor, viewer = perms("roles/owner"), perms("roles/editor"), perms("roles/viewer")
    owner_only = {
        "resourcemanager.projects.setIamPolicy", "resourcemanager.projects.delete",
        "resourcemanager.projects.undelete",
        "iam.serviceAccounts.setIamPolicy", "iam.serviceAccounts.undelete",
        "iam.roles.create", "iam.roles.update", "iam.roles.delete", "iam.roles.undelete",
        "iam.googleapis.com/workloadIdentityPools.create", "iam.googleapis.com/workloadIdentityPools.update",
        "iam.googleapis.com/workloadIdentityPools.delete", "iam.googleapis.com/workloadIdentityPools.undelete",
        "iam.googleapis.com/workloadIdentityPoolProviders.create",
        "iam.googleapis.com/workloadIdentityPoolProviders.update",
        "iam.googleapis.com/workloadIdentityPoolProviders.delete",
        "iam.googleapis.com/workloadIdentityPoolProviders.undelete",
        "secretmanager.secrets.setIamPolicy", "secretmanager.versions.access",
    }
    assert owner_only <= owner
    assert not owner_only & editor
    editor_writes = {
        "resourcemanager.projects.update",
        "iam.serviceAccounts.create", "iam.serviceAccounts.update", "iam.serviceAccounts.delete",
        "iam.serviceAccounts.disable", "iam.serviceAccounts.enable", "iam.serviceAccounts.actAs",
        "iam.serviceAccountKeys.create", "iam.serviceAccountKeys.delete",
        "iam.serviceAccountKeys.disable", "iam.serviceAccountKeys.enable",
        "secretmanager.secrets.create", "secretmanager.versions.add",
        "storage.buckets.create", "storage.buckets.delete", "serviceusage.services.enable",
        "container.clusters.create", "container.clusters.getCredentials",
    }
    assert editor_writes <= editor
    assert not editor_writes & viewer
    reads = {
        "resourcemanager.projects.get", "resourcemanager.projects.getIamPolicy",
        "iam.serviceAccounts.get", "iam.serviceAccounts.list", "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccountKeys.get", "iam.serviceAccountKeys.list", "iam.roles.get", "iam.roles.list",
        "iam.googleapis.com/workloadIdentityPools.get", "iam.googleapis.com/workloadIdentityPools.list",
        "iam.googleapis.com/workloadIdentityPoolProviders.get",
        "iam.googleapis.com/workloadIdentityPoolProviders.list",
        "secretmanager.secrets.get", "secretmanager.secrets.list", "logging.logEntries.list",
        "storage.buckets.list", "container.clusters.get", "container.clusters.list",
        "compute.instances.get", "compute.instances.list", "serviceusage.services.list",
    }
    assert reads <= viewer


def test_no_basic_role_mints_tokens_or_creates_projects() -> None:
    # Owners must still be granted Token Creator to impersonate (service-account-permissions doc).
    minting = {
        "iam.serviceAccounts.getAccessToken", "iam.serviceAccounts.getOpenIdToken",
        "iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt",
        "iam.serviceAccounts.implicitDelegation",
    }
    for basic in ("roles/owner", "roles/editor", "roles/viewer"):
        held = perms(basic)
        assert not minting & held, basic
        assert "resourcemanager.projects.create" not in held
        # object access comes from the bucket's legacy convenience bindings, not the basic role
        assert not {p for p in held if p.startswith("storage.objects.")}
        assert "logging.privateLogEntries.list" not in held or basic == "roles/owner"
    assert "logging.privateLogEntries.list" in perms("roles/owner")
    assert "logging.privateLogEntries.list" not in perms("roles/editor")


def test_browser() -> None:
    assert perms("roles/browser") == {
        "resourcemanager.folders.get", "resourcemanager.folders.list",
        "resourcemanager.organizations.get", "resourcemanager.projects.get",
        "resourcemanager.projects.getIamPolicy", "resourcemanager.projects.list",
    }


# -- exact lists of the roles Keyless's flows hinge on --------------------------------------------


def test_workload_identity_user_is_exact() -> None:
    assert perms("roles/iam.workloadIdentityUser") == {
        "iam.serviceAccounts.get", "iam.serviceAccounts.getAccessToken",
        "iam.serviceAccounts.getOpenIdToken", "iam.serviceAccounts.list",
    }


def test_service_account_impersonation_roles() -> None:
    assert perms("roles/iam.serviceAccountTokenCreator") == {
        "iam.serviceAccounts.get", "iam.serviceAccounts.getAccessToken",
        "iam.serviceAccounts.getOpenIdToken", "iam.serviceAccounts.implicitDelegation",
        "iam.serviceAccounts.list", "iam.serviceAccounts.signBlob", "iam.serviceAccounts.signJwt",
        "resourcemanager.projects.get", "resourcemanager.projects.list",
    }
    assert perms("roles/iam.serviceAccountUser") == {
        "iam.serviceAccounts.actAs", "iam.serviceAccounts.get", "iam.serviceAccounts.list",
        "resourcemanager.projects.get", "resourcemanager.projects.list",
    }
    assert perms("roles/iam.serviceAccountOpenIdTokenCreator") == {"iam.serviceAccounts.getOpenIdToken"}


def test_service_account_admin_roles() -> None:
    admin = perms("roles/iam.serviceAccountAdmin")
    assert {
        "iam.serviceAccounts.create", "iam.serviceAccounts.delete", "iam.serviceAccounts.undelete",
        "iam.serviceAccounts.disable", "iam.serviceAccounts.enable", "iam.serviceAccounts.update",
        "iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.setIamPolicy",
    } <= admin
    assert "iam.serviceAccounts.actAs" not in admin
    assert "iam.serviceAccounts.getAccessToken" not in admin
    assert "iam.serviceAccountKeys.create" not in admin
    keys = perms("roles/iam.serviceAccountKeyAdmin")
    assert {f"iam.serviceAccountKeys.{v}" for v in ("create", "delete", "disable", "enable", "get", "list")} <= keys
    assert "iam.serviceAccounts.create" in perms("roles/iam.serviceAccountCreator")


def test_role_admin_and_project_iam_admin() -> None:
    assert {f"iam.roles.{v}" for v in ("create", "get", "list", "update", "delete", "undelete")} <= perms(
        "roles/iam.roleAdmin")
    assert perms("roles/iam.roleViewer") >= {"iam.roles.get", "iam.roles.list"}
    assert not {"iam.roles.create", "iam.roles.update"} & perms("roles/iam.roleViewer")
    pia = perms("roles/resourcemanager.projectIamAdmin")
    assert {"resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"} <= pia
    assert perms("roles/resourcemanager.projectCreator") == {
        "resourcemanager.organizations.get", "resourcemanager.projects.create",
    }


def test_workload_identity_pool_roles() -> None:
    admin, viewer = perms("roles/iam.workloadIdentityPoolAdmin"), perms("roles/iam.workloadIdentityPoolViewer")
    for kind in ("workloadIdentityPools", "workloadIdentityPoolProviders"):
        verbs = ("create", "get", "list", "update", "delete", "undelete")
        assert {f"iam.googleapis.com/{kind}.{v}" for v in verbs} <= admin
        assert {f"iam.googleapis.com/{kind}.{v}" for v in ("get", "list")} <= viewer
        assert not {f"iam.googleapis.com/{kind}.{v}" for v in ("create", "update", "delete")} & viewer


def test_storage_roles() -> None:
    assert perms("roles/storage.objectViewer") == {
        "resourcemanager.projects.get", "resourcemanager.projects.list",
        "storage.folders.get", "storage.folders.list",
        "storage.managedFolders.get", "storage.managedFolders.list",
        "storage.objects.get", "storage.objects.list",
    }
    assert perms("roles/storage.legacyObjectReader") == {"storage.objects.get"}
    creator = perms("roles/storage.objectCreator")
    assert "storage.objects.create" in creator
    assert not {"storage.objects.get", "storage.objects.delete", "storage.objects.list"} & creator
    obj_admin = perms("roles/storage.objectAdmin")
    assert {f"storage.objects.{v}" for v in ("create", "delete", "get", "list", "update",
                                             "getIamPolicy", "setIamPolicy")} <= obj_admin
    assert "storage.buckets.create" not in obj_admin
    user = perms("roles/storage.objectUser")
    assert {"storage.objects.create", "storage.objects.delete", "storage.objects.get"} <= user
    assert not {"storage.objects.getIamPolicy", "storage.objects.setIamPolicy"} & user
    admin = perms("roles/storage.admin")
    assert {f"storage.buckets.{v}" for v in ("create", "delete", "get", "list", "update",
                                             "getIamPolicy", "setIamPolicy")} <= admin
    assert obj_admin - admin <= {p for p in obj_admin if not p.startswith("storage.")}
    assert {"storage.buckets.get", "storage.objects.list"} <= perms("roles/storage.legacyBucketReader")
    assert {"storage.buckets.setIamPolicy", "storage.objects.create"} <= perms("roles/storage.legacyBucketOwner")


def test_secret_manager_roles() -> None:
    assert perms("roles/secretmanager.secretAccessor") == {
        "resourcemanager.projects.get", "resourcemanager.projects.list", "secretmanager.versions.access",
    }
    viewer = perms("roles/secretmanager.viewer")
    assert {"secretmanager.secrets.get", "secretmanager.secrets.list", "secretmanager.versions.list"} <= viewer
    assert "secretmanager.versions.access" not in viewer
    assert "secretmanager.versions.add" in perms("roles/secretmanager.secretVersionAdder")
    manager = perms("roles/secretmanager.secretVersionManager")
    assert {"secretmanager.versions.add", "secretmanager.versions.destroy"} <= manager
    assert "secretmanager.versions.access" not in manager
    admin = perms("roles/secretmanager.admin")
    assert {"secretmanager.secrets.create", "secretmanager.secrets.delete", "secretmanager.secrets.setIamPolicy",
            "secretmanager.versions.access"} <= admin


def test_logging_pubsub_container_run_roles() -> None:
    assert "logging.logEntries.list" in perms("roles/logging.viewer")
    assert "logging.privateLogEntries.list" not in perms("roles/logging.viewer")
    assert {"logging.logEntries.list", "logging.privateLogEntries.list"} <= perms("roles/logging.privateLogViewer")
    assert {"logging.logEntries.create", "logging.logEntries.route"} == perms("roles/logging.logWriter")
    assert perms("roles/pubsub.publisher") == {"pubsub.topics.publish"}
    assert "pubsub.subscriptions.consume" in perms("roles/pubsub.subscriber")
    assert {"container.clusters.get", "container.clusters.list"} <= perms("roles/container.clusterViewer")
    assert {"container.clusters.create", "container.clusters.delete", "container.clusters.getCredentials"} <= perms(
        "roles/container.admin")
    assert perms("roles/run.invoker") >= {"run.routes.invoke"}
    assert {"run.services.create", "run.services.update", "run.services.setIamPolicy"} <= perms("roles/run.admin")
    assert "run.services.setIamPolicy" not in perms("roles/run.developer")
    assert perms("roles/cloudsql.client") == {"cloudsql.instances.connect", "cloudsql.instances.get"}


def test_other_roles_are_unfiltered_google_lists() -> None:
    # Roles outside the scoped set keep Google's full list, other services included.
    assert "firebase.projects.get" in perms("roles/storage.admin")
    assert "monitoring.timeSeries.list" in perms("roles/serviceusage.serviceUsageConsumer")


# -- permission names -----------------------------------------------------------------------------


def test_qualified_wif_names_have_short_aliases() -> None:
    assert permission_aliases("iam.googleapis.com/workloadIdentityPools.create") == {
        "iam.googleapis.com/workloadIdentityPools.create", "iam.workloadIdentityPools.create",
    }
    assert permission_aliases("iam.serviceAccounts.get") == {"iam.serviceAccounts.get"}
    assert expand_permissions(["iam.googleapis.com/workloadIdentityPoolProviders.get", "storage.objects.get"]) == {
        "iam.googleapis.com/workloadIdentityPoolProviders.get", "iam.workloadIdentityPoolProviders.get",
        "storage.objects.get",
    }
    owner = get_predefined_role("roles/owner")
    viewer = get_predefined_role("roles/viewer")
    assert owner is not None and viewer is not None
    # the short names the API checks (and names in IAM_PERMISSION_DENIED) are granted
    for kind in ("workloadIdentityPools", "workloadIdentityPoolProviders"):
        for verb in ("create", "get", "list", "update", "delete", "undelete"):
            assert f"iam.{kind}.{verb}" in owner.included_permissions
        assert f"iam.{kind}.get" in viewer.included_permissions
        assert f"iam.{kind}.create" not in viewer.included_permissions
    # ... while the Role resource keeps Google's spelling
    listed = role_to_json(owner)["includedPermissions"]
    assert "iam.googleapis.com/workloadIdentityPools.create" in listed
    assert "iam.workloadIdentityPools.create" not in listed


def test_known_permissions(raw: dict) -> None:
    known = known_permissions()
    assert set(raw["permissions"]) <= known
    for role in predefined_roles().values():
        assert role.included_permissions <= known
    for p in ("iam.serviceAccounts.getAccessToken", "iam.roles.create", "storage.objects.get",
              "secretmanager.versions.access", "resourcemanager.projects.setIamPolicy",
              "iam.workloadIdentityPools.create", "iam.googleapis.com/workloadIdentityPools.create"):
        assert p in known
    assert "iam.serviceAccounts.fly" not in known
    assert "storage.*" not in known
