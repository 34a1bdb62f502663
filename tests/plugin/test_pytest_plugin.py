"""The pytest plugin as a user's suite runs it (pytester, in a subprocess that loads the plugin
through its `pytest11` entry point): the embedded server, the factories with Google's names, ADC
for the code under test, the audit assertions, and `--keyless-server` against a running server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.helpers import token_for_user
from tests.conftest import KeylessServer

pytest_plugins = ["pytester"]


def plugin_args() -> list[str]:
    """Installed, the plugin loads by its entry point as in a user's suite; from a checkout not yet
    reinstalled, name it."""
    from importlib.metadata import entry_points

    installed = any(e.name == "keyless" for e in entry_points(group="pytest11"))
    return [] if installed else ["-p", "keyless.pytest_plugin"]

USER_TEST = '''
import google.auth
import google.auth.exceptions
import google.auth.transport.requests
import httpx
import pytest


def test_federation(keyless, keyless_adc):
    project = keyless.project()
    pool = keyless.pool(project, "github-pool")
    provider = keyless.oidc_provider(pool, "github-provider", issuer="github",
                                     attribute_condition="assertion.repository_owner == 'my-org'")
    sa = keyless.service_account(project, "deploy-sa")
    keyless.grant(pool.principal_set("repository", "my-org/my-repo"), "roles/iam.workloadIdentityUser", sa)
    keyless.grant(sa, "roles/storage.objectViewer", project)

    keyless_adc(provider, service_account=sa, repository="my-org/my-repo")
    credentials, project_id = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(google.auth.transport.requests.Request())
    info = httpx.get(keyless.url + "/oauth2/v3/tokeninfo", params={"access_token": credentials.token}).json()
    assert info["email"] == sa.email
    assert project_id == project.project_id

    entry = keyless.audit.assert_entry(project=project, method="SetIamPolicy")
    assert entry["protoPayload"]["authenticationInfo"]["principalEmail"] == "owner@keyless.dev"
    with pytest.raises(AssertionError, match="no audit entry"):
        keyless.audit.assert_entry(project=project, method="SetIamPolicy", status="PERMISSION_DENIED", timeout=0.2)


def test_data_access_entries(keyless, keyless_adc):
    project = keyless.project()
    keyless.audit.enable(project, "iam.googleapis.com", "DATA_READ")
    pool = keyless.pool(project)
    provider = keyless.oidc_provider(pool)
    sa = keyless.service_account(project)
    keyless_adc(provider, service_account=sa, repository="my-org/app")
    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    with pytest.raises(google.auth.exceptions.RefreshError):  # no workloadIdentityUser binding yet
        credentials.refresh(google.auth.transport.requests.Request())
    keyless.grant(pool.principal_set("repository", "my-org/app"), "roles/iam.workloadIdentityUser", sa)
    credentials.refresh(google.auth.transport.requests.Request())
    keyless.audit.assert_entry(project=project, method="GenerateAccessToken", status="OK")


def test_refused_repository(keyless):
    project = keyless.project()
    pool = keyless.pool(project)
    provider = keyless.oidc_provider(pool, attribute_condition="assertion.repository_owner == 'my-org'")
    answer = keyless.exchange(provider, keyless.github_token("other-org/repo", provider=provider))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "unauthorized_client"
    ok = keyless.exchange(provider, keyless.github_token("my-org/repo", provider=provider))
    assert ok.status_code == 200, ok.text
    # GitHub's default audience is not the provider's: refused, as on Google
    wrong_aud = keyless.exchange(provider, keyless.github_token("my-org/repo"))
    assert wrong_aud.status_code == 400, wrong_aud.text


def test_same_server_for_the_session(keyless):
    assert keyless.call("GET", "/healthz")["status"] == "SERVING"
'''


@pytest.mark.store_independent
def test_embedded_server_and_factories(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    result = pytester.runpytest_subprocess(*plugin_args(), "-q", timeout=240)
    result.assert_outcomes(passed=4)


@pytest.mark.store_independent
def test_readme_example(pytester: pytest.Pytester) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("<!-- pytest-example -->", 1)[1].split("<!-- /pytest-example -->", 1)[0]
    code = block.strip().removeprefix("```python").removesuffix("```")
    pytester.makepyfile(test_readme=code)
    result = pytester.runpytest_subprocess(*plugin_args(), "-q", timeout=240)
    result.assert_outcomes(passed=1)


def test_keyless_server_option_uses_a_running_server(server: KeylessServer, pytester: pytest.Pytester) -> None:
    # `server` before `pytester`: pytester restores sys.modules after the test, and a module first
    # imported inside that window (httpcore's backends, on the first connection) would come back as
    # a second copy whose exceptions httpx no longer maps, breaking later tests in this process.
    pytester.makepyfile(test_remote=f'''
def test_remote(keyless):
    assert keyless.url == "{server.base_url}"
    project = keyless.project("remote-project")
    sa = keyless.service_account(project, "remote-sa")
    keyless.grant(sa, "roles/secretmanager.secretAccessor", keyless.secret(project, "db", b"s3cret"))
''')
    result = pytester.runpytest_subprocess(*plugin_args(), "-q", "--keyless-server", server.base_url,
                                           "--keyless-owner-token-file", str(server.data_dir / "owner.token"),
                                           timeout=240)
    result.assert_outcomes(passed=1)
    # the objects are on that server, made through its APIs
    got = server.call("GET", "/iam/v1/projects/remote-project/serviceAccounts")
    assert [a["email"] for a in got.json()["accounts"]] == ["remote-sa@remote-project.iam.gserviceaccount.com"]
    policy = server.call("GET", "/secretmanager/v1/projects/remote-project/secrets/db:getIamPolicy").json()
    assert policy["bindings"] == [{"role": "roles/secretmanager.secretAccessor",
                                   "members": ["serviceAccount:remote-sa@remote-project.iam.gserviceaccount.com"]}]


def test_keyless_server_option_needs_the_owner_token(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(keyless):\n    pass\n")
    result = pytester.runpytest_subprocess(*plugin_args(), "--keyless-server", "http://127.0.0.1:9",
                                           timeout=120)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--keyless-server needs the server's owner token*"])


def test_only_the_owner_mints_test_issuer_tokens(server: KeylessServer) -> None:
    body = {"repository": "my-org/my-repo", "audience": "https://example.test/aud"}
    minted = server.call("POST", "/idp/github/jobs", body=body)
    assert minted.status_code == 200, minted.text
    assert set(minted.json()) == {"value", "requestUrl", "requestToken"}
    # no token, and a principal other than the owner, are refused
    assert server.call("POST", "/idp/github/jobs", body=body, token="").status_code == 401
    stranger = token_for_user(server, "stranger@example.com")
    refused = server.call("POST", "/idp/github/jobs", body=body, token=stranger)
    assert refused.status_code == 403 and refused.json()["error"]["status"] == "PERMISSION_DENIED"
    bad = server.call("POST", "/idp/github/jobs", body={"repository": "my-org/my-repo", "lifetime": 10**9})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    unknown = server.call("POST", "/idp/github/jobs", body={"repository": "a/b", "sub": "repo:x"})
    assert unknown.status_code == 400 and "Unknown name" in unknown.json()["error"]["message"]
