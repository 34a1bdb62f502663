"""Cloud Storage V4 signed URLs (https://cloud.google.com/storage/docs/access-control/signing-urls-manually):
the request's canonical form (method, path, query without X-Goog-Signature, the signed headers,
UNSIGNED-PAYLOAD or the signed X-Goog-Content-SHA256), its string-to-sign (`GOOG4-RSA-SHA256`,
X-Goog-Date, credential scope DATE/LOCATION/storage/goog4_request, the canonical request's SHA-256)
and the RSA-SHA256 signature over it, checked against the live keys Keyless holds for the account
the credential names: user-managed keys (key files) and Google-managed ones (signBlob).

Google's server normalises what it hashes; clients differ in how they write it (google-cloud-storage
sorts `name=value` pairs quoted with `~` safe; gcloud writes lowercase x-goog-* names and
quote_plus values). So the canonical request is taken both as the client sent it (its query in its
order) and in Google's normal form, and the URL's path both as sent and without the `/storage` of
an endpoint that has one (`api_access_endpoint=http://HOST/storage`). Every candidate is derived
from the request itself and the resource acted on is the one the signature covers, so trying them
widens nothing an attacker controls. One RSA operation per key recovers the signed digest, which is
compared with each candidate's. The refusals are the XML API's (`ExpiredToken`,
`SignatureDoesNotMatch` with the StringToSign and CanonicalRequest Google shows, and
`AuthorizationQueryParametersError` for malformed parameters).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote, unquote, unquote_plus

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyless.errors import KeylessError
from keyless.iam.directory import AccountInfo

ALGORITHM = "GOOG4-RSA-SHA256"
MAX_EXPIRES = 604800  # seven days, Google's limit
FUTURE_SKEW = 900  # an X-Goog-Date at most 15 minutes ahead of our clock
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SIGNATURE = "x-goog-signature"
REQUIRED = ("x-goog-algorithm", "x-goog-credential", "x-goog-date", "x-goog-expires", "x-goog-signedheaders")
MAX_QUERY_BYTES = 16 * 1024
MAX_QUERY_PARAMS = 64
MAX_SIGNED_HEADERS = 32
MAX_SIGNATURE_HEX = 1024  # RSA-4096
STORAGE_PREFIX = "/storage"
_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SECONDS = re.compile(r"[0-9]{1,10}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
GENERIC_MISMATCH = ("The request signature we calculated does not match the signature you provided. "
                    "Check your Google secret key and signing method.")


class SignedUrlRefused(KeylessError):
    """A refusal in the XML API's words: `code` is its <Code>, `summary` its <Message>, `message`
    its <Details>; `extra` more elements (SignatureDoesNotMatch's StringToSign, CanonicalRequest)."""

    code = "InvalidArgument"
    summary = "Invalid argument."

    def __init__(self, message: str, extra: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.extra = extra or {}


class ExpiredToken(SignedUrlRefused):
    http_status, status = 400, "INVALID_ARGUMENT"
    code = "ExpiredToken"


class MalformedSignedUrl(SignedUrlRefused):
    http_status, status = 400, "INVALID_ARGUMENT"
    code = "AuthorizationQueryParametersError"


class SignatureDoesNotMatch(SignedUrlRefused):
    http_status, status = 403, "PERMISSION_DENIED"
    code = "SignatureDoesNotMatch"
    summary = "Access denied."


@dataclass(frozen=True)
class SignedRequest:
    """What the signature covers, as the request arrived (raw bytes, percent-encoding kept)."""

    method: str
    path: bytes  # the path the client sent
    query: bytes
    headers: Sequence[tuple[bytes, bytes]]  # lowercased names, as in an ASGI scope


@dataclass(frozen=True)
class Verified:
    account: AccountInfo
    resource: str  # the signed path, decoded: /BUCKET/OBJECT
    issued_at: int
    expires_at: int
    params: dict[str, str] = field(default_factory=dict)  # the query, decoded (lowercased x-goog-* names)


def _text(raw: bytes) -> str:
    """Bytes of the request line as text that encodes back to the same bytes (surrogateescape)."""
    return raw.decode("utf-8", "surrogateescape")


def _decode(text: str, plus: bool = False) -> str:
    return (unquote_plus if plus else unquote)(text, errors="surrogateescape")


def _encode(text: str, safe: str) -> str:
    return quote(text, safe=safe, errors="surrogateescape")


def _pairs(query: bytes) -> list[tuple[str, str, str]]:
    """(raw element, decoded name, decoded value) of each `name=value` of the query, in order."""
    if len(query) > MAX_QUERY_BYTES:
        raise MalformedSignedUrl(f"The query string is longer than {MAX_QUERY_BYTES} bytes.")
    elements = [e for e in _text(query).split("&") if e]
    if len(elements) > MAX_QUERY_PARAMS:
        raise MalformedSignedUrl(f"The query string has more than {MAX_QUERY_PARAMS} parameters.")
    out = []
    for element in elements:
        name, _, value = element.partition("=")
        out.append((element, _decode(name, plus=True), _decode(value, plus=True)))
    return out


def _params(pairs: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for _, name, value in pairs:
        key = name.lower() if name.lower().startswith("x-goog-") else name
        if key in found and key.startswith("x-goog-"):
            raise MalformedSignedUrl(f"The query parameter {name} is given more than once.")
        found[key] = value
    return found


def _credential(params: dict[str, str], date: str) -> tuple[str, str]:
    """(account email, credential scope) of X-Goog-Credential: EMAIL/DATE/LOCATION/storage/goog4_request."""
    parts = params["x-goog-credential"].split("/")
    if len(parts) != 5 or not parts[0] or parts[3] != "storage" or parts[4] != "goog4_request" \
            or not re.fullmatch(r"[0-9]{8}", parts[1]) or not re.fullmatch(r"[a-zA-Z0-9-]{1,64}", parts[2]):
        raise MalformedSignedUrl("Error parsing the X-Goog-Credential parameter; the credential is malformed; "
                                 "expecting \"<client_email>/YYYYMMDD/<location>/storage/goog4_request\".")
    if parts[1] != date[:8]:
        raise MalformedSignedUrl(f"The date of X-Goog-Credential ({parts[1]}) is not the date of X-Goog-Date "
                                 f"({date[:8]}).")
    return parts[0], "/".join(parts[1:])


def check_parameters(query: bytes, now: float) -> tuple[dict[str, str], int, int]:
    """The decoded query, issue time and expiry of a signed URL, once its X-Goog-* parameters are
    well formed and it has not expired (no key is looked at yet)."""
    params = _params(_pairs(query))
    missing = [n for n in (*REQUIRED, SIGNATURE) if not params.get(n)]
    if missing:
        raise MalformedSignedUrl(f"The signed URL lacks the query parameter(s) {', '.join(missing)}.")
    if params["x-goog-algorithm"] != ALGORITHM:
        raise MalformedSignedUrl(f"X-Goog-Algorithm must be {ALGORITHM}; HMAC keys are not supported.")
    date = params["x-goog-date"]
    if not _DATE.fullmatch(date):
        raise MalformedSignedUrl("X-Goog-Date must be in the ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'.")
    try:
        issued = int(datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp())
    except ValueError:
        raise MalformedSignedUrl(f"X-Goog-Date is not a valid date: {date}") from None
    expires = params["x-goog-expires"]
    if not _SECONDS.fullmatch(expires) or not 1 <= int(expires) <= MAX_EXPIRES:
        raise MalformedSignedUrl(f"X-Goog-Expires must be an integer number of seconds between 1 and "
                                 f"{MAX_EXPIRES} (seven days); it is {expires[:20]}.")
    _credential(params, date)
    if issued > now + FUTURE_SKEW:
        raise MalformedSignedUrl(f"X-Goog-Date {date} is in the future; the request is not valid yet.")
    expires_at = issued + int(expires)
    if expires_at < now:
        stamp = datetime.fromtimestamp(expires_at, UTC).isoformat()
        raise ExpiredToken(f"Request signature expired at: {stamp}")
    return params, issued, expires_at


def _canonical_queries(pairs: list[tuple[str, str, str]]) -> list[str]:
    """The query as sent (without the signature, in its order) and in Google's normal form."""
    kept = [p for p in pairs if p[1].lower() != SIGNATURE]
    as_sent = "&".join(raw for raw, _, _ in kept)
    normal = "&".join(sorted(f"{_encode(n, '~')}={_encode(v, '~')}" for _, n, v in kept))
    return list(dict.fromkeys([normal, as_sent]))


def _canonical_paths(path: bytes) -> list[str]:
    """The path in Google's normal form and as sent, each also without an endpoint's /storage."""
    sent = _text(path)
    normal = _encode(_decode(sent), "/~")
    out = [normal, sent]
    for p in (normal, sent):
        if p.startswith(STORAGE_PREFIX + "/"):
            out.append(p[len(STORAGE_PREFIX):])
    return list(dict.fromkeys(out))


def _canonical_headers(request: SignedRequest, signed: str) -> tuple[str, str]:
    names = signed.split(";")
    if len(names) > MAX_SIGNED_HEADERS or not all(_HEADER_NAME.fullmatch(n) for n in names):
        raise MalformedSignedUrl("X-Goog-SignedHeaders must be lowercase header names separated by semicolons.")
    if "host" not in names:
        raise MalformedSignedUrl("X-Goog-SignedHeaders must include host.")
    values: dict[str, list[str]] = {}
    for name, value in request.headers:
        key = name.decode("latin-1").lower()
        if key in names:
            values.setdefault(key, []).append(" ".join(_text(value).split()))
    lines = "".join(f"{n}:{','.join(values.get(n, []))}\n" for n in names)
    payload = UNSIGNED_PAYLOAD
    if "x-goog-content-sha256" in names and values.get("x-goog-content-sha256"):
        payload = values["x-goog-content-sha256"][0]
    return lines, payload


def _string_to_sign(date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{date}\n{scope}\n{digest}"


@lru_cache(maxsize=1024)
def _public_key(pem: str) -> rsa.RSAPublicKey:
    public = x509.load_pem_x509_certificate(pem.encode()).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    return public


def _signed_digest(public: rsa.RSAPublicKey, signature: bytes) -> bytes | None:
    """The SHA-256 digest `signature` signs under `public` (PKCS #1 v1.5), or None."""
    try:
        return public.recover_data_from_signature(signature, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return None


def verify(request: SignedRequest, params: dict[str, str], issued: int, expires_at: int,
           account: AccountInfo | None, certificates: Iterable[str]) -> Verified:
    """The signed request's account and resource, when its signature verifies with one of the
    account's `certificates` (PEM; the live keys). `account` None (unknown, deleted or disabled)
    fails as a bad signature does: a URL signed by a deleted key or account stops working."""
    date = params["x-goog-date"]
    email, scope = _credential(params, date)
    pairs = _pairs(request.query)
    headers, payload = _canonical_headers(request, params["x-goog-signedheaders"])
    candidates: list[tuple[str, str, str]] = []  # (path, canonical request, string to sign)
    for path in _canonical_paths(request.path):
        for query in _canonical_queries(pairs):
            canonical = "\n".join([request.method, path, query, headers, params["x-goog-signedheaders"], payload])
            candidates.append((path, canonical, _string_to_sign(date, scope, canonical)))
    shown = candidates[0]
    mismatch = SignatureDoesNotMatch(GENERIC_MISMATCH, {"StringToSign": shown[2], "CanonicalRequest": shown[1]})
    signature_hex = params[SIGNATURE]
    if len(signature_hex) > MAX_SIGNATURE_HEX or len(signature_hex) % 2 or not _HEX.fullmatch(signature_hex):
        raise mismatch
    signature = bytes.fromhex(signature_hex)
    if account is None or account.disabled or account.email != email.lower():
        raise mismatch
    digests = [_signed_digest(_public_key(pem), signature) for pem in certificates]
    for path, _, to_sign in candidates:
        wanted = hashlib.sha256(to_sign.encode("utf-8", "surrogateescape")).digest()
        if any(d is not None and hmac.compare_digest(d, wanted) for d in digests):
            try:
                resource = unquote(path, errors="strict")
            except UnicodeDecodeError:
                raise MalformedSignedUrl("The object name is not valid UTF-8.") from None
            return Verified(account, resource, issued, expires_at, params)
    raise mismatch
