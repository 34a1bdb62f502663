"""The OIDC subject-token verifier, driven as STS drives it: a workload's JWT against a provider.

Keys are generated here; discovery and JWKS are served by a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from keyless.errors import InvalidArgument
from keyless.federation.providers.oidc import FetchConfig, OidcVerifier, SubjectTokenRejected

pytestmark = pytest.mark.store_independent  # no store: the SQLite leg only (tests/conftest.py)

PROVIDER = "projects/123456789/locations/global/workloadIdentityPools/github-pool/providers/github"
NOW = 1_700_000_000.0

# -- keys and tokens -----------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def n2b(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


@dataclass
class Signer:
    kid: str | None
    alg: str
    key: Any

    def jwk(self) -> dict[str, Any]:
        pub = self.key.public_key().public_numbers()
        out: dict[str, Any]
        if isinstance(self.key, rsa.RSAPrivateKey):
            out = {"kty": "RSA", "n": b64(n2b(pub.n)), "e": b64(n2b(pub.e))}
        else:
            size = (self.key.curve.key_size + 7) // 8
            crv = {256: "P-256", 384: "P-384"}[self.key.curve.key_size]
            out = {"kty": "EC", "crv": crv, "x": b64(pub.x.to_bytes(size, "big")), "y": b64(pub.y.to_bytes(size, "big"))}
        if self.kid is not None:
            out["kid"] = self.kid
        return out

    def token(self, claims: dict[str, Any], *, header: dict[str, Any] | None = None, raw_payload: bytes | None = None) -> str:
        h = {"alg": self.alg, "typ": "JWT"}
        if self.kid is not None:
            h["kid"] = self.kid
        h.update(header or {})
        signing_input = b64(json.dumps(h).encode()) + "." + b64(raw_payload or json.dumps(claims).encode())
        return signing_input + "." + b64(sign(self.alg, self.key, signing_input.encode()))


def sign(alg: str, key: Any, data: bytes) -> bytes:
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
    if alg.startswith("RS"):
        return key.sign(data, padding.PKCS1v15(), digest)
    if alg.startswith("PS"):
        return key.sign(data, padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size), digest)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


@pytest.fixture(scope="module")
def rsa_keys() -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]


@pytest.fixture(scope="module")
def rs(rsa_keys: list[rsa.RSAPrivateKey]) -> Signer:
    return Signer("rsa-1", "RS256", rsa_keys[0])


@pytest.fixture(scope="module")
def rs_other(rsa_keys: list[rsa.RSAPrivateKey]) -> Signer:
    return Signer("rsa-2", "RS256", rsa_keys[1])


@pytest.fixture(scope="module")
def es() -> Signer:
    return Signer("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


def jwks(*signers: Signer) -> str:
    return json.dumps({"keys": [s.jwk() for s in signers]})


def claims(issuer: str, **over: Any) -> dict[str, Any]:
    base = {"iss": issuer, "sub": "repo:my-org/my-repo:ref:refs/heads/main", "aud": "https://github.com/my-org",
            "iat": int(NOW) - 10, "exp": int(NOW) + 3600, "repository_owner": "my-org"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


# -- a real issuer on loopback -------------------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Issuer:
    """Serves `/…/.well-known/openid-configuration` and JWKS documents; counts every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Route | Callable[[], Route]] = {}
        self.hits: Counter[str] = Counter()
        self.stop = threading.Event()
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                issuer.hits[self.path] += 1
                route = issuer.routes.get(self.path, Route(404, b"{}"))
                route = route() if callable(route) else route
                if route.delay and issuer.stop.wait(route.delay):
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(route.body)))
                for k, v in route.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(route.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def add(self, name: str, keys: str, *, jwks_uri: str | None = None, cache_control: str = "") -> str:
        """Publish an issuer at {base}/{name}; returns its issuer URI."""
        uri = f"{self.base}/{name}"
        discovery = {"issuer": uri, "jwks_uri": jwks_uri or f"{uri}/jwks"}
        self.routes[f"/{name}/.well-known/openid-configuration"] = Route(body=json.dumps(discovery).encode())
        self.set_jwks(name, keys, cache_control=cache_control)
        return uri

    def set_jwks(self, name: str, keys: str, *, cache_control: str = "", status: int = 200, delay: float = 0.0) -> None:
        headers = {"Cache-Control": cache_control} if cache_control else {}
        self.routes[f"/{name}/jwks"] = Route(status, keys.encode(), headers, delay)

    def jwks_hits(self, name: str) -> int:
        return self.hits[f"/{name}/jwks"]

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp() -> Iterator[Issuer]:
    server = Issuer()
    yield server
    server.close()


def verifier(**fetch: Any) -> OidcVerifier:
    return OidcVerifier(FetchConfig(trust_env=False, **fetch), allow_insecure_loopback=True)


def verify(v: OidcVerifier, token: str, issuer: str, *, audiences: list[str] | None = None,
           uploaded: str | None = None, provider: str = PROVIDER, now: float = NOW) -> dict[str, Any]:
    return v.verify(token, issuer_uri=issuer, allowed_audiences=["https://github.com/my-org"] if audiences is None else audiences,
                    provider_resource_name=provider, jwks_json=uploaded, now=now)


def rejected(call: Callable[[], Any]) -> SubjectTokenRejected:
    with pytest.raises(SubjectTokenRejected) as info:
        call()
    assert isinstance(info.value, InvalidArgument) and info.value.http_status == 400
    return info.value


# -- accepted tokens -----------------------------------------------------------------------------


def test_token_from_discovered_issuer_is_verified_and_keys_are_cached(idp: Issuer, rs: Signer) -> None:
    issuer = idp.add("gh", jwks(rs))
    v = verifier()
    token = rs.token(claims(issuer))

    assert verify(v, token, issuer) == claims(issuer)
    assert verify(v, token, issuer)["repository_owner"] == "my-org"
    assert idp.hits["/gh/.well-known/openid-configuration"] == 1
    assert idp.jwks_hits("gh") == 1


@pytest.mark.parametrize("alg, make", [
    ("RS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ("RS384", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ("RS512", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ("PS256", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    ("ES256", lambda: ec.generate_private_key(ec.SECP256R1())),
    ("ES384", lambda: ec.generate_private_key(ec.SECP384R1())),
])
def test_uploaded_jwks_verifies_every_allowed_algorithm(alg: str, make: Callable[[], Any]) -> None:
    signer = Signer("k", alg, make())
    issuer = "https://issuer.example.com"
    got = verify(verifier(), signer.token(claims(issuer)), issuer, uploaded=jwks(signer))
    assert got["sub"] == "repo:my-org/my-repo:ref:refs/heads/main"


def test_uploaded_jwks_never_touches_the_network(idp: Issuer, es: Signer) -> None:
    issuer = idp.add("offline", jwks(es))
    v = verifier()
    verify(v, es.token(claims(issuer)), issuer, uploaded=jwks(es))
    assert sum(idp.hits.values()) == 0


def test_token_without_kid_uses_the_only_key_of_its_type(rs: Signer, es: Signer, rs_other: Signer) -> None:
    issuer = "https://issuer.example.com"
    no_kid = Signer(None, "RS256", rs.key)
    assert verify(verifier(), no_kid.token(claims(issuer)), issuer, uploaded=jwks(rs, es))["iss"] == issuer
    err = rejected(lambda: verify(verifier(), no_kid.token(claims(issuer)), issuer, uploaded=jwks(rs, rs_other)))
    assert err.error_description == "Unable to verify the ID Token signature."


def test_default_audience_is_the_provider_name_with_or_without_https(rs: Signer) -> None:
    issuer = "https://issuer.example.com"
    for aud in (f"https://iam.googleapis.com/{PROVIDER}", f"//iam.googleapis.com/{PROVIDER}",
                ["other", f"//iam.googleapis.com/{PROVIDER}"]):
        token = rs.token(claims(issuer, aud=aud))
        assert verify(verifier(), token, issuer, audiences=[], uploaded=jwks(rs))["aud"] == aud
        named = f"//iam.googleapis.com/{PROVIDER}"
        assert verify(verifier(), token, issuer, audiences=[], uploaded=jwks(rs), provider=named)["aud"] == aud


def test_audience_list_needs_one_allowed_member(rs: Signer) -> None:
    issuer = "https://issuer.example.com"
    token = rs.token(claims(issuer, aud=["a", "https://github.com/my-org"]))
    assert verify(verifier(), token, issuer, uploaded=jwks(rs))["aud"][0] == "a"


def test_clock_skew_of_a_minute_is_tolerated(rs: Signer) -> None:
    issuer = "https://issuer.example.com"
    token = rs.token(claims(issuer, iat=int(NOW) + 59, nbf=int(NOW) + 59))
    assert verify(verifier(), token, issuer, uploaded=jwks(rs))["nbf"] == int(NOW) + 59


# -- hostile and broken tokens -------------------------------------------------------------------

ISS = "https://issuer.example.com"


def test_alg_none_is_refused(rs: Signer) -> None:
    header = b64(json.dumps({"alg": "none", "kid": "rsa-1"}).encode())
    token = header + "." + b64(json.dumps(claims(ISS)).encode()) + "."
    err = rejected(lambda: verify(verifier(), token, ISS, uploaded=jwks(rs)))
    assert (err.oauth_error, err.reason) == ("invalid_grant", "algorithm")
    assert err.error_description == 'The ID Token is signed with an unsupported algorithm "none".'


@pytest.mark.parametrize("secret_of", ["pem", "jwk"])
def test_hs256_signed_with_the_public_key_as_secret_is_refused(rs: Signer, secret_of: str) -> None:
    pem = rs.key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    secret = pem if secret_of == "pem" else jwks(rs).encode()
    signing_input = b64(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()) + "." + b64(json.dumps(claims(ISS)).encode())
    token = signing_input + "." + b64(hmac.digest(secret, signing_input.encode(), hashlib.sha256))
    err = rejected(lambda: verify(verifier(), token, ISS, uploaded=jwks(rs)))
    assert err.reason == "algorithm"


def test_wrong_key_behind_a_known_kid_fails_the_signature(rs: Signer, rs_other: Signer) -> None:
    forged = Signer("rsa-1", "RS256", rs_other.key)  # claims to be rsa-1, signed by another key
    err = rejected(lambda: verify(verifier(), forged.token(claims(ISS)), ISS, uploaded=jwks(rs)))
    assert (err.reason, err.error_description) == ("signature", "Unable to verify the ID Token signature.")


def test_unknown_kid_in_uploaded_jwks_is_refused(rs: Signer, rs_other: Signer) -> None:
    err = rejected(lambda: verify(verifier(), rs_other.token(claims(ISS)), ISS, uploaded=jwks(rs)))
    assert err.reason == "signature" and "rsa-2" in err.detail


def test_tampered_payload_fails_the_signature(rs: Signer) -> None:
    token = rs.token(claims(ISS))
    h, p, s = token.split(".")
    evil = b64(json.dumps(claims(ISS, repository_owner="evil-org")).encode())
    err = rejected(lambda: verify(verifier(), f"{h}.{evil}.{s}", ISS, uploaded=jwks(rs)))
    assert err.reason == "signature"


def test_der_encoded_ecdsa_signature_is_refused(es: Signer) -> None:
    signing_input = b64(json.dumps({"alg": "ES256", "kid": "ec-1"}).encode()) + "." + b64(json.dumps(claims(ISS)).encode())
    der = es.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    err = rejected(lambda: verify(verifier(), signing_input + "." + b64(der), ISS, uploaded=jwks(es)))
    assert err.reason == "signature"


def test_key_type_must_match_the_algorithm(rs: Signer, es: Signer) -> None:
    confused = Signer("rsa-1", "ES256", es.key)  # an EC signature naming an RSA key
    err = rejected(lambda: verify(verifier(), confused.token(claims(ISS)), ISS, uploaded=jwks(rs, es)))
    assert err.reason == "signature"


def test_expired_token_is_stale(rs: Signer) -> None:
    token = rs.token(claims(ISS, iat=int(NOW) - 7200, exp=int(NOW) - 3600))
    err = rejected(lambda: verify(verifier(), token, ISS, uploaded=jwks(rs)))
    assert (err.reason, err.error_description) == ("expired", f"ID Token issued at {int(NOW) - 7200} is stale to sign-in.")
    assert err.oauth_body() == {"error": "invalid_grant", "error_description": err.error_description}


@pytest.mark.parametrize("over, which", [({"iat": int(NOW) + 120}, "iat"), ({"nbf": int(NOW) + 120}, "nbf")])
def test_token_from_the_future_is_not_yet_valid(rs: Signer, over: dict[str, int], which: str) -> None:
    err = rejected(lambda: verify(verifier(), rs.token(claims(ISS, **over)), ISS, uploaded=jwks(rs)))
    assert err.reason == "not_yet_valid"
    assert err.error_description == f"The ID Token is not yet valid ({which} {int(NOW) + 120} is in the future)."


def test_lifetime_over_48_hours_is_refused(rs: Signer) -> None:
    ok = claims(ISS, iat=int(NOW) - 10, exp=int(NOW) - 10 + 48 * 3600)
    assert verify(verifier(), rs.token(ok), ISS, uploaded=jwks(rs))["exp"] == ok["exp"]
    err = rejected(lambda: verify(verifier(), rs.token(claims(ISS, exp=ok["exp"] + 1)), ISS, uploaded=jwks(rs)))
    assert err.reason == "lifetime"


def test_wrong_audience_names_the_token_audience(rs: Signer) -> None:
    token = rs.token(claims(ISS, aud="https://evil.example.com"))
    err = rejected(lambda: verify(verifier(), token, ISS, uploaded=jwks(rs)))
    assert err.error_description == "The audience in ID Token [https://evil.example.com] does not match the expected audience."
    # With no allowed audiences only the provider's own name will do.
    err = rejected(lambda: verify(verifier(), rs.token(claims(ISS)), ISS, audiences=[], uploaded=jwks(rs)))
    assert err.reason == "audience" and f"https://iam.googleapis.com/{PROVIDER}" in err.detail


def test_wrong_issuer_is_refused_before_any_fetch(idp: Issuer, rs: Signer) -> None:
    issuer = idp.add("gh", jwks(rs))
    token = rs.token(claims("https://token.actions.githubusercontent.com"))
    err = rejected(lambda: verify(verifier(), token, issuer))
    assert err.error_description == ("The issuer in ID Token [https://token.actions.githubusercontent.com] "
                                     "does not match the expected issuer.")
    assert sum(idp.hits.values()) == 0


@pytest.mark.parametrize("missing", ["exp", "iat", "aud", "sub", "iss"])
def test_required_claims(rs: Signer, missing: str) -> None:
    err = rejected(lambda: verify(verifier(), rs.token(claims(ISS, **{missing: None})), ISS, uploaded=jwks(rs)))
    assert err.error_description == f'The ID Token is missing the required "{missing}" claim.'


def test_one_megabyte_token_is_refused_fast(rs: Signer) -> None:
    huge = rs.token(claims(ISS, padding="x" * 1_000_000))
    start = time.perf_counter()
    err = rejected(lambda: verify(verifier(), huge, ISS, uploaded=jwks(rs)))
    assert time.perf_counter() - start < 0.05
    assert (err.oauth_error, err.reason) == ("invalid_request", "too_large")


@pytest.mark.parametrize("payload", [
    b'{"a":' * 40 + b"1" + b"}" * 40,  # nests too deep
    b"[" * 5000 + b"]" * 5000,  # not an object, and deeper than the parser's recursion limit
    b'{"iss":"https://issuer.example.com","iss":"https://evil.example.com"}',  # duplicate claim
    b"\xff\xfe",  # not UTF-8
    b'"just a string"',
])
def test_malformed_claims_are_unparsable(rs: Signer, payload: bytes) -> None:
    err = rejected(lambda: verify(verifier(), rs.token({}, raw_payload=payload), ISS, uploaded=jwks(rs)))
    assert (err.reason, err.error_description) == ("malformed", "Unable to parse the ID Token.")


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "a+b.c", "é.b.c", "e30.e30.!!", "e30=.e30.e30", "e3+.e30.e30", "e30.e30.a"])
def test_not_a_compact_jws(token: str) -> None:
    err = rejected(lambda: verify(verifier(), token, ISS, uploaded='{"keys": []}'))
    assert err.reason == "malformed"


