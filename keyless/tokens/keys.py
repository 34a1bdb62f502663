"""Signing keys: created, rotated and retired on a schedule, persisted in the store.

Two kinds, chosen by cost (see ../shared/research/perf-floor.md): access tokens are opaque to
clients and only Keyless verifies them, so they carry an HMAC-SHA256 tag (~3 µs) instead of an
RS256 signature (~680 µs); ID tokens are RS256 JWTs as Google's are, verifiable by anyone
through the published JWKS (RFC 7517). A key signs while it is the newest of its purpose and
younger than its rotation period; it keeps verifying until `retire_at`, which outlives every
token it signed.
"""

from __future__ import annotations

import base64
import functools
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import delete, select

from keyless.store.db import Database
from keyless.store.models import SigningKey

ACCESS = "access"
ID = "id"
IDP = "idp"  # the built-in test identity providers' keys (keyless.tokens.idp), never Keyless's own

# Longest token each purpose may sign (generateAccessToken allows up to 12 h with the
# iam.allowServiceAccountCredentialLifetimeExtension constraint; the owner token lives 24 h).
MAX_TOKEN_LIFETIME = {ACCESS: timedelta(hours=25), ID: timedelta(hours=1), IDP: timedelta(hours=24)}
MISS_RELOAD_INTERVAL = 1.0  # seconds between store look-ups for unknown key ids
ROTATION = {ACCESS: timedelta(hours=24), ID: timedelta(days=7), IDP: timedelta(days=7)}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Key:
    kid: str
    purpose: str
    algorithm: str
    created_at: datetime
    retire_at: datetime
    secret: bytes  # HMAC key (access) or PEM private key (id)
    private_key: rsa.RSAPrivateKey | None
    public_jwk: dict[str, Any] | None


@functools.lru_cache(maxsize=256)
def own_rsa_key(pem: bytes) -> rsa.RSAPrivateKey:
    """An RSA private key Keyless generated and stored itself (signing keys, cluster issuers,
    system-managed service account keys), parsed once per process. cryptography's RSA key
    validation is skipped: it takes ~41 ms per 2048-bit key against 13 µs without
    (research/perf-floor.md), and it guards against malformed keys from elsewhere, which
    these are not (they are as trusted as the store that holds them)."""
    key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def _rsa_public_jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64url(n), "e": b64url(e)}


class KeyRing:
    """All live keys of this server, cached in memory and refreshed when the store changes."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._keys: dict[str, Key] = {}
        self._newest: dict[str, tuple[Key, float]] = {}
        """Per purpose, the newest key and when (epoch seconds) it is due to be replaced."""
        self._loaded_revision = -1
        self._miss_reload_at = -MISS_RELOAD_INTERVAL

    def _refresh(self) -> None:
        revision = self._db.revision()
        if revision != self._loaded_revision:
            with self._lock:
                if revision != self._loaded_revision:
                    # Parsing PEM keys is slow (~40 ms for RSA): re-use what we parsed.
                    old = self._keys
                    self._load_reusing(old)
                    self._loaded_revision = revision

    def _load_reusing(self, old: dict[str, Key]) -> None:
        with self._db.read_each() as s:
            rows = s.scalars(select(SigningKey)).all()
        keys: dict[str, Key] = {}
        for row in rows:
            if row.kid in old:
                keys[row.kid] = old[row.kid]
                continue
            private = own_rsa_key(row.secret) if row.algorithm == "RS256" else None
            keys[row.kid] = Key(row.kid, row.purpose, row.algorithm, _aware(row.created_at),
                                _aware(row.retire_at), row.secret, private, row.public_jwk)
        newest: dict[str, tuple[Key, float]] = {}
        for key in keys.values():
            if key.purpose not in ROTATION:
                continue
            if key.purpose not in newest or key.created_at > newest[key.purpose][0].created_at:
                newest[key.purpose] = (key, (key.created_at + ROTATION[key.purpose]).timestamp())
        self._newest, self._keys = newest, keys

    def get(self, kid: str) -> Key | None:
        """The key with this id, if it is still live.

        Rotations elsewhere reach us through the revision refresh; a miss looks in the store
        again at most once a second, so tokens with made-up kids cannot turn into a query each."""
        self._refresh()
        key = self._keys.get(kid)
        now = time.monotonic()
        if key is None and len(kid) <= 64 and now - self._miss_reload_at >= MISS_RELOAD_INTERVAL:
            with self._lock:
                if now - self._miss_reload_at >= MISS_RELOAD_INTERVAL:
                    self._miss_reload_at = now
                    self._load_reusing(self._keys)
            key = self._keys.get(kid)
        if key is not None and key.retire_at <= datetime.now(UTC):
            return None
        return key

    def signing_key(self, purpose: str) -> Key:
        """The newest key of `purpose`, rotating (creating a new one) when it is due."""
        self._refresh()
        current = self._newest.get(purpose)  # on every token minted: no scan, no datetime
        if current is None or current[1] <= time.time():
            self.rotate(purpose)
            current = self._newest.get(purpose)
            assert current is not None
        return current[0]

    def rotate(self, purpose: str) -> str:
        """Create a new signing key for `purpose` and drop keys whose tokens have all expired."""
        now = datetime.now(UTC)
        kid = secrets.token_hex(20)
        if purpose == ACCESS:
            secret, algorithm, jwk = secrets.token_bytes(32), "HS256", None
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            secret = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
            algorithm, jwk = "RS256", _rsa_public_jwk(kid, private)
        retire_at = now + ROTATION[purpose] + MAX_TOKEN_LIFETIME[purpose]
        with self._db.write() as s:
            s.execute(delete(SigningKey).where(SigningKey.retire_at <= now))
            s.add(SigningKey(kid=kid, purpose=purpose, algorithm=algorithm, secret=secret,
                             public_jwk=jwk, created_at=now, retire_at=retire_at))
        with self._lock:
            self._load_reusing(self._keys)
            self._loaded_revision = self._db.revision(max_age=0)
        return kid

    def jwks(self, purpose: str = ID) -> dict[str, Any]:
        """The public keys of `purpose` as a JSON Web Key Set (RFC 7517 section 5)."""
        self._refresh()
        self.signing_key(purpose)
        now = datetime.now(UTC)
        keys = [k.public_jwk for k in self._keys.values()
                if k.purpose == purpose and k.public_jwk and k.retire_at > now]
        return {"keys": keys}

    def sign_rs256(self, purpose: str, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """A compact JWS (RFC 7515) signed RS256 with the current key of `purpose`."""
        import json

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        key = self.signing_key(purpose)
        assert key.private_key is not None
        head = b64url(json.dumps({**header, "alg": "RS256", "kid": key.kid}, separators=(",", ":")).encode())
        body = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = key.private_key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{b64url(signature)}"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
