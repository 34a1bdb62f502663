"""Secret versions: add, resolve (the `latest` alias), list, access, enable, disable, destroy
(https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets.versions).

Version numbers increase per secret and are never reused. A payload is at most 64 KiB; a
`data_crc32c` sent with it is verified before anything is stored. Only ENABLED versions can be
accessed; DESTROYED is final and keeps the metadata but not the payload. A secret with
`versionDestroyTtl` delays destroy (https://cloud.google.com/secret-manager/docs/delay-secret-version-destroy):
the version is DISABLED with a `scheduledDestroyTime`, reads see it DESTROYED from then on, the
next write to it drops the payload, and enabling or disabling it cancels the destruction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.checksums import crc32c
from keyless.clock import parse_duration, rfc3339
from keyless.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from keyless.secretmanager.filters import ListFilter
from keyless.secretmanager.names import secret_name, version_name
from keyless.secretmanager.secrets import etag_matches, new_etag
from keyless.store.models import SmSecret, SmSecretVersion

MAX_PAYLOAD_BYTES = 64 * 1024
ENABLED, DISABLED, DESTROYED = "ENABLED", "DISABLED", "DESTROYED"


def add_version(s: Session, secret: SmSecret, data: bytes, data_crc32c: int | None) -> SmSecretVersion:
    """Store a new version (`secret` must have been read for update)."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidArgument(f"Secret payload data length must be at most [{MAX_PAYLOAD_BYTES}] bytes.")
    checksum = crc32c(data)
    if data_crc32c is not None and data_crc32c != checksum:
        raise InvalidArgument("Checksum mismatch: the data_crc32c provided does not match the CRC32C checksum "
                              "of the payload data received by the server.")
    secret.last_version = (secret.last_version or 0) + 1
    row = SmSecretVersion(secret_uid=secret.uid, version=secret.last_version, state=ENABLED,
                          create_time=datetime.now(UTC), payload=data, crc32c=checksum,
                          client_checksum=data_crc32c is not None, etag=new_etag())
    s.add(row)
    s.flush()
    return row


def resolve(s: Session, secret: SmSecret, version_id: str) -> SmSecretVersion:
    """A version by number or `latest` (the most recently created, whatever its state)."""
    query = select(SmSecretVersion).where(SmSecretVersion.secret_uid == secret.uid)
    if version_id == "latest":
        row = s.scalars(query.order_by(SmSecretVersion.version.desc()).limit(1)).first()
        if row is None:
            raise NotFound(f"Secret [{secret_name(secret.project_number, secret.secret_id, secret.location)}] "
                           "not found or has no versions.")
        return row
    row = s.scalars(query.where(SmSecretVersion.version == int(version_id))).first()
    if row is None:
        raise NotFound(f"Secret Version "
                       f"[{version_name(secret.project_number, secret.secret_id, version_id, secret.location)}] "
                       "not found.")
    return row


def missing(project_number: str, secret_id: str, version_id: str, location: str = "") -> NotFound:
    """What Google answers when the secret itself does not exist."""
    if version_id == "latest":
        return NotFound(f"Secret [{secret_name(project_number, secret_id, location)}] not found or has no versions.")
    return NotFound(f"Secret Version [{version_name(project_number, secret_id, version_id, location)}] not found.")


def list_versions(s: Session, secret: SmSecret, text_filter: str | None) -> list[SmSecretVersion]:
    rows = list(s.scalars(select(SmSecretVersion).where(SmSecretVersion.secret_uid == secret.uid)
                          .order_by(SmSecretVersion.version.desc())).all())
    if not text_filter:
        return rows
    f = ListFilter(text_filter)
    return [r for r in rows if f.matches({"name": _name(secret, r), "state": state_of(r),
                                          "create_time": rfc3339(r.create_time)})]


