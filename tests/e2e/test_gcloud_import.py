"""`keyless import` (issue #22): a project exported with gcloud's own `--format=json` commands (here
from a Keyless server holding the seeds' setup, as they would come from a real project) is rebuilt
on another server, where the doctor finds the same mistakes and a GitHub Actions job exchanges
through the imported provider, whose public issuer is mapped to Keyless's test issuer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import server_state
from tests.conftest import Gcloud, KeylessServer, _need_gcloud, fresh_database_url
from tests.doctor import seeds

pytestmark = [pytest.mark.gcloud, pytest.mark.store_independent]  # gcloud's side of the wire: SQLite leg only; the PostgreSQL leg drives the same methods with the discovery client (tests/conformance)


def _server(tmp_path: Path, name: str) -> KeylessServer:
    (tmp_path / name).mkdir()
    return KeylessServer(tmp_path / name / "data", fresh_database_url(), "--allow-insecure-issuers")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[KeylessServer, KeylessServer]]:
    _need_gcloud()
    source, target = _server(tmp_path, "source"), _server(tmp_path, "target")
    seeds.build(server_state(source))
    yield source, target
    source.stop()
    target.stop()


def _findings(srv: KeylessServer) -> list[tuple[str, str]]:
    data = json.loads(srv.keyless("doctor", "lint", "--format", "json").stdout)
    return sorted((f["rule"], f["message"]) for f in data["findings"])


def test_import_what_gcloud_exports(servers: tuple[KeylessServer, KeylessServer], tmp_path: Path) -> None:
    source, target = servers
    gcloud = Gcloud(source, tmp_path / "gcloud")
    files: dict[str, Path] = {}

    def export(name: str, *args: str) -> Path:
        path = tmp_path / f"{name}.json"
        path.write_text(gcloud.run(*args, "--format=json").stdout)
        files[name] = path
        return path

    export("policy", "projects", "get-iam-policy", "my-project")
    export("accounts", "iam", "service-accounts", "list", "--project", "my-project")
    export("deploy-policy", "iam", "service-accounts", "get-iam-policy", seeds.DEPLOY_SA, "--project", "my-project")
    export("app-policy", "iam", "service-accounts", "get-iam-policy", seeds.APP_GSA, "--project", "my-project")
    export("roles", "iam", "roles", "list", "--project", "my-project")
    export("pools", "iam", "workload-identity-pools", "list", "--location=global", "--project", "my-project")
    for pool in ("github-pool", "aws-pool"):
        export(pool, "iam", "workload-identity-pools", "providers", "list", f"--workload-identity-pool={pool}",
               "--location=global", "--project", "my-project")
    export("cluster", "container", "clusters", "describe", "my-cluster", "--location=europe-west2",
           "--project", "my-project")
    export("org", "resource-manager", "org-policies", "describe", "iam.disableServiceAccountKeyCreation",
           "--project=my-project")

    result = target.keyless(
        "import", "--project", "my-project", "--iam-policy", str(files["policy"]),
        "--service-accounts", str(files["accounts"]),
        "--service-account-policy", f"{seeds.DEPLOY_SA}={files['deploy-policy']}",
        "--service-account-policy", f"{seeds.APP_GSA}={files['app-policy']}",
        "--roles", str(files["roles"]), "--pools", str(files["pools"]),
        "--providers", str(files["github-pool"]), "--providers", str(files["aws-pool"]),
        "--cluster", str(files["cluster"]), "--org-policy", str(files["org"]))
    assert result.returncode == 0, result.stderr + result.stdout
    mapped = f"{target.base_url}/idp/github"
    assert f"issuer https://token.actions.githubusercontent.com -> {mapped}" in result.stdout
    assert "+ create project my-project (number 123456789)" in result.stdout

    # the doctor sees the production policy's mistakes, the same as on the source
    assert _findings(target) == _findings(source)
    provider = seeds.pool_path("github-pool") + "/providers/github-provider"
    got = target.call("GET", f"/iam/v1/{provider}").json()
    assert got["oidc"]["issuerUri"] == mapped and got["attributeCondition"] == seeds.GITHUB_CONDITION

    # and a workflow of the trusted repository exchanges and impersonates through the imported binding
    token = target.keyless("token", "github", "--repository", "my-org/my-repo", "--provider", provider).stdout.strip()
    exchanged = httpx.post(f"{target.base_url}/sts/v1/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "audience": f"//iam.googleapis.com/{provider}",
        "scope": "https://www.googleapis.com/auth/cloud-platform", "subject_token": token,
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"})
    assert exchanged.status_code == 200, exchanged.text
    federated = exchanged.json()["access_token"]
    impersonated = target.call("POST", f"/iamcredentials/v1/projects/-/serviceAccounts/{seeds.DEPLOY_SA}"
                                       ":generateAccessToken", token=federated,
                               body={"scope": ["https://www.googleapis.com/auth/cloud-platform"]})
    assert impersonated.status_code == 200, impersonated.text
    # an import is an apply: running it again changes nothing
    again = target.keyless("import", "--project", "my-project", "--iam-policy", str(files["policy"]),
                           "--pools", str(files["pools"]), "--providers", str(files["github-pool"]))
    assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr


def test_import_refuses_what_is_not_a_gcloud_export(tmp_path: Path) -> None:
    target = _server(tmp_path, "target")
    try:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"name": "projects/x"}))
        result = target.keyless("import", "--project", "p-1", "--iam-policy", str(bad))
        assert result.returncode == 1 and "expected an IAM policy" in result.stderr, result.stderr
        bad.write_text("{not json")
        assert "bad.json" in target.keyless("import", "--project", "p-1", "--pools", str(bad)).stderr
        assert target.call("GET", "/cloudresourcemanager/v1/projects").json().get("projects", []) == []
    finally:
        target.stop()
