"""Service account keys: the "before" state that federation replaces.

`create` generates an RSA-2048 key pair, hands the private half to the caller once, inside
Google's JSON key file (https://cloud.google.com/iam/docs/keys-create-delete), and keeps only
a self-signed X.509 certificate of the public half, as Google does. At most 10 user-managed
keys per account; key creation can be forbidden per project (the
iam.disableServiceAccountKeyCreation constraint).
"""

from __future__ import annotations

import base64
import json
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
from keyless.projects import KEY_CREATION_CONSTRAINT, KEY_UPLOAD_CONSTRAINT, constraint_enforced
from keyless.store.models import Project, ServiceAccount, ServiceAccountKey
from keyless.tokens.keys import own_rsa_key

MAX_USER_MANAGED_KEYS = 10
NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
KEY_TYPES = ("TYPE_GOOGLE_CREDENTIALS_FILE", "TYPE_UNSPECIFIED", "TYPE_PKCS12_FILE")
ALGORITHMS = ("KEY_ALG_RSA_2048", "KEY_ALG_UNSPECIFIED")
KEY_CREATION_DISABLED = "Key creation is not allowed on this service account."


def key_name(sa: ServiceAccount, key_id: str) -> str:
    return f"projects/{sa.project_id}/serviceAccounts/{sa.email}/keys/{key_id}"


def _certificate(private: rsa.RSAPrivateKey, sa: ServiceAccount, key_id: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sa.unique_id)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(private.public_key()).serial_number(int(key_id[:30], 16))
            .not_valid_before(datetime.now(UTC) - timedelta(minutes=1)).not_valid_after(NEVER)
            .sign(private, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def create(s: Session, sa: ServiceAccount, body: dict[str, Any], token_base_url: str) -> tuple[ServiceAccountKey, str]:
    """Create a key; return the row and the base64 `privateKeyData` (the key file)."""
    key_type = body.get("privateKeyType", "TYPE_GOOGLE_CREDENTIALS_FILE")
    algorithm = body.get("keyAlgorithm", "KEY_ALG_RSA_2048")
    if key_type not in KEY_TYPES:
        raise InvalidArgument(f"Invalid value at 'private_key_type', \"{key_type}\"")
    if key_type == "TYPE_PKCS12_FILE":
        raise InvalidArgument("Keyless issues JSON key files only (TYPE_GOOGLE_CREDENTIALS_FILE).")
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"Invalid value at 'key_algorithm', \"{algorithm}\"")
    project = s.get(Project, sa.project_id)
    if project is not None and constraint_enforced(project, KEY_CREATION_CONSTRAINT):
        raise FailedPrecondition(KEY_CREATION_DISABLED, details=[{
            "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
            "violations": [{"type": KEY_CREATION_CONSTRAINT,
                            "subject": f"projects/{project.project_number}",
                            "description": KEY_CREATION_DISABLED}],
        }])
    live = s.scalars(select(ServiceAccountKey).where(ServiceAccountKey.sa_unique_id == sa.unique_id,
                                                     ServiceAccountKey.key_type == "USER_MANAGED",
                                                     ServiceAccountKey.deleted.is_(False))).all()
    if len(live) >= MAX_USER_MANAGED_KEYS:
        raise FailedPrecondition("Precondition check failed.")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    now = datetime.now(UTC)
    # every column the answer shows is set here: the model's defaults apply only at the INSERT, after
    # key_json rendered the new key (it answered keyAlgorithm/keyOrigin/keyType null; issue #19)
    row = ServiceAccountKey(key_id=key_id, sa_unique_id=sa.unique_id,
                            public_key_pem=_certificate(private, sa, key_id).decode(), key_algorithm="KEY_ALG_RSA_2048",
                            key_origin="GOOGLE_PROVIDED", key_type="USER_MANAGED",
                            valid_after=now, valid_before=NEVER, disabled=False, deleted=False)
    s.add(row)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    base = token_base_url.rstrip("/")
    key_file = {
        "type": "service_account",
        "project_id": sa.project_id,
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": sa.email,
        "client_id": sa.unique_id,
        "auth_uri": f"{base}/oauth2/auth",
        "token_uri": f"{base}/oauth2/token",
        "auth_provider_x509_cert_url": f"{base}/oauth2/v1/certs",
        "client_x509_cert_url": f"{base}/robot/v1/metadata/x509/{sa.email}",
        "universe_domain": "googleapis.com",
    }
    data = base64.b64encode(json.dumps(key_file, indent=2).encode()).decode()
    return row, data


