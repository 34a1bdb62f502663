"""Google's system parameters on every JSON API (issue #19; keyless.api.system_parameters), checked
against https://cloud.google.com/apis/docs/system-parameters on a real `keyless serve`: partial
responses (`fields`), pretty printing by default, `alt`, `$.xgafv`, JSONP, `access_token`,
`userProject` (serviceusage.services.use), API keys (refused as unknown), on One Platform APIs and
on Cloud Storage's own wire."""

from __future__ import annotations

import json

import pytest

from keyless.api.system_parameters import parse_mask, select
from keyless.errors import InvalidArgument
from tests.api.helpers import token_for_user
from tests.conftest import KeylessServer

PROJECT = "sysparam-project"
BUCKET = "sysparam-bucket"
RM = "/cloudresourcemanager/v1/projects"


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    assert module_server.call("POST", RM, body={"projectId": PROJECT}).status_code == 200
    r = module_server.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": BUCKET})
    assert r.status_code == 200, r.text
    r = module_server.call("POST", f"/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": "a.txt"},
                           raw=b"hello", headers={"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    return module_server


# -- fields: partial responses ------------------------------------------------------------------

@pytest.mark.store_independent
@pytest.mark.parametrize("mask, value, expected", [
    ("a", {"a": 1, "b": 2}, {"a": 1}),
    ("a,b", {"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2}),
    ("a/b", {"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 1}}),
    ("items(id,name),next", {"items": [{"id": 1, "name": "x", "z": 0}, {"id": 2}], "next": "t", "k": 1},
     {"items": [{"id": 1, "name": "x"}, {"id": 2}], "next": "t"}),
    ("items/id", {"items": [{"id": 1, "name": "x"}]}, {"items": [{"id": 1}]}),
    ("*", {"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 2}}),
    ("a/*", {"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 2}}),
    ("a(b/c,d)", {"a": {"b": {"c": 1, "e": 2}, "d": 3, "f": 4}}, {"a": {"b": {"c": 1}, "d": 3}}),
    ("a/b,a", {"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 2}}),  # the whole of a wins
    ("missing", {"a": 1}, {}),
    ("a/x", {"a": {"b": 1}}, {}),  # an object left empty is dropped
])
def test_field_mask_selects_what_google_documents(mask: str, value: object, expected: object) -> None:
    assert select(value, parse_mask(mask)) == expected


@pytest.mark.store_independent
@pytest.mark.parametrize("mask", ["a,", ",a", "a(", "a()", "a)", "a//b", "a/", "a(b", "a b", "(a)", "a(b))",
                                  "a" * 5000, "a(" * 40 + "b" + ")" * 40])
def test_malformed_field_mask_is_invalid_argument(mask: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_mask(mask)


def test_fields_trim_a_one_platform_answer(srv: KeylessServer) -> None:
    r = srv.call("GET", RM, params={"fields": "projects(projectId,projectNumber),nextPageToken"})
    assert r.status_code == 200, r.text
    projects = r.json()["projects"]
    assert projects and all(set(p) == {"projectId", "projectNumber"} for p in projects)
    r = srv.call("GET", f"{RM}/{PROJECT}", headers={"X-Goog-FieldMask": "projectId"})
    assert r.json() == {"projectId": PROJECT}


def test_fields_trim_a_storage_answer(srv: KeylessServer) -> None:
    r = srv.call("GET", f"/storage/v1/b/{BUCKET}/o", params={"fields": "items(name,size)"})
    assert r.status_code == 200, r.text
    assert r.json() == {"items": [{"name": "a.txt", "size": "5"}]}


def test_malformed_fields_is_400_in_each_wire_shape(srv: KeylessServer) -> None:
    r = srv.call("GET", RM, params={"fields": "projects("})
    assert r.status_code == 400
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT" and "projects(" in r.json()["error"]["message"]
    r = srv.call("GET", f"/storage/v1/b/{BUCKET}", params={"fields": "name,,id"})
    assert r.status_code == 400 and r.json()["error"]["errors"][0]["reason"] == "invalid"


def test_deeply_nested_fields_is_refused_not_a_crash(srv: KeylessServer) -> None:
    # 1,000 levels (the mask's limit is 16): deep enough to crash a recursive parser, short enough
    # that the URL stays under the 16 KB request-head limit (a longer one is refused earlier, 431)
    r = srv.call("GET", RM, params={"fields": "a(" * 1000 + "b" + ")" * 1000})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_fields_leave_errors_whole(srv: KeylessServer) -> None:
    r = srv.call("GET", f"{RM}/no-such-project-x", params={"fields": "projectId"})
    assert r.status_code in (403, 404) and {"code", "message", "status"} <= set(r.json()["error"])


# -- prettyPrint ---------------------------------------------------------------------------------

def test_answers_are_pretty_printed_by_default_as_on_google(srv: KeylessServer) -> None:
    r = srv.call("GET", f"{RM}/{PROJECT}")
    assert r.text.startswith('{\n  "') and r.text.endswith("}\n")
    assert srv.call("GET", f"/storage/v1/b/{BUCKET}").text.startswith('{\n "kind": "storage#bucket"')
    r = srv.call("GET", f"{RM}/{PROJECT}", params={"prettyPrint": "false"})
    assert "\n" not in r.text and json.loads(r.text)["projectId"] == PROJECT
    error = srv.call("GET", f"{RM}/{PROJECT}", token="", params={"prettyPrint": "false"})
    assert error.status_code == 401 and "\n" not in error.text


def test_bad_pretty_print_is_400(srv: KeylessServer) -> None:
    r = srv.call("GET", f"{RM}/{PROJECT}", params={"prettyPrint": "maybe"})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


# -- alt, $.xgafv --------------------------------------------------------------------------------

def test_alt_json_and_the_rest_transports_form_are_accepted(srv: KeylessServer) -> None:
    for alt in ("json", "json;enum-encoding=int"):
        r = srv.call("GET", f"{RM}/{PROJECT}", params={"$alt": alt})
        assert r.status_code == 200 and r.json()["projectId"] == PROJECT


def test_alt_media_only_where_the_method_defines_it(srv: KeylessServer) -> None:
    r = srv.call("GET", f"/storage/v1/b/{BUCKET}/o/a.txt", params={"alt": "media"})
    assert r.status_code == 200 and r.content == b"hello"
    for path in (f"{RM}/{PROJECT}", f"/storage/v1/b/{BUCKET}"):
        r = srv.call("GET", path, params={"alt": "media"})
        assert r.status_code == 400, path
    r = srv.call("GET", f"{RM}/{PROJECT}", params={"alt": "xml"})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_xgafv_versions(srv: KeylessServer) -> None:
    for version in ("1", "2"):
        assert srv.call("GET", f"{RM}/{PROJECT}", params={"$.xgafv": version}).status_code == 200
    assert srv.call("GET", f"{RM}/{PROJECT}", params={"$.xgafv": "3"}).status_code == 400


# -- callback (JSONP) ----------------------------------------------------------------------------

def test_callback_wraps_the_answer_as_google_does(srv: KeylessServer) -> None:
    r = srv.call("GET", f"{RM}/{PROJECT}", params={"callback": "handle", "fields": "projectId"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.text.startswith("// API callback\nhandle(") and r.text.endswith(");")
    assert json.loads(r.text[len("// API callback\nhandle("):-2]) == {"projectId": PROJECT}


@pytest.mark.parametrize("callback", ["alert(1);//", "a b", "x</script>", "1abc", ""])
def test_a_callback_that_is_not_a_name_is_refused(srv: KeylessServer, callback: str) -> None:
    r = srv.call("GET", f"{RM}/{PROJECT}", params={"callback": callback})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"


# -- credentials in the query ---------------------------------------------------------------------

def test_access_token_parameter_authenticates(srv: KeylessServer) -> None:
    for name in ("access_token", "oauth_token"):
        r = srv.call("GET", f"{RM}/{PROJECT}", token="", params={name: srv.owner_token})
        assert r.status_code == 200 and r.json()["projectId"] == PROJECT
    r = srv.call("GET", f"/storage/v1/b/{BUCKET}", token="", params={"access_token": srv.owner_token})
    assert r.status_code == 200
    r = srv.call("GET", f"{RM}/{PROJECT}", token="", params={"access_token": "ya29.forged"})
    assert r.status_code == 401


def test_an_api_key_is_refused_as_google_refuses_an_unknown_one(srv: KeylessServer) -> None:
    for params, headers in (({"key": "AIzaSyFake"}, {}), ({}, {"X-Goog-Api-Key": "AIzaSyFake"})):
        r = srv.call("GET", f"{RM}/{PROJECT}", params=params, headers=headers)
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["message"] == "API key not valid. Please pass a valid API key."
        assert error["details"][0]["reason"] == "API_KEY_INVALID"
        assert error["details"][0]["metadata"]["service"] == "cloudresourcemanager.googleapis.com"


def test_quota_user_is_accepted(srv: KeylessServer) -> None:
    r = srv.call("GET", f"{RM}/{PROJECT}", params={"quotaUser": "someone"}, headers={"X-Goog-Quota-User": "x"})
    assert r.status_code == 200


# -- userProject: serviceusage.services.use on the billed project ----------------------------------

def test_user_project_needs_service_usage_on_it(srv: KeylessServer) -> None:
    email = "billing-tester@example.com"
    token = token_for_user(srv, email)
    path = f"/iam/v1/projects/{PROJECT}/serviceAccounts"
    policy_path = f"{RM}/{PROJECT}"
    policy = srv.call("POST", policy_path + ":getIamPolicy").json()
    policy.setdefault("bindings", []).append({"role": "roles/iam.serviceAccountViewer", "members": [f"user:{email}"]})
    assert srv.call("POST", policy_path + ":setIamPolicy", body={"policy": policy}).status_code == 200
    assert srv.call("GET", path, token=token).status_code == 200
    for headers, params in (({"X-Goog-User-Project": PROJECT}, {}), ({}, {"userProject": PROJECT}),
                            ({"X-Goog-User-Project": "no-such-project"}, {})):
        r = srv.call("GET", path, token=token, headers=headers, params=params)
        assert r.status_code == 403, r.text
        info = r.json()["error"]["details"][0]
        assert info["reason"] == "USER_PROJECT_DENIED" and info["metadata"]["service"] == "iam.googleapis.com"
    r = srv.call("GET", f"/storage/v1/b/{BUCKET}/o", token=token, params={"userProject": PROJECT})
    assert r.status_code == 403 and "serviceusage.services.use" in r.json()["error"]["message"]

    policy = srv.call("POST", policy_path + ":getIamPolicy").json()
    policy["bindings"].append({"role": "roles/serviceusage.serviceUsageConsumer", "members": [f"user:{email}"]})
    assert srv.call("POST", policy_path + ":setIamPolicy", body={"policy": policy}).status_code == 200
    r = srv.call("GET", path, token=token, headers={"X-Goog-User-Project": PROJECT})
    assert r.status_code == 200, r.text
    # the owner may bill any existing project, by id or number, but not one that does not exist
    number = srv.call("GET", policy_path).json()["projectNumber"]
    assert srv.call("GET", path, headers={"X-Goog-User-Project": number}).status_code == 200
    assert srv.call("GET", path, headers={"X-Goog-User-Project": "no-such-project"}).status_code == 403
    assert srv.call("GET", path, headers={"X-Goog-User-Project": "bad project!"}).status_code == 400


def test_user_project_is_checked_on_the_inline_token_path(srv: KeylessServer) -> None:
    """generateAccessToken runs on the event loop; its userProject check still runs (off the loop)."""
    path = f"/iamcredentials/v1/projects/-/serviceAccounts/nobody@{PROJECT}.iam.gserviceaccount.com:generateAccessToken"
    r = srv.call("POST", path, body={"scope": ["https://www.googleapis.com/auth/cloud-platform"]},
                 headers={"X-Goog-User-Project": "no-such-project"})
    assert r.status_code == 403 and r.json()["error"]["details"][0]["reason"] == "USER_PROJECT_DENIED"
    r = srv.call("POST", path, body={"scope": ["https://www.googleapis.com/auth/cloud-platform"]},
                 headers={"X-Goog-User-Project": PROJECT})
    assert r.status_code in (403, 404) and "USER_PROJECT_DENIED" not in r.text  # past the check: no such account
