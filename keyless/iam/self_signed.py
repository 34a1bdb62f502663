"""Self-signed JWTs as credentials on API calls (https://google.aip.dev/auth/4111): Google's
clients holding a service account key skip the token endpoint and send a JWT signed with the
key, `iss` = `sub` = the account, `kid` = the key id, and either `aud` =
`https://SERVICE.googleapis.com/` (or the service's host in another universe) or a `scope` claim.
Keyless verifies it exactly as the JWT-bearer grant does (keyless.iam.key_grant), against the
certificate it kept of the key; disabled or deleted keys and accounts stop working at once,
because verified tokens are remembered only until the store's revision moves.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from keyless.errors import Unauthenticated
from keyless.iam.key_grant import GrantRefused, verify_key_jwt
from keyless.iam.principal import service_account_principal
from keyless.store.db import Database, RevisionCache
from keyless.tokens.access import CLOUD_PLATFORM, INVALID_CREDENTIALS, AccessToken

CACHE_LIMIT = 10_000  # verified JWTs remembered per store revision (clients reuse one for an hour)


class SelfSignedJwts:
    """Verifies self-signed JWTs against one store, remembering the ones already verified."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._verified: RevisionCache[dict[tuple[str, str], AccessToken]] = RevisionCache(db, dict)

    def authenticate(self, jwt: str, service: str = "") -> AccessToken:
        """The access the JWT grants on `service` (e.g. "storage.googleapis.com"; "" = any API)."""
        cache = self._verified.get()
        known = cache.get((jwt, service))
        if known is not None and known.expires_in > 0:
            return known
        try:
            account, claims = verify_key_jwt(self._db, jwt, lambda aud: _audience_ok(aud, service))
        except GrantRefused as exc:
            raise Unauthenticated(INVALID_CREDENTIALS) from exc
        scope = claims.get("scope")
        if claims.get("aud") is None and not (isinstance(scope, str) and scope.strip()):
            raise Unauthenticated(INVALID_CREDENTIALS)  # neither an audience nor scopes
        scopes = scope.split() if isinstance(scope, str) and scope.strip() else [CLOUD_PLATFORM]
        token = AccessToken(service_account_principal(account), tuple(scopes), int(claims["iat"]),
                            int(claims["exp"]), jwt)
        if token.expires_in <= 0:
            raise Unauthenticated(INVALID_CREDENTIALS)
        if len(cache) < CACHE_LIMIT:
            cache[(jwt, service)] = token
        return token


def _audience_ok(aud: object, service: str) -> bool:
    if aud is None:
        return True  # AIP-4111's scoped form: `scope` instead of `aud` (checked by the caller)
    if not isinstance(aud, str):
        return False
    parts = urlsplit(aud)
    if parts.scheme != "https" or not parts.hostname:
        return False
    if not service:
        return True
    return parts.hostname.split(".", 1)[0] == service.split(".", 1)[0]
