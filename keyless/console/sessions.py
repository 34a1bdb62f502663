"""Console sessions: an opaque random id in the cookie, its SHA-256 in the store (issue #23 item 9).

A session is made from an access token the visitor proved (a pasted token, or a sign-in link made
with one) and is bound to that token's principal, scopes and expiry: it never outlives the token
(nor SESSION_LIFETIME) and acts with exactly its scopes. The id is not an access token, so the cookie
is no bearer credential on any API. Rows live in the database, so every worker and every server
sharing a PostgreSQL store agree on them; sign-out deletes the row, and a session of a disabled or
deleted service account is refused (and deleted) on its next use, as its tokens are.

Cookies are scoped by host, not port (RFC 6265 §8.5): every server on the same host receives them.
So each row records the server that minted it (its base URL) and is refused elsewhere, and the
cookie's name carries a hash of that URL so servers on one host never overwrite each other's. Over
TLS the name has the `__Host-` prefix (RFC 6265bis §4.1.3.2: Secure, Path=/, no Domain), which a
plain-HTTP page cannot set.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete

from keyless.errors import Unauthenticated
from keyless.iam.principal import Principal
from keyless.store.db import Database
from keyless.store.models import ConsoleSession
from keyless.tokens.access import AccessToken

SESSION_LIFETIME = 3600  # at most, whatever the token's own lifetime
MAX_ID_LENGTH = 64  # a cookie value longer than any id we make is refused before hashing
SESSION_COOKIE = "keyless_console"
CSRF_COOKIE = "keyless_csrf"
HOST_PREFIX = "__Host-"


@dataclass(frozen=True)
class Session:
    """A live session: its id (the cookie's value) and the token-like grant it acts with."""

    id: str
    token: AccessToken  # `.token` is empty: a session holds no bearer credential


def cookie_name(base: str, server: str, secure: bool) -> str:
    """`base` made specific to `server` (a hash of its URL), with `__Host-` over TLS."""
    suffix = hashlib.sha256(server.encode()).hexdigest()[:12]
    return f"{HOST_PREFIX if secure else ''}{base}_{suffix}"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def principal_json(principal: Principal) -> dict[str, Any]:
    return {"member": principal.member, "keys": sorted(principal.member_keys), "email": principal.email,
            "subject": principal.subject, "sa": principal.service_account_id,
            "delegation": list(principal.delegation)}


def principal_of(value: dict[str, Any]) -> Principal:
    return Principal(member=value["member"], member_keys=frozenset(value["keys"]), email=value.get("email", ""),
                     subject=value.get("subject", ""), service_account_id=value.get("sa"),
                     delegation=tuple(value.get("delegation", ())))


def create(db: Database, server: str, grant: AccessToken, now: int | None = None) -> Session:
    """A new session of `grant`'s principal and scopes for `server`, ending when `grant` does (or
    SESSION_LIFETIME from now, if sooner). Expired rows are swept as new ones come."""
    now = int(time.time()) if now is None else now
    ends = min(grant.expires_at, now + SESSION_LIFETIME) if grant.expires_at else now + SESSION_LIFETIME
    if ends <= now:
        raise Unauthenticated("The credential has expired: a session cannot outlive it.")
    session_id = secrets.token_urlsafe(32)
    with db.append() as s:  # inserts and deletes only: no revision bump, no cache depends on sessions
        s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
        s.add(ConsoleSession(id_hash=_hash(session_id), server=server, principal=principal_json(grant.principal),
                             scopes=list(grant.scopes), service_account_id=grant.principal.service_account_id,
                             issued_at=now, expires_at=ends))
    return Session(session_id, AccessToken(grant.principal, tuple(grant.scopes), now, ends, ""))


def lookup(db: Database, server: str, session_id: str | None, inactive: Callable[[], frozenset[str]],
           now: int | None = None) -> Session | None:
    """The live session of `session_id` minted by `server`, or None (unknown, expired, signed out,
    another server's, or its service account disabled or deleted: that row is deleted too)."""
    if not session_id or len(session_id) > MAX_ID_LENGTH:
        return None
    now = int(time.time()) if now is None else now
    with db.read_each() as s:
        row = s.get(ConsoleSession, _hash(session_id))
        if row is None:
            return None
        found = (row.server, row.principal, list(row.scopes), row.issued_at, row.expires_at)
    minted_by, principal_value, scopes, issued_at, expires_at = found
    if minted_by != server or expires_at <= now:
        return None
    principal = principal_of(principal_value)
    if principal.service_account_id is not None and principal.service_account_id in inactive():
        revoke(db, session_id)
        return None
    return Session(session_id, AccessToken(principal, tuple(scopes), int(issued_at), int(expires_at), ""))


def revoke(db: Database, session_id: str | None) -> None:
    """Sign-out: the row is gone, so the cookie (wherever a copy of it went) is worthless."""
    if not session_id or len(session_id) > MAX_ID_LENGTH:
        return
    with db.append() as s:
        s.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _hash(session_id)))
