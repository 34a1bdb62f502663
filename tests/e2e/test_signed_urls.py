"""Cloud Storage V4 signed URLs (issue #20): written by google-cloud-storage's generate_signed_url
from a key file made by Keyless's IAM API and from google-auth's impersonated credentials (iamcredentials
signBlob, the Google-managed key), and by `gcloud storage sign-url`; fetched with requests. Each is
authorised as the signing account, whose IAM is then checked; forged, tampered, expired and revoked
URLs are refused with the XML API's error bodies. Also IAM v1's deprecated signBlob/signJwt and
iamcredentials' getAllowedLocations, on the same server."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import google.oauth2.credentials
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import storage
from google.cloud.storage import _signing
from google.oauth2 import service_account

from tests.api.helpers import audit_data_access, token_for_service_account
from tests.conftest import Gcloud, KeylessServer

PROJECT = "signed-project"
SIGNER = f"signer-sa@{PROJECT}.iam.gserviceaccount.com"
STRANGER = f"stranger-sa@{PROJECT}.iam.gserviceaccount.com"
BUCKET = "signed-bucket"
OBJECT = "reports/q1 data.txt"  # a space and a slash: the path is percent-encoded in the signature


def _iam(srv: KeylessServer, method: str, path: str, body: Any = None) -> Any:
    r = srv.call(method, f"/iam/v1/projects/-/serviceAccounts/{path}", body=body)
    assert r.status_code == 200, r.text
    return r.json()


def _key_file(srv: KeylessServer, email: str, directory: Path) -> Path:
    created = _iam(srv, "POST", f"{email}/keys", {})
    path = directory / f"{email.split('@')[0]}.json"
    path.write_bytes(base64.b64decode(created["privateKeyData"]))
    return path


@pytest.fixture(scope="module")
def world(module_server: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    srv = module_server
    assert srv.keyless("projects", "create", PROJECT, "--number", "246813579").returncode == 0
    for account in ("signer-sa", "stranger-sa"):
        r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account})
        assert r.status_code == 200, r.text
    owner = storage.Client(project=PROJECT, credentials=google.oauth2.credentials.Credentials(srv.owner_token),
                           client_options={"api_endpoint": srv.base_url})
    owner.create_bucket(BUCKET)
    owner.bucket(BUCKET).blob(OBJECT).upload_from_string(b"quarterly numbers", content_type="text/plain")
    owner.bucket(BUCKET).blob("other.txt").upload_from_string(b"not for this URL")
    policy = srv.call("GET", f"/storage/v1/b/{BUCKET}/iam").json()
    policy["bindings"].append({"role": "roles/storage.objectAdmin", "members": [f"serviceAccount:{SIGNER}"]})
    assert srv.call("PUT", f"/storage/v1/b/{BUCKET}/iam", body=policy).status_code == 200
    # the owner may sign as the signer with its Google-managed key (signBlob), as on Google
    sa_policy = _iam(srv, "POST", f"{SIGNER}:getIamPolicy", {})
    sa_policy.setdefault("bindings", []).append({"role": "roles/iam.serviceAccountTokenCreator",
                                                 "members": ["user:owner@keyless.dev"]})
    _iam(srv, "POST", f"{SIGNER}:setIamPolicy", {"policy": sa_policy})
    keys = tmp_path_factory.mktemp("keys")
    return {"srv": srv, "owner": owner, "signer_key": _key_file(srv, SIGNER, keys),
            "stranger_key": _key_file(srv, STRANGER, keys), "dir": keys}


def _blob(world: dict[str, Any], key: Path, name: str = OBJECT) -> storage.Blob:
    creds = service_account.Credentials.from_service_account_file(str(key))
    client = storage.Client(project=PROJECT, credentials=creds, client_options={"api_endpoint": world["srv"].base_url})
    return client.bucket(BUCKET).blob(name)


def _xml(r: requests.Response) -> dict[str, str]:
    assert r.headers["content-type"].startswith("application/xml"), r.text
    return dict(re.findall(r"<(\w+)>([^<]*)</\1>", r.text, re.S))


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = [(k, changes.get(k, v)) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_key_file_urls_get_head_put_delete(world: dict[str, Any]) -> None:
    """The seed of every signed URL: a key file's account signs; anyone holding the URL may act."""
    srv, blob = world["srv"], _blob(world, world["signer_key"])
    # the client's default endpoint is the server's root (its api_endpoint): /BUCKET/OBJECT there
    url = blob.generate_signed_url(version="v4", expiration=timedelta(minutes=10), method="GET")
    assert url.startswith(f"{srv.base_url}/{BUCKET}/reports/q1%20data.txt?X-Goog-Algorithm=GOOG4-RSA-SHA256")
    got = requests.get(url, timeout=30)
    assert (got.status_code, got.content) == (200, b"quarterly numbers"), got.text
    assert got.headers["content-type"] == "text/plain" and got.headers["x-goog-generation"]
    # an endpoint with Keyless's /storage prefix signs /BUCKET/OBJECT but sends /storage/BUCKET/OBJECT
    prefixed = blob.generate_signed_url(version="v4", expiration=600, api_access_endpoint=f"{srv.base_url}/storage",
                                        response_disposition="attachment; filename=q1.txt")
    got = requests.get(prefixed, headers={"Range": "bytes=0-8"}, timeout=30)
    assert (got.status_code, got.content) == (206, b"quarterly"), got.text
    assert got.headers["content-disposition"] == "attachment; filename=q1.txt"
    head = requests.head(blob.generate_signed_url(version="v4", expiration=600, method="HEAD"), timeout=30)
    assert head.status_code == 200 and head.headers["content-length"] == "17" and head.content == b""
    # an upload: the signed Content-Type must be sent as signed
    put_blob = _blob(world, world["signer_key"], "uploads/new.csv")
    put = put_blob.generate_signed_url(version="v4", expiration=600, method="PUT", content_type="text/csv")
    r = requests.put(put, data=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"}, timeout=30)
    assert r.status_code == 200 and r.headers["x-goog-generation"], r.text
    stored = world["owner"].bucket(BUCKET).get_blob("uploads/new.csv")
    assert stored.download_as_bytes() == b"a,b\n1,2\n" and stored.content_type == "text/csv"
    r = requests.put(put, data=b"x", headers={"Content-Type": "text/plain"}, timeout=30)
    assert r.status_code == 403 and _xml(r)["Code"] == "SignatureDoesNotMatch"
    delete = put_blob.generate_signed_url(version="v4", expiration=600, method="DELETE")
    assert requests.delete(delete, timeout=30).status_code == 204
    assert world["owner"].bucket(BUCKET).get_blob("uploads/new.csv") is None
    missing = requests.get(put_blob.generate_signed_url(version="v4", expiration=600), timeout=30)
    assert missing.status_code == 404 and _xml(missing)["Code"] == "NoSuchKey"


def test_tampered_forged_and_expired_urls_are_refused(world: dict[str, Any]) -> None:
    """Each attack below would read or write an object if the signature were not checked."""
    srv, blob = world["srv"], _blob(world, world["signer_key"])
    url = blob.generate_signed_url(version="v4", expiration=600)
    refusals = {
        "signature": _with_query(url, **{"X-Goog-Signature": "00" + dict(parse_qsl(urlsplit(url).query))
                                         ["X-Goog-Signature"][2:]}),
        "path": url.replace("/reports/q1%20data.txt?", "/other.txt?"),
        "expiry": _with_query(url, **{"X-Goog-Expires": "604800"}),
        "added parameter": url + "&generation=1",
    }
    for what, tampered in refusals.items():
        r = requests.get(tampered, timeout=30)
        body = _xml(r)
        assert (r.status_code, body["Code"], body["Message"]) == (403, "SignatureDoesNotMatch", "Access denied."), what
        assert body["StringToSign"].startswith("GOOG4-RSA-SHA256\n") and "\nhost\nUNSIGNED-PAYLOAD" in \
            body["CanonicalRequest"], body
    for method in ("PUT", "DELETE", "HEAD"):  # a URL signed for GET does nothing else
        assert requests.request(method, url, timeout=30).status_code == 403, method
    assert world["owner"].bucket(BUCKET).get_blob(OBJECT) is not None
    # another host than the one signed
    r = requests.get(url, headers={"Host": "storage.googleapis.com"}, timeout=30)
    assert r.status_code == 403 and _xml(r)["Code"] == "SignatureDoesNotMatch"
    # a key Keyless never issued, in a key file naming the signer
    forged = json.loads(world["signer_key"].read_text())
    forged["private_key"] = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    forged_file = world["dir"] / "forged.json"
    forged_file.write_text(json.dumps(forged))
    r = requests.get(_blob(world, forged_file).generate_signed_url(version="v4", expiration=600), timeout=30)
    assert r.status_code == 403 and _xml(r)["Code"] == "SignatureDoesNotMatch"
    # expired: google-cloud-storage's own V4 signer, dated an hour ago, valid for a minute
    creds = service_account.Credentials.from_service_account_file(str(world["signer_key"]))
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ")
    old = _signing.generate_signed_url_v4(creds, f"/{BUCKET}/reports/q1%20data.txt", expiration=60,
                                          api_access_endpoint=srv.base_url, _request_timestamp=an_hour_ago)
    r = requests.get(old, timeout=30)
    assert r.status_code == 400 and _xml(r)["Code"] == "ExpiredToken"
    assert _xml(r)["Details"].startswith("Request signature expired at: ")
    # malformed: more than seven days, a credential that is no credential, no signature
    for changes, words in (({"X-Goog-Expires": "604801"}, "604800"), ({"X-Goog-Credential": "someone"}, "malformed"),
                           ({"X-Goog-Algorithm": "GOOG4-HMAC-SHA256"}, "X-Goog-Algorithm"),
                           ({"X-Goog-Date": "20261399T000000Z"}, "X-Goog-Date")):
        r = requests.get(_with_query(url, **changes), timeout=30)
        assert r.status_code == 400 and _xml(r)["Code"] == "AuthorizationQueryParametersError", r.text
        assert words in _xml(r)["Details"], r.text
    undecodable = requests.get(url.replace("X-Goog-Expires=600", "X-Goog-Expires=%FF%FE"), timeout=30)
    assert undecodable.status_code == 400 and _xml(undecodable)["Code"] == "AuthorizationQueryParametersError"
    bad_path = requests.get(url.replace("/reports/q1%20data.txt?", "/reports/%FF.txt?"), timeout=30)
    assert bad_path.status_code == 403 and "%FF" in _xml(bad_path)["CanonicalRequest"]
    duplicated = requests.get(url + "&x-goog-expires=604800", timeout=30)
    assert duplicated.status_code == 400 and "more than once" in _xml(duplicated)["Details"]
    assert requests.get(url, timeout=30).status_code == 200  # the untouched URL still works
    # an upload URL that signs its content's SHA-256 stores that content and nothing else
    content = b"exactly this"
    digest = hashlib.sha256(content).hexdigest()
    put = _blob(world, world["signer_key"], "uploads/pinned.txt").generate_signed_url(
        version="v4", expiration=600, method="PUT", headers={"X-Goog-Content-SHA256": digest})
    other = requests.put(put, data=b"something else", headers={"X-Goog-Content-SHA256": digest}, timeout=30)
    assert other.status_code == 400 and "did not match" in _xml(other)["Details"], other.text
    assert world["owner"].bucket(BUCKET).get_blob("uploads/pinned.txt") is None
    assert requests.put(put, data=content, headers={"X-Goog-Content-SHA256": digest}, timeout=30).status_code == 200
    assert world["owner"].bucket(BUCKET).blob("uploads/pinned.txt").download_as_bytes() == content


def test_revoked_keys_and_accounts_stop_their_urls(world: dict[str, Any], tmp_path: Path) -> None:
    srv = world["srv"]
    key_file = _key_file(srv, SIGNER, tmp_path)
    key_id = json.loads(key_file.read_text())["private_key_id"]
    url = _blob(world, key_file).generate_signed_url(version="v4", expiration=600)
    assert requests.get(url, timeout=30).status_code == 200
    _iam(srv, "POST", f"{SIGNER}/keys/{key_id}:disable", {})
    assert _xml(requests.get(url, timeout=30))["Code"] == "SignatureDoesNotMatch"
    _iam(srv, "POST", f"{SIGNER}/keys/{key_id}:enable", {})
    assert requests.get(url, timeout=30).status_code == 200
    _iam(srv, "POST", f"{SIGNER}:disable", {})
    try:
        assert _xml(requests.get(url, timeout=30))["Code"] == "SignatureDoesNotMatch"
    finally:
        _iam(srv, "POST", f"{SIGNER}:enable", {})
    assert requests.get(url, timeout=30).status_code == 200
    _iam(srv, "DELETE", f"{SIGNER}/keys/{key_id}")
    assert _xml(requests.get(url, timeout=30))["Code"] == "SignatureDoesNotMatch"


def test_the_signers_iam_decides(world: dict[str, Any]) -> None:
    """A valid signature makes the caller the signing account, no more: its IAM is checked."""
    srv = world["srv"]
    audit_data_access(srv, PROJECT, {"storage.googleapis.com": ["DATA_READ"]})
    r = requests.get(_blob(world, world["stranger_key"]).generate_signed_url(version="v4", expiration=600), timeout=30)
    body = _xml(r)
    assert (r.status_code, body["Code"]) == (403, "AccessDenied")
    assert body["Details"].startswith(f"{STRANGER} does not have storage.objects.get access")
    assert requests.get(_blob(world, world["signer_key"]).generate_signed_url(version="v4", expiration=600),
                        timeout=30).status_code == 200
    entries = srv.call("POST", "/logging/v2/entries:list", body={
        "resourceNames": [f"projects/{PROJECT}"], "filter": 'protoPayload.methodName="storage.objects.get"'}).json()
    principals = {e["protoPayload"]["authenticationInfo"]["principalEmail"] for e in entries.get("entries", [])}
    assert SIGNER in principals, entries
    # without a signature: anonymous (allUsers) or a bearer token, as the XML API takes them
    anonymous = requests.get(f"{srv.base_url}/storage/{BUCKET}/other.txt", timeout=30)
    assert anonymous.status_code == 403 and _xml(anonymous)["Details"].startswith("Anonymous caller does not have")
    bearer = requests.get(f"{srv.base_url}/storage/{BUCKET}/other.txt", timeout=30,
                          headers={"Authorization": f"Bearer {srv.owner_token}"})
    assert (bearer.status_code, bearer.content) == (200, b"not for this URL")
    bad = requests.get(f"{srv.base_url}/storage/{BUCKET}/other.txt", headers={"Authorization": "Bearer nope"},
                       timeout=30)
    assert bad.status_code == 401 and _xml(bad)["Code"] == "AuthenticationRequired"


@pytest.fixture
def sign_blob_at_keyless(world: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """google-auth signs for impersonated credentials at a fixed https://iamcredentials.UNIVERSE
    URL (iam_endpoint_override covers generateAccessToken only): point that one constant at this
    server's IAM Credentials API; the signBlob call itself is google-auth's own."""
    from google.auth import iam

    monkeypatch.setattr(iam, "_IAM_SIGN_ENDPOINT",
                        f"{world['srv'].base_url}/iamcredentials/v1/projects/-/serviceAccounts/{{}}:signBlob")
    yield


def test_impersonated_credentials_sign_with_the_google_managed_key(world: dict[str, Any],
                                                                   sign_blob_at_keyless: None) -> None:
    from google.auth import impersonated_credentials

    srv = world["srv"]
    signer = impersonated_credentials.Credentials(
        source_credentials=google.oauth2.credentials.Credentials(srv.owner_token), target_principal=SIGNER,
        target_scopes=["https://www.googleapis.com/auth/devstorage.read_only"])
    client = storage.Client(project=PROJECT, credentials=signer, client_options={"api_endpoint": srv.base_url})
    url = client.bucket(BUCKET).blob(OBJECT).generate_signed_url(version="v4", expiration=600)
    got = requests.get(url, timeout=30)
    assert (got.status_code, got.content) == (200, b"quarterly numbers"), got.text
    keys = _iam(srv, "GET", f"{SIGNER}/keys?keyTypes=SYSTEM_MANAGED")["keys"]
    assert keys and all(k["keyType"] == "SYSTEM_MANAGED" for k in keys)


@pytest.mark.gcloud
@pytest.mark.store_independent  # gcloud's side of the wire: SQLite leg only; the PostgreSQL leg drives the same methods with the discovery client (tests/conformance)
def test_gcloud_storage_sign_url(world: dict[str, Any], module_gcloud: Gcloud) -> None:
    """gcloud writes lowercase x-goog-* names, the signature first and quote_plus values, and
    probes the URL with a signed HEAD before printing it."""
    g = module_gcloud
    from_key = g.json("storage", "sign-url", f"gs://{BUCKET}/{OBJECT}", f"--private-key-file={world['signer_key']}",
                      "--duration=10m")
    url = from_key[0]["signed_url"]
    assert "?x-goog-signature=" in url and "x-goog-credential=signer-sa%40" in url
    got = requests.get(url, timeout=30)
    assert (got.status_code, got.content) == (200, b"quarterly numbers"), got.text
    # signed with the Google-managed key through iamcredentials signBlob, as the owner; the calls run as
    # the account, which may not read the bucket's location: the region is given
    impersonated = g.json("storage", "sign-url", f"gs://{BUCKET}/{OBJECT}", "--duration=10m",
                          f"--impersonate-service-account={SIGNER}", "--region=us")
    got = requests.get(impersonated[0]["signed_url"], timeout=30)
    assert (got.status_code, got.content) == (200, b"quarterly numbers"), got.text


def test_iam_v1_sign_blob_is_iamcredentials_sign_blob_audited_as_iam(world: dict[str, Any]) -> None:
    """The deprecated IAM v1 methods sign with the same key, need the same permission, and are
    Data Access entries of iam.googleapis.com."""
    srv = world["srv"]
    audit_data_access(srv, PROJECT, {"iam.googleapis.com": ["DATA_READ"], "storage.googleapis.com": ["DATA_READ"]})
    v1 = _iam(srv, "POST", f"{SIGNER}:signBlob", {"bytesToSign": base64.b64encode(b"blob").decode()})
    r = srv.call("POST", f"/iamcredentials/v1/projects/-/serviceAccounts/{SIGNER}:signBlob",
                 body={"payload": base64.b64encode(b"blob").decode()})
    assert r.status_code == 200 and r.json()["keyId"] == v1["keyId"]
    assert base64.b64decode(r.json()["signedBlob"]) == base64.b64decode(v1["signature"])  # PKCS #1 v1.5: same bytes
    jwt = _iam(srv, "POST", f"{SIGNER}:signJwt", {"payload": json.dumps({"sub": SIGNER, "aud": "https://x.example"})})
    assert jwt["keyId"] == v1["keyId"]
    claims = json.loads(base64.urlsafe_b64decode(jwt["signedJwt"].split(".")[1] + "=="))
    assert claims["sub"] == SIGNER and 3500 < claims["exp"] - time.time() <= 3600  # v1 adds the hour
    past = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SIGNER}:signJwt",
                    body={"payload": json.dumps({"sub": SIGNER, "exp": int(time.time()) - 60})})
    assert past.status_code == 400 and "not in the past" in past.json()["error"]["message"]
    stranger = token_for_service_account(srv, STRANGER)
    for path, body in ((":signBlob", {"bytesToSign": "YmxvYg=="}), (":signJwt", {"payload": "{}"})):
        refused = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SIGNER}{path}", token=stranger, body=body)
        assert refused.status_code == 403 and refused.json()["error"]["status"] == "PERMISSION_DENIED", refused.text
    delegated = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SIGNER}:signBlob",
                         body={"bytesToSign": "YmxvYg==", "delegates": [f"projects/-/serviceAccounts/{STRANGER}"]})
    assert delegated.status_code == 400 and 'Unknown name "delegates"' in delegated.json()["error"]["message"]
    oversized = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SIGNER}:signBlob",
                         body={"bytesToSign": "A" * (1_398_104 + 4)})
    assert oversized.status_code == 400 and "bytesToSign must be at most 1 MiB" in oversized.text
    entries = srv.call("POST", "/logging/v2/entries:list", body={
        "resourceNames": [f"projects/{PROJECT}"],
        "filter": 'protoPayload.serviceName="iam.googleapis.com" AND protoPayload.methodName:"SignBlob"'}).json()
    found = [e["protoPayload"] for e in entries.get("entries", [])]
    assert {p["methodName"] for p in found} == {"google.iam.admin.v1.SignBlob"}, found
    # granted, the stranger's refusal (7) and the oversized payload's (3)
    assert {p["status"].get("code", 0) for p in found} == {0, 3, 7}, found


def test_get_allowed_locations(world: dict[str, Any]) -> None:
    """The account itself (google-auth's lookup) or a holder of iam.serviceAccounts.get may ask."""
    srv = world["srv"]
    path = f"/iamcredentials/v1/projects/-/serviceAccounts/{SIGNER}/allowedLocations"
    for token in (None, token_for_service_account(srv, SIGNER)):
        r = srv.call("GET", path, token=token)
        assert (r.status_code, r.json()) == (200, {"encodedLocations": "0x0"}), r.text
    refused = srv.call("GET", path, token=token_for_service_account(srv, STRANGER))
    assert refused.status_code == 403 and "iam.serviceAccounts.get" in refused.text
    unknown = srv.call("GET", f"/iamcredentials/v1/projects/-/serviceAccounts/nobody@{PROJECT}.iam.gserviceaccount.com"
                              "/allowedLocations")
    assert unknown.status_code == 404
