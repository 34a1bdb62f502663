"""google-cloud-asset with its DEFAULT transport, gRPC, against Keyless's TLS port (issue #20):
searchAllResources, searchAllIamPolicies, analyzeIamPolicy and analyzeIamPolicyLongrunning, their
answers the REST API's, denials as gRPC PERMISSION_DENIED, bad queries as INVALID_ARGUMENT. The
client trusts Keyless's CA through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH and reaches
`cloudasset.keyless.test:PORT` through its universe setting, as test_secret_manager_grpc.py.
A GKE cluster and a log sink are here too: the REST tests' server (test_cloud_asset.py) has none."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import token_for_user
from tests.conftest import KeylessServer, free_port, fresh_database_url
from tests.e2e.universe import run_in_universe

ORG = "777"
PROJECT = "grpc-asset"
UNIVERSE = "keyless.test"
ANALYST = "analyst@example.com"
CRM = "/cloudresourcemanager/v1/projects"

pytestmark = [pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                 reason="needs root and unshare(1) to give the client its own /etc/hosts"),
              # a client matrix: each RPC is transcoded to the REST method tests/e2e/test_cloud_asset.py
              # and the conformance suite drive on both stores
              pytest.mark.store_independent]


def ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    tls_port = free_port()
    server = KeylessServer(tmp_path_factory.mktemp("assetgrpc") / "data", fresh_database_url(),
                           "--tls-port", str(tls_port), "--universe-domain", UNIVERSE)
    server.tls_port = tls_port  # type: ignore[attr-defined]
    ok(server.call("POST", CRM, body={"projectId": PROJECT, "parent": {"type": "organization", "id": ORG}}))
    ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "deploy-sa"}))
    ok(server.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": "grpc-asset-exports"}))
    ok(server.call("POST", f"/container/v1/projects/{PROJECT}/locations/us-central1/clusters", body={"cluster": {
        "name": "prod-cluster", "resourceLabels": {"env": "prod"},
        "nodePools": [{"name": "default-pool", "initialNodeCount": 1}]}}))
    ok(server.call("POST", f"/logging/v2/projects/{PROJECT}/sinks", body={
        "name": "audit-archive", "destination": "storage.googleapis.com/grpc-asset-exports"}))
    policy = ok(server.call("POST", f"{CRM}/{PROJECT}:getIamPolicy", body={}))
    policy.setdefault("bindings", []).append({"role": "roles/cloudasset.viewer", "members": [f"user:{ANALYST}"]})
    ok(server.call("POST", f"{CRM}/{PROJECT}:setIamPolicy", body={"policy": policy}))
    yield server
    server.stop()


CLIENT = r'''
import json, sys
from google.api_core import exceptions
from google.oauth2.credentials import Credentials
from google.cloud import asset_v1

universe, token, script = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
client = asset_v1.AssetServiceClient(credentials=Credentials(token, universe_domain=universe),
                                     client_options={"universe_domain": universe})
out = {"transport": type(client._transport).__name__}
for step, (method, request) in enumerate(script):
    try:
        if method == "search_all_resources":
            out[step] = [asset_v1.ResourceSearchResult.to_dict(r) for r in client.search_all_resources(request=request)]
        elif method == "search_all_iam_policies":
            out[step] = [r.resource for r in client.search_all_iam_policies(request=request)]
        elif method == "analyze_iam_policy":
            response = client.analyze_iam_policy(request=request)
            out[step] = sorted(r.iam_binding.role for r in response.main_analysis.analysis_results)
        else:
            operation = client.analyze_iam_policy_longrunning(request=request)
            operation.result(timeout=30)
            out[step] = {"done": operation.done(), "name": operation.operation.name}
    except exceptions.GoogleAPICallError as e:
        out[step] = {"error": type(e).__name__, "grpc": e.grpc_status_code.name if e.grpc_status_code else None,
                     "message": e.message}
print(json.dumps(out))
'''


def run_client(srv: KeylessServer, tmp_path: Path, token: str, script: list[Any]) -> dict[str, Any]:
    port = srv.tls_port  # type: ignore[attr-defined]
    (tmp_path / "client.py").write_text(CLIENT)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GRPC_"))},
           "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(srv.data_dir / "tls" / "ca.pem")}
    out = run_in_universe(srv, tmp_path, UNIVERSE, [sys.executable, str(tmp_path / "client.py"), f"{UNIVERSE}:{port}",
                                                    token, json.dumps(script)], env)
    assert out.pop("transport") == "AssetServiceGrpcTransport"  # the default: gRPC, not REST
    return out


def test_asset_service_over_grpc(srv: KeylessServer, tmp_path: Path) -> None:
    """One client process (grpc's import is most of its cost) runs every call."""
    scope = f"projects/{PROJECT}"
    token = token_for_user(srv, ANALYST)
    policy = ok(srv.call("GET", "/storage/v1/b/grpc-asset-exports/iam"))
    policy["bindings"].append({"role": "roles/storage.objectCreator", "members": [f"user:{ANALYST}"]})
    ok(srv.call("PUT", "/storage/v1/b/grpc-asset-exports/iam", body=policy))
    out = run_client(srv, tmp_path, token, [
        ("search_all_resources", {"scope": scope, "query": "labels.env:prod OR name:audit-archive",
                                  "order_by": "assetType", "page_size": 1}),
        ("search_all_resources", {"scope": scope, "asset_types": ["iam.googleapis.com/ServiceAccount"],
                                  "read_mask": "name,additionalAttributes"}),
        ("search_all_iam_policies", {"scope": scope, "query": f"policy:{ANALYST}"}),
        ("analyze_iam_policy", {"analysis_query": {"scope": scope, "identity_selector": {"identity": f"user:{ANALYST}"}}}),
        ("search_all_resources", {"scope": "projects/no-such-project"}),
        ("search_all_resources", {"scope": scope, "query": "(" * 600 + "a" + ")" * 600}),
        ("analyze_iam_policy_longrunning", {
            "analysis_query": {"scope": scope, "identity_selector": {"identity": f"user:{ANALYST}"}},
            "output_config": {"gcs_destination": {"uri": "gs://grpc-asset-exports/analyst.json"}}}),
    ])
    rest = ok(srv.call("GET", f"/cloudasset/v1/{scope}:searchAllResources", token=token, params={
        "query": "labels.env:prod OR name:audit-archive", "orderBy": "assetType"}))["results"]
    assert [r["name"] for r in out["0"]] == [r["name"] for r in rest] == [
        f"//container.googleapis.com/projects/{PROJECT}/locations/us-central1/clusters/prod-cluster",
        f"//logging.googleapis.com/projects/{rest[1]['project'].split('/')[1]}/sinks/audit-archive"]
    cluster = out["0"][0]
    assert cluster["asset_type"] == "container.googleapis.com/Cluster" and cluster["location"] == "us-central1"
    assert cluster["labels"] == {"env": "prod"} and cluster["state"] == "RUNNING"
    assert [(r["name"].split("/serviceAccounts/")[0], r["additional_attributes"]["email"]) for r in out["1"]] == [
        (f"//iam.googleapis.com/projects/{PROJECT}", f"deploy-sa@{PROJECT}.iam.gserviceaccount.com")]
    assert out["1"][0]["asset_type"] == ""  # not in the read mask
    assert out["2"] == [f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}",
                        "//storage.googleapis.com/grpc-asset-exports"]
    assert out["3"] == ["roles/cloudasset.viewer", "roles/storage.objectCreator"]
    assert out["4"]["grpc"] == "PERMISSION_DENIED" and "cloudasset.assets.searchAllResources" in out["4"]["message"]
    assert out["5"]["grpc"] == "INVALID_ARGUMENT" and "nest deeper" in out["5"]["message"]
    assert out["6"]["done"] is True and "/operations/AnalyzeIamPolicyLongrunning/" in out["6"]["name"]
    written = ok(srv.call("GET", "/storage/v1/b/grpc-asset-exports/o/analyst.json", params={"alt": "media"}))
    assert sorted(r["iamBinding"]["role"] for r in written["mainAnalysis"]["analysisResults"]) == out["3"]
