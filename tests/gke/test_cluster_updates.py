"""The GKE set*, resize and upgrade methods (issue #20) over HTTP against a real `keyless serve`:
a resize that changes the pool's nodes, IAM with Google's permissions, the Admin Activity entries,
and hostile input refused in Google's shape without touching what is stored. The discovery
client's flow of every method is tests/conformance/test_container.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from keyless.store.models import AuditEntry, GkeCluster, GkeNode, GkeNodePool
from tests.api.helpers import server_state, token_for_user
from tests.conftest import KeylessServer

PROJECT = "gke-updates"
LOC = f"/container/v1/projects/{PROJECT}/locations/us-central1-a"
CLUSTER = f"{LOC}/clusters/c1"
POOL = f"{CLUSTER}/nodePools/default-pool"
VIEWER = "viewer@example.com"


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


def error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == status and body["error"]["status"] == code, body
    return str(body["error"]["message"])


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    ok(module_server.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": PROJECT}))
    ok(module_server.call("POST", f"{LOC}/clusters", body={"cluster": {
        "name": "c1", "initialNodeCount": 2, "resourceLabels": {"team": "a"}}}))
    path = f"/cloudresourcemanager/v1/projects/{PROJECT}"
    policy = ok(module_server.call("POST", path + ":getIamPolicy", body={}))
    policy["bindings"].append({"role": "roles/container.clusterViewer", "members": [f"user:{VIEWER}"]})
    ok(module_server.call("POST", path + ":setIamPolicy", body={"policy": policy}))
    return module_server


def nodes(srv: KeylessServer) -> list[str]:
    with server_state(srv).db.read() as s:
        pool = s.scalars(select(GkeNodePool).where(GkeNodePool.name == "default-pool")).one()
        return sorted(s.scalars(select(GkeNode.name).where(GkeNode.node_pool_id == pool.id)).all())


def stored(srv: KeylessServer) -> tuple[dict[str, Any], dict[str, Any], int]:
    with server_state(srv).db.read() as s:
        cluster = s.scalars(select(GkeCluster).where(GkeCluster.name == "c1")).one()
        pool = s.scalars(select(GkeNodePool).where(GkeNodePool.cluster_id == cluster.id)).one()
        return dict(cluster.body), dict(pool.body), pool.node_count


def test_set_size_adds_and_removes_nodes(srv: KeylessServer) -> None:
    before = nodes(srv)
    assert len(before) == 2
    ok(srv.call("POST", f"{POOL}:setSize", body={"nodeCount": 5}))
    grown = nodes(srv)
    assert len(grown) == 5 and set(before) <= set(grown)
    assert ok(srv.call("GET", CLUSTER))["currentNodeCount"] == 5
    ok(srv.call("POST", f"{POOL}:setSize", body={"nodeCount": "1"}))  # int32 as a JSON string, as Google takes it
    assert len(nodes(srv)) == 1 and set(nodes(srv)) <= set(grown)
    ok(srv.call("POST", f"{POOL}:setSize", body={"nodeCount": 0}))
    assert nodes(srv) == [] and ok(srv.call("GET", CLUSTER))["currentNodeCount"] == 0
    ok(srv.call("POST", f"{POOL}:setSize", body={"nodeCount": 2}))
    assert len(nodes(srv)) == 2


def test_a_viewer_reads_but_changes_nothing(srv: KeylessServer) -> None:
    token = token_for_user(srv, VIEWER)
    ok(srv.call("GET", f"{CLUSTER}:fetchClusterUpgradeInfo", token=token))
    ok(srv.call("GET", f"{CLUSTER}:checkAutopilotCompatibility", token=token))
    ok(srv.call("GET", f"{POOL}:fetchNodePoolUpgradeInfo", token=token))
    fingerprint = ok(srv.call("GET", CLUSTER, token=token))["labelFingerprint"]
    before = stored(srv)
    for path, body in ((f"{CLUSTER}:setResourceLabels", {"resourceLabels": {"x": "y"}, "labelFingerprint": fingerprint}),
                       (f"{CLUSTER}:updateMaster", {"masterVersion": "latest"}),
                       (f"{CLUSTER}:setLegacyAbac", {"enabled": True}),
                       (f"{POOL}:setSize", {"nodeCount": 7}),
                       (f"{POOL}:setManagement", {"management": {"autoUpgrade": False}})):
        msg = error(srv.call("POST", path, token=token, body=body), 403, "PERMISSION_DENIED")
        assert "container.clusters.update" in msg, msg
    assert stored(srv) == before and len(nodes(srv)) == before[2]
    stranger = token_for_user(srv, "stranger@example.com")
    assert "container.clusters.get" in error(srv.call("GET", f"{CLUSTER}:fetchClusterUpgradeInfo", token=stranger),
                                             403, "PERMISSION_DENIED")


def test_admin_activity_entries(srv: KeylessServer) -> None:
    fingerprint = ok(srv.call("GET", CLUSTER))["labelFingerprint"]
    ok(srv.call("POST", f"{CLUSTER}:setResourceLabels", body={"resourceLabels": {"team": "b"},
                                                              "labelFingerprint": fingerprint}))
    ok(srv.call("POST", f"{POOL}:setSize", body={"nodeCount": 2}))
    error(srv.call("POST", f"{CLUSTER}:setResourceLabels", body={"resourceLabels": {},
                                                                 "labelFingerprint": fingerprint}),
          400, "FAILED_PRECONDITION")
    with server_state(srv).db.read() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.method_name.in_((
            "google.container.v1.ClusterManager.SetLabels", "google.container.v1.ClusterManager.SetNodePoolSize")))
            .order_by(AuditEntry.id)).all()
        entries = [r.entry for r in rows]
    labels = [e for e in entries if e["protoPayload"]["methodName"].endswith("SetLabels")]
    size = [e for e in entries if e["protoPayload"]["methodName"].endswith("SetNodePoolSize")]
    assert labels and size
    for entry in (labels[-2], size[-1]):
        assert entry["logName"] == f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
        assert entry["protoPayload"]["serviceName"] == "container.googleapis.com"
        assert entry["protoPayload"]["resourceName"] == f"projects/{PROJECT}/locations/us-central1-a/clusters/c1"
        assert entry["protoPayload"]["authorizationInfo"][0]["permission"] == "container.clusters.update"
        assert entry["resource"]["labels"]["cluster_name"] == "c1"
    assert labels[-1]["protoPayload"]["status"]["code"] == 9  # the refused stale fingerprint, FAILED_PRECONDITION


@pytest.mark.parametrize("path, body, status", [
    (f"{POOL}:setSize", {"nodeCount": 10**12}, "INVALID_ARGUMENT"),
    (f"{POOL}:setSize", {"nodeCount": 51}, "INVALID_ARGUMENT"),
    (f"{POOL}:setSize", {"nodeCount": -1}, "INVALID_ARGUMENT"),
    (f"{POOL}:setSize", {"nodeCount": True}, "INVALID_ARGUMENT"),
    (f"{POOL}:setSize", {"nodeCount": [3]}, "INVALID_ARGUMENT"),
    (f"{POOL}:setSize", {"nodeCount": 3, "evil": 1}, "INVALID_ARGUMENT"),
    (f"{POOL}:setAutoscaling", {"autoscaling": {"enabled": True, "minNodeCount": 5, "maxNodeCount": 2}},
     "INVALID_ARGUMENT"),
    (f"{POOL}:setAutoscaling", {"autoscaling": {"enabled": True, "maxNodeCount": 3, "totalMaxNodeCount": 3}},
     "INVALID_ARGUMENT"),
    (f"{POOL}:setAutoscaling", {"autoscaling": "on"}, "INVALID_ARGUMENT"),
    (f"{POOL}:setManagement", {"management": {"autoRepair": "yes"}}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setResourceLabels", {"resourceLabels": {"Bad Key": "v"}, "labelFingerprint": "x"}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setResourceLabels", {"resourceLabels": {f"k{i}": "v" for i in range(65)}}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setResourceLabels", {"resourceLabels": {"k": "v"}}, "FAILED_PRECONDITION"),  # no fingerprint
    (f"{CLUSTER}:setResourceLabels", {"resourceLabels": ["k"], "labelFingerprint": "x"}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setLocations", {"locations": ["us-central1-b"]}, "INVALID_ARGUMENT"),  # drops the primary zone
    (f"{CLUSTER}:setLocations", {"locations": ["us-central1-a"] * 17}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setLocations", {"locations": "us-central1-a"}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setLogging", {"loggingService": "logging.googleapis.com"}, "INVALID_ARGUMENT"),  # legacy
    (f"{CLUSTER}:setMonitoring", {"monitoringService": {"x": 1}}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setMaintenancePolicy", {"maintenancePolicy": {"window": {
        "dailyMaintenanceWindow": {"startTime": "25:00"}}}}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setMaintenancePolicy", {"maintenancePolicy": {"resourceVersion": "stale"}}, "FAILED_PRECONDITION"),
    (f"{CLUSTER}:setMaintenancePolicy", {"maintenancePolicy": {"window": {"recurringWindow": {
        "window": {"startTime": "2026-12-08T00:00:00Z", "endTime": "nope"}, "recurrence": "FREQ=DAILY"}}}},
     "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setAddons", {"addonsConfig": {"noSuchAddon": {}}}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setAddons", {"addonsConfig": {"httpLoadBalancing": {"disabled": {"x": "y" * 2000}}}},
     "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setNetworkPolicy", {"networkPolicy": {"enabled": True, "provider": "WEAVE"}}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setMasterAuth", {"action": "SET_USERNAME", "update": {"username": "admin"}}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setMasterAuth", {"action": "UNKNOWN", "update": {}}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:setLegacyAbac", {"enabled": "true"}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:updateMaster", {"masterVersion": "1.99"}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:updateMaster", {"masterVersion": "x" * 5000}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:updateMaster", {"masterVersion": 131}, "INVALID_ARGUMENT"),
    (f"{CLUSTER}:completeIpRotation", {}, "FAILED_PRECONDITION"),
])
def test_bad_input_is_refused_and_nothing_changes(srv: KeylessServer, path: str, body: dict[str, Any],
                                                  status: str) -> None:
    before = stored(srv)
    error(srv.call("POST", path, body=body), 400, status)
    assert stored(srv) == before


def test_master_upgrades_one_minor_at_a_time_and_never_down(srv: KeylessServer) -> None:
    """From the default 1.30.5: the next minor is allowed, a downgrade of the minor is not."""
    ok(srv.call("POST", f"{CLUSTER}:updateMaster", body={"masterVersion": "latest"}))
    assert ok(srv.call("GET", CLUSTER))["currentMasterVersion"] == "1.31.1-gke.1846000"
    info = ok(srv.call("GET", f"{CLUSTER}:fetchClusterUpgradeInfo"))
    assert [(u["initialVersion"], u["targetVersion"]) for u in info["upgradeDetails"]] == [
        ("1.30.5-gke.1014001", "1.31.1-gke.1846000")]
    assert "downgraded" in error(srv.call("POST", f"{CLUSTER}:updateMaster", body={"masterVersion": "1.30"}),
                                 400, "FAILED_PRECONDITION")
    # the history is Keyless's own: never echoed in the Cluster, never settable at create
    assert not any(k.startswith("_") for k in ok(srv.call("GET", CLUSTER)))
    ok(srv.call("POST", f"{LOC}/clusters", body={"cluster": {"name": "c2", "_upgrades": [{"state": "FAILED"}],
                                                             "currentMasterVersion": "9.9.9"}}))
    assert ok(srv.call("GET", f"{LOC}/clusters/c2"))["currentMasterVersion"] == "1.30.5-gke.1014001"
    assert ok(srv.call("GET", f"{LOC}/clusters/c2:fetchClusterUpgradeInfo"))["upgradeDetails"] == []
    ok(srv.call("DELETE", f"{LOC}/clusters/c2"))
