"""The OIDC provider's subject-token verifier: a compact JWS checked against the issuer's keys.

Follows the STS v1 `token` reference for OIDC subject tokens (https://cloud.google.com/iam/docs/
reference/sts/rest/v1/TopLevel/token: `kid` and `alg` headers; `iss` with a discovery document at
`{iss}/.well-known/openid-configuration`; `iat` in the past; `exp` less than 48 hours after `iat`;
`sub`; `aud` one of the provider's allowed audiences, or by default the provider's full resource
name with or without the `https:` prefix) and RFC 7515/7517/7518. Verification is hand-rolled on
`cryptography` with parsed keys cached (~50 µs instead of PyJWT's ~166 µs, research/perf-floor.md).

Deviations: besides Google's documented RS256 and ES256 we also accept RS384, RS512, ES384 and
PS256; a token without `kid` is accepted when exactly one key of the matching type exists.

Errors are `SubjectTokenRejected` (an `InvalidArgument`, HTTP 400) carrying `oauth_error`, so the
STS endpoint renders `{"error": e.oauth_error, "error_description": e.message}` (RFC 6749 5.2).
`detail` says more for logs and `keyless doctor`; `reason` is a stable machine-readable code.

| reason              | oauth_error     | error_description                                           | source   |
|---------------------|-----------------|-------------------------------------------------------------|----------|
| too_large           | invalid_request | The subject token is too large (at most 16384 bytes).       | Keyless  |
| malformed           | invalid_grant   | Unable to parse the ID Token.                               | observed |
| algorithm           | invalid_grant   | The ID Token is signed with an unsupported algorithm "X".   | Keyless  |
| signature           | invalid_grant   | Unable to verify the ID Token signature.                    | observed*|
| issuer_unreachable  | invalid_grant   | Error connecting to the given credential's issuer.          | documented|
| issuer              | invalid_grant   | The issuer in ID Token [X] does not match the expected issuer. | Keyless |
| audience            | invalid_grant   | The audience in ID Token [X] does not match the expected audience. | observed |
| expired             | invalid_grant   | ID Token issued at N is stale to sign-in.                   | observed |
| not_yet_valid       | invalid_grant   | The ID Token is not yet valid (iat/nbf N is in the future). | Keyless  |
| lifetime            | invalid_grant   | The ID Token's lifetime (exp - iat) must be at most 48 hours. | Keyless |
| missing_claim       | invalid_grant   | The ID Token is missing the required "X" claim.             | Keyless  |

"observed" strings were quoted from sts.googleapis.com replies in public issues and code; the
"documented" one is on Google's WIF troubleshooting page; "observed*" comes from Identity Platform,
Google's sibling token verifier. "Keyless" strings are ours, in the same style.
"""

from __future__ import annotations

import binascii
import ipaddress
import json
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from keyless.errors import InvalidArgument
from keyless.tokens import jws

MAX_TOKEN_BYTES = 16 * 1024
MAX_LIFETIME = 48 * 3600  # STS reference: exp must be less than 48 hours after iat
CLOCK_SKEW = 60  # seconds of leeway for iat and nbf in the future; exp gets none
REQUIRED_CLAIMS = ("iss", "sub", "aud", "iat", "exp")
GOOGLE_IAM_PREFIXES = ("//iam.googleapis.com/", "https://iam.googleapis.com/")

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})\"?", re.IGNORECASE)

# alg -> hash (RSA), or (hash, curve, bytes per coordinate) (ECDSA); RFC 7518 section 3.
_RSA_PKCS1: dict[str, hashes.HashAlgorithm] = {
    "RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512()}
_RSA_PSS: dict[str, hashes.HashAlgorithm] = {"PS256": hashes.SHA256()}
_ECDSA: dict[str, tuple[hashes.HashAlgorithm, str, int]] = {
    "ES256": (hashes.SHA256(), "P-256", 32), "ES384": (hashes.SHA384(), "P-384", 48)}
ALGORITHMS = frozenset(_RSA_PKCS1) | frozenset(_RSA_PSS) | frozenset(_ECDSA)
_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}


