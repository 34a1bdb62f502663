"""Console sign-in: one-time codes that become a session (keyless.console.sessions), and CSRF.

A principal holding a Keyless access token asks for a sign-in link (`keyless console` does, with the
owner's token); the server keeps the token's principal, scopes and expiry under the SHA-256 of a
random code for a few minutes (never past the token's own expiry). The link's page names that
principal before anyone continues. Redeeming the code deletes the row in the same transaction
(single use, also across workers and on PostgreSQL) and yields the grant a session is made from: a
link can neither widen the token's scopes nor outlive it (issue #23 item 9).

CSRF: the double-submit cookie of OWASP's cheat sheet, bound to the session: the token a form or
the console's script sends must equal the CSRF cookie, and once signed in it must be the session's
own (a hash of the session id), so a token planted before sign-in is worthless after.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select

from keyless.console.sessions import principal_json, principal_of
from keyless.errors import PermissionDenied
from keyless.store.db import Database
from keyless.store.models import Setting
from keyless.tokens.access import AccessToken

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
CODE_LIFETIME = 300  # seconds a sign-in link stays redeemable
KEY_PREFIX = "console-signin/"
ALREADY_USED = "This sign-in link was already used or never existed. Run `keyless console` for a new one."
CSRF_FAILED = "The request was rejected: missing or wrong CSRF token. Reload the page and try again."


@dataclass(frozen=True)
class SignInLink:
    code: str
    expires_at: int


def _key(code: str) -> str:
    return KEY_PREFIX + hashlib.sha256(code.encode()).hexdigest()


def create_link(db: Database, caller: AccessToken, now: int | None = None) -> SignInLink:
    """A one-time code for a session as `caller`'s principal, with `caller`'s scopes, ending when
    `caller` does; the code itself lapses after CODE_LIFETIME or with the token, whichever is first."""
    now = int(time.time()) if now is None else now
    expires = min(now + CODE_LIFETIME, caller.expires_at) if caller.expires_at else now + CODE_LIFETIME
    code = secrets.token_urlsafe(32)
    with db.write() as s:
        for row in s.scalars(select(Setting).where(Setting.key.like(KEY_PREFIX + "%"))).all():
            if int((row.value or {}).get("expires", 0)) < now:  # expired links are swept as new ones come
                s.delete(row)
        s.add(Setting(key=_key(code), value={"principal": principal_json(caller.principal),
                                             "scopes": list(caller.scopes), "issued": caller.issued_at,
                                             "ends": caller.expires_at, "expires": expires}))
    return SignInLink(code, expires)


def _valid_code(code: str) -> bool:
    return bool(code) and len(code) <= 200


def signs_in_as(db: Database, code: str, now: int | None = None) -> str | None:
    """The member a live link would sign in as (shown on its page before anyone continues)."""
    now = int(time.time()) if now is None else now
    if not _valid_code(code):
        return None
    with db.read() as s:
        row = s.get(Setting, _key(code))
        value = dict(row.value or {}) if row is not None else {}
    if not value or int(value.get("expires", 0)) < now or "principal" not in value:
        return None
    return str(value["principal"]["member"])


def redeem(db: Database, code: str, now: int | None = None) -> AccessToken:
    """The grant of `code` (principal, scopes, expiry of the token that made the link; no bearer
    string), deleting it so a second use fails; PermissionDenied when unknown, used or expired."""
    now = int(time.time()) if now is None else now
    if not _valid_code(code):
        raise PermissionDenied("This sign-in link is invalid. Run `keyless console` for a new one.")
    with db.write() as s:
        row = s.get(Setting, _key(code), with_for_update=True)
        if row is None:
            raise PermissionDenied(ALREADY_USED)
        value = dict(row.value or {})
        s.delete(row)
    if int(value.get("expires", 0)) < now or "principal" not in value:
        raise PermissionDenied("This sign-in link has expired. Run `keyless console` for a new one.")
    return AccessToken(principal_of(value["principal"]), tuple(value["scopes"]), int(value["issued"]),
                       int(value["ends"]), "")


def session_csrf(session_id: str) -> str:
    """The CSRF token of a session: not guessable without the (HttpOnly) session id."""
    return hashlib.sha256(b"keyless-console-csrf:" + session_id.encode()).hexdigest()


def new_csrf() -> str:
    return secrets.token_urlsafe(24)


def csrf_valid(cookie: str | None, sent: str | None, session_id: str | None) -> bool:
    """Double submit: the cookie and the sent token agree; signed in, both are the session's."""
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        return False
    return session_id is None or hmac.compare_digest(sent, session_csrf(session_id))