def test_crit_header_is_refused(rs: Signer) -> None:
    token = rs.token(claims(ISS), header={"crit": ["exp"]})
    assert rejected(lambda: verify(verifier(), token, ISS, uploaded=jwks(rs))).reason == "malformed"


# -- fetching: rotation, failure, bounds ---------------------------------------------------------


def test_unknown_kid_refetches_at_most_once_per_interval(idp: Issuer, rs: Signer, rs_other: Signer) -> None:
    issuer = idp.add("rot", jwks(rs))
    # 2 s: the five verifications below must fit in one interval even on a loaded CI machine.
    v = verifier(refetch_interval=2.0)
    verify(v, rs.token(claims(issuer)), issuer)
    assert idp.jwks_hits("rot") == 1

    idp.set_jwks("rot", jwks(rs, rs_other))  # the issuer rotates in a new key
    time.sleep(2.05)
    assert verify(v, rs_other.token(claims(issuer)), issuer)["iss"] == issuer
    assert idp.jwks_hits("rot") == 2

    stranger = Signer("nobody", "RS256", rs.key)
    for _ in range(5):  # a flood of unknown kids costs no more fetches within the interval
        assert rejected(lambda: verify(v, stranger.token(claims(issuer)), issuer)).reason == "signature"
    assert idp.jwks_hits("rot") == 2
    time.sleep(2.05)
    rejected(lambda: verify(v, stranger.token(claims(issuer)), issuer))
    assert idp.jwks_hits("rot") == 3