class NeedsNetwork(Exception):
    """Raised instead of fetching when `verify(..., allow_network=False)` would need the network.

    Lets a caller on an event loop verify inline while keys are cached, and move to a worker
    thread only when the issuer must be asked."""


class SubjectTokenRejected(InvalidArgument):
    """A subject token the STS refuses, rendered as an RFC 6749 error response."""

    def __init__(self, description: str, *, reason: str, oauth_error: str = "invalid_grant",
                 detail: str = "") -> None:
        super().__init__(description)
        self.reason = reason
        self.oauth_error = oauth_error
        self.detail = detail or description

    @property
    def error_description(self) -> str:
        return self.message

    def oauth_body(self) -> dict[str, str]:
        return {"error": self.oauth_error, "error_description": self.message}


def _rejected(reason: str, description: str, detail: str = "") -> SubjectTokenRejected:
    return SubjectTokenRejected(description, reason=reason, detail=detail)


def _unreachable(detail: str) -> SubjectTokenRejected:
    return _rejected("issuer_unreachable", "Error connecting to the given credential's issuer.", detail)


def _unparsable(detail: str) -> SubjectTokenRejected:
    return _rejected("malformed", "Unable to parse the ID Token.", detail)


def _bad_signature(detail: str) -> SubjectTokenRejected:
    return _rejected("signature", "Unable to verify the ID Token signature.", detail)


@dataclass(frozen=True)
class FetchConfig:
    """Bounds on fetching discovery documents and key sets from issuers."""

    timeout: float = 5.0  # one deadline for discovery + JWKS together (connect and read)
    max_bytes: int = 256 * 1024
    max_keys: int = 100
    default_ttl: float = 3600.0  # when the JWKS reply has no Cache-Control max-age
    min_ttl: float = 60.0
    max_ttl: float = 3600.0
    refetch_interval: float = 30.0  # an unknown kid refetches at most this often per issuer
    failure_backoff: float = 5.0  # after a failed fetch, fail fast for this long
    max_stale: float = 24 * 3600.0  # keep using old keys this long while the issuer is down
    trust_env: bool = True  # honour HTTP(S)_PROXY / NO_PROXY


@dataclass(frozen=True)
class _Key:
    kid: str | None
    kty: str  # "RSA" or "EC"
    crv: str | None
    alg: str | None
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class _KeySet:
    by_kid: dict[str, _Key]
    keys: tuple[_Key, ...]

    def find(self, kid: str | None, alg: str) -> _Key | None:
        if kid is not None:
            key = self.by_kid.get(kid)
            return key if key is not None and _fits(key, alg) else None
        fitting = [k for k in self.keys if _fits(k, alg)]
        return fitting[0] if len(fitting) == 1 else None


@dataclass
class _IssuerEntry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    keyset: _KeySet | None = None
    fetched_at: float = 0.0  # monotonic time of the last successful fetch
    expires_at: float = 0.0
    attempted_at: float = -math.inf  # monotonic time of the last fetch attempt
    error: SubjectTokenRejected | None = None  # the last attempt's failure, if it failed
    generation: int = 0  # counts finished fetch attempts


def _fits(key: _Key, alg: str) -> bool:
    if key.alg is not None and key.alg != alg:
        return False
    if alg in _ECDSA:
        return key.kty == "EC" and key.crv == _ECDSA[alg][1]
    return key.kty == "RSA"


