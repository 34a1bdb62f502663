"""keyless.storage.signed_urls without a server: URLs written by google-cloud-storage's own V4
signer verify against the signing key's certificate and no other, and hostile parameters are
refused in the XML API's words, never with an exception of another kind (issue #20)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.cloud.storage import _signing
from google.oauth2 import service_account

from keyless.iam.directory import AccountInfo
from keyless.storage import signed_urls
from keyless.storage.signed_urls import (
    ExpiredToken,
    MalformedSignedUrl,
    SignatureDoesNotMatch,
    SignedRequest,
    check_parameters,
    verify,
)

pytestmark = pytest.mark.store_independent

EMAIL = "signer@p.iam.gserviceaccount.com"
ACCOUNT = AccountInfo(unique_id="1234", email=EMAIL, project_id="p", disabled=False)
HOST = "127.0.0.1:8080"


def _key_and_certificate() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "1234")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


KEY, CERT = _key_and_certificate()
OTHER_KEY, OTHER_CERT = _key_and_certificate()


def _url(resource: str = "/b-1/dir/a%20file.txt", endpoint: str = f"http://{HOST}", **kw: Any) -> str:
    pem = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    creds = service_account.Credentials.from_service_account_info(
        {"client_email": EMAIL, "private_key": pem, "token_uri": "https://oauth2.googleapis.com/token",
         "private_key_id": "k1"})
    return str(_signing.generate_signed_url_v4(creds, resource, expiration=600, api_access_endpoint=endpoint, **kw))


def _request(url: str, method: str = "GET", host: str = HOST) -> SignedRequest:
    parts = urlsplit(url)
    return SignedRequest(method, parts.path.encode(), parts.query.encode(), [(b"host", host.encode())])


def _verify(request: SignedRequest, certificates: list[str] | None = None) -> signed_urls.Verified:
    params, issued, expires_at = check_parameters(request.query, time.time())
    return verify(request, params, issued, expires_at, ACCOUNT, [CERT] if certificates is None else certificates)


def test_client_urls_verify_with_the_signing_key_only() -> None:
    url = _url()
    assert _verify(_request(url)).resource == "/b-1/dir/a file.txt"
    # an endpoint with a /storage path signs /BUCKET/OBJECT and sends /storage/BUCKET/OBJECT
    assert _verify(_request(_url(endpoint=f"http://{HOST}/storage"))).resource == "/b-1/dir/a file.txt"
    with pytest.raises(SignatureDoesNotMatch):
        _verify(_request(url), [OTHER_CERT])
    with pytest.raises(SignatureDoesNotMatch):
        _verify(_request(url, method="PUT"))
    with pytest.raises(SignatureDoesNotMatch):
        _verify(_request(url, host="storage.googleapis.com"))
    params, issued, expires_at = check_parameters(_request(url).query, time.time())
    with pytest.raises(SignatureDoesNotMatch):  # a disabled account's keys sign nothing
        verify(_request(url), params, issued, expires_at, AccountInfo("1234", EMAIL, "p", True), [CERT])


def _tamper(url: str, old: str, new: str) -> SignedRequest:
    assert old in url
    return _request(url.replace(old, new))


@pytest.mark.parametrize(("old", "new", "refusal", "words"), [
    ("X-Goog-Expires=600", "X-Goog-Expires=%EF%BC%96%EF%BC%90", MalformedSignedUrl, "X-Goog-Expires"),  # fullwidth 60
    ("X-Goog-Expires=600", "X-Goog-Expires=600%0A", MalformedSignedUrl, "X-Goog-Expires"),
    ("X-Goog-Expires=600", "X-Goog-Expires=0", MalformedSignedUrl, "X-Goog-Expires"),
    ("X-Goog-Expires=600", "X-Goog-Expires=99999999999999999999", MalformedSignedUrl, "X-Goog-Expires"),
    ("X-Goog-SignedHeaders=host", "X-Goog-SignedHeaders=content-type", MalformedSignedUrl, "host"),
    ("X-Goog-SignedHeaders=host", "X-Goog-SignedHeaders=Host", MalformedSignedUrl, "lowercase"),
    ("X-Goog-SignedHeaders=host", "X-Goog-SignedHeaders=host%3B" + "a%3B" * 40, MalformedSignedUrl, "lowercase"),
    ("X-Goog-Algorithm=GOOG4-RSA-SHA256", "X-Goog-Algorithm=GOOG4-HMAC-SHA256", MalformedSignedUrl, "HMAC"),
    ("X-Goog-Credential=", "X-Goog-Credential=a%2F", MalformedSignedUrl, "malformed"),
    ("X-Goog-Signature=", "X-Goog-Signature=zz", SignatureDoesNotMatch, "calculated"),
    ("X-Goog-Signature=", "X-Goog-Signature=0", SignatureDoesNotMatch, "calculated"),
    ("X-Goog-Signature=", "X-Goog-Signature=" + "ab" * 600, SignatureDoesNotMatch, "calculated"),
    ("/dir/a%20file.txt", "/dir/%FF%FE.txt", SignatureDoesNotMatch, "calculated"),
])
def test_hostile_parameters_are_refused_in_the_xml_apis_words(old: str, new: str, refusal: type[Exception],
                                                              words: str) -> None:
    with pytest.raises(refusal, match=words):
        _verify(_tamper(_url(), old, new))


def test_bounds_and_duplicates() -> None:
    url = _url()
    with pytest.raises(MalformedSignedUrl, match="more than 64 parameters"):
        _verify(_request(url + "&a=1" * 64))
    with pytest.raises(MalformedSignedUrl, match="longer than"):
        _verify(_request(url + "&a=" + "x" * 20_000))
    with pytest.raises(MalformedSignedUrl, match="more than once"):
        _verify(_request(url + "&x-goog-date=20260101T000000Z"))
    with pytest.raises(MalformedSignedUrl, match="lacks"):
        _verify(_request(url.split("&X-Goog-Signature=")[0] + "&x-goog-signature=&"))


def test_expired_and_future_dates() -> None:
    stamp = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y%m%dT%H%M%SZ")
    with pytest.raises(ExpiredToken, match="expired at"):
        _verify(_request(_url(_request_timestamp=stamp)))
    future = (datetime.now(UTC) + timedelta(hours=2)).strftime("%Y%m%dT%H%M%SZ")
    with pytest.raises(MalformedSignedUrl, match="future"):  # would stretch a URL past seven days
        _verify(_request(_url(_request_timestamp=future)))
