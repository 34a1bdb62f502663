"""Kubernetes Engine (container.googleapis.com v1) through Google's discovery-based client: every
served method called in a realistic order, each answer checked against its response schema
(issue #19). Cloud Logging's flow is tests/conformance/test_logging.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import harness
from tests.conformance.harness import Flow, Step

GKE = "container.v1"
PROJECT = "conformance-gke"
LOC = f"projects/{PROJECT}/locations/us-central1"
CLUSTER = f"{LOC}/clusters/conformance-cluster"
POOL = f"{CLUSTER}/nodePools/extra-pool"


def operation(ctx: dict[str, Any], answer: dict[str, Any]) -> None:
    assert answer["name"] and answer["status"] in ("PENDING", "RUNNING", "DONE"), answer


def op(kind: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    """An Operation of Google's type for the method (UPDATE_CLUSTER for most set* methods)."""
    def check(ctx: dict[str, Any], answer: dict[str, Any]) -> None:
        operation(ctx, answer)
        assert answer["operationType"] == kind, answer
    return check


def changed(ctx: dict[str, Any], got: dict[str, Any]) -> None:
    """clusters.get after the set* methods: every change visible."""
    assert got["resourceLabels"] == {"team": "conformance", "env": "test"}, got
    assert got["labelFingerprint"] != ctx["before"]["labelFingerprint"]
    assert got["legacyAbac"] == {"enabled": True}
    assert got["locations"] == ["us-central1-a", "us-central1-b"]
    assert (got["loggingService"], got["monitoringService"]) == ("none", "none")
    assert got["maintenancePolicy"]["window"]["dailyMaintenanceWindow"]["startTime"] == "03:00"
    assert got["maintenancePolicy"]["resourceVersion"] != ctx["before"]["maintenancePolicy"]["resourceVersion"]
    assert got["addonsConfig"]["networkPolicyConfig"] == {"disabled": False}
    assert got["networkPolicy"] == {"enabled": True, "provider": "CALICO"}
    assert got["currentMasterVersion"] == "1.30.6-gke.1125000"


