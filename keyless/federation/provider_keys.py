"""Workload identity pool providers' keys (providers.keys.*,
https://cloud.google.com/iam/docs/reference/rest/v1/projects.locations.workloadIdentityPools.providers.keys):
a key pair Google generates for a provider, whose public half (an X.509 certificate) the identity
provider uses to encrypt what it sends; the private half never leaves the server.

Keyless generates the RSA key of the requested keySpec and a self-signed certificate valid for a
year (Google does not document its validity); deleted keys are restorable for 30 days, like pools
and providers. Keyless has no SAML providers, the keys' consumers on Google: the keys are kept and
answered as Google's, and nothing decrypts with them yet.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from keyless.federation.pools import ID, soft_delete, undelete
from keyless.store.models import WorkloadIdentityPoolProvider, WorkloadIdentityPoolProviderKey

KEY_SIZES = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}
USES = ("ENCRYPTION",)
VALIDITY = timedelta(days=365)
MAX_KEYS = 10  # live and soft-deleted together, per provider (Google purges beyond its own limit)


def _aware(dt: datetime | None) -> datetime | None:
    return dt if dt is None or dt.tzinfo else dt.replace(tzinfo=UTC)


def _purged(row: WorkloadIdentityPoolProviderKey, now: datetime) -> bool:
    expire = _aware(row.expire_time)
    return row.state == "DELETED" and expire is not None and expire <= now


def create_key(s: Session, provider: WorkloadIdentityPoolProvider, key_id: Any, body: dict[str, Any]) -> \
        WorkloadIdentityPoolProviderKey:
    if not isinstance(key_id, str) or not ID.match(key_id) or key_id.startswith("gcp-"):
        raise InvalidArgument(f"Invalid key id \"{str(key_id)[:64]}\": it must be 4 to 32 lowercase letters, "
                              "digits or hyphens and must not start with \"gcp-\".")
    if provider.state != "ACTIVE":
        raise FailedPrecondition("The provider is deleted: undelete it before adding keys.")
    use = body.get("use")
    if use not in USES:
        raise InvalidArgument(f"Invalid value at 'workload_identity_pool_provider_key.use': {str(use)[:50]!r}: "
                              "the purpose of the key is required (ENCRYPTION).")
    key_data = body.get("keyData")
    if not isinstance(key_data, dict):
        raise InvalidArgument("keyData.keySpec is required (RSA_2048, RSA_3072 or RSA_4096).")
    spec = key_data.get("keySpec")
    if spec not in KEY_SIZES:
        raise InvalidArgument(f"Invalid value at 'workload_identity_pool_provider_key.key_data.key_spec': "
                              f"{str(spec)[:50]!r}: expected RSA_2048, RSA_3072 or RSA_4096.")
    name = f"{provider.name}/keys/{key_id}"
    if s.get(WorkloadIdentityPoolProviderKey, name) is not None:
        raise AlreadyExists(f"Key {name} already exists.")
    now = datetime.now(UTC)
    kept = list_keys(s, provider, show_deleted=True)
    if len(kept) >= MAX_KEYS:
        raise FailedPrecondition(f"A provider has at most {MAX_KEYS} keys, deleted ones included.")
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZES[spec])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[-64:])])
    not_before = now.replace(microsecond=0) - timedelta(minutes=1)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(private.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(not_before).not_valid_after(not_before + VALIDITY).sign(private, hashes.SHA256()))
    row = WorkloadIdentityPoolProviderKey(
        name=name, provider_name=provider.name, key_spec=spec, use=use,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        private_key_pem=private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()),
        not_before=not_before, not_after=not_before + VALIDITY, state="ACTIVE", expire_time=None)
    s.add(row)
    return row


def get_key(s: Session, name: str) -> WorkloadIdentityPoolProviderKey:
    row = s.get(WorkloadIdentityPoolProviderKey, name)
    if row is None or _purged(row, datetime.now(UTC)):
        raise NotFound(f"Key {name} not found.")
    return row


def list_keys(s: Session, provider: WorkloadIdentityPoolProvider, *, show_deleted: bool) -> \
        list[WorkloadIdentityPoolProviderKey]:
    now = datetime.now(UTC)
    rows = s.scalars(select(WorkloadIdentityPoolProviderKey)
                     .where(WorkloadIdentityPoolProviderKey.provider_name == provider.name)
                     .order_by(WorkloadIdentityPoolProviderKey.name)).all()
    return [r for r in rows if not _purged(r, now) and (show_deleted or r.state == "ACTIVE")]


def delete_key(row: WorkloadIdentityPoolProviderKey) -> WorkloadIdentityPoolProviderKey:
    return soft_delete(row, "key")


def undelete_key(row: WorkloadIdentityPoolProviderKey) -> WorkloadIdentityPoolProviderKey:
    return undelete(row, "key")


def key_json(row: WorkloadIdentityPoolProviderKey) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": row.name,
        "keyData": {
            "format": "RSA_X509_PEM",
            "notBeforeTime": rfc3339(row.not_before),
            "notAfterTime": rfc3339(row.not_after),
            "key": row.certificate_pem,  # RSA_X509_PEM: the certificate, base64 inside its PEM label
            "keySpec": row.key_spec,
        },
        "state": row.state,
        "use": row.use,
    }
    if row.expire_time is not None:
        body["expireTime"] = rfc3339(row.expire_time)
    return body