MAX_UPLOADED_CERTIFICATE_BYTES = 16 * 1024  # a 2048-bit RSA certificate in PEM is about 1.1 KB
KEY_UPLOAD_DISABLED = "Key upload is not allowed on this service account."


def upload(s: Session, sa: ServiceAccount, public_key_data: Any) -> ServiceAccountKey:
    """Associate a public key the user holds the private half of (keys.upload,
    https://cloud.google.com/iam/docs/keys-upload): an RSA-2048 key in an X.509 v3 certificate,
    PEM, base64-encoded on the wire. The key is then valid from the certificate's notBefore to
    its notAfter, for JWT-bearer grants and signature checks like a key Keyless created."""
    if not isinstance(public_key_data, str) or not public_key_data:
        raise InvalidArgument("publicKeyData is required: a PEM X.509 certificate, base64-encoded.")
    if len(public_key_data) > MAX_UPLOADED_CERTIFICATE_BYTES * 4 // 3 + 4:
        raise InvalidArgument("publicKeyData is too large for an X.509 certificate of an RSA-2048 key.")
    try:
        pem = base64.b64decode(public_key_data, validate=True)
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise InvalidArgument("The public key data is not a valid PEM X.509 certificate.") from exc
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size != 2048:
        raise InvalidArgument("The uploaded certificate must hold an RSA public key of 2048 bits.")
    if cert.version != x509.Version.v3:
        raise InvalidArgument("The uploaded certificate must be an X.509 v3 certificate.")
    now = datetime.now(UTC)
    if cert.not_valid_after_utc <= now:
        raise InvalidArgument("The uploaded certificate has expired.")
    project = s.get(Project, sa.project_id)
    if project is not None and constraint_enforced(project, KEY_UPLOAD_CONSTRAINT):
        raise FailedPrecondition(KEY_UPLOAD_DISABLED, details=[{
            "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
            "violations": [{"type": KEY_UPLOAD_CONSTRAINT, "subject": f"projects/{project.project_number}",
                            "description": KEY_UPLOAD_DISABLED}],
        }])
    live = s.scalars(select(ServiceAccountKey).where(ServiceAccountKey.sa_unique_id == sa.unique_id,
                                                     ServiceAccountKey.key_type == "USER_MANAGED",
                                                     ServiceAccountKey.deleted.is_(False))).all()
    if len(live) >= MAX_USER_MANAGED_KEYS:
        raise FailedPrecondition("Precondition check failed.")
    canonical = cert.public_bytes(serialization.Encoding.PEM).decode()
    if any(k.public_key_pem == canonical for k in live):
        raise AlreadyExists("The public key is already associated with this service account.")
    row = ServiceAccountKey(key_id=secrets.token_hex(20), sa_unique_id=sa.unique_id, public_key_pem=canonical,
                            key_algorithm="KEY_ALG_RSA_2048", key_origin="USER_PROVIDED", key_type="USER_MANAGED",
                            valid_after=cert.not_valid_before_utc, valid_before=cert.not_valid_after_utc,
                            disabled=False, deleted=False)
    s.add(row)
    return row


def in_validity(row: ServiceAccountKey, now: datetime, skew: float = 0) -> bool:
    """Whether the key may sign at `now`: an uploaded certificate's window (a created key's never ends)."""
    margin = timedelta(seconds=skew)
    return _aware(row.valid_after) <= now + margin and now - margin < _aware(row.valid_before)  # NEVER + x overflows


SYSTEM_KEY_ROTATION = timedelta(days=14)


