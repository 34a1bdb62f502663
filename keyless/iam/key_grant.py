"""The JWT-bearer grant of service account key files (RFC 7523 section 2.1, as Google's
token endpoint implements it: https://developers.google.com/identity/protocols/oauth2/service-account).

The assertion is an RS256 JWT signed with the key file's private key, `kid` = private_key_id,
`iss` = the account's email, `aud` = https://oauth2.googleapis.com/token (google-auth hard-codes
it whatever `token_uri` says) or our own token URL, lifetime at most an hour. It carries either
`scope` (an access token is issued) or `target_audience` (a Google-shaped ID token is issued).
Verified against the certificate Keyless kept of the key (or the one the user uploaded, within
its validity); disabled or deleted keys and accounts stop working at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyless.iam.credentials import Services, id_token_for
from keyless.iam.principal import service_account_principal
from keyless.iam.service_account_keys import in_validity
from keyless.iam.service_accounts import find_by_email
from keyless.projects import find_project
from keyless.store.db import Database
from keyless.store.models import ServiceAccount, ServiceAccountKey
from keyless.tokens import jws

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
MAX_ASSERTION_BYTES = 16 * 1024
MAX_LIFETIME = 3600
SKEW = 300
UNAUTHORIZED_SUBJECT = ("Client is unauthorized to retrieve access tokens using this method, or client not "
                        "authorized for any of the scopes requested.")


class GrantRefused(Exception):
    """Refused with OAuth's `error` code and Google's description."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Granted:
    access_token: str | None
    id_token: str | None
    expires_in: int


def _invalid(description: str = "Invalid JWT Signature.") -> GrantRefused:
    return GrantRefused("invalid_grant", description)


def verify_key_jwt(db: Database, assertion: str, audiences: Callable[[object], bool]) -> tuple[ServiceAccount, dict]:
    """Verify a JWT signed with a service account key Keyless issued (`kid` = the key's id,
    `iss` = the account, `sub` absent or the account too): signature against the kept certificate, live key and account,
    `aud` accepted by `audiences`, lifetime at most an hour. Returns (account, claims)."""
    if len(assertion) > MAX_ASSERTION_BYTES or assertion.count(".") != 2:
        raise _invalid("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
    try:
        parsed = jws.parse(assertion, MAX_ASSERTION_BYTES)
    except jws.MalformedJws as exc:
        raise _invalid() from exc
    header, claims, signature = parsed.header, parsed.claims, parsed.signature
    if header.get("alg") != "RS256":
        raise _invalid()
    email, kid = claims.get("iss"), header.get("kid")
    if not isinstance(email, str) or not isinstance(kid, str) or len(kid) > 64:
        raise _invalid()
    if claims.get("sub", email) != email:
        # A `sub` other than the account asks for domain-wide delegation, which no account has
        # here; it was taken as the account itself (issue #23 item 10).
        raise GrantRefused("unauthorized_client", UNAUTHORIZED_SUBJECT)
    with db.read() as s:
        account = find_by_email(s, email)
        key = s.get(ServiceAccountKey, kid)
        # a project pending deletion takes its accounts out of service (issue #20)
        in_service = account is not None and find_project(s, account.project_id, include_deleted=False) is not None
    if account is None or account.deleted or not in_service:
        raise GrantRefused("invalid_grant", "Invalid grant: account not found")
    if key is None or key.deleted or key.sa_unique_id != account.unique_id:
        raise _invalid()
    if not in_validity(key, datetime.now(UTC), SKEW):
        raise _invalid()  # an uploaded certificate outside its validity window
    if account.disabled or key.disabled:
        raise GrantRefused("invalid_grant", "Invalid grant: account not found" if account.disabled
                           else "Invalid JWT Signature.")
    public = x509.load_pem_x509_certificate(key.public_key_pem.encode()).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    try:
        public.verify(signature, parsed.signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise _invalid() from exc
    if not audiences(claims.get("aud")):
        raise _invalid("Invalid JWT: Failed audience check.")
    now = time.time()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int | float) or not isinstance(exp, int | float) or exp - iat > MAX_LIFETIME \
            or iat > now + SKEW or exp < now - SKEW:
        raise _invalid("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                       "Check your iat and exp values in the JWT claim.")
    return account, claims


def redeem(services: Services, assertion: str, token_url: str) -> Granted:
    account, claims = verify_key_jwt(services.db, assertion, lambda aud: aud in (GOOGLE_TOKEN_AUDIENCE, token_url))
    target_audience = claims.get("target_audience")
    if isinstance(target_audience, str) and target_audience:
        return Granted(None, id_token_for(services.keys, account, target_audience, include_email=True), 3600)
    scope = claims.get("scope")
    if not isinstance(scope, str) or not scope.strip():
        raise GrantRefused("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
    token = services.tokens.mint(service_account_principal(account), scope.split(), MAX_LIFETIME)
    return Granted(token.token, None, token.expires_in)


