"""docs/api-coverage.md is what scripts/api_coverage.py makes of Google's discovery documents and
Keyless's route table today (issue #19): regenerate it and fail when the file is stale, and check
that "served" follows the routes (a catch-all or a parameter that swallows a custom verb does not
serve a method)."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from starlette.routing import Mount, Route

from tests.conformance.discovery import document, methods

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.store_independent


@functools.cache
def coverage() -> ModuleType:
    spec = importlib.util.spec_from_file_location("api_coverage", ROOT / "scripts" / "api_coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["api_coverage"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_coverage_table_is_current() -> None:
    expected = coverage().render()
    assert (ROOT / "docs" / "api-coverage.md").read_text() == expected, \
        "docs/api-coverage.md is stale: run python scripts/api_coverage.py"


def test_served_follows_the_routes() -> None:
    table = coverage()
    routes = table.route_table()
    by_id = {m.id: m for m in methods(document("iam.v1"))}
    assert table.served(routes, by_id["iam.projects.serviceAccounts.create"])
    assert table.served(routes, by_id["iam.projects.locations.workloadIdentityPools.operations.get"])
    assert table.served(routes, by_id["iam.projects.locations.workloadIdentityPools.providers.keys.list"])
    assert not table.served(routes, by_id["iam.locations.workforcePools.get"])
    # `GET pools/{pool}` alone must not count as serving `GET pools/{pool}:listAttestationRules`
    pool_get = Route("/v1/projects/{project}/locations/{location}/workloadIdentityPools/{pool}",
                     lambda request: None, methods=["GET"])
    list_rules = by_id["iam.projects.locations.workloadIdentityPools.listAttestationRules"]
    assert not table.served([Mount("/iam", routes=[pool_get])], list_rules)
    assert table.served(routes, list_rules)  # by its own route, listed before the pool's get
    storage = {m.id: m for m in methods(document("storage.v1"))}
    assert table.served(routes, storage["storage.objects.insert"])  # and its /upload/ path
    assert table.served(routes, storage["storage.objects.compose"])
    # `GET o/{object:path}` swallows `o/{object}/acl` in one parameter: that does not serve ACLs
    assert not table.served(routes, storage["storage.objectAccessControls.list"])


def test_a_catch_all_route_does_not_serve_what_it_swallows() -> None:
    table = coverage()

    async def nothing(_: object) -> None:
        return None

    routes = [Mount("/iam", routes=[Route("/v1/projects/{project}/serviceAccounts/{rest:path}", nothing,
                                          methods=["GET"])])]
    by_id = {m.id: m for m in methods(document("iam.v1"))}
    assert table.served(routes, by_id["iam.projects.serviceAccounts.get"])  # one segment: its own shape
    assert not table.served(routes, by_id["iam.projects.serviceAccounts.keys.get"])
    assert not table.served(routes, by_id["iam.projects.serviceAccounts.create"])  # POST: not routed


def test_every_served_api_has_a_conformance_flow() -> None:
    """An API Keyless starts serving (issue #20's Pub/Sub...) gets a flow here too; STS is driven by
    the discovery client in its own tests."""
    flows = []
    for path in sorted((ROOT / "tests" / "conformance").glob("test_*.py")):
        module = importlib.import_module(f"tests.conformance.{path.stem}")
        flows += getattr(module, "FLOWS", []) + ([module.FLOW] if hasattr(module, "FLOW") else [])
    documents = {flow.document for flow in flows}
    table = coverage()
    routes = table.route_table()
    for family in table.FAMILIES:
        served = [m for m in methods(document(family.document)) if table.served(routes, m)]
        if served and family.document != "sts.v1":
            assert family.document in documents, f"{family.document} is served but has no conformance flow"