def access(secret: SmSecret, row: SmSecretVersion) -> tuple[bytes, int]:
    """The payload and its CRC32C; only an ENABLED version gives them."""
    if state_of(row) != ENABLED or row.payload is None:
        raise FailedPrecondition(f"Secret Version [{_name(secret, row)}] is in {state_of(row)} state.")
    return row.payload, row.crc32c


def _check_etag(secret: SmSecret, row: SmSecretVersion, etag: str | None) -> None:
    if etag and not etag_matches(etag, row.etag):
        raise Aborted("The etag provided in the request does not match the current etag of the secret version.")


def enable(secret: SmSecret, row: SmSecretVersion, etag: str | None = None) -> SmSecretVersion:
    return _set_state(secret, row, ENABLED, etag)


def disable(secret: SmSecret, row: SmSecretVersion, etag: str | None = None) -> SmSecretVersion:
    return _set_state(secret, row, DISABLED, etag)


def _due(row: SmSecretVersion, now: datetime | None = None) -> bool:
    when = row.scheduled_destroy_time
    if when is None:
        return False
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when <= (now or datetime.now(UTC))


def state_of(row: SmSecretVersion) -> str:
    """The version's state as of now: a scheduled destruction whose time has come is DESTROYED."""
    return DESTROYED if _due(row) else row.state


def _finish_due(row: SmSecretVersion) -> None:
    """Carry out a scheduled destruction whose time has come (inside a write)."""
    if _due(row):
        row.state, row.payload, row.destroy_time = DESTROYED, None, row.scheduled_destroy_time
        row.scheduled_destroy_time = None


def _set_state(secret: SmSecret, row: SmSecretVersion, state: str, etag: str | None) -> SmSecretVersion:
    _finish_due(row)
    _check_etag(secret, row, etag)
    if row.state == DESTROYED:
        raise FailedPrecondition(f"Secret Version [{_name(secret, row)}] is in DESTROYED state.")
    if row.state != state or row.scheduled_destroy_time is not None:
        row.state = state
        row.scheduled_destroy_time = None  # enabling or disabling cancels a scheduled destruction
        row.etag = new_etag()
    return row


def destroy(secret: SmSecret, row: SmSecretVersion, etag: str | None = None) -> SmSecretVersion:
    _finish_due(row)
    _check_etag(secret, row, etag)
    if row.state == DESTROYED:
        raise FailedPrecondition(f"Secret Version [{_name(secret, row)}] is in DESTROYED state.")
    delay = (secret.body or {}).get("versionDestroyTtl")
    if delay and row.scheduled_destroy_time is None:
        row.state = DISABLED
        row.scheduled_destroy_time = datetime.now(UTC) + timedelta(
            seconds=parse_duration(delay, "secret.version_destroy_ttl"))
    elif not delay:
        row.state = DESTROYED
        row.payload = None
        row.destroy_time = datetime.now(UTC)
    row.etag = new_etag()
    return row


def _name(secret: SmSecret, row: SmSecretVersion) -> str:
    return version_name(secret.project_number, secret.secret_id, row.version, secret.location)


def version_json(secret: SmSecret, row: SmSecretVersion) -> dict[str, Any]:
    body: dict[str, Any] = {"name": _name(secret, row), "createTime": rfc3339(row.create_time)}
    due = _due(row)
    destroyed_at = row.scheduled_destroy_time if due else row.destroy_time
    if destroyed_at is not None:
        body["destroyTime"] = rfc3339(destroyed_at)
    body["state"] = state_of(row)
    if row.scheduled_destroy_time is not None and not due:
        body["scheduledDestroyTime"] = rfc3339(row.scheduled_destroy_time)
    replication = secret.replication or {}
    if secret.location:
        pass  # a regional secret's versions have no replication status
    elif "userManaged" in replication:
        body["replicationStatus"] = {"userManaged": {"replicas": [
            {"location": r["location"]} for r in replication["userManaged"].get("replicas", [])]}}
    else:
        body["replicationStatus"] = {"automatic": {}}
    body["etag"] = row.etag
    if row.client_checksum:
        body["clientSpecifiedPayloadChecksum"] = True
    return body
