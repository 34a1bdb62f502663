"""Bad input gets Google's error shape, the right status, stores nothing partial, never a 500."""

from __future__ import annotations

import pytest

from tests.conftest import KeylessServer

IAM = "/iam/v1"
CRM = "/cloudresourcemanager/v1"


def _error(resp, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == status and body["error"]["status"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    r = module_server.call("POST", f"{CRM}/projects", body={"projectId": "my-project"})
    assert r.status_code == 200, r.text
    return module_server


def test_missing_and_invalid_credentials_are_401(srv: KeylessServer) -> None:
    msg = _error(srv.call("GET", f"{CRM}/projects/my-project", token=""), 401, "UNAUTHENTICATED")
    assert "missing required authentication credential" in msg
    msg = _error(srv.call("GET", f"{CRM}/projects/my-project", token="ya29.forged.token.here"), 401, "UNAUTHENTICATED")
    assert "invalid authentication credentials" in msg
    _error(srv.call("GET", f"{CRM}/projects/my-project", headers={"Authorization": "Basic Zm9vOmJhcg=="}, token=""),
           401, "UNAUTHENTICATED")


def test_unknown_fields_and_wrong_types(srv: KeylessServer) -> None:
    msg = _error(srv.call("POST", f"{IAM}/projects/my-project/serviceAccounts",
                          body={"accountId": "app-gsa", "bogus": 1}), 400, "INVALID_ARGUMENT")
    assert 'Unknown name "bogus"' in msg
    msg = _error(srv.call("POST", f"{IAM}/projects/my-project/serviceAccounts",
                          body={"accountId": "app-gsa", "serviceAccount": {"displayName": 5}}), 400, "INVALID_ARGUMENT")
    assert "display" in msg.lower()
    _error(srv.call("POST", f"{IAM}/projects/my-project/serviceAccounts", body={"accountId": 7}),
           400, "INVALID_ARGUMENT")
    # nothing was created by any of those
    assert srv.call("GET", f"{IAM}/projects/my-project/serviceAccounts").json() == {}


@pytest.mark.parametrize("raw", [b"{", b"[1,2]", b"\xff\xfe", b"[" * 100000 + b"]" * 100000, b'"str"'])
def test_malformed_json(srv: KeylessServer, raw: bytes) -> None:
    msg = _error(srv.call("POST", f"{CRM}/projects/my-project:setIamPolicy", raw=raw), 400, "INVALID_ARGUMENT")
    assert "Invalid JSON payload" in msg


def test_oversize_body(srv: KeylessServer) -> None:
    big = b'{"policy": {"bindings": [], "etag": "' + b"a" * (11 * 1024 * 1024) + b'"}}'
    msg = _error(srv.call("POST", f"{CRM}/projects/my-project:setIamPolicy", raw=big), 400, "INVALID_ARGUMENT")
    assert "exceeds the limit" in msg


@pytest.mark.parametrize("account_id", ["ab", "Upper-case", "has_underscore", "x" * 31, "ends-with-", "1starts"])
def test_invalid_account_ids(srv: KeylessServer, account_id: str) -> None:
    _error(srv.call("POST", f"{IAM}/projects/my-project/serviceAccounts", body={"accountId": account_id}),
           400, "INVALID_ARGUMENT")


def test_malformed_and_unknown_names(srv: KeylessServer) -> None:
    _error(srv.call("GET", f"{IAM}/projects/my-project/serviceAccounts/nobody@my-project.iam.gserviceaccount.com"),
           404, "NOT_FOUND")
    _error(srv.call("GET", f"{CRM}/projects/no-such-project"), 403, "PERMISSION_DENIED")  # as Google
    _error(srv.call("GET", "/iam/v2/whatever"), 404, "NOT_FOUND")
    _error(srv.call("GET", f"{IAM}/roles/doesNotExist"), 404, "NOT_FOUND")
    _error(srv.call("POST", f"{IAM}/projects/my-project/roles", body={"roleId": "a b", "role": {"title": "x"}}),
           400, "INVALID_ARGUMENT")
    _error(srv.call("POST", f"{IAM}/projects/my-project/roles",
                    body={"roleId": "appReader", "role": {"includedPermissions": ["storage.objects.fly"]}}),
           400, "INVALID_ARGUMENT")
    _error(srv.call("POST", f"{IAM}/projects/my-project/locations/global/workloadIdentityPools",
                    params={"workloadIdentityPoolId": "gcp-reserved"}, body={}), 400, "INVALID_ARGUMENT")
    _error(srv.call("POST", f"{IAM}/projects/my-project/locations/us-east1/workloadIdentityPools",
                    params={"workloadIdentityPoolId": "good-pool"}, body={}), 400, "INVALID_ARGUMENT")


def test_bad_policies_store_nothing(srv: KeylessServer) -> None:
    before = srv.call("POST", f"{CRM}/projects/my-project:getIamPolicy", body={}).json()
    for policy in [
        {"bindings": [{"role": "roles/viewer", "members": ["nobody"]}]},
        {"bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"]},
                      {"role": "roles/notARole", "members": ["user:a@example.com"]}]},
        {"bindings": "nope"},
        {"bindings": [{"role": "roles/viewer", "members": ["user:a@example.com"], "extra": 1}]},
        {"version": 7},
    ]:
        _error(srv.call("POST", f"{CRM}/projects/my-project:setIamPolicy", body={"policy": policy}),
               400, "INVALID_ARGUMENT")
    assert srv.call("POST", f"{CRM}/projects/my-project:getIamPolicy", body={}).json() == before


