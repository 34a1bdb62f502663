"""Bad input answered as bad input (issue #23 item 8): Google's error shape with a 4xx, never a
500. Before: a NUL in a path answered 500 on PostgreSQL, deeply nested JSON in a Kubernetes PATCH a
plain-text 500 (RecursionError)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import KeylessServer, fresh_database_url
from tests.gke.pod_helpers import PROJECT, make_cluster

KUBE = f"/kubernetes/projects/{PROJECT}/locations/us-central1/clusters/my-cluster/api/v1/namespaces/default"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    server = KeylessServer(tmp_path_factory.mktemp("bad-input") / "data", fresh_database_url())
    assert server.keyless("projects", "create", PROJECT, "--number", "123456789012").returncode == 0
    make_cluster(server)
    r = server.call("POST", f"{KUBE}/serviceaccounts", body={"metadata": {"name": "ksa"}})
    assert r.status_code == 201, r.text
    yield server
    server.stop()


def _google_error(r, status: int = 400) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == status and error["status"] == "INVALID_ARGUMENT"
    return str(error["message"])


@pytest.mark.parametrize("path", [
    "/iam/v1/projects/my-project%00/serviceAccounts",
    "/storage/v1/b/bucket%00x/o",
    "/v1/projects/my-project/secrets/a%00b",
    "/cloudresourcemanager/v1/projects/my%00project",
])
def test_a_nul_in_a_path_is_400(srv: KeylessServer, path: str) -> None:
    assert "NUL" in _google_error(srv.call("GET", path))


def test_a_nul_in_a_query_is_400(srv: KeylessServer) -> None:
    assert "NUL" in _google_error(srv.call("GET", "/iam/v1/projects/my-project/serviceAccounts",
                                            params={"pageToken": "a\x00b"}))


def test_a_nul_in_a_json_body_is_400_and_stores_nothing(srv: KeylessServer) -> None:
    r = srv.call("POST", "/iam/v1/projects/my-project/serviceAccounts",
                 body={"accountId": "nul-gsa", "serviceAccount": {"displayName": "a\x00b"}})
    assert "NUL" in _google_error(r)
    r = srv.call("GET", "/iam/v1/projects/my-project/serviceAccounts/nul-gsa@my-project.iam.gserviceaccount.com")
    assert r.status_code == 404


def test_deeply_nested_json_in_a_json_api_is_400(srv: KeylessServer) -> None:
    deep = b'{"serviceAccount": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001
    r = srv.call("POST", "/iam/v1/projects/my-project/serviceAccounts", raw=deep)
    assert "nested too deeply" in _google_error(r)


@pytest.mark.parametrize("depth", [100_000, 3_000, 900])
def test_deeply_nested_json_in_a_kubernetes_patch_is_400(srv: KeylessServer, depth: int) -> None:
    deep = b'{"metadata": {"annotations": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}}"
    r = srv.call("PATCH", f"{KUBE}/serviceaccounts/ksa", raw=deep,
                 headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 400, r.text
    status = r.json()
    assert status["kind"] == "Status" and status["code"] == 400 and status["status"] == "Failure"
    r = srv.call("GET", f"{KUBE}/serviceaccounts/ksa")
    assert r.status_code == 200 and "annotations" not in r.json()["metadata"]


def test_a_nul_in_a_kubernetes_body_is_not_a_500(srv: KeylessServer) -> None:
    r = srv.call("PATCH", f"{KUBE}/serviceaccounts/ksa",
                 raw=json.dumps({"metadata": {"labels": {"a": "b\x00c"}}}).encode(),
                 headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 400, r.text
    assert r.json()["kind"] == "Status"