def _b64url_int(value: Any) -> int:
    if not isinstance(value, str) or not value:
        raise ValueError("missing key parameter")
    return int.from_bytes(jws.b64url_decode(value), "big")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_jwks(data: Any, *, max_keys: int = 100) -> _KeySet:
    """A JWK Set (RFC 7517) as parsed public keys; keys we cannot use are skipped."""
    keys_json = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys_json, list):
        raise ValueError('the JWKS has no "keys" list')
    if len(keys_json) > max_keys:
        raise ValueError(f"the JWKS has {len(keys_json)} keys, more than {max_keys}")
    keys: list[_Key] = []
    for jwk in keys_json:
        try:
            key = _parse_jwk(jwk)
        except (ValueError, TypeError, binascii.Error):
            continue
        if key is not None:
            keys.append(key)
    if not keys:
        raise ValueError("the JWKS holds no usable RSA or EC signing key")
    by_kid: dict[str, _Key] = {}
    for key in keys:
        if key.kid is not None:
            by_kid.setdefault(key.kid, key)
    return _KeySet(by_kid=by_kid, keys=tuple(keys))


def _parse_jwk(jwk: Any) -> _Key | None:
    if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
        return None
    kid = jwk.get("kid")
    kid = kid if isinstance(kid, str) else None
    alg = jwk.get("alg")
    if alg is not None and alg not in ALGORITHMS:
        return None
    if jwk.get("kty") == "RSA":
        n, e = _b64url_int(jwk.get("n")), _b64url_int(jwk.get("e"))
        if not 2048 <= n.bit_length() <= 8192:
            return None
        return _Key(kid, "RSA", None, alg, rsa.RSAPublicNumbers(e, n).public_key())
    if jwk.get("kty") == "EC" and jwk.get("crv") in _CURVES:
        crv = str(jwk["crv"])
        x, y = _b64url_int(jwk.get("x")), _b64url_int(jwk.get("y"))
        # cryptography checks that the point is on the curve.
        return _Key(kid, "EC", crv, alg, ec.EllipticCurvePublicNumbers(x, y, _CURVES[crv]).public_key())
    return None


def _verify_signature(key: _Key, alg: str, signing_input: bytes, signature: bytes) -> bool:
    try:
        if alg in _ECDSA:
            digest, _, size = _ECDSA[alg]
            if len(signature) != 2 * size or not isinstance(key.public_key, ec.EllipticCurvePublicKey):
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.public_key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(digest))
            return True
        if not isinstance(key.public_key, rsa.RSAPublicKey):
            return False
        if alg in _RSA_PKCS1:
            key.public_key.verify(signature, signing_input, padding.PKCS1v15(), _RSA_PKCS1[alg])
        else:
            h = _RSA_PSS[alg]
            pss = padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
            key.public_key.verify(signature, signing_input, pss, h)
        return True
    except (InvalidSignature, ValueError):
        return False