def test_hanging_jwks_is_refused_within_the_timeout_then_fails_fast(idp: Issuer, rs: Signer) -> None:
    issuer = idp.add("slow", jwks(rs))
    idp.set_jwks("slow", jwks(rs), delay=10)
    v = verifier(timeout=1.0, failure_backoff=5)
    start = time.monotonic()
    err = rejected(lambda: verify(v, rs.token(claims(issuer)), issuer))
    assert time.monotonic() - start < 2.0
    assert (err.reason, err.error_description) == ("issuer_unreachable", "Error connecting to the given credential's issuer.")
    assert "timed out" in err.detail

    start = time.monotonic()
    assert rejected(lambda: verify(v, rs.token(claims(issuer)), issuer)).reason == "issuer_unreachable"
    assert time.monotonic() - start < 0.05
    assert idp.jwks_hits("slow") == 1


def test_hanging_issuer_does_not_block_other_issuers(idp: Issuer, rs: Signer, es: Signer) -> None:
    slow, good = idp.add("slow", jwks(rs)), idp.add("good", jwks(es))
    idp.set_jwks("slow", jwks(rs), delay=10)
    v = verifier(timeout=1.5)
    verify(v, es.token(claims(good)), good)  # warm the good issuer
    outcome: list[str] = []

    def stuck() -> None:
        try:
            verify(v, rs.token(claims(slow)), slow)
            outcome.append("accepted")
        except SubjectTokenRejected as exc:
            outcome.append(exc.reason)

    t = threading.Thread(target=stuck)
    t.start()
    time.sleep(0.1)
    start = time.monotonic()
    for _ in range(20):
        verify(v, es.token(claims(good)), good)
    assert time.monotonic() - start < 0.5
    assert outcome == []  # the slow issuer's fetch was still in flight all along
    t.join()
    assert outcome == ["issuer_unreachable"]


