"""The "before" state of the seeds' migration story: a key file from `keys create`, used by
google-auth's own service_account credentials against Keyless's token endpoint."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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


def test_self_signed_jwts_from_the_key_file_are_accepted_by_the_apis(module_server: KeylessServer, key_file: Path,
                                                                     tmp_path: Path) -> None:
    """google-auth's clients with a key file send self-signed JWTs straight to the API
    (AIP-4111: aud https://SERVICE.googleapis.com/, or a scope claim); Keyless verifies them
    against the key it issued, only for that service, and forged ones get 401."""
    from google.auth import jwt
    from google.auth.transport.requests import Request

    created = module_server.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SA}/keys", body={}).json()
    key_file = tmp_path / "jwt-key.json"  # a key of its own: another test deletes the module's key
    key_file.write_bytes(base64.b64decode(created["privateKeyData"]))
    jwt_for_crm = jwt.Credentials.from_service_account_file(
        str(key_file), audience="https://cloudresourcemanager.googleapis.com/")
    jwt_for_crm.refresh(Request())
    crm_jwt = _text(jwt_for_crm.token)
    r = module_server.call("GET", "/cloudresourcemanager/v1/projects/my-project", token=crm_jwt)
    assert r.status_code == 200, r.text
    # meant for another API: refused here
    jwt_for_storage = jwt.Credentials.from_service_account_file(str(key_file),
                                                                audience="https://storage.googleapis.com/")
    jwt_for_storage.refresh(Request())
    r = module_server.call("GET", "/cloudresourcemanager/v1/projects/my-project", token=_text(jwt_for_storage.token))
    assert r.status_code == 401
    # the scoped form (no aud), as google-auth sends with always_use_jwt_access and scopes
    scoped = jwt.Credentials.from_service_account_file(str(key_file), audience=None,
                                                       additional_claims={"scope": SCOPES[0]})
    scoped.refresh(Request())
    assert module_server.call("GET", "/cloudresourcemanager/v1/projects/my-project",
                              token=_text(scoped.token)).status_code == 200
    # a tampered payload breaks the signature
    head, body, sig = crm_jwt.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["iss"] = claims["sub"] = "someone-else@my-project.iam.gserviceaccount.com"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    r = module_server.call("GET", "/cloudresourcemanager/v1/projects/my-project",
                           token=f"{head}.{forged_body}.{sig}")
    assert r.status_code == 401
    # disabling the key stops its JWTs at once, even one already verified
    path = _key_path(module_server, key_file)
    assert module_server.call("POST", path + ":disable", body={}).status_code == 200
    try:
        r = module_server.call("GET", "/cloudresourcemanager/v1/projects/my-project", token=crm_jwt)
        assert r.status_code == 401
    finally:
        assert module_server.call("POST", path + ":enable", body={}).status_code == 200


def _text(token: str | bytes) -> str:
    """google.auth.jwt.Credentials keep the JWT as bytes (their apply() decodes it)."""
    return token.decode() if isinstance(token, bytes) else token


# -- keys.upload: the key-migration path of seed 000 (issue #20) ----------------------------------


def _certificate(private: Any, *, days: int = 365, start_in_days: int = 0) -> bytes:
    """A self-signed X.509 v3 certificate of `private`'s public key, as `openssl req -x509` makes one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unused")])
    start = datetime.now(UTC) + timedelta(days=start_in_days) - timedelta(minutes=1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + timedelta(days=days)).sign(private, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def _rsa(bits: int = 2048) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _credentials(srv: KeylessServer, private: Any, key_id: str) -> Any:
    """google-auth's service_account credentials from the private key the user kept."""
    from cryptography.hazmat.primitives import serialization
    from google.oauth2 import service_account

    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return service_account.Credentials.from_service_account_info({
        "type": "service_account", "client_email": SA, "private_key": pem, "private_key_id": key_id,
        "token_uri": f"{srv.base_url}/oauth2/token", "project_id": "my-project"}, scopes=SCOPES)


def _upload(srv: KeylessServer, pem: bytes, token: str | None = None) -> Any:
    return srv.call("POST", f"/iam/v1/projects/my-project/serviceAccounts/{SA}/keys:upload", token=token,
                    body={"publicKeyData": base64.b64encode(pem).decode()})


@pytest.mark.gcloud
def test_uploaded_certificate_key_signs_for_the_account(module_server: KeylessServer, key_file: Path,
                                                       module_gcloud: Any, tmp_path: Path) -> None:
    """`gcloud iam service-accounts keys upload` of a certificate whose private key never left the
    user; google-auth then signs its JWT-bearer assertion with that private key."""
    from google.auth import exceptions
    from google.auth.transport.requests import Request

    srv = module_server
    private = _rsa()
    cert = tmp_path / "cert.pem"
    cert.write_bytes(_certificate(private))
    uploaded = json.loads(module_gcloud.run("iam", "service-accounts", "keys", "upload", str(cert),
                                            f"--iam-account={SA}", "--format=json").stdout)
    key_id = uploaded["name"].rsplit("/", 1)[1]
    assert uploaded["keyOrigin"] == "USER_PROVIDED" and uploaded["keyType"] == "USER_MANAGED", uploaded
    listed = module_gcloud.json("iam", "service-accounts", "keys", "list", f"--iam-account={SA}", "--managed-by=user")
    assert key_id in [k["name"].rsplit("/", 1)[1] for k in listed]

    creds = _credentials(srv, private, key_id)
    creds.refresh(Request())
    r = srv.call("GET", "/cloudresourcemanager/v1/projects/my-project", token=creds.token)
    assert r.status_code == 200 and r.json()["projectId"] == "my-project"
    # the same key id with another private key: the signature does not verify
    with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
        _credentials(srv, _rsa(), key_id).refresh(Request())
    # the same certificate twice is refused
    again = _upload(srv, cert.read_bytes())
    assert again.status_code == 409 and again.json()["error"]["status"] == "ALREADY_EXISTS", again.text
    assert srv.call("DELETE", f"/iam/v1/projects/-/serviceAccounts/{SA}/keys/{key_id}").status_code == 200
    with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
        _credentials(srv, private, key_id).refresh(Request())


def test_upload_refuses_what_is_not_an_rsa_2048_certificate(module_server: KeylessServer, key_file: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from google.auth import exceptions
    from google.auth.transport.requests import Request

    from tests.api.helpers import token_for_user

    srv = module_server
    for pem, why in ((b"not a certificate", "not a valid PEM"),
                     (_certificate(_rsa(1024)), "2048 bits"),
                     (_certificate(ec.generate_private_key(ec.SECP256R1())), "2048 bits"),
                     (_certificate(_rsa(), days=1, start_in_days=-3), "expired")):
        r = _upload(srv, pem)
        assert r.status_code == 400 and why in r.json()["error"]["message"], r.text
    bad = srv.call("POST", f"/iam/v1/projects/my-project/serviceAccounts/{SA}/keys:upload",
                   body={"publicKeyData": "%%%"})
    assert bad.status_code == 400, bad.text
    # a certificate not valid yet is accepted but cannot sign until its notBefore
    later = _rsa()
    future = _upload(srv, _certificate(later, start_in_days=2))
    assert future.status_code == 200, future.text
    with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
        _credentials(srv, later, future.json()["name"].rsplit("/", 1)[1]).refresh(Request())
    assert srv.call("DELETE", f"/iam/v1/{future.json()['name']}").status_code == 200
    # uploading is creating a key: a caller without iam.serviceAccountKeys.create is refused
    denied = _upload(srv, _certificate(_rsa()), token=token_for_user(srv, "stranger@example.com"))
    assert denied.status_code == 403, denied.text
    # and the organization policy that forbids uploads stops it
    path = "/cloudresourcemanager/v1/projects/my-project"
    constraint = "constraints/iam.disableServiceAccountKeyUpload"
    assert srv.call("POST", f"{path}:setOrgPolicy", body={"policy": {
        "constraint": constraint, "booleanPolicy": {"enforced": True}}}).status_code == 200
    forbidden = _upload(srv, _certificate(_rsa()))
    assert forbidden.status_code == 400 and forbidden.json()["error"]["status"] == "FAILED_PRECONDITION", forbidden.text
    assert srv.call("POST", f"{path}:clearOrgPolicy", body={"constraint": constraint}).status_code == 200


def test_a_project_pending_deletion_takes_its_accounts_out_of_service(module_server: KeylessServer,
                                                                     key_file: Path) -> None:
    """`projects delete` (issue #20): the project's service accounts sign and impersonate nothing
    until `projects undelete`, as on Google."""
    from google.auth import exceptions
    from google.auth.transport.requests import Request
    from google.oauth2 import service_account

    srv = module_server
    impersonate = f"/iamcredentials/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"
    sa_path = f"/iam/v1/projects/-/serviceAccounts/{SA}"
    assert srv.call("POST", f"{sa_path}:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/iam.serviceAccountTokenCreator", "members": ["user:owner@keyless.dev"]}]}}).status_code == 200
    assert srv.call("POST", impersonate, body={"scope": SCOPES}).status_code == 200
    assert srv.call("DELETE", "/cloudresourcemanager/v3/projects/my-project").status_code == 200
    try:
        with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
            service_account.Credentials.from_service_account_file(str(key_file), scopes=SCOPES).refresh(Request())
        refused = srv.call("POST", impersonate, body={"scope": SCOPES})
        assert refused.status_code == 404, refused.text
    finally:
        assert srv.call("POST", "/cloudresourcemanager/v3/projects/my-project:undelete", body={}).status_code == 200
    service_account.Credentials.from_service_account_file(str(key_file), scopes=SCOPES).refresh(Request())
    assert srv.call("POST", impersonate, body={"scope": SCOPES}).status_code == 200