def _numeric(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _unparsable(f'the "{name}" claim is not a number')
    return float(value)


def _fmt_time(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def default_audiences(provider_resource_name: str) -> tuple[str, str]:
    """The audiences a provider accepts when it lists none: its full name, with or without https:."""
    name = provider_resource_name
    for prefix in GOOGLE_IAM_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return ("//iam.googleapis.com/" + name, "https://iam.googleapis.com/" + name)


class OidcVerifier:
    """Verifies OIDC subject tokens; one instance is shared by all providers and threads.

    Keys come from the provider's uploaded JWKS when it has one, else from the issuer's discovery
    document and `jwks_uri`, cached per issuer. A fetch holds only that issuer's lock, and callers
    that still have usable (even expired) keys never wait for it.
    """

    def __init__(self, fetch: FetchConfig | None = None, *, allow_insecure_loopback: bool = False) -> None:
        self.fetch = fetch or FetchConfig()
        self.allow_insecure_loopback = allow_insecure_loopback
        self._lock = threading.Lock()  # guards the two dicts below, never held during I/O
        self._issuers: OrderedDict[str, _IssuerEntry] = OrderedDict()
        self._uploaded: OrderedDict[str, _KeySet] = OrderedDict()
        self._max_entries = 256  # per dict; uploaded JWKS are at most 64 KiB each

    # -- the plugin interface ----------------------------------------------------------------

    def verify(self, token: str, *, issuer_uri: str, allowed_audiences: list[str],
               provider_resource_name: str, jwks_json: str | None, now: float | None = None,
               allow_network: bool = True) -> dict[str, Any]:
        """The verified claims of `token` (the CEL `assertion`), or SubjectTokenRejected.

        With `allow_network=False`, raises NeedsNetwork where it would fetch discovery or JWKS."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
            size = len(token) if isinstance(token, str) else 0
            raise SubjectTokenRejected(
                f"The subject token is too large (at most {MAX_TOKEN_BYTES} bytes).", reason="too_large",
                oauth_error="invalid_request", detail=f"the subject token has {size} bytes")
        now = time.time() if now is None else now
        try:
            header_b64, payload_b64, signature_b64 = jws.split(token, MAX_TOKEN_BYTES)
            header_raw, payload_raw, signature = (jws.b64url_decode(header_b64), jws.b64url_decode(payload_b64),
                                                  jws.b64url_decode(signature_b64))
            header = jws.json_object(header_raw, "JWS header")
        except jws.MalformedJws as exc:
            raise _unparsable(f"the subject token: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            shown = alg if isinstance(alg, str) else json.dumps(alg)
            raise _rejected("algorithm", f'The ID Token is signed with an unsupported algorithm "{shown[:32]}".',
                            f"allowed algorithms: {', '.join(sorted(ALGORITHMS))}")
        if "crit" in header:
            raise _unparsable('the JWS header has a "crit" member, which Keyless does not support')
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _unparsable('the "kid" header is not a string')

        try:
            claims = jws.json_object(payload_raw, "JWT claims set")
        except jws.MalformedJws as exc:
            raise _unparsable(str(exc)) from None
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                raise _rejected("missing_claim", f'The ID Token is missing the required "{name}" claim.')
        iss = claims["iss"]
        if iss != issuer_uri:
            raise _rejected("issuer", f"The issuer in ID Token [{iss}] does not match the expected issuer.",
                            f"expected issuer {issuer_uri}")

        key = self._key_for(kid, alg, issuer_uri, jwks_json, allow_network)
        if not _verify_signature(key, alg, f"{header_b64}.{payload_b64}".encode("ascii"), signature):
            raise _bad_signature(f"the signature does not verify with key {key.kid or '(no kid)'}")

        self._check_claims(claims, now, allowed_audiences, provider_resource_name)
        return claims

    # -- claims --------------------------------------------------------------------------------

    @staticmethod
    def _check_claims(claims: dict[str, Any], now: float, allowed_audiences: list[str],
                      provider_resource_name: str) -> None:
        if not isinstance(claims["sub"], str) or not claims["sub"]:
            raise _unparsable('the "sub" claim is not a non-empty string')
        aud = claims["aud"]
        auds = [aud] if isinstance(aud, str) else aud
        if not isinstance(auds, list) or not auds or not all(isinstance(a, str) for a in auds):
            raise _unparsable('the "aud" claim is not a string or a list of strings')
        expected = list(allowed_audiences) or list(default_audiences(provider_resource_name))
        if not set(auds) & set(expected):
            raise _rejected("audience",
                            f"The audience in ID Token [{', '.join(auds)}] does not match the expected audience.",
                            f"expected one of: {', '.join(expected)}")
        iat, exp = _numeric(claims, "iat"), _numeric(claims, "exp")
        if iat > now + CLOCK_SKEW:
            raise _rejected("not_yet_valid",
                            f"The ID Token is not yet valid (iat {_fmt_time(iat)} is in the future).",
                            f"now is {int(now)}; allowed clock skew {CLOCK_SKEW} s")
        if "nbf" in claims:
            nbf = _numeric(claims, "nbf")
            if nbf > now + CLOCK_SKEW:
                raise _rejected("not_yet_valid",
                                f"The ID Token is not yet valid (nbf {_fmt_time(nbf)} is in the future).",
                                f"now is {int(now)}; allowed clock skew {CLOCK_SKEW} s")
        if exp <= now:
            raise _rejected("expired", f"ID Token issued at {_fmt_time(iat)} is stale to sign-in.",
                            f"the token expired at {_fmt_time(exp)}; now is {int(now)}")
        if exp - iat > MAX_LIFETIME:
            raise _rejected("lifetime", "The ID Token's lifetime (exp - iat) must be at most 48 hours.",
                            f"exp - iat is {_fmt_time(exp - iat)} s")

    # -- keys ----------------------------------------------------------------------------------

    def _key_for(self, kid: str | None, alg: str, issuer_uri: str, jwks_json: str | None,
                 allow_network: bool = True) -> _Key:
        if jwks_json:
            keyset = self._uploaded_keyset(jwks_json)
            key = keyset.find(kid, alg)
            if key is None:
                raise _bad_signature(f"no key in the provider's uploaded JWKS matches kid {kid!r} and alg {alg}")
            return key
        entry = self._entry(issuer_uri)
        keyset = self._keyset(entry, issuer_uri, allow_network=allow_network)
        key = keyset.find(kid, alg)
        if key is None and kid is not None and kid not in keyset.by_kid:
            # An unknown kid may be a freshly rotated key: refetch, at most once per interval.
            keyset = self._keyset(entry, issuer_uri, refetch=keyset, allow_network=allow_network)
            key = keyset.find(kid, alg)
        if key is None:
            raise _bad_signature(f"no key in the issuer's JWKS matches kid {kid!r} and alg {alg}")
        return key

    def _uploaded_keyset(self, jwks_json: str) -> _KeySet:
        with self._lock:
            cached = self._uploaded.get(jwks_json)
            if cached is not None:
                self._uploaded.move_to_end(jwks_json)
                return cached
        try:
            if len(jwks_json) > self.fetch.max_bytes:
                raise ValueError("the uploaded JWKS is too large")
            keyset = parse_jwks(json.loads(jwks_json), max_keys=self.fetch.max_keys)
        except (ValueError, RecursionError) as exc:
            raise _bad_signature(f"the provider's uploaded JWKS is unusable: {exc}") from None
        with self._lock:
            self._uploaded[jwks_json] = keyset
            while len(self._uploaded) > self._max_entries:
                self._uploaded.popitem(last=False)
        return keyset

    def _entry(self, issuer_uri: str) -> _IssuerEntry:
        with self._lock:
            entry = self._issuers.get(issuer_uri)
            if entry is not None:
                self._issuers.move_to_end(issuer_uri)
            else:
                entry = self._issuers[issuer_uri] = _IssuerEntry()
                while len(self._issuers) > self._max_entries:
                    self._issuers.popitem(last=False)
            return entry

    def _keyset(self, entry: _IssuerEntry, issuer_uri: str, *, refetch: _KeySet | None = None,
                allow_network: bool = True) -> _KeySet:
        """The issuer's keys: cached while fresh, else refetched under that issuer's own lock.

        `refetch` is the key set in which a token's kid was not found: fetch again unless the
        issuer was fetched less than `refetch_interval` ago.
        """
        cfg = self.fetch
        mono = time.monotonic()
        keyset = entry.keyset if refetch is None else refetch
        stale_ok = keyset is not None and mono - entry.fetched_at < cfg.max_stale
        if refetch is not None:
            if mono - entry.attempted_at < cfg.refetch_interval:
                return refetch
        else:
            if keyset is not None and mono < entry.expires_at:
                return keyset
            if entry.error is not None and mono - entry.attempted_at < cfg.failure_backoff:
                if stale_ok and keyset is not None:
                    return keyset  # the issuer is failing: keep verifying with the keys we had
                raise entry.error  # fail fast instead of waiting on a failing issuer again
        if not allow_network:
            raise NeedsNetwork(issuer_uri)
        generation = entry.generation
        # With usable keys in hand, don't queue behind another thread's refresh: use them.
        if not entry.lock.acquire(blocking=refetch is not None or not stale_ok):
            assert keyset is not None
            return keyset
        try:
            if entry.generation != generation:  # another thread fetched while we waited
                if entry.error is None and entry.keyset is not None:
                    return entry.keyset
                if stale_ok and keyset is not None:
                    return keyset
                assert entry.error is not None
                raise entry.error
            entry.attempted_at = time.monotonic()
            try:
                fresh, ttl = self._fetch_keyset(issuer_uri)
            except SubjectTokenRejected as exc:
                entry.error = exc
                entry.generation += 1
                if refetch is None and stale_ok and keyset is not None:
                    return keyset
                raise
            done = time.monotonic()
            entry.keyset, entry.error = fresh, None
            entry.fetched_at, entry.expires_at = done, done + ttl
            entry.generation += 1
            return fresh
        finally:
            entry.lock.release()

    # -- fetching ------------------------------------------------------------------------------

    def _allowed_url(self, url: str) -> bool:
        parsed = urlparse(url)
        if parsed.scheme == "https" and parsed.hostname:
            return True
        return parsed.scheme == "http" and self.allow_insecure_loopback and _is_loopback(parsed.hostname)

    def _fetch_keyset(self, issuer_uri: str) -> tuple[_KeySet, float]:
        cfg = self.fetch
        if not self._allowed_url(issuer_uri):
            raise _unreachable(f"the issuer {issuer_uri} does not use https")
        deadline = time.monotonic() + cfg.timeout
        discovery_url = issuer_uri.rstrip("/") + "/.well-known/openid-configuration"
        with httpx.Client(follow_redirects=False, trust_env=cfg.trust_env) as client:
            discovery, _ = self._get_json(client, discovery_url, deadline)
            jwks_uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise _unreachable(f"{discovery_url} has no jwks_uri")
            if not self._allowed_url(jwks_uri):
                raise _unreachable(f"the jwks_uri {jwks_uri} does not use https")
            jwks, cache_control = self._get_json(client, jwks_uri, deadline)
        try:
            keyset = parse_jwks(jwks, max_keys=cfg.max_keys)
        except ValueError as exc:
            raise _unreachable(f"{jwks_uri}: {exc}") from None
        ttl = cfg.default_ttl
        m = _MAX_AGE.search(cache_control)
        if m is not None:
            ttl = float(m.group(1))
        elif re.search(r"no-store|no-cache", cache_control, re.IGNORECASE):
            ttl = cfg.min_ttl
        return keyset, min(max(ttl, cfg.min_ttl), cfg.max_ttl)

    def _get_json(self, client: httpx.Client, url: str, deadline: float) -> tuple[Any, str]:
        """GET `url` as JSON within the deadline and the size bound; any failure is 'unreachable'."""
        cfg = self.fetch
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _unreachable(f"timed out before fetching {url}")
        try:
            with client.stream("GET", url, headers={"Accept": "application/json"},
                               timeout=httpx.Timeout(remaining)) as resp:
                if resp.status_code != 200:
                    raise _unreachable(f"{url} answered HTTP {resp.status_code}")
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > cfg.max_bytes:
                    raise _unreachable(f"{url} is larger than {cfg.max_bytes} bytes")
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > cfg.max_bytes:
                        raise _unreachable(f"{url} is larger than {cfg.max_bytes} bytes")
                    if time.monotonic() > deadline:
                        raise _unreachable(f"timed out reading {url}")
                cache_control = resp.headers.get("cache-control", "")
        except httpx.TimeoutException:
            raise _unreachable(f"timed out fetching {url}") from None
        except httpx.HTTPError as exc:
            raise _unreachable(f"could not fetch {url}: {type(exc).__name__}: {exc}") from None
        try:
            return json.loads(bytes(body).decode("utf-8")), cache_control
        except (ValueError, RecursionError):
            raise _unreachable(f"{url} did not answer JSON") from None
