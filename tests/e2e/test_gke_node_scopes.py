"""Seed 003's point about node scopes, in real pods (issue #19): a pod on a node pool left on
GCE_METADATA gets its node's service account with the node pool's oauthScopes (gcloud's default
gke-default set has devstorage.read_only and no cloud-platform), so it reads Cloud Storage but is
refused Secret Manager with ACCESS_TOKEN_SCOPE_INSUFFICIENT, whatever IAM grants; `?scopes=` cannot
widen them. On GKE_METADATA the pod's token, through its GSA, has cloud-platform: node scopes are
irrelevant."""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.gke.clusters import find_cluster
from tests.api.helpers import server_state
from tests.conftest import Gcloud, KeylessServer, _need_gcloud, fresh_database_url
from tests.gke.pod_helpers import CLUSTERS, COMPUTE_SA, GSA, NUMBER, POOL, PROJECT, apply_ksa, curl, pod_run

AUTH = "https://www.googleapis.com/auth/"
# gcloud's `--scopes` default for node pools (googlecloudsdk/api_lib/compute/constants.py GKE_DEFAULT_SCOPES)
GKE_DEFAULT = sorted(AUTH + s for s in ("devstorage.read_only", "logging.write", "monitoring", "servicecontrol",
                                        "service.management.readonly", "trace.append"))
TOKEN = "instance/service-accounts/default/token"
SECRET = f"/secretmanager/v1/projects/{PROJECT}/secrets/api-key/versions/latest:access"
OBJECT = "/storage/v1/b/my-bucket/o/data.txt"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    server = KeylessServer(tmp_path_factory.mktemp("nodescopes") / "data", fresh_database_url())
    try:
        assert server.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
        r = server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "my-app-gsa"})
        assert r.status_code == 200, r.text
        pools = [{"name": "legacy-pool", "initialNodeCount": 1,
                  "config": {"oauthScopes": GKE_DEFAULT, "workloadMetadataConfig": {"mode": "GCE_METADATA"}}},
                 {"name": "default-pool", "initialNodeCount": 1,
                  "config": {"oauthScopes": GKE_DEFAULT, "workloadMetadataConfig": {"mode": "GKE_METADATA"}}},
                 {"name": "api-pool", "initialNodeCount": 1,  # no oauthScopes: the API's default
                  "config": {"workloadMetadataConfig": {"mode": "GCE_METADATA"}}}]
        r = server.call("POST", CLUSTERS, body={"cluster": {
            "name": "my-cluster", "workloadIdentityConfig": {"workloadPool": POOL}, "nodePools": pools}})
        assert r.status_code == 200, r.text
        with server_state(server).db.read() as s:
            cluster = find_cluster(s, PROJECT, "my-cluster", "us-central1")
        assert cluster is not None
        path = f"/iam/v1/projects/{PROJECT}/serviceAccounts/{GSA}:setIamPolicy"
        assert server.call("POST", path, body={"policy": {"bindings": [{
            "role": "roles/iam.workloadIdentityUser",
            "members": [f"serviceAccount:{POOL}[production/my-app-ksa]"]}]}}).status_code == 200
        apply_ksa(server, cluster.id, "production", "my-app-ksa", {"iam.gke.io/gcp-service-account": GSA})
        # IAM lets both the node's account and the GSA read the bucket and the secret
        rm = f"/cloudresourcemanager/v1/projects/{PROJECT}"
        policy = server.call("POST", rm + ":getIamPolicy", body={}).json()
        for role in ("roles/storage.objectViewer", "roles/secretmanager.secretAccessor"):
            policy["bindings"].append({"role": role, "members": [f"serviceAccount:{COMPUTE_SA}",
                                                                 f"serviceAccount:{GSA}"]})
        assert server.call("POST", rm + ":setIamPolicy", body={"policy": policy}).status_code == 200
        assert server.call("POST", "/storage/v1/b", params={"project": PROJECT},
                           body={"name": "my-bucket"}).status_code == 200
        assert server.call("POST", "/upload/storage/v1/b/my-bucket/o", params={"uploadType": "media",
                           "name": "data.txt"}, raw=b"hello", headers={"Content-Type": "text/plain"}).status_code == 200
        sm = f"/secretmanager/v1/projects/{PROJECT}/secrets"
        assert server.call("POST", sm, params={"secretId": "api-key"},
                           body={"replication": {"automatic": {}}}).status_code == 200
        assert server.call("POST", f"{sm}/api-key:addVersion", body={
            "payload": {"data": base64.b64encode(b"s3cr3t").decode()}}).status_code == 200
        yield server
    finally:
        server.stop()


