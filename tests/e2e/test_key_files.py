"""The "before" state of the seeds' migration story: a key file from `keys create`, used by
google-auth's own service_account credentials against Keyless's token endpoint."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.conftest import KeylessServer

SA = "legacy-sa@my-project.iam.gserviceaccount.com"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


@pytest.fixture(scope="module")
def key_file(module_server: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    srv = module_server
    assert srv.keyless("projects", "create", "my-project", "--number", "123456789").returncode == 0
    assert srv.call("POST", "/iam/v1/projects/my-project/serviceAccounts", body={"accountId": "legacy-sa"}).status_code == 200
    policy = srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy", body={}).json()
    policy["bindings"].append({"role": "roles/viewer", "members": [f"serviceAccount:{SA}"]})
    assert srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy",
                    body={"policy": policy}).status_code == 200
    created = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SA}/keys", body={}).json()
    path = tmp_path_factory.mktemp("keys") / "sa-key.json"
    path.write_bytes(base64.b64decode(created["privateKeyData"]))
    return path


def _key_path(srv: KeylessServer, key_file: Path) -> str:
    return f"/iam/v1/projects/-/serviceAccounts/{SA}/keys/{json.loads(key_file.read_text())['private_key_id']}"


def test_service_account_credentials_from_key_file(module_server: KeylessServer, key_file: Path) -> None:
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    creds = service_account.Credentials.from_service_account_file(str(key_file), scopes=SCOPES)
    creds.refresh(Request())
    r = module_server.call("GET", "/cloudresourcemanager/v1/projects/my-project", token=creds.token)
    assert r.status_code == 200 and r.json()["projectId"] == "my-project"


def test_fetch_id_token_with_key_file_in_adc(module_server: KeylessServer, key_file: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    token = id_token.fetch_id_token(Request(), "https://run-service.example.com")
    claims = id_token.verify_token(token, Request(), audience="https://run-service.example.com",
                                   certs_url=f"{module_server.base_url}/oauth2/v3/certs")
    assert claims["email"] == SA


def test_disabled_then_deleted_key_stops_working(module_server: KeylessServer, key_file: Path,
                                                 tmp_path: Path) -> None:
    from google.auth import exceptions
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    srv = module_server
    created = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SA}/keys", body={}).json()
    second = tmp_path / "second.json"
    second.write_bytes(base64.b64decode(created["privateKeyData"]))
    creds = service_account.Credentials.from_service_account_file(str(second), scopes=SCOPES)
    creds.refresh(Request())
    assert srv.call("POST", f"{_key_path(srv, second)}:disable", body={}).status_code == 200
    with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
        service_account.Credentials.from_service_account_file(str(second), scopes=SCOPES).refresh(Request())
    assert srv.call("POST", f"{_key_path(srv, second)}:enable", body={}).status_code == 200
    service_account.Credentials.from_service_account_file(str(second), scopes=SCOPES).refresh(Request())
    assert srv.call("DELETE", _key_path(srv, second)).status_code == 200
    with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
        service_account.Credentials.from_service_account_file(str(second), scopes=SCOPES).refresh(Request())


def test_forged_assertion_is_refused(module_server: KeylessServer, key_file: Path) -> None:
    """A key pair the server never issued, claiming the real key's id, gets invalid_grant."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.auth import exceptions
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    info = json.loads(key_file.read_text())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    info["private_key"] = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()).decode()
    creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    with pytest.raises(exceptions.RefreshError, match="Invalid JWT Signature"):
        creds.refresh(Request())
