"""Seed 001's AWS provider end to end: google-auth's AWS credentials (from the environment)
sign GetCallerIdentity; Keyless verifies it with moto as the real AWS side, maps the assumed
role, and the workload impersonates a service account granted to that role."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KeylessServer, fresh_database_url
from tests.federation.test_aws import ACCOUNT, Aws, moto  # noqa: F401  (the moto fixture)

NUMBER = "123456789"
POOL = f"projects/{NUMBER}/locations/global/workloadIdentityPools/aws-pool"
AUDIENCE = f"//iam.googleapis.com/{POOL}/providers/aws-provider"
SA = "aws-sa@my-project.iam.gserviceaccount.com"
ROLE_SET = (f"principalSet://iam.googleapis.com/{POOL}/attribute.aws_role/"
            f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-role")


@pytest.fixture(scope="module")
def srv(moto: Aws, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:  # noqa: F811
    server = KeylessServer(tmp_path_factory.mktemp("aws") / "data", fresh_database_url(),
                           "--aws-sts-endpoint", moto.endpoint)
    assert server.keyless("projects", "create", "my-project", "--number", NUMBER).returncode == 0
    base = "/iam/v1/projects/my-project/locations/global/workloadIdentityPools"
    assert server.call("POST", base, params={"workloadIdentityPoolId": "aws-pool"}, body={}).status_code == 200
    r = server.call("POST", f"{base}/aws-pool/providers", params={"workloadIdentityPoolProviderId": "aws-provider"},
                    body={"aws": {"accountId": ACCOUNT},
                          "attributeCondition": "assertion.arn.startsWith('arn:aws:sts::123456789012:assumed-role/ci-role/')"})
    assert r.status_code == 200, r.text
    assert server.call("POST", "/iam/v1/projects/my-project/serviceAccounts", body={"accountId": "aws-sa"}).status_code == 200
    assert server.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SA}:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/iam.workloadIdentityUser", "members": [ROLE_SET]}]}}).status_code == 200
    yield server
    server.stop()


def aws_config(tmp_path: Path, srv: KeylessServer, *, impersonate: bool) -> Path:
    config = {"universe_domain": "localhost", "type": "external_account", "audience": AUDIENCE,
              "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
              "token_url": f"{srv.base_url}/sts/v1/token",
              "credential_source": {"environment_id": "aws1", "regional_cred_verification_url":
                                    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"}}
    if impersonate:
        config["service_account_impersonation_url"] = (
            f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{SA}:generateAccessToken")
    path = tmp_path / "aws.json"
    path.write_text(json.dumps(config))
    return path


def _env(monkeypatch: pytest.MonkeyPatch, key: str, secret: str, session: str | None) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    if session:
        monkeypatch.setenv("AWS_SESSION_TOKEN", session)


def _credentials(path: Path):  # type: ignore[no-untyped-def]
    import google.auth
    import google.auth.transport.requests

    creds, _ = google.auth.load_credentials_from_file(str(path))
    creds = creds.with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
    creds.refresh(google.auth.transport.requests.Request())
    return creds


def test_assumed_role_impersonates_the_service_account(srv: KeylessServer, moto: Aws, tmp_path: Path,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, *moto.session)
    creds = _credentials(aws_config(tmp_path, srv, impersonate=True))
    info = httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": creds.token}).json()
    assert info["email"] == SA


def test_federated_principal_is_the_assumed_role_arn(srv: KeylessServer, moto: Aws, tmp_path: Path,  # noqa: F811
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, *moto.session)
    creds = _credentials(aws_config(tmp_path, srv, impersonate=False))
    info = httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": creds.token}).json()
    assert info["sub"] == (f"principal://iam.googleapis.com/{POOL}/subject/"
                           f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-role/build-42")


def test_iam_user_is_refused_by_the_attribute_condition(srv: KeylessServer, moto: Aws, tmp_path: Path,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth import exceptions

    _env(monkeypatch, *moto.user_key, None)
    with pytest.raises(exceptions.OAuthError, match="rejected by the attribute condition"):
        _credentials(aws_config(tmp_path, srv, impersonate=False))


def test_forged_aws_signature_is_refused(srv: KeylessServer, moto: Aws, tmp_path: Path,  # noqa: F811
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth import exceptions

    key, _, session = moto.session
    _env(monkeypatch, key, "not-the-secret", session)
    with pytest.raises(exceptions.OAuthError, match="invalid_grant.*SignatureDoesNotMatch"):
        _credentials(aws_config(tmp_path, srv, impersonate=False))
