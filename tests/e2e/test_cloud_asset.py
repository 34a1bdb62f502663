"""Cloud Asset Inventory's Policy Analyzer against Keyless (issue #20): seed 002's line
`gcloud asset analyze-iam-policy --organization=ORG_ID --identity=serviceAccount:app-gsa@...` and
`gcloud asset search-all-iam-policies`, unmodified, through `keyless configure-gcloud`'s
`api_endpoint_overrides/cloudasset`; google-cloud-asset's REST transport; IAM on the scope,
the Data Access entry, and the attacks a scope must stop (another project's policies, unbounded
input)."""

from __future__ import annotations

import json
import time
from typing import Any

import google.oauth2.credentials
import pytest
import yaml
from google.api_core import exceptions
from sqlalchemy import select

from keyless.projects import ROOT
from keyless.store.models import AuditEntry
from tests.api.helpers import audit_data_access, server_state, token_for_user
from tests.conftest import GCLOUD, Gcloud, KeylessServer, _need_gcloud

ORG = "4242"
PROJECT = "asset-project"
OTHER = "asset-other"
GSA = f"app-gsa@{PROJECT}.iam.gserviceaccount.com"
OTHER_SA = f"other-sa@{OTHER}.iam.gserviceaccount.com"
KSA = f"serviceAccount:{PROJECT}.svc.id.goog[apps/app-ksa]"
ANALYST = "analyst@example.com"
CRM = "/cloudresourcemanager/v1/projects"
ANALYZE = f"/cloudasset/v1/projects/{PROJECT}:analyzeIamPolicy"
METHOD = "google.cloud.asset.v1.AssetService.AnalyzeIamPolicy"


def ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


def grant(srv: KeylessServer, path: str, role: str, member: str, condition: dict[str, str] | None = None) -> None:
    policy = ok(srv.call("POST", f"{path}:getIamPolicy", body={"options": {"requestedPolicyVersion": 3}}))
    binding: dict[str, Any] = {"role": role, "members": [member]}
    if condition:
        binding["condition"] = condition
        policy["version"] = 3
    policy.setdefault("bindings", []).append(binding)
    ok(srv.call("POST", f"{path}:setIamPolicy", body={"policy": policy}))


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    """Seed 002's section 3 and 8 in one organization, plus a project outside it."""
    srv = module_server
    ok(srv.call("POST", CRM, body={"projectId": PROJECT, "parent": {"type": "organization", "id": ORG}}))
    ok(srv.call("POST", CRM, body={"projectId": OTHER}))
    ok(srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "app-gsa"}))
    ok(srv.call("POST", f"/iam/v1/projects/{OTHER}/serviceAccounts", body={"accountId": "other-sa"}))
    grant(srv, f"{CRM}/{PROJECT}", "roles/storage.objectViewer", f"serviceAccount:{GSA}",
          {"title": "only-app-bucket", "expression": 'resource.name.startsWith("projects/_/buckets/my-app-bucket")'})
    grant(srv, f"{CRM}/{PROJECT}", "roles/logging.viewer", f"serviceAccount:{GSA}")
    grant(srv, f"/iam/v1/projects/{PROJECT}/serviceAccounts/{GSA}", "roles/iam.workloadIdentityUser", KSA)
    grant(srv, f"{CRM}/{OTHER}", "roles/storage.admin", f"serviceAccount:{GSA}")  # outside the organization
    grant(srv, f"{CRM}/{OTHER}", "roles/secretmanager.admin", f"serviceAccount:{OTHER_SA}")
    grant(srv, f"{CRM}/{PROJECT}", "roles/cloudasset.viewer", f"user:{ANALYST}")
    audit_data_access(srv, PROJECT, {"cloudasset.googleapis.com": ["ADMIN_READ"]})
    return srv


