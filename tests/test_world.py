"""Declarative state (issue #22): `keyless export`, `keyless apply -f`, `--dry-run` and
`keyless serve --state`, round-tripped on the seeds' setup (GitHub and AWS pools, GKE, conditional
grants, org policy, Data Access logs) plus a bucket, a secret, a custom role and annotated KSAs,
with the doctor's findings unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.api.helpers import server_state
from tests.conftest import KeylessServer, fresh_database_url
from tests.doctor import seeds

KSA_PATH = "/kubernetes/projects/my-project/locations/europe-west2/clusters/my-cluster/api/v1/namespaces"


def _server(tmp_path: Path, name: str, *extra: str) -> KeylessServer:
    (tmp_path / name).mkdir()
    return KeylessServer(tmp_path / name / "data", fresh_database_url(), "--allow-insecure-issuers", *extra)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[KeylessServer]:
    """A server holding the seeds' world, made as users make it (domain builders and the APIs)."""
    srv = _server(tmp_path, "source")
    seeds.build(server_state(srv))
    for path, body in (
        ("/storage/v1/b?project=my-project", {"name": "my-app-bucket"}),
        ("/secretmanager/v1/projects/my-project/secrets?secretId=db-password", {"replication": {"automatic": {}}}),
        ("/iam/v1/projects/my-project/roles", {"roleId": "tokenReader", "role": {
            "title": "Token reader", "includedPermissions": ["iam.serviceAccounts.getAccessToken"], "stage": "GA"}}),
        (KSA_PATH, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "production"}}),
        (f"{KSA_PATH}/production/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
            "name": "my-app-ksa", "annotations": {"iam.gke.io/gcp-service-account": seeds.APP_GSA}}}),
    ):
        r = srv.call("POST", path, body=body)
        assert r.status_code in (200, 201), (path, r.text)
    policy = {"bindings": [{"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{seeds.APP_GSA}"]}]}
    r = srv.call("POST", "/secretmanager/v1/projects/my-project/secrets/db-password:setIamPolicy", body={"policy": policy})
    assert r.status_code == 200, r.text
    yield srv
    srv.stop()


def _export(srv: KeylessServer) -> dict:
    result = srv.keyless("export")
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _findings(srv: KeylessServer) -> list[tuple[str, str]]:
    result = srv.keyless("doctor", "lint", "--format", "json")
    data = json.loads(result.stdout)
    return sorted((f["rule"], f["message"]) for f in data["findings"])


def test_export_apply_round_trip(source: KeylessServer, tmp_path: Path) -> None:
    world = _export(source)
    project = world["projects"][0]
    assert project["projectId"] == "my-project" and project["projectNumber"] == seeds.NUMBER
    assert {p["poolId"] for p in project["workloadIdentityPools"]} == {"github-pool", "aws-pool"}
    assert project["orgPolicies"] == [{"constraint": "constraints/iam.disableServiceAccountKeyCreation",
                                       "booleanPolicy": {"enforced": True}}]
    assert any(b.get("condition", {}).get("title") == "only-app-bucket" for b in project["iamPolicy"]["bindings"])
    namespaces = {n["name"]: n for n in project["clusters"][0]["namespaces"]}
    assert {"name": "my-app-ksa", "annotations": {"iam.gke.io/gcp-service-account": seeds.APP_GSA}} in \
        namespaces["production"]["serviceAccounts"]
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(world, sort_keys=False))

    target = _server(tmp_path, "target")
    try:
        dry = target.keyless("apply", "-f", str(path), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert "+ create project my-project (number 123456789)" in dry.stdout
        assert "+ create provider github-pool/github-provider" in dry.stdout
        assert "--dry-run: nothing was changed" in dry.stdout
        assert _export(target)["projects"] == []

        made = target.keyless("apply", "-f", str(path))
        assert made.returncode == 0, made.stderr + made.stdout
        assert _export(target) == world  # the round trip is exact
        again = target.keyless("apply", "-f", str(path))
        assert again.returncode == 0 and "No changes" in again.stdout, again.stdout + again.stderr
        assert _findings(target) == _findings(source)

        # an edit is planned as an update of that field, and made
        edited = yaml.safe_load(path.read_text())
        provider = edited["projects"][0]["workloadIdentityPools"][0]["providers"][0]
        provider["attributeCondition"] = "assertion.repository_owner == 'other-org'"
        path.write_text(yaml.safe_dump(edited, sort_keys=False))
        changed = target.keyless("apply", "-f", str(path))
        assert changed.returncode == 0, changed.stderr
        assert "~ update provider" in changed.stdout and "attributeCondition" in changed.stdout
        assert _export(target) == edited
    finally:
        target.stop()


def test_serve_state_starts_with_the_world(source: KeylessServer, tmp_path: Path) -> None:
    world = _export(source)
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(world, sort_keys=False))
    started = _server(tmp_path, "started", "--state", str(path))
    try:
        assert _export(started) == world
    finally:
        started.stop()


def test_bad_world_files_change_nothing(tmp_path: Path) -> None:
    srv = _server(tmp_path, "bad")
    try:
        path = tmp_path / "bad.yaml"
        path.write_text("projects:\n- projectId: ok-project\n  serviceAccounts:\n  - accountId: x\n")
        result = srv.keyless("apply", "-f", str(path))
        assert result.returncode == 1 and "accountId" in result.stderr, result.stderr
        path.write_text("- just a list\n")
        assert "a mapping" in srv.keyless("apply", "-f", str(path)).stderr
        path.write_text("apiVersion: other/v9\nprojects: []\n")
        assert "apiVersion" in srv.keyless("apply", "-f", str(path)).stderr
    finally:
        srv.stop()