def test_provider_with_bad_cel_is_refused_with_the_compiler_message(srv: KeylessServer) -> None:
    r = srv.call("POST", f"{IAM}/projects/my-project/locations/global/workloadIdentityPools",
                 params={"workloadIdentityPoolId": "cel-pool"}, body={})
    assert r.status_code == 200, r.text
    base = f"{IAM}/projects/my-project/locations/global/workloadIdentityPools/cel-pool/providers"
    oidc = {"issuerUri": "https://token.actions.githubusercontent.com"}
    _error(srv.call("POST", base, params={"workloadIdentityPoolProviderId": "bad-map"},
                    body={"oidc": oidc, "attributeMapping": {"google.subject": "assertion.sub +"}}),
           400, "INVALID_ARGUMENT")
    _error(srv.call("POST", base, params={"workloadIdentityPoolProviderId": "no-subject"},
                    body={"oidc": oidc, "attributeMapping": {"attribute.repo": "assertion.repository"}}),
           400, "INVALID_ARGUMENT")
    _error(srv.call("POST", base, params={"workloadIdentityPoolProviderId": "bad-cond"},
                    body={"oidc": oidc, "attributeMapping": {"google.subject": "assertion.sub"},
                          "attributeCondition": "assertion.repository_owner == "}), 400, "INVALID_ARGUMENT")
    _error(srv.call("POST", base, params={"workloadIdentityPoolProviderId": "plain-http"},
                    body={"oidc": {"issuerUri": "http://issuer.example.com"},
                          "attributeMapping": {"google.subject": "assertion.sub"}}), 400, "INVALID_ARGUMENT")
    assert srv.call("GET", base).json() == {}


def test_caller_without_permission_gets_403_in_googles_shape(srv: KeylessServer) -> None:
    r = srv.call("POST", f"{IAM}/projects/my-project/serviceAccounts", body={"accountId": "lonely-sa"})
    assert r.status_code == 200, r.text
    email = r.json()["email"]
    # a token for the new service account, minted the way the server mints every token
    token = srv.keyless("token", "owner").stdout.strip()  # owner still works
    assert srv.call("GET", f"{CRM}/projects/my-project", token=token).status_code == 200
    from tests.api.helpers import token_for_service_account
    sa_token = token_for_service_account(srv, email)
    msg = _error(srv.call("POST", f"{CRM}/projects/my-project:setIamPolicy", token=sa_token,
                          body={"policy": {"bindings": []}}), 403, "PERMISSION_DENIED")
    assert "resourcemanager.projects.setIamPolicy" in msg
    body = srv.call("POST", f"{CRM}/projects/my-project:setIamPolicy", token=sa_token,
                    body={"policy": {"bindings": []}}).json()
    assert body["error"]["details"][0]["reason"] == "IAM_PERMISSION_DENIED"


@pytest.mark.parametrize("member", ["allUsers", "allAuthenticatedUsers", "projectOwner:my-project"])
def test_project_policies_refuse_public_and_bucket_only_members(srv: KeylessServer, member: str) -> None:
    msg = _error(srv.call("POST", f"{CRM}/projects/my-project:setIamPolicy",
                          body={"policy": {"bindings": [{"role": "roles/viewer", "members": [member]}]}}),
                 400, "INVALID_ARGUMENT")
    assert "Policy members must be of the form" in msg or "unknown type" in msg
