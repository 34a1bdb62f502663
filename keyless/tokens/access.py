"""Access tokens: minted for every principal Keyless authenticates, verified without the store.

A token is `ya29.<kid>.<payload>.<tag>`: Google's access-token prefix (clients treat tokens as
opaque strings), the id of the HMAC key, the base64url JSON claims, and HMAC-SHA256 over
`<kid>.<payload>`. The claims carry everything an authorisation decision needs (principal,
member keys, scopes, expiry, a downscoped token's access boundary: keyless.tokens.boundary), so
verification is one HMAC and one json.loads.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from keyless.errors import Unauthenticated
from keyless.iam.principal import Principal
from keyless.tokens.boundary import AccessBoundary, from_claim
from keyless.tokens.jws import b64url_decode
from keyless.tokens.keys import ACCESS, KeyRing, b64url

PREFIX = "ya29."
MAX_TOKEN_LENGTH = 16 * 1024
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"

INVALID_CREDENTIALS = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


@dataclass(frozen=True)
class AccessToken:
    """A verified access token."""

    principal: Principal
    scopes: tuple[str, ...]
    issued_at: int
    expires_at: int
    token: str
    boundary: AccessBoundary | None = None  # a downscoped token's Credential Access Boundary

    @property
    def expires_in(self) -> int:
        return max(0, self.expires_at - int(time.time()))


class AccessTokens:
    """Mints and verifies access tokens with the key ring's current HMAC key."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    def mint(self, principal: Principal, scopes: tuple[str, ...] | list[str], lifetime: int,
             *, now: int | None = None, boundary: AccessBoundary | None = None) -> AccessToken:
        key = self._keys.signing_key(ACCESS)
        iat = int(time.time()) if now is None else now
        claims: dict[str, Any] = {
            "m": principal.member,
            "k": sorted(principal.member_keys),
            "s": list(scopes),
            "iat": iat,
            "exp": iat + lifetime,
        }
        if principal.email:
            claims["e"] = principal.email
        if principal.subject and principal.subject != principal.member:
            claims["sub"] = principal.subject
        if principal.service_account_id:
            claims["sa"] = principal.service_account_id
        if principal.delegation:
            claims["d"] = list(principal.delegation)
        if boundary is not None:
            claims["b"] = boundary.claim()
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signed = f"{key.kid}.{payload}"
        tag = b64url(hmac.digest(key.secret, signed.encode(), sha256))
        token = f"{PREFIX}{signed}.{tag}"
        return AccessToken(principal, tuple(scopes), iat, iat + lifetime, token, boundary)

    def verify(self, token: str) -> AccessToken:
        """Check the tag and expiry; raise Unauthenticated (Google's message) otherwise."""
        if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated(INVALID_CREDENTIALS)
        parts = token[len(PREFIX):].split(".")
        if len(parts) != 3:
            raise Unauthenticated(INVALID_CREDENTIALS)
        kid, payload, tag = parts
        key = self._keys.get(kid)
        if key is None or key.purpose != ACCESS:
            raise Unauthenticated(INVALID_CREDENTIALS)
        expected = hmac.digest(key.secret, f"{kid}.{payload}".encode(), sha256)
        try:
            given = b64url_decode(tag)
            if not hmac.compare_digest(expected, given):
                raise Unauthenticated(INVALID_CREDENTIALS)
            claims = json.loads(b64url_decode(payload))
        except (ValueError, TypeError) as exc:
            raise Unauthenticated(INVALID_CREDENTIALS) from exc
        if int(claims["exp"]) <= time.time():
            raise Unauthenticated(INVALID_CREDENTIALS)
        principal = Principal(
            member=claims["m"],
            member_keys=frozenset(claims["k"]),
            email=claims.get("e", ""),
            subject=claims.get("sub", claims["m"]),
            service_account_id=claims.get("sa"),
            delegation=tuple(claims.get("d", ())),
        )
        boundary = from_claim(claims["b"]) if "b" in claims else None
        return AccessToken(principal, tuple(claims["s"]), int(claims["iat"]), int(claims["exp"]), token, boundary)
