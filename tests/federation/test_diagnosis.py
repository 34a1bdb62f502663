"""Refusals name the fix: with seed 001's setup made by `keyless quickstart`, each way a newcomer's
token is refused keeps Google's error body for the client, while the refused exchange's audit entry
(metadata.diagnosis) and `keyless doctor explain --token` say what to change."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KeylessServer, free_port, fresh_database_url

PROVIDER = "projects/123456789/locations/global/workloadIdentityPools/github-pool/providers/github-provider"
LIST = "/logging/v2/entries:list"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    root = tmp_path_factory.mktemp("diagnosis")
    server = KeylessServer(root / "data", fresh_database_url(), "--allow-insecure-issuers")
    made = server.keyless("quickstart", "--output-file", str(root / "credentials.json"))
    assert made.returncode == 0, made.stderr
    yield server
    server.stop()


def mint(srv: KeylessServer, *args: str) -> str:
    result = srv.keyless("token", "github", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def exchange(srv: KeylessServer, token: str) -> httpx.Response:
    return httpx.post(f"{srv.base_url}/sts/v1/token", timeout=30, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": f"//iam.googleapis.com/{PROVIDER}", "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "scope": "https://www.googleapis.com/auth/cloud-platform"})


def refusal_entry(srv: KeylessServer, since: str) -> dict[str, Any]:
    """The newest refused ExchangeToken entry written after `since` (the writer commits a moment later)."""
    query = (f'protoPayload.methodName="google.identity.sts.v1.SecurityTokenService.ExchangeToken" '
             f'AND severity=ERROR AND timestamp>="{since}"')
    deadline = time.monotonic() + 10
    while True:
        page = srv.call("POST", LIST, body={"resourceNames": ["projects/my-project"], "filter": query,
                                            "orderBy": "timestamp desc"}).json()
        if page.get("entries") or time.monotonic() > deadline:
            assert page.get("entries"), page
            return dict(page["entries"][0])
        time.sleep(0.1)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))


def test_githubs_default_audience(srv: KeylessServer) -> None:
    since = now()
    r = exchange(srv, mint(srv, "--repository", "my-org/my-repo"))  # aud https://github.com/my-org, as GitHub's
    assert r.status_code == 400 and r.json() == {
        "error": "invalid_grant",
        "error_description": "The audience in ID Token [https://github.com/my-org] does not match the expected "
                             "audience."}
    diagnosis = refusal_entry(srv, since)["protoPayload"]["metadata"]["diagnosis"]
    assert diagnosis["cause"].startswith("the token's aud is https://github.com/my-org; the provider's allowed "
                                         "audiences are [")
    assert f"//iam.googleapis.com/{PROVIDER} (the default when none are set)" in diagnosis["cause"]
    assert f"request the token with audience https://iam.googleapis.com/{PROVIDER}" in diagnosis["fix"]
    assert f"keyless token github --provider {PROVIDER}" in diagnosis["fix"]
    assert diagnosis["fix"].endswith(
        "gcloud iam workload-identity-pools providers update-oidc github-provider --workload-identity-pool=github-pool "
        "--location=global --project=123456789 --allowed-audiences=https://github.com/my-org")


def test_condition_false_names_the_claims_it_read(srv: KeylessServer) -> None:
    since = now()
    r = exchange(srv, mint(srv, "--repository", "evil-org/my-repo", "--provider", PROVIDER))
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    diagnosis = refusal_entry(srv, since)["protoPayload"]["metadata"]["diagnosis"]
    assert diagnosis["cause"] == ("the attribute condition assertion.repository_owner == 'my-org' is false for this "
                                  "token (repository_owner='evil-org')")
    assert "--attribute-condition=" in diagnosis["fix"]


def test_an_issuer_of_another_port_points_at_this_servers(srv: KeylessServer, tmp_path: Path) -> None:
    """The newcomer's trap: a provider made from a token minted for the default port."""
    elsewhere = f"http://127.0.0.1:{free_port()}"
    providers = "/iam/v1/projects/my-project/locations/global/workloadIdentityPools/github-pool/providers"
    body = {"attributeMapping": {"google.subject": "assertion.sub"}, "oidc": {"issuerUri": f"{elsewhere}/idp/github"}}
    r = srv.call("POST", providers, body=body, params={"workloadIdentityPoolProviderId": "stale-provider"})
    assert r.status_code == 200, r.text
    stale = PROVIDER.replace("github-provider", "stale-provider")
    token = mint(srv, "--repository", "my-org/my-repo", "--server", elsewhere, "--provider", stale)
    since = now()
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": token,
            "audience": f"//iam.googleapis.com/{stale}", "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}
    r = httpx.post(f"{srv.base_url}/sts/v1/token", data=form, timeout=30)
    assert r.json() == {"error": "invalid_grant",
                        "error_description": "Error connecting to the given credential's issuer."}
    diagnosis = refusal_entry(srv, since)["protoPayload"]["metadata"]["diagnosis"]
    assert diagnosis["cause"].startswith(f"Keyless could not fetch the keys of the provider's issuer "
                                         f"{elsewhere}/idp/github: ")
    assert f"this server's is {srv.base_url}/idp/github" in diagnosis["fix"]
    assert f"providers update-oidc stale-provider --workload-identity-pool=github-pool --location=global " \
           f"--project=123456789 --issuer-uri={srv.base_url}/idp/github" in diagnosis["fix"]

    # keyless doctor explain --token says the same
    (tmp_path / "token").write_text(token)
    explained = srv.keyless("doctor", "explain", "--token", str(tmp_path / "token"), "--provider", stale,
                            "--permission", "resourcemanager.projects.get", "--resource", "projects/my-project",
                            "--format", "json")
    assert explained.returncode == 1, explained.stderr
    step = json.loads(explained.stdout)["steps"][1]
    assert step["step"] == "token" and step["status"] == "FAIL"
    assert diagnosis["cause"] in step["evidence"] and step["fix"] == diagnosis["fix"]


def test_explain_gives_the_audit_entrys_fix_for_the_audience(srv: KeylessServer, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(mint(srv, "--repository", "my-org/my-repo"))
    explained = srv.keyless("doctor", "explain", "--token", str(tmp_path / "token"), "--provider", PROVIDER,
                            "--permission", "resourcemanager.projects.get", "--resource", "projects/my-project")
    assert explained.returncode == 1
    assert "the token's aud is https://github.com/my-org" in explained.stdout
    assert "--allowed-audiences=https://github.com/my-org" in explained.stdout
