"""Cloud Asset API (cloudasset.googleapis.com v1) through Google's discovery-based client: the
served IAM policy analysis and search methods and searchAllResources, each answer checked against
its response schema (issue #20)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import harness
from tests.conformance.harness import Flow, Step

DOC = "cloudasset.v1"
PROJECT = "conformance-asset"
SA = f"asset-sa@{PROJECT}.iam.gserviceaccount.com"
READER = "user:reader@example.com"
BUCKET = "conformance-asset-exports"


def roles(answer: dict[str, Any]) -> list[str]:
    return [r["iamBinding"]["role"] for r in answer["mainAnalysis"].get("analysisResults", [])]


FLOW = Flow(DOC, [
    Step("cloudasset.analyzeIamPolicy", lambda c: {
        "scope": f"projects/{PROJECT}", "analysisQuery_identitySelector_identity": READER,
        "analysisQuery_options_expandRoles": True},
         present=["mainAnalysis.analysisQuery", "mainAnalysis.analysisResults", "fullyExplored"],
         check=lambda c, a: (roles(a) == ["roles/iam.serviceAccountTokenCreator"] and {
             "permission": "iam.serviceAccounts.getAccessToken"} in
             a["mainAnalysis"]["analysisResults"][0]["accessControlLists"][0]["accesses"]) or pytest.fail(str(a))),
    Step("cloudasset.analyzeIamPolicy", lambda c: {
        "scope": f"projects/{PROJECT}",
        "analysisQuery_resourceSelector_fullResourceName": f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{SA}",
        "analysisQuery_accessSelector_permissions": ["iam.serviceAccounts.getAccessToken"],
        "analysisQuery_options_analyzeServiceAccountImpersonation": True},
         present=["mainAnalysis.analysisResults", "serviceAccountImpersonationAnalysis"],
         check=lambda c, a: READER in [i["name"] for r in a["mainAnalysis"]["analysisResults"]
                                       for i in r["identityList"]["identities"]] or pytest.fail(str(a))),
    Step("cloudasset.analyzeIamPolicy", lambda c: {"scope": f"projects/{PROJECT}"}, error=400),
    Step("cloudasset.analyzeIamPolicyLongrunning", lambda c: {"scope": f"projects/{PROJECT}", "body": {
        "analysisQuery": {"identitySelector": {"identity": READER}},
        "outputConfig": {"gcsDestination": {"uri": f"gs://{BUCKET}/reader.json"}}}},
         save="operation", present=["name", "done", "metadata", "response"],
         check=lambda c, a: a["done"] is True or pytest.fail(str(a))),
    Step("cloudasset.operations.get", lambda c: {"name": c["operation"]["name"]}, present=["name", "done"],
         check=lambda c, a: a == c["operation"] or pytest.fail(str(a))),
    Step("cloudasset.analyzeIamPolicyLongrunning", lambda c: {"scope": f"projects/{PROJECT}", "body": {
        "analysisQuery": {"identitySelector": {"identity": READER}},
        "outputConfig": {"bigqueryDestination": {"dataset": f"projects/{PROJECT}/datasets/d", "tablePrefix": "t"}}}},
         error=400),
    Step("cloudasset.searchAllIamPolicies", lambda c: {
        "scope": f"projects/{PROJECT}", "query": "policy:reader@example.com", "pageSize": 10,
        "assetTypes": ["iam.googleapis.com/.*"], "orderBy": "resource"},
         present=["results"],
         check=lambda c, a: [r["resource"] for r in a["results"]] == [
             f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{c['sa']['uniqueId']}"] or pytest.fail(str(a))),
    Step("cloudasset.searchAllIamPolicies", lambda c: {"scope": "projects/no-such-project-x"}, error=403),
    Step("cloudasset.searchAllResources", lambda c: {
        "scope": f"projects/{PROJECT}", "query": "labels.env:prod OR asset-sa", "orderBy": "assetType DESC",
        "pageSize": 10, "readMask": "name,assetType,project,labels,location,createTime"},
         present=["results"],
         check=lambda c, a: [(r["assetType"], r["name"]) for r in a["results"]] == [
             ("storage.googleapis.com/Bucket", f"//storage.googleapis.com/{BUCKET}"),
             ("iam.googleapis.com/ServiceAccount",
              f"//iam.googleapis.com/projects/{PROJECT}/serviceAccounts/{c['sa']['uniqueId']}")]
         and a["results"][0]["labels"] == {"env": "prod"} and a["results"][0]["createTime"][19:] == "Z" or pytest.fail(str(a))),
    Step("cloudasset.searchAllResources", lambda c: {
        "scope": f"projects/{PROJECT}", "assetTypes": ["cloudresourcemanager.googleapis.com/Project"]},
         present=["results"],
         check=lambda c, a: [(r["name"], r["state"], r["displayName"]) for r in a["results"]] == [
             (f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}", "ACTIVE", PROJECT)] or pytest.fail(str(a))),
    Step("cloudasset.searchAllResources", lambda c: {"scope": f"projects/{PROJECT}", "query": "name:(a"}, error=400),
    Step("cloudasset.searchAllResources", lambda c: {"scope": "projects/no-such-project-x"}, error=403),
])


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any]) -> dict[str, Any]:
    client("cloudresourcemanager.v1").projects().create(body={"projectId": PROJECT}).execute()
    client("storage.v1").buckets().insert(project=PROJECT, body={"name": BUCKET, "labels": {"env": "prod"}}).execute()
    iam = client("iam.v1")
    sa = iam.projects().serviceAccounts().create(name=f"projects/{PROJECT}", body={"accountId": "asset-sa"}).execute()
    iam.projects().serviceAccounts().setIamPolicy(resource=f"projects/{PROJECT}/serviceAccounts/{SA}", body={
        "policy": {"bindings": [{"role": "roles/iam.serviceAccountTokenCreator", "members": [READER]}]}}).execute()
    return harness.run(client(DOC), FLOW, {"sa": sa})


def test_every_served_method_has_a_step() -> None:
    assert not FLOW.unflowed(harness.served_methods(DOC))


def test_flow(flowed: dict[str, Any]) -> None:
    assert flowed["called"] == [s.method for s in FLOW.steps]