@pytest.mark.parametrize("body, status", [
    (b"<html>not json</html>", 200),
    (b'{"keys": "nope"}', 200),
    (b'{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}', 200),  # a toy 17-bit modulus
    (b'{"keys": [{"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"}]}', 200),  # not on the curve
    (b"{}", 500),
])
def test_garbage_jwks_is_refused_and_does_not_poison_the_cache(idp: Issuer, rs: Signer, body: bytes, status: int) -> None:
    issuer = idp.add("junk", jwks(rs))
    idp.routes["/junk/jwks"] = Route(status, body)
    v = verifier(failure_backoff=0.2)
    err = rejected(lambda: verify(v, rs.token(claims(issuer)), issuer))
    assert err.reason == "issuer_unreachable"

    idp.set_jwks("junk", jwks(rs))  # the issuer is fixed
    time.sleep(0.25)
    assert verify(v, rs.token(claims(issuer)), issuer)["iss"] == issuer


def test_too_many_keys_or_too_many_bytes_are_refused(idp: Issuer, rs: Signer) -> None:
    issuer = idp.add("big", json.dumps({"keys": [rs.jwk()] * 101}))
    assert "more than 100" in rejected(lambda: verify(verifier(), rs.token(claims(issuer)), issuer)).detail
    idp.set_jwks("big", json.dumps({"keys": [rs.jwk()], "pad": "x" * 300_000}))
    assert "larger than" in rejected(lambda: verify(verifier(), rs.token(claims(issuer)), issuer)).detail