def pod_tokens(srv: KeylessServer, pool: str, *paths: str) -> list[str]:
    """What curl prints, inside a pod on `pool`, for each metadata path (one answer a line)."""
    script = "; ".join(f"echo \"$({shlex.join(curl(p))})\" | tr '\\n' ' '; echo" for p in paths)
    result = pod_run(srv, "--cluster", "my-cluster", "--namespace", "production", "--service-account", "my-app-ksa",
                     "--node-pool", pool, command=["sh", "-c", script])
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_node_pool_reports_its_scopes_as_gke_does(srv: KeylessServer) -> None:
    pools = {p["name"]: p["config"]["oauthScopes"] for p in srv.call("GET", f"{CLUSTERS}/my-cluster").json()["nodePools"]}
    assert pools == {"legacy-pool": GKE_DEFAULT, "default-pool": GKE_DEFAULT,
                     "api-pool": [AUTH + "logging.write", AUTH + "monitoring"]}
    r = srv.call("POST", f"{CLUSTERS}/my-cluster/nodePools", body={"nodePool": {
        "name": "bad-pool", "config": {"oauthScopes": ["x" * 300]}}})
    assert r.status_code == 400 and "oauthScopes" in r.json()["error"]["message"]


def test_node_identity_has_the_node_scopes(srv: KeylessServer) -> None:
    out = pod_tokens(srv, "legacy-pool", "instance/service-accounts/default/scopes", TOKEN,
                     TOKEN + "?scopes=" + AUTH + "cloud-platform",
                     TOKEN + "?scopes=" + AUTH + "cloud-platform," + AUTH + "devstorage.read_only")
    assert out[0].split() == GKE_DEFAULT  # the metadata server lists the node's scopes
    token = json.loads(out[1])["access_token"]
    info = srv.call("GET", "/oauth2/v3/tokeninfo", token="", params={"access_token": token}).json()
    assert info["email"] == COMPUTE_SA and sorted(info["scope"].split()) == GKE_DEFAULT
    assert srv.call("GET", OBJECT, token=token, params={"alt": "media"}).content == b"hello"
    r = srv.call("GET", SECRET, token=token)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["message"] == "Request had insufficient authentication scopes."
    assert r.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    # asking for more than the node has does not give it
    widened = json.loads(out[2])["access_token"]
    assert srv.call("GET", "/oauth2/v3/tokeninfo", token="", params={"access_token": widened}).json()["scope"] == ""
    assert srv.call("GET", SECRET, token=widened).status_code == 403
    narrowed = json.loads(out[3])["access_token"]
    assert srv.call("GET", "/oauth2/v3/tokeninfo", token="",
                    params={"access_token": narrowed}).json()["scope"] == AUTH + "devstorage.read_only"


def test_workload_identity_makes_node_scopes_irrelevant(srv: KeylessServer) -> None:
    out = pod_tokens(srv, "default-pool", TOKEN)
    token = json.loads(out[0])["access_token"]
    info = srv.call("GET", "/oauth2/v3/tokeninfo", token="", params={"access_token": token}).json()
    assert info["email"] == GSA and info["scope"] == AUTH + "cloud-platform"
    r = srv.call("GET", SECRET, token=token)
    assert r.status_code == 200, r.text
    assert base64.b64decode(r.json()["payload"]["data"]) == b"s3cr3t"


def test_gcloud_node_pool_scopes(srv: KeylessServer, tmp_path: Path) -> None:
    """gcloud sends its --scopes (default gke-default) and reads them back as GKE keeps them."""
    _need_gcloud()
    g = Gcloud(srv, tmp_path / "gcloud")
    where = ("--cluster=my-cluster", "--region=us-central1")
    g.run("container", "node-pools", "create", "gcloud-pool", *where, "--num-nodes=1")
    assert g.json("container", "node-pools", "describe", "gcloud-pool", *where)["config"]["oauthScopes"] == GKE_DEFAULT
    g.run("container", "node-pools", "create", "full-pool", *where, "--num-nodes=1", "--scopes=cloud-platform")
    described = g.json("container", "node-pools", "describe", "full-pool", *where)
    assert described["config"]["oauthScopes"] == [AUTH + "cloud-platform"]