def current_system_key(s: Session, sa: ServiceAccount) -> tuple[ServiceAccountKey, rsa.RSAPrivateKey] | None:
    """The account's current Google-managed key, if it has one young enough to sign with (a read)."""
    now = datetime.now(UTC)
    rows = s.scalars(select(ServiceAccountKey).where(ServiceAccountKey.sa_unique_id == sa.unique_id,
                                                     ServiceAccountKey.key_type == "SYSTEM_MANAGED",
                                                     ServiceAccountKey.deleted.is_(False))).all()
    live = [r for r in rows if _aware(r.valid_after) + SYSTEM_KEY_ROTATION > now and r.private_key_pem]
    if not live:
        return None
    row = max(live, key=lambda r: _aware(r.valid_after))
    return row, own_rsa_key(row.private_key_pem or b"")


def system_key(s: Session, sa: ServiceAccount) -> tuple[ServiceAccountKey, rsa.RSAPrivateKey]:
    """The account's current Google-managed key, created or rotated when due: call it in a write
    transaction, and only after `current_system_key` found none (signing is otherwise a read).

    Google signs signBlob/signJwt with keys it manages and never hands out; they are listed
    with keyType SYSTEM_MANAGED and their certificates are public at the x509 endpoint.
    """
    current = current_system_key(s, sa)
    if current is not None:  # another writer made it meanwhile
        return current
    now = datetime.now(UTC)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    row = ServiceAccountKey(key_id=key_id, sa_unique_id=sa.unique_id, key_type="SYSTEM_MANAGED",
                            key_algorithm="KEY_ALG_RSA_2048", key_origin="GOOGLE_PROVIDED",
                            public_key_pem=_certificate(private, sa, key_id).decode(), valid_after=now,
                            valid_before=now + SYSTEM_KEY_ROTATION * 2, disabled=False, deleted=False,
                            private_key_pem=private.private_bytes(serialization.Encoding.PEM,
                                                                  serialization.PrivateFormat.PKCS8,
                                                                  serialization.NoEncryption()))
    s.add(row)
    return row, private


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def certificates(s: Session, sa: ServiceAccount) -> dict[str, str]:
    """{key id: PEM certificate} of the account's live keys (Google's x509 metadata endpoint)."""
    rows = s.scalars(select(ServiceAccountKey).where(ServiceAccountKey.sa_unique_id == sa.unique_id,
                                                     ServiceAccountKey.deleted.is_(False),
                                                     ServiceAccountKey.disabled.is_(False))).all()
    return {r.key_id: r.public_key_pem for r in rows}


def get(s: Session, sa: ServiceAccount, key_id: str) -> ServiceAccountKey:
    row = s.get(ServiceAccountKey, key_id)
    if row is None or row.sa_unique_id != sa.unique_id or row.deleted:
        raise NotFound(f"Service account key {key_id} does not exist.")
    return row


def list_keys(s: Session, sa: ServiceAccount) -> list[ServiceAccountKey]:
    q = select(ServiceAccountKey).where(ServiceAccountKey.sa_unique_id == sa.unique_id,
                                        ServiceAccountKey.deleted.is_(False))
    return sorted(s.scalars(q).all(), key=lambda k: k.valid_after)


def user_managed(row: ServiceAccountKey) -> ServiceAccountKey:
    """Google-managed keys cannot be deleted, disabled or enabled by users."""
    if row.key_type != "USER_MANAGED":
        raise FailedPrecondition(f"Key {row.key_id} is managed by Google and cannot be changed.")
    return row


def key_json(sa: ServiceAccount, row: ServiceAccountKey, *, public_key_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": key_name(sa, row.key_id),
        # whole seconds, as Google renders them (an uploaded certificate's times have no fraction)
        "validAfterTime": rfc3339(row.valid_after).split(".")[0] + "Z",
        "validBeforeTime": rfc3339(row.valid_before).split(".")[0] + "Z",
        "keyAlgorithm": row.key_algorithm,
        "keyOrigin": row.key_origin,
        "keyType": row.key_type,
    }
    if row.disabled:
        body["disabled"] = True
    if public_key_type in ("TYPE_X509_PEM_FILE",):
        body["publicKeyData"] = base64.b64encode(row.public_key_pem.encode()).decode()
    return body