@pytest.fixture(scope="module")
def gcloud(srv: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> Gcloud:
    _need_gcloud()
    return Gcloud(srv, tmp_path_factory.mktemp("gcloud"), project=PROJECT)


def test_seed_002_analyze_iam_policy_line(gcloud: Gcloud) -> None:
    """The seed's line as written (ORG_ID and PROJECT_ID filled in)."""
    assert GCLOUD is not None
    result = gcloud.run("asset", "analyze-iam-policy", f"--organization={ORG}",
                        f"--identity=serviceAccount:{GSA}")
    assert "Your analysis request is fully explored." in result.stderr
    assert f"attachedResource: //cloudresourcemanager.googleapis.com/projects/{PROJECT}" in result.stdout
    assert "role: roles/storage.objectViewer" in result.stdout
    entries = [e for e in yaml.safe_load_all(result.stdout) if e]  # gcloud's default output: YAML documents
    by_role = {e["policy"]["binding"]["role"]: e for e in entries}
    # the grant in the project outside the organization is not in the organization's analysis
    assert set(by_role) == {"roles/storage.objectViewer", "roles/logging.viewer"}, entries
    viewer = by_role["roles/storage.objectViewer"]
    assert viewer["policy"]["binding"]["condition"]["title"] == "only-app-bucket"
    acl = viewer["ACLs"][0]
    assert acl["identities"] == [{"name": f"serviceAccount:{GSA}"}]
    assert acl["accesses"] == [{"role": "roles/storage.objectViewer"}]
    assert acl["resources"] == [{"fullResourceName": f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"}]
    assert acl["conditionEvaluationValue"] == "CONDITIONAL"


def test_gcloud_search_all_iam_policies(gcloud: Gcloud) -> None:
    """The organization's policies binding app-gsa: its project's, not those of the project outside."""
    found = gcloud.json("asset", "search-all-iam-policies", f"--scope=organizations/{ORG}", "--query=policy:app-gsa")
    assert [(r["resource"], r["assetType"], r["organization"]) for r in found] == [
        (f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}", "cloudresourcemanager.googleapis.com/Project",
         f"organizations/{ORG}")], found
    assert sorted(b["role"] for b in found[0]["policy"]["bindings"]) == ["roles/logging.viewer",
                                                                        "roles/storage.objectViewer"]


def asset_client(srv: KeylessServer, token: str) -> Any:
    from google.cloud import asset_v1

    return asset_v1.AssetServiceClient(credentials=google.oauth2.credentials.Credentials(token), transport="rest",
                                       client_options={"api_endpoint": f"{srv.base_url}/cloudasset"})


def test_google_cloud_asset_rest_client_with_a_project_role(srv: KeylessServer) -> None:
    """roles/cloudasset.viewer on the project: its analysis and search work there, nowhere else."""
    from google.cloud import asset_v1

    client = asset_client(srv, token_for_user(srv, ANALYST))
    response = client.analyze_iam_policy(request={"analysis_query": {
        "scope": f"projects/{PROJECT}", "identity_selector": {"identity": f"serviceAccount:{GSA}"},
        "access_selector": {"permissions": ["logging.logEntries.list", "storage.objects.get"]}}})
    results = {r.iam_binding.role: r for r in response.main_analysis.analysis_results}
    assert set(results) == {"roles/storage.objectViewer", "roles/logging.viewer"}
    assert [a.permission for a in results["roles/logging.viewer"].access_control_lists[0].accesses] == [
        "logging.logEntries.list"]
    assert response.main_analysis.analysis_results[0].attached_resource_full_name == \
        f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"
    pages = client.search_all_iam_policies(request={
        "scope": f"projects/{PROJECT}", "query": "policy.role.permissions:iam.serviceAccounts.getAccessToken",
        "page_size": 1})
    found = list(pages)
    assert [r.asset_type for r in found] == ["iam.googleapis.com/ServiceAccount"]
    assert list(found[0].explanation.matched_permissions["roles/iam.workloadIdentityUser"].permissions) == [
        "iam.serviceAccounts.getAccessToken"]
    for scope in (f"projects/{OTHER}", f"organizations/{ORG}", "projects/no-such-project"):
        with pytest.raises(exceptions.Forbidden) as denied:
            client.analyze_iam_policy(request={"analysis_query": {
                "scope": scope, "identity_selector": {"identity": f"serviceAccount:{GSA}"}}})
        assert "cloudasset.assets.analyzeIamPolicy" in denied.value.message
        with pytest.raises(exceptions.Forbidden):
            list(client.search_all_iam_policies(request={"scope": scope}))
    assert isinstance(response, asset_v1.AnalyzeIamPolicyResponse)


def test_data_access_entry_names_the_scope(srv: KeylessServer) -> None:
    token = token_for_user(srv, ANALYST)
    ok(srv.call("GET", ANALYZE, token=token, params={"analysisQuery.identitySelector.identity": f"user:{ANALYST}"}))
    deadline = time.monotonic() + 10
    entries: list[dict[str, Any]] = []
    while not entries and time.monotonic() < deadline:
        with server_state(srv).db.read() as s:
            rows = s.scalars(select(AuditEntry).where(AuditEntry.method_name == METHOD)).all()
        entries = [r.entry for r in rows if ANALYST in json.dumps(r.entry["protoPayload"]["authenticationInfo"])]
        time.sleep(0.1)
    assert entries, "no Data Access entry for AnalyzeIamPolicy"
    payload = entries[0]["protoPayload"]
    assert payload["authenticationInfo"]["principalEmail"] == ANALYST
    assert payload["resourceName"] == f"projects/{PROJECT}"
    assert entries[0]["logName"].endswith("cloudaudit.googleapis.com%2Fdata_access")
    assert payload["authorizationInfo"][0]["permission"] == "cloudasset.assets.analyzeIamPolicy"


def test_a_resource_outside_the_scope_reveals_nothing(srv: KeylessServer) -> None:
    """An analyst of PROJECT names OTHER's resource within PROJECT's scope: without the scope's
    filter the analysis would list OTHER's bindings."""
    token = token_for_user(srv, ANALYST)
    body = ok(srv.call("GET", ANALYZE, token=token, params={
        "analysisQuery.resourceSelector.fullResourceName": f"//cloudresourcemanager.googleapis.com/projects/{OTHER}"}))
    assert body["mainAnalysis"].get("analysisResults", []) == [], body
    body = ok(srv.call("GET", ANALYZE, token=token, params={
        "analysisQuery.identitySelector.identity": f"serviceAccount:{OTHER_SA}"}))
    assert body["mainAnalysis"].get("analysisResults", []) == [], body
    # the owner, scoped to OTHER, sees them
    body = ok(srv.call("GET", f"/cloudasset/v1/projects/{OTHER}:analyzeIamPolicy", params={
        "analysisQuery.identitySelector.identity": f"serviceAccount:{OTHER_SA}"}))
    assert [r["iamBinding"]["role"] for r in body["mainAnalysis"]["analysisResults"]] == ["roles/secretmanager.admin"]


@pytest.mark.parametrize(("path", "params", "status"), [
    (ANALYZE, {}, 400),  # neither an identity nor a resource
    (ANALYZE, {"analysisQuery.identitySelector.identity": "x" * 600}, 400),
    (ANALYZE, {"analysisQuery.identitySelector.identity": "nobody-knows-this-kind:x"}, 400),
    (ANALYZE, [("analysisQuery.identitySelector.identity", f"user:{ANALYST}")]
     + [("analysisQuery.accessSelector.roles", "roles/viewer")] * 101, 400),
    (ANALYZE, {"analysisQuery.identitySelector.identity": f"user:{ANALYST}", "executionTimeout": "forever"}, 400),
    (ANALYZE, {"analysisQuery.identitySelector.identity": f"user:{ANALYST}",
               "analysisQuery.conditionContext.accessTime": "2001-01-01T00:00:00Z"}, 400),  # in the past
    (ANALYZE, {"analysisQuery.identitySelector.identity": f"user:{ANALYST}",
               "analysisQuery.options.expandRoles": "maybe"}, 400),
    ("/cloudasset/v1/folders/1:analyzeIamPolicy", {"analysisQuery.identitySelector.identity": "user:a@b.c"}, 400),
    ("/cloudasset/v1/organizations/acme:searchAllIamPolicies", {}, 400),
    (f"/cloudasset/v1/projects/{PROJECT}:searchAllIamPolicies", {"assetTypes": "(.*.*)*!"}, 400),  # backtracking for minutes
    (f"/cloudasset/v1/projects/{PROJECT}:searchAllIamPolicies", {"assetTypes": "compute.googleapis.com.*"}, 400),
    (f"/cloudasset/v1/projects/{PROJECT}:searchAllIamPolicies", {"query": "policy:a OR policy:b"}, 400),
    (f"/cloudasset/v1/projects/{PROJECT}:searchAllIamPolicies", {"query": "secret:x"}, 400),
    (f"/cloudasset/v1/projects/{PROJECT}:searchAllIamPolicies", {"query": "x" * 3000}, 400),
    (f"/cloudasset/v1/projects/{PROJECT}:searchAllIamPolicies", {"orderBy": "policy DESC"}, 400),
    (f"/cloudasset/v1/projects/{PROJECT}:searchAllIamPolicies", {"pageToken": "-1"}, 400),
])
def test_bad_input_gets_google_s_error(srv: KeylessServer, path: str, params: Any, status: int) -> None:
    r = srv.call("GET", path, params=params)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == status and error["status"] == "INVALID_ARGUMENT" and error["message"]


def test_a_bad_identity_is_named_as_the_request_names_it(srv: KeylessServer) -> None:
    r = srv.call("GET", ANALYZE, params={"analysisQuery.identitySelector.identity": "nobody-knows-this-kind:x"})
    assert r.json()["error"]["message"].startswith("analysisQuery.identitySelector.identity"), r.text  # not --identity


# -- analyzeIamPolicyLongrunning (issue #20) ------------------------------------------------------

EXPORT_BUCKET = "asset-analysis-exports"


def test_analyze_iam_policy_longrunning_writes_the_analysis_to_a_bucket(srv: KeylessServer) -> None:
    """google-cloud-asset's REST client runs the long-running analysis and polls its operation
    (operations.get); the object holds analyzeIamPolicy's AnalyzeIamPolicyResponse. The caller
    needs storage.objects.create on the bucket (Google's documented requirement): without it
    nothing is written."""
    from google.cloud import asset_v1

    ok(srv.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": EXPORT_BUCKET}))
    client = asset_client(srv, token_for_user(srv, ANALYST))
    query = {"scope": f"projects/{PROJECT}", "identity_selector": {"identity": f"serviceAccount:{GSA}"}}
    uri = f"gs://{EXPORT_BUCKET}/analyses/app-gsa.json"
    request = {"analysis_query": query, "output_config": {"gcs_destination": {"uri": uri}}}
    with pytest.raises(exceptions.Forbidden) as denied:
        client.analyze_iam_policy_longrunning(request=request)
    assert "storage.objects.create" in denied.value.message
    obj = f"/storage/v1/b/{EXPORT_BUCKET}/o/analyses%2Fapp-gsa.json"
    assert srv.call("GET", obj).status_code == 404

    policy = ok(srv.call("GET", f"/storage/v1/b/{EXPORT_BUCKET}/iam"))
    policy["bindings"].append({"role": "roles/storage.objectCreator", "members": [f"user:{ANALYST}"]})
    ok(srv.call("PUT", f"/storage/v1/b/{EXPORT_BUCKET}/iam", body=policy))
    operation = client.analyze_iam_policy_longrunning(request=request)
    assert isinstance(operation.result(timeout=10), asset_v1.AnalyzeIamPolicyLongrunningResponse)
    name = operation.operation.name
    assert name.startswith("projects/") and "/operations/AnalyzeIamPolicyLongrunning/" in name, name
    assert operation.metadata.create_time.year >= 2026

    written = ok(srv.call("GET", obj, params={"alt": "media"}))
    direct = ok(srv.call("GET", ANALYZE, params={"analysisQuery.identitySelector.identity": f"serviceAccount:{GSA}"}))
    assert written == direct
    assert {r["iamBinding"]["role"] for r in written["mainAnalysis"]["analysisResults"]} == {
        "roles/storage.objectViewer", "roles/logging.viewer"}
    assert ok(srv.call("GET", obj))["contentType"] == "application/json"

    # the operation is read back by whoever may analyze the scope, and no one else
    assert ok(srv.call("GET", f"/cloudasset/v1/{name}"))["done"] is True
    stranger = token_for_user(srv, "stranger@example.com")
    assert srv.call("GET", f"/cloudasset/v1/{name}", token=stranger).status_code == 403


LONGRUNNING = f"/cloudasset/v1/projects/{PROJECT}:analyzeIamPolicyLongrunning"
_QUERY = {"identitySelector": {"identity": f"user:{ANALYST}"}}


@pytest.mark.parametrize(("body", "status"), [
    ({"analysisQuery": _QUERY, "outputConfig": {"bigqueryDestination": {
        "dataset": f"projects/{PROJECT}/datasets/d", "tablePrefix": "t"}}}, 400),  # no BigQuery here
    ({"analysisQuery": _QUERY, "outputConfig": {}}, 400),
    ({"analysisQuery": _QUERY, "outputConfig": {"gcsDestination": {"uri": "https://example.com/x"}}}, 400),
    ({"analysisQuery": _QUERY, "outputConfig": {"gcsDestination": {"uri": f"gs://{EXPORT_BUCKET}/"}}}, 400),
    ({"analysisQuery": _QUERY, "outputConfig": {"gcsDestination": {"uri": "gs://Bad_Bucket!/x"}}}, 400),
    ({"analysisQuery": _QUERY, "outputConfig": {"gcsDestination": {"uri": f"gs://{EXPORT_BUCKET}/a\nb"}}}, 400),
    ({"analysisQuery": {"identitySelector": {"identity": ["x"]}},
      "outputConfig": {"gcsDestination": {"uri": f"gs://{EXPORT_BUCKET}/x"}}}, 400),
    ({"analysisQuery": {"secretSelector": {}}, "outputConfig": {"gcsDestination": {"uri": f"gs://{EXPORT_BUCKET}/x"}}},
     400),
    ({"analysisQuery": {}, "outputConfig": {"gcsDestination": {"uri": f"gs://{EXPORT_BUCKET}/x"}}}, 400),
    ({"analysisQuery": _QUERY, "outputConfig": {"gcsDestination": {"uri": "gs://no-such-bucket-here/x"}}}, 404),
    ({"analysisQuery": _QUERY, "savedAnalysisQuery": "projects/1/savedQueries/q",
      "outputConfig": {"gcsDestination": {"uri": f"gs://{EXPORT_BUCKET}/x"}}}, 404),
])
def test_longrunning_bad_input_gets_google_s_error(srv: KeylessServer, body: dict[str, Any], status: int) -> None:
    r = srv.call("POST", LONGRUNNING, body=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == status and r.json()["error"]["message"]
    assert srv.call("GET", f"/storage/v1/b/{EXPORT_BUCKET}/o/x").status_code == 404  # nothing written


# -- searchAllResources (issue #20) ---------------------------------------------------------------

LABELLED_BUCKET = "asset-labelled-bucket"
SEARCH = f"/cloudasset/v1/projects/{PROJECT}:searchAllResources"


@pytest.fixture(scope="module")
def inventory(srv: KeylessServer) -> KeylessServer:
    """One resource of each kind the search covers, in PROJECT; a bucket and a topic in OTHER."""
    ok(srv.call("POST", "/storage/v1/b", params={"project": PROJECT},
                body={"name": LABELLED_BUCKET, "location": "US-WEST1", "labels": {"env": "prod", "team": "payments"}}))
    ok(srv.call("POST", "/storage/v1/b", params={"project": OTHER}, body={"name": "asset-other-bucket"}))
    ok(srv.call("POST", f"/secretmanager/v1/projects/{PROJECT}/secrets", params={"secretId": "db-password"},
                body={"replication": {"automatic": {}}, "labels": {"env": "dev"}}))
    ok(srv.call("PUT", f"/pubsub/v1/projects/{PROJECT}/topics/orders", body={"labels": {"env": "prod"}}))
    ok(srv.call("PUT", f"/pubsub/v1/projects/{PROJECT}/subscriptions/orders-sub",
                body={"topic": f"projects/{PROJECT}/topics/orders"}))
    ok(srv.call("PUT", f"/pubsub/v1/projects/{OTHER}/topics/orders", body={}))
    pools = f"/iam/v1/projects/{PROJECT}/locations/global/workloadIdentityPools"
    ok(srv.call("POST", pools, params={"workloadIdentityPoolId": "ci-pool"}, body={"displayName": "CI Pool"}))
    ok(srv.call("POST", f"{pools}/ci-pool/providers", params={"workloadIdentityPoolProviderId": "github"}, body={
        "displayName": "GitHub Actions", "attributeMapping": {"google.subject": "assertion.sub"},
        "oidc": {"issuerUri": "https://token.actions.githubusercontent.com"}}))
    return srv


def search(srv: KeylessServer, token: str | None = None, scope: str = f"projects/{PROJECT}", **params: Any) -> Any:
    return srv.call("GET", f"/cloudasset/v1/{scope}:searchAllResources", token=token, params=params)


def names(answer: dict[str, Any]) -> list[str]:
    return [r["name"] for r in answer.get("results", [])]


def test_search_all_resources_lists_the_project_s_resources(inventory: KeylessServer) -> None:
    found = {r["assetType"]: r for r in ok(search(inventory, pageSize="500"))["results"]}
    assert set(found) >= {"cloudresourcemanager.googleapis.com/Project", "iam.googleapis.com/ServiceAccount",
                          "storage.googleapis.com/Bucket", "secretmanager.googleapis.com/Secret",
                          "pubsub.googleapis.com/Topic", "pubsub.googleapis.com/Subscription",
                          "iam.googleapis.com/WorkloadIdentityPool", "iam.googleapis.com/WorkloadIdentityPoolProvider"}
    number = ok(inventory.call("GET", f"{CRM}/{PROJECT}"))["projectNumber"]
    project = found["cloudresourcemanager.googleapis.com/Project"]
    assert project["name"] == f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"
    assert project["project"] == f"projects/{number}" and project["organization"] == f"organizations/{ORG}"
    assert project["state"] == "ACTIVE" and project["createTime"].endswith("Z")
    assert project["parentFullResourceName"] == f"//cloudresourcemanager.googleapis.com/organizations/{ORG}"
    bucket = found["storage.googleapis.com/Bucket"]
    assert bucket["name"] == f"//storage.googleapis.com/{LABELLED_BUCKET}"
    assert bucket["location"] == "us-west1" and bucket["labels"] == {"env": "prod", "team": "payments"}
    assert bucket["parentFullResourceName"] == project["name"]
    assert found["secretmanager.googleapis.com/Secret"]["name"] == \
        f"//secretmanager.googleapis.com/projects/{number}/secrets/db-password"
    assert found["pubsub.googleapis.com/Topic"]["name"] == f"//pubsub.googleapis.com/projects/{PROJECT}/topics/orders"
    provider = found["iam.googleapis.com/WorkloadIdentityPoolProvider"]
    assert provider["name"].endswith("/workloadIdentityPools/ci-pool/providers/github")
    assert provider["displayName"] == "GitHub Actions" and provider["state"] == "ACTIVE"
    # nothing of the project outside the scope
    everything = ok(search(inventory, pageSize="500"))["results"]
    assert not [r for r in everything if OTHER in r["name"] or r["name"].endswith("asset-other-bucket")]


@pytest.mark.parametrize(("query", "expected"), [
    ("labels.env:prod", {f"//storage.googleapis.com/{LABELLED_BUCKET}",
                         f"//pubsub.googleapis.com/projects/{PROJECT}/topics/orders"}),
    ("labels.team:*", {f"//storage.googleapis.com/{LABELLED_BUCKET}"}),
    ("labels:payments", {f"//storage.googleapis.com/{LABELLED_BUCKET}"}),
    ("labels.env=prod NOT name:orders", {f"//storage.googleapis.com/{LABELLED_BUCKET}"}),
    ("location:us-west*", {f"//storage.googleapis.com/{LABELLED_BUCKET}"}),
    ("location:(us-west1 OR asia-east1) labels.env:prod", {f"//storage.googleapis.com/{LABELLED_BUCKET}"}),
    ('displayName:"github actions"', {"//iam.googleapis.com/projects/{number}/locations/global/"
                                      "workloadIdentityPools/ci-pool/providers/github"}),
    ("displayName=GitHub", set()),  # = is the whole value
    ("name:db-password", {"//secretmanager.googleapis.com/projects/{number}/secrets/db-password"}),
    ("db-passw*", {"//secretmanager.googleapis.com/projects/{number}/secrets/db-password"}),  # free text, prefix
    ("name:password-db", set()),  # words in order
    ("(name:orders OR name:ci-pool) -state:ACTIVE", {f"//pubsub.googleapis.com/projects/{PROJECT}/topics/orders",
                                                     f"//pubsub.googleapis.com/projects/{PROJECT}/subscriptions/orders-sub"}),
    ("createTime<1609459200", set()),
    ("createTime>2021-01-01 name:asset-labelled", {f"//storage.googleapis.com/{LABELLED_BUCKET}"}),
])
def test_search_query_language(inventory: KeylessServer, query: str, expected: set[str]) -> None:
    number = ok(inventory.call("GET", f"{CRM}/{PROJECT}"))["projectNumber"]
    assert set(names(ok(search(inventory, query=query)))) == {e.format(number=number) for e in expected}


def test_search_asset_types_order_read_mask_and_pages(inventory: KeylessServer) -> None:
    answer = ok(search(inventory, assetTypes="pubsub.googleapis.com.*", orderBy="name DESC",
                       readMask="name,assetType", pageSize="1"))
    assert answer["results"] == [{"name": f"//pubsub.googleapis.com/projects/{PROJECT}/topics/orders",
                                  "assetType": "pubsub.googleapis.com/Topic"}]
    rest = ok(search(inventory, assetTypes="pubsub.googleapis.com.*", orderBy="name DESC",
                     readMask="name,assetType", pageSize="1", pageToken=answer["nextPageToken"]))
    assert names(rest) == [f"//pubsub.googleapis.com/projects/{PROJECT}/subscriptions/orders-sub"]
    assert "nextPageToken" not in rest


def test_search_all_resources_needs_the_permission_on_the_scope(inventory: KeylessServer) -> None:
    """roles/cloudasset.viewer on PROJECT: the whole project's resources, even those the analyst may
    not get (Google: "even if they don't have .get permission"); other scopes are denied."""
    token = token_for_user(inventory, ANALYST)
    assert f"//storage.googleapis.com/{LABELLED_BUCKET}" in names(ok(search(inventory, token, pageSize="500")))
    assert inventory.call("GET", f"/storage/v1/b/{LABELLED_BUCKET}", token=token).status_code == 403
    for scope in (f"projects/{OTHER}", f"organizations/{ORG}", "projects/no-such-project"):
        denied = search(inventory, token, scope=scope)
        assert denied.status_code == 403, denied.text
        assert "cloudasset.assets.searchAllResources" in denied.json()["error"]["message"]
    stranger = token_for_user(inventory, "stranger@example.com")
    assert search(inventory, stranger).status_code == 403


def test_organization_scope_holds_its_projects_only(inventory: KeylessServer) -> None:
    found = names(ok(search(inventory, scope=f"organizations/{ORG}", pageSize="500")))
    assert f"//cloudresourcemanager.googleapis.com/organizations/{ORG}" in found
    assert f"//storage.googleapis.com/{LABELLED_BUCKET}" in found
    assert "//storage.googleapis.com/asset-other-bucket" not in found
    assert f"//pubsub.googleapis.com/projects/{OTHER}/topics/orders" not in found


@pytest.mark.parametrize("params", [
    {"query": "x" * 2049},
    {"query": " ".join(["a"] * 11)},  # Google's 10 comparisons
    {"query": "(" * 600 + "a" + ")" * 600},  # recursion: without the depth bound, a RecursionError (500)
    {"query": "NOT " * 500 + "a"},
    {"query": "name:(a"},
    {"query": "name:a name:b OR name:c"},  # AND and OR mixed: Google documents no precedence
    {"query": 'name:"unterminated'},
    {"query": "secret:x"},
    {"query": "name=abc*"},
    {"query": "createTime>soon"},
    {"assetTypes": "(.*.*)*!"},
    {"assetTypes": "compute.googleapis.com.*"},
    {"orderBy": "labels"},
    {"readMask": "name,nosuchfield"},
    {"pageToken": "-1"},
])
def test_search_all_resources_bad_input(inventory: KeylessServer, params: dict[str, str]) -> None:
    r = search(inventory, **params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT" and r.json()["error"]["message"]


@pytest.mark.store_independent
def test_phrase_matching_over_long_fields() -> None:
    """Consecutive words, in order, prefixes with `*`, over a field of 100,000 words (its cost is
    bench/asset_query.py's figure)."""
    from keyless.cloudasset.query import has_phrase

    field = "a-" * 100_000 + "b"
    assert has_phrase(field, "a " * 500 + "b") and not has_phrase(field, "a " * 500 + "c")
    assert has_phrase(field, "a* " * 100 + "b*") and not has_phrase(field, "b a")
    assert has_phrase("Compute %Instance%", "compute instance") and has_phrase("compute&storage", "COMPUTE&storage")
    assert not has_phrase("compute&storage", "compute")  # & is part of a word, as Google tokenizes


def test_gcloud_asset_search_all_resources(inventory: KeylessServer, gcloud: Gcloud) -> None:
    found = gcloud.json("asset", "search-all-resources", f"--scope=projects/{PROJECT}", "--query=labels.env:prod",
                        "--asset-types=storage.googleapis.com/Bucket,pubsub.googleapis.com/Topic",
                        "--order-by=assetType")
    assert [(r["assetType"], r["name"]) for r in found] == [
        ("pubsub.googleapis.com/Topic", f"//pubsub.googleapis.com/projects/{PROJECT}/topics/orders"),
        ("storage.googleapis.com/Bucket", f"//storage.googleapis.com/{LABELLED_BUCKET}")], found
    assert found[1]["labels"] == {"env": "prod", "team": "payments"}


def test_google_cloud_asset_rest_client_searches_resources(inventory: KeylessServer) -> None:
    client = asset_client(inventory, token_for_user(inventory, ANALYST))
    pages = client.search_all_resources(request={"scope": f"projects/{PROJECT}", "query": "labels.env:prod",
                                                 "order_by": "name", "page_size": 1})
    found = list(pages)
    assert [r.name for r in found] == [f"//pubsub.googleapis.com/projects/{PROJECT}/topics/orders",
                                       f"//storage.googleapis.com/{LABELLED_BUCKET}"]
    assert found[1].labels["team"] == "payments" and found[1].create_time.year >= 2026


def test_search_all_resources_data_access_entry(inventory: KeylessServer) -> None:
    """ADMIN_READ, as Cloud Asset Inventory's audit logging page classifies its search methods."""
    token = token_for_user(inventory, ANALYST)
    ok(search(inventory, token, query="labels.env:prod"))
    method = "google.cloud.asset.v1.AssetService.SearchAllResources"
    entries: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while not entries and time.monotonic() < deadline:
        with server_state(inventory).db.read() as s:
            rows = s.scalars(select(AuditEntry).where(AuditEntry.method_name == method)).all()
        entries = [r.entry for r in rows if ANALYST in json.dumps(r.entry["protoPayload"]["authenticationInfo"])]
        time.sleep(0.1)
    assert entries, "no Data Access entry for SearchAllResources"
    payload = entries[0]["protoPayload"]
    assert payload["resourceName"] == f"projects/{PROJECT}"
    assert entries[0]["logName"].endswith("cloudaudit.googleapis.com%2Fdata_access")
    assert payload["authorizationInfo"][0] == {"resource": f"projects/{PROJECT}", "granted": True,
                                               "permission": "cloudasset.assets.searchAllResources"}


# -- resource-level policies: Pub/Sub, managed folders, pools (issue #20) ---------------------------

RELAY = f"relay-gsa@{PROJECT}.iam.gserviceaccount.com"
TOPIC = f"//pubsub.googleapis.com/projects/{PROJECT}/topics/orders"
SUBSCRIPTION = f"//pubsub.googleapis.com/projects/{PROJECT}/subscriptions/orders-sub"
OTHER_TOPIC = f"//pubsub.googleapis.com/projects/{OTHER}/topics/orders"
SNAPSHOT = f"//pubsub.googleapis.com/projects/{PROJECT}/snapshots/orders-snap"
SCHEMA = f"//pubsub.googleapis.com/projects/{PROJECT}/schemas/order"
FOLDER = f"//storage.googleapis.com/projects/_/buckets/{LABELLED_BUCKET}/managedFolders/reports/"


def pool_name(srv: KeylessServer) -> str:
    number = ok(srv.call("GET", f"{CRM}/{PROJECT}"))["projectNumber"]
    return f"projects/{number}/locations/global/workloadIdentityPools/ci-pool"


@pytest.fixture(scope="module")
def resource_policies(inventory: KeylessServer) -> KeylessServer:
    """relay-gsa holds roles only on resources below the project: the `orders` topic, its
    subscription, a snapshot of it, the `order` schema, the `reports/` managed folder and the
    `ci-pool` pool; and, outside the scope, OTHER's `orders` topic."""
    srv = inventory
    ok(srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "relay-gsa"}))
    member = f"serviceAccount:{RELAY}"
    grant(srv, f"/pubsub/v1/projects/{PROJECT}/topics/orders", "roles/pubsub.publisher", member)
    grant(srv, f"/pubsub/v1/projects/{PROJECT}/subscriptions/orders-sub", "roles/pubsub.subscriber", member)
    grant(srv, f"/pubsub/v1/projects/{OTHER}/topics/orders", "roles/pubsub.viewer", member)
    ok(srv.call("PUT", f"/pubsub/v1/projects/{PROJECT}/snapshots/orders-snap",
                body={"subscription": f"projects/{PROJECT}/subscriptions/orders-sub"}))
    grant(srv, f"/pubsub/v1/projects/{PROJECT}/snapshots/orders-snap", "roles/pubsub.viewer", member)
    ok(srv.call("POST", f"/pubsub/v1/projects/{PROJECT}/schemas", params={"schemaId": "order"}, body={
        "type": "AVRO", "definition": '{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "int"}]}'}))
    grant(srv, f"/pubsub/v1/projects/{PROJECT}/schemas/order", "roles/pubsub.viewer", member)
    grant(srv, f"/iam/v1/{pool_name(srv)}", "roles/iam.workloadIdentityPoolViewer", member)
    folders = f"/storage/v1/b/{LABELLED_BUCKET}/managedFolders"
    ok(srv.call("POST", folders, body={"name": "reports/"}))
    policy = ok(srv.call("GET", f"{folders}/reports%2F/iam"))
    policy.setdefault("bindings", []).append({"role": "roles/storage.objectViewer", "members": [member]})
    ok(srv.call("PUT", f"{folders}/reports%2F/iam", body=policy))
    ok(srv.call("POST", f"/upload/storage/v1/b/{LABELLED_BUCKET}/o", params={"uploadType": "media",
                                                                             "name": "reports/q4.csv"},
                raw=b"q4", headers={"Content-Type": "text/csv"}))
    return srv


def analyze(srv: KeylessServer, token: str | None = None, **params: str) -> Any:
    return srv.call("GET", ANALYZE, token=token, params=params)


def test_analysis_lists_access_through_resource_policies(resource_policies: KeylessServer) -> None:
    """The pod-side finding of issue #20: Google's analyzer lists a topic's binding for an identity.
    Each of relay-gsa's grants is one result, attached to the resource whose policy holds it; the
    topic of the project outside the scope is not among them."""
    srv = resource_policies
    body = ok(analyze(srv, token_for_user(srv, ANALYST), **{
        "analysisQuery.identitySelector.identity": f"serviceAccount:{RELAY}"}))
    rows = {(r["attachedResourceFullName"], r["iamBinding"]["role"]): r for r in body["mainAnalysis"]["analysisResults"]}
    assert set(rows) == {(TOPIC, "roles/pubsub.publisher"), (SUBSCRIPTION, "roles/pubsub.subscriber"),
                         (SNAPSHOT, "roles/pubsub.viewer"), (SCHEMA, "roles/pubsub.viewer"),
                         (FOLDER, "roles/storage.objectViewer"),
                         (f"//iam.googleapis.com/{pool_name(srv)}", "roles/iam.workloadIdentityPoolViewer")}, rows
    topic = rows[(TOPIC, "roles/pubsub.publisher")]
    assert topic["accessControlLists"] == [{"resources": [{"fullResourceName": TOPIC}],
                                            "accesses": [{"role": "roles/pubsub.publisher"}]}]
    assert topic["identityList"] == {"identities": [{"name": f"serviceAccount:{RELAY}"}]}
    assert topic["iamBinding"]["members"] == [f"serviceAccount:{RELAY}"]
    # expandRoles and a permission selector, as for a project's binding
    body = ok(analyze(srv, **{"analysisQuery.identitySelector.identity": f"serviceAccount:{RELAY}",
                              "analysisQuery.accessSelector.permissions": "pubsub.topics.publish"}))
    assert [(r["attachedResourceFullName"], r["accessControlLists"][0]["accesses"])
            for r in body["mainAnalysis"]["analysisResults"]] == [(TOPIC, [{"permission": "pubsub.topics.publish"}])]
    # the owner, scoped to OTHER, sees OTHER's topic grant
    other = ok(srv.call("GET", f"/cloudasset/v1/projects/{OTHER}:analyzeIamPolicy", params={
        "analysisQuery.identitySelector.identity": f"serviceAccount:{RELAY}"}))
    assert [r["attachedResourceFullName"] for r in other["mainAnalysis"]["analysisResults"]] == [OTHER_TOPIC]


def test_resource_selector_on_resources_below_the_project(resource_policies: KeylessServer) -> None:
    """Who can reach the topic: its own policy's members and the project's (the chain topic ->
    project); an object beneath the managed folder: the folder's grant, then the bucket's."""
    srv = resource_policies
    body = ok(analyze(srv, **{"analysisQuery.resourceSelector.fullResourceName": TOPIC}))
    results = body["mainAnalysis"]["analysisResults"]
    attached = {r["attachedResourceFullName"] for r in results}
    assert attached == {TOPIC, f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}"}, attached
    publisher = next(r for r in results if r["attachedResourceFullName"] == TOPIC)
    assert publisher["identityList"]["identities"] == [{"name": f"serviceAccount:{RELAY}"}]
    assert all(r["accessControlLists"][0]["resources"] == [{"fullResourceName": TOPIC}] for r in results)
    obj = f"//storage.googleapis.com/projects/_/buckets/{LABELLED_BUCKET}/objects/reports/q4.csv"
    body = ok(analyze(srv, **{"analysisQuery.resourceSelector.fullResourceName": obj,
                              "analysisQuery.identitySelector.identity": f"serviceAccount:{RELAY}"}))
    assert [(r["attachedResourceFullName"], r["iamBinding"]["role"]) for r in body["mainAnalysis"]["analysisResults"]] \
        == [(FOLDER, "roles/storage.objectViewer")]
    # an object outside the folder is not reached by the folder's grant
    body = ok(analyze(srv, **{"analysisQuery.resourceSelector.fullResourceName":
                              f"//storage.googleapis.com/projects/_/buckets/{LABELLED_BUCKET}",
                              "analysisQuery.identitySelector.identity": f"serviceAccount:{RELAY}"}))
    assert body["mainAnalysis"].get("analysisResults", []) == []


def test_resource_policies_stay_behind_the_scope_s_permission(resource_policies: KeylessServer) -> None:
    """No cloudasset permission on the scope: refused, nothing listed. Another project's topic named
    within PROJECT's scope reveals nothing. An identity without a grant gets nothing."""
    srv = resource_policies
    stranger = token_for_user(srv, "stranger@example.com")
    denied = analyze(srv, stranger, **{"analysisQuery.identitySelector.identity": f"serviceAccount:{RELAY}"})
    assert denied.status_code == 403 and "cloudasset.assets.analyzeIamPolicy" in denied.json()["error"]["message"]
    assert TOPIC not in denied.text
    denied = srv.call("GET", f"/cloudasset/v1/projects/{PROJECT}:searchAllIamPolicies", token=stranger,
                      params={"query": f"policy:{RELAY}"})
    assert denied.status_code == 403 and TOPIC not in denied.text
    analyst = token_for_user(srv, ANALYST)
    body = ok(analyze(srv, analyst, **{"analysisQuery.resourceSelector.fullResourceName": OTHER_TOPIC}))
    assert body["mainAnalysis"].get("analysisResults", []) == [], body
    body = ok(analyze(srv, analyst, **{"analysisQuery.identitySelector.identity": "user:nobody@example.com"}))
    assert body["mainAnalysis"].get("analysisResults", []) == [], body


def test_search_all_iam_policies_finds_resource_policies(resource_policies: KeylessServer) -> None:
    srv = resource_policies
    number = ok(srv.call("GET", f"{CRM}/{PROJECT}"))["projectNumber"]
    path = f"/cloudasset/v1/projects/{PROJECT}:searchAllIamPolicies"
    found = ok(srv.call("GET", path, token=token_for_user(srv, ANALYST), params={"query": "policy:relay-gsa"}))["results"]
    assert {(r["resource"], r["assetType"]) for r in found} == {
        (TOPIC, "pubsub.googleapis.com/Topic"), (SUBSCRIPTION, "pubsub.googleapis.com/Subscription"),
        (SNAPSHOT, "pubsub.googleapis.com/Snapshot"), (SCHEMA, "pubsub.googleapis.com/Schema"),
        (FOLDER, "storage.googleapis.com/ManagedFolder"),
        (f"//iam.googleapis.com/{pool_name(srv)}", "iam.googleapis.com/WorkloadIdentityPool")}, found
    assert {r["project"] for r in found} == {f"projects/{number}"}
    assert {r["organization"] for r in found} == {f"organizations/{ORG}"}
    topic = next(r for r in found if r["resource"] == TOPIC)
    assert topic["policy"] == {"bindings": [{"role": "roles/pubsub.publisher", "members": [f"serviceAccount:{RELAY}"]}]}
    only = ok(srv.call("GET", path, params={"query": "policy:relay-gsa", "assetTypes": "pubsub.googleapis.com.*",
                                            "orderBy": "assetType DESC"}))["results"]
    assert [r["resource"] for r in only] == [TOPIC, SUBSCRIPTION, SNAPSHOT, SCHEMA]
    by_resource = ok(srv.call("GET", path, params={"query": "resource:managedFolders"}))["results"]
    assert [r["resource"] for r in by_resource] == [FOLDER]
    permission = ok(srv.call("GET", path, params={
        "query": "policy:relay-gsa policy.role.permissions:pubsub.subscriptions.consume"}))["results"]
    assert [r["resource"] for r in permission] == [SUBSCRIPTION]
    assert permission[0]["explanation"]["matchedPermissions"] == {
        "roles/pubsub.subscriber": {"permissions": ["pubsub.subscriptions.consume"]}}


def test_gcloud_shows_the_topic_row(resource_policies: KeylessServer, gcloud: Gcloud) -> None:
    """Seed 002's analyze-iam-policy and search-all-iam-policies, as gcloud prints them."""
    result = gcloud.run("asset", "analyze-iam-policy", f"--project={PROJECT}", f"--identity=serviceAccount:{RELAY}")
    entries = [e for e in yaml.safe_load_all(result.stdout) if e]
    rows = {(e["policy"]["attachedResource"], e["policy"]["binding"]["role"]) for e in entries}
    assert (TOPIC, "roles/pubsub.publisher") in rows and (SUBSCRIPTION, "roles/pubsub.subscriber") in rows, entries
    found = gcloud.json("asset", "search-all-iam-policies", f"--scope=projects/{PROJECT}",
                        "--query=policy:relay-gsa", "--asset-types=pubsub.googleapis.com/Topic")
    assert [(r["resource"], r["policy"]["bindings"][0]["role"]) for r in found] == [(TOPIC, "roles/pubsub.publisher")]


def doctor_explain(srv: KeylessServer, *args: str) -> tuple[int, Any]:
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "keyless.cli.main", "doctor", "explain", *args, "--format", "json",
           "--data-dir", str(srv.data_dir)]
    if srv.database_url:
        cmd += ["--database", srv.database_url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode in (0, 1) and not out.stderr, out.stderr
    return out.returncode, json.loads(out.stdout)


def test_doctor_explains_a_topic_denial_through_its_chain(resource_policies: KeylessServer) -> None:
    """relay-gsa may view OTHER's topic but not publish to it: the explanation walks the topic's
    policy, then its project's and the root's, and names the topic's gcloud command as the fix."""
    code, result = doctor_explain(resource_policies, "--principal", f"serviceAccount:{RELAY}",
                                  "--permission", "pubsub.topics.publish", "--resource", OTHER_TOPIC)
    assert code == 1 and result["granted"] is False
    assert [level["resource"] for level in result["policies"]] == [OTHER_TOPIC, f"projects/{OTHER}", ROOT]
    viewer = result["policies"][0]["bindings"]
    assert viewer == [{"role": "roles/pubsub.viewer", "members": [f"serviceAccount:{RELAY}"], "memberCount": 1,
                       "containsPermission": False, "memberMatches": True, "matchedMember": f"serviceAccount:{RELAY}",
                       "grants": False}]
    assert result["firstFailure"]["step"] == "role"
    assert result["firstFailure"]["fix"].startswith(f"gcloud pubsub topics add-iam-policy-binding orders "
                                                    f"--project={OTHER} ")
    # the managed folder's grant reaches the object beneath it
    code, result = doctor_explain(resource_policies, "--principal", f"serviceAccount:{RELAY}",
                                  "--permission", "storage.objects.get", "--resource",
                                  f"//storage.googleapis.com/projects/_/buckets/{LABELLED_BUCKET}/objects/reports/q4.csv")
    assert code == 0 and result["granted"] is True, result
    assert result["policies"][0]["resource"] == f"projects/_/buckets/{LABELLED_BUCKET}/managedFolders/reports/"
    assert result["policies"][0]["bindings"][0]["grants"] is True


@pytest.mark.store_independent
def test_every_kind_of_target_has_its_grantable_roles() -> None:
    """queryGrantableRoles looks a resolved resource's kind up in these tables: a kind missing
    from them would answer a topic's or a managed folder's full name with a 500."""
    from keyless.doctor.targets import KINDS
    from keyless.iam.grantable import GET_POLICY_PERMISSION, KIND_PERMISSIONS

    assert set(KINDS) == set(GET_POLICY_PERMISSION) == set(KIND_PERMISSIONS)


def test_grantable_roles_on_resources_below_the_project(resource_policies: KeylessServer) -> None:
    srv = resource_policies
    for name, wanted, foreign in ((TOPIC, "roles/pubsub.publisher", "roles/storage.objectViewer"),
                                  (FOLDER, "roles/storage.objectViewer", "roles/pubsub.publisher")):
        roles = ok(srv.call("POST", "/iam/v1/roles:queryGrantableRoles",
                            body={"fullResourceName": name, "pageSize": 1000}))["roles"]
        assert wanted in {r["name"] for r in roles} and foreign not in {r["name"] for r in roles}, name
    stranger = token_for_user(srv, "stranger@example.com")
    denied = srv.call("POST", "/iam/v1/roles:queryGrantableRoles", token=stranger, body={"fullResourceName": TOPIC})
    assert denied.status_code == 403 and "pubsub.topics.getIamPolicy" in denied.json()["error"]["message"]


def test_console_explains_a_subscription_denial(resource_policies: KeylessServer) -> None:
    """The console's explain (signed in as the owner) walks the subscription's chain, as the CLI's."""
    import httpx

    from tests.console.conftest import names, sign_in_link

    srv = resource_policies
    client = httpx.Client(base_url=srv.base_url, timeout=30)
    link = sign_in_link(srv)
    client.get(link)
    r = client.post("/console/signin", data={"csrf": client.cookies[names(srv).csrf], "code": link.split("code=")[1]})
    assert r.status_code == 303, r.text
    r = client.post("/console/api/explain", headers={"X-CSRF-Token": client.cookies[names(srv).csrf]},
                    json={"principal": f"serviceAccount:{RELAY}", "permission": "pubsub.subscriptions.delete",
                          "resource": SUBSCRIPTION})
    result = ok(r)
    assert result["granted"] is False and result["firstFailure"]["step"] == "role"
    assert [level["resource"] for level in result["policies"]] == [SUBSCRIPTION, f"projects/{PROJECT}", ROOT]
    assert result["policies"][0]["bindings"][0]["role"] == "roles/pubsub.subscriber"
    assert result["policies"][0]["bindings"][0]["memberMatches"] is True
    assert "gcloud pubsub subscriptions add-iam-policy-binding orders-sub" in result["firstFailure"]["fix"]