FLOWS = [
    Flow(GKE, [
        Step("container.projects.locations.clusters.create", lambda c: {"parent": LOC, "body": {"cluster": {
            "name": "conformance-cluster", "initialNodeCount": 1, "description": "conformance",
            "workloadIdentityConfig": {"workloadPool": f"{PROJECT}.svc.id.goog"},
            "resourceLabels": {"team": "conformance"}, "status": "ERROR", "selfLink": "ignored"}}},
             save="create_op", check=operation, present=["name", "operationType", "status", "selfLink", "targetLink"]),
        Step("container.projects.locations.operations.get", lambda c: {
            "name": f"{LOC}/operations/{c['create_op']['name']}"}, check=operation),
        Step("container.projects.locations.clusters.get", lambda c: {"name": CLUSTER},
             present=["name", "status", "endpoint", "location", "selfLink", "currentMasterVersion",
                      "workloadIdentityConfig.workloadPool", "nodePools"]),
        Step("container.projects.locations.clusters.list", lambda c: {"parent": LOC},
             check=lambda c, a: [x["name"] for x in a["clusters"]] == ["conformance-cluster"] or pytest.fail(str(a))),
        Step("container.projects.locations.clusters.getJwks", lambda c: {"parent": CLUSTER}, present=["keys"]),
        Step("container.projects.locations.clusters.well-known.getOpenid-configuration", lambda c: {"parent": CLUSTER},
             present=["issuer", "jwks_uri"]),
        Step("container.projects.locations.clusters.update", lambda c: {"name": CLUSTER, "body": {"update": {
            "desiredWorkloadIdentityConfig": {"workloadPool": f"{PROJECT}.svc.id.goog"}}}}, check=operation),
        Step("container.projects.locations.clusters.nodePools.create", lambda c: {"parent": CLUSTER, "body": {
            "nodePool": {"name": "extra-pool", "initialNodeCount": 1,
                         "config": {"machineType": "e2-small", "workloadMetadataConfig": {"mode": "GKE_METADATA"}}}}},
             check=operation),
        Step("container.projects.locations.clusters.nodePools.get", lambda c: {"name": POOL},
             present=["name", "status", "config", "selfLink"]),
        Step("container.projects.locations.clusters.nodePools.list", lambda c: {"parent": CLUSTER},
             check=lambda c, a: "extra-pool" in [p["name"] for p in a["nodePools"]] or pytest.fail(str(a))),
        Step("container.projects.locations.clusters.nodePools.update", lambda c: {"name": POOL, "body": {
            "workloadMetadataConfig": {"mode": "GKE_METADATA"}}}, check=operation),
        # issue #20: the set* methods, IP rotation, upgrades, each read back
        Step("container.projects.locations.clusters.get", lambda c: {"name": CLUSTER}, save="before",
             present=["labelFingerprint", "maintenancePolicy.resourceVersion", "loggingService", "addonsConfig"]),
        Step("container.projects.locations.clusters.setResourceLabels", lambda c: {"name": CLUSTER, "body": {
            "resourceLabels": {"team": "conformance", "env": "test"},
            "labelFingerprint": c["before"]["labelFingerprint"]}}, check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.setResourceLabels", lambda c: {"name": CLUSTER, "body": {
            "resourceLabels": {}, "labelFingerprint": c["before"]["labelFingerprint"]}}, error=400),  # stale
        Step("container.projects.locations.clusters.setLegacyAbac", lambda c: {"name": CLUSTER, "body": {
            "enabled": True}}, check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.setLocations", lambda c: {"name": CLUSTER, "body": {
            "locations": ["us-central1-a", "us-central1-b"]}}, check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.setLocations", lambda c: {"name": CLUSTER, "body": {
            "locations": ["europe-west1-b"]}}, error=400),  # not the cluster's region
        Step("container.projects.locations.clusters.setLogging", lambda c: {"name": CLUSTER, "body": {
            "loggingService": "none"}}, check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.setMonitoring", lambda c: {"name": CLUSTER, "body": {
            "monitoringService": "none"}}, check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.setMaintenancePolicy", lambda c: {"name": CLUSTER, "body": {
            "maintenancePolicy": {"window": {"dailyMaintenanceWindow": {"startTime": "03:00"}},
                                  "resourceVersion": c["before"]["maintenancePolicy"]["resourceVersion"]}}},
             check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.setNetworkPolicy", lambda c: {"name": CLUSTER, "body": {
            "networkPolicy": {"enabled": True}}}, error=400),  # the addon first
        Step("container.projects.locations.clusters.setAddons", lambda c: {"name": CLUSTER, "body": {
            "addonsConfig": {"networkPolicyConfig": {"disabled": False}}}}, check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.setNetworkPolicy", lambda c: {"name": CLUSTER, "body": {
            "networkPolicy": {"enabled": True, "provider": "CALICO"}}}, check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.setMasterAuth", lambda c: {"name": CLUSTER, "body": {
            "action": "SET_USERNAME", "update": {"username": ""}}}, check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.setMasterAuth", lambda c: {"name": CLUSTER, "body": {
            "action": "SET_PASSWORD", "update": {"password": "hunter2"}}}, error=400),  # no basic auth >= 1.19
        Step("container.projects.locations.clusters.startIpRotation", lambda c: {"name": CLUSTER, "body": {
            "rotateCredentials": True}}, check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.completeIpRotation", lambda c: {"name": CLUSTER, "body": {}},
             check=op("UPDATE_CLUSTER")),
        Step("container.projects.locations.clusters.completeIpRotation", lambda c: {"name": CLUSTER, "body": {}},
             error=400),  # none in progress any more
        Step("container.projects.locations.clusters.updateMaster", lambda c: {"name": CLUSTER, "body": {
            "masterVersion": "1.30"}}, check=op("UPGRADE_MASTER")),
        Step("container.projects.locations.clusters.fetchClusterUpgradeInfo", lambda c: {"name": CLUSTER},
             check=lambda c, a: (a["upgradeDetails"][-1]["targetVersion"] == "1.30.6-gke.1125000"
                                 and a["minorTargetVersion"] == "1.31.1-gke.1846000") or pytest.fail(str(a))),
        Step("container.projects.locations.clusters.completeControlPlaneUpgrade", lambda c: {"name": CLUSTER,
             "body": {}}, error=400),  # no rollback-safe upgrade in soak: Keyless's upgrades finish at once
        Step("container.projects.locations.clusters.checkAutopilotCompatibility", lambda c: {"name": CLUSTER},
             check=lambda c, a: [i["constraintType"] for i in a["issues"]] == ["legacy-abac"] or pytest.fail(str(a))),
        Step("container.projects.locations.clusters.get", lambda c: {"name": CLUSTER}, check=changed),
        Step("container.projects.locations.clusters.nodePools.setSize", lambda c: {"name": POOL, "body": {
            "nodeCount": 3}}, check=op("SET_NODE_POOL_SIZE")),
        Step("container.projects.locations.clusters.nodePools.setAutoscaling", lambda c: {"name": POOL, "body": {
            "autoscaling": {"enabled": True, "minNodeCount": 1, "maxNodeCount": 5}}}, check=op("UPGRADE_NODES")),
        Step("container.projects.locations.clusters.nodePools.setManagement", lambda c: {"name": POOL, "body": {
            "management": {"autoRepair": True, "autoUpgrade": False}}}, check=op("SET_NODE_POOL_MANAGEMENT")),
        Step("container.projects.locations.clusters.get", lambda c: {"name": CLUSTER},
             check=lambda c, a: (a["currentNodeCount"] == 4 and next(
                 p for p in a["nodePools"] if p["name"] == "extra-pool")["autoscaling"]["maxNodeCount"] == 5)
             or pytest.fail(str(a))),
        Step("container.projects.locations.clusters.nodePools.get", lambda c: {"name": POOL},
             check=lambda c, a: a["management"] == {"autoRepair": True, "autoUpgrade": False} or pytest.fail(str(a))),
        Step("container.projects.locations.clusters.nodePools.fetchNodePoolUpgradeInfo", lambda c: {"name": POOL},
             check=lambda c, a: (a["autoUpgradeStatus"] == ["UNKNOWN"]
                                 and a["patchTargetVersion"] == "1.30.6-gke.1125000") or pytest.fail(str(a))),
        Step("container.projects.locations.clusters.nodePools.rollback", lambda c: {"name": POOL, "body": {}},
             check=op("UPGRADE_NODES")),
        Step("container.projects.locations.clusters.nodePools.completeUpgrade", lambda c: {"name": POOL, "body": {}},
             error=400),  # no blue-green upgrade in soak
        Step("container.projects.locations.clusters.nodePools.delete", lambda c: {"name": POOL}, check=operation),
        Step("container.projects.locations.clusters.delete", lambda c: {"name": CLUSTER}, check=operation),
        Step("container.projects.locations.clusters.get", lambda c: {"name": f"{LOC}/clusters/no-such-cluster"},
             error=404),
    ]),
]


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any]) -> dict[str, dict[str, Any]]:
    client("cloudresourcemanager.v1").projects().create(body={"projectId": PROJECT}).execute()
    return {flow.document: harness.run(client(flow.document), flow, {}) for flow in FLOWS}


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.document)
def test_every_served_method_has_a_step(flow: Flow) -> None:
    assert not flow.unflowed(harness.served_methods(flow.document))


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.document)
def test_flow(flowed: dict[str, dict[str, Any]], flow: Flow) -> None:
    assert flowed[flow.document]["called"] == [s.method for s in flow.steps]


@pytest.mark.parametrize("flow, method_id", [(f, m) for f in FLOWS for m in harness.body_methods(f)],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_defined_request_field_is_known(client: Callable[[str], Any], flowed: dict[str, dict[str, Any]],
                                              flow: Flow, method_id: str) -> None:
    harness.probe_fields(client(flow.document), flow, method_id, flowed[flow.document])
