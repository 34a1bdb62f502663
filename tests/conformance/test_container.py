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
