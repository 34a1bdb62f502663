"""Console sign-in: one-time codes that become a session, and the session's cookies.

A principal holding a Keyless access token asks for a sign-in link (`keyless console` does, with the
owner's token); the server mints a fresh access token for that principal and keeps it under the
SHA-256 of a random code for a few minutes. Redeeming the code deletes the row in the same
transaction (single use, also across workers and on PostgreSQL) and the token becomes the session
cookie. The cookie holds only an access token, verified on every request like a bearer token, so a
session lasts as long as its token and is exactly as strong.

CSRF: the double-submit cookie of OWASP's cheat sheet, bound to the session: the token a form or
the console's script sends must equal the `keyless_csrf` cookie, and once signed in it must be the
session's own (a hash of the session token), so a token planted before sign-in is worthless after.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select

from keyless.errors import PermissionDenied
from keyless.store.db import Database
from keyless.store.models import Setting
from keyless.tokens.access import CLOUD_PLATFORM, AccessToken, AccessTokens

SESSION_COOKIE = "keyless_console"
CSRF_COOKIE = "keyless_csrf"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
CODE_LIFETIME = 300  # seconds a sign-in link stays redeemable
SESSION_LIFETIME = 3600  # the session token's lifetime (an access token's default)
KEY_PREFIX = "console-signin/"
CSRF_FAILED = "The request was rejected: missing or wrong CSRF token. Reload the page and try again."


@dataclass(frozen=True)
class SignInLink:
    code: str
    expires_at: int


def _key(code: str) -> str:
    return KEY_PREFIX + hashlib.sha256(code.encode()).hexdigest()


def create_link(db: Database, tokens: AccessTokens, caller: AccessToken, now: int | None = None) -> SignInLink:
    """A one-time code for a session as `caller`'s principal (a token of its own, not the caller's)."""
    now = int(time.time()) if now is None else now
    session = tokens.mint(caller.principal, [CLOUD_PLATFORM], SESSION_LIFETIME)
    code = secrets.token_urlsafe(32)
    with db.write() as s:
        for row in s.scalars(select(Setting).where(Setting.key.like(KEY_PREFIX + "%"))).all():
            if int((row.value or {}).get("expires", 0)) < now:  # expired links are swept as new ones come
                s.delete(row)
        s.add(Setting(key=_key(code), value={"token": session.token, "expires": now + CODE_LIFETIME}))
    return SignInLink(code, now + CODE_LIFETIME)


def redeem(db: Database, code: str, now: int | None = None) -> str:
    """The session token of `code`, deleting it (so a second use fails); PermissionDenied when the
    code is unknown, used or expired."""
    now = int(time.time()) if now is None else now
    if not code or len(code) > 200:
        raise PermissionDenied("This sign-in link is invalid. Run `keyless console` for a new one.")
    with db.write() as s:
        row = s.get(Setting, _key(code), with_for_update=True)
        if row is None:
            raise PermissionDenied("This sign-in link was already used or never existed. "
                                   "Run `keyless console` for a new one.")
        value = dict(row.value or {})
        s.delete(row)
    if int(value.get("expires", 0)) < now:
        raise PermissionDenied("This sign-in link has expired. Run `keyless console` for a new one.")
    return str(value["token"])


def session_csrf(session_token: str) -> str:
    """The CSRF token of a session: not guessable without the (HttpOnly) session token."""
    return hashlib.sha256(b"keyless-console-csrf:" + session_token.encode()).hexdigest()


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_valid(cookie: str | None, sent: str | None, session_token: str | None) -> bool:
    """Double submit: the cookie and the sent token agree; signed in, both are the session's."""
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        return False
    return session_token is None or hmac.compare_digest(sent, session_csrf(session_token))