def test_http_jwks_uri_off_loopback_is_refused(idp: Issuer, rs: Signer) -> None:
    issuer = idp.add("plain", jwks(rs), jwks_uri="http://keys.example.com/jwks")
    err = rejected(lambda: verify(verifier(), rs.token(claims(issuer)), issuer))
    assert err.reason == "issuer_unreachable" and "https" in err.detail


def test_http_issuer_is_refused_unless_loopback_is_allowed(idp: Issuer, rs: Signer) -> None:
    issuer = idp.add("gh", jwks(rs))
    strict = OidcVerifier(FetchConfig(trust_env=False), allow_insecure_loopback=False)
    assert rejected(lambda: strict.verify(rs.token(claims(issuer)), issuer_uri=issuer, allowed_audiences=["https://github.com/my-org"],
                                          provider_resource_name=PROVIDER, jwks_json=None, now=NOW)).reason == "issuer_unreachable"
    assert sum(idp.hits.values()) == 0


def test_cache_control_max_age_is_honoured_within_bounds(idp: Issuer, rs: Signer) -> None:
    issuer = idp.add("cc", jwks(rs), cache_control="public, max-age=0")
    v = verifier(min_ttl=0.2)
    verify(v, rs.token(claims(issuer)), issuer)
    verify(v, rs.token(claims(issuer)), issuer)
    assert idp.jwks_hits("cc") == 1  # max-age=0 is raised to the floor
    time.sleep(0.25)
    verify(v, rs.token(claims(issuer)), issuer)
    assert idp.jwks_hits("cc") == 2


def test_issuer_outage_keeps_the_keys_it_had(idp: Issuer, rs: Signer) -> None:
    issuer = idp.add("down", jwks(rs), cache_control="max-age=0")
    v = verifier(min_ttl=0.1)
    verify(v, rs.token(claims(issuer)), issuer)
    idp.set_jwks("down", "{}", status=503)
    time.sleep(0.15)
    assert verify(v, rs.token(claims(issuer)), issuer)["iss"] == issuer
    assert idp.jwks_hits("down") == 2
