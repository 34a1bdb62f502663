"""Secrets: create, read, list, update and delete, as Secret Manager v1 defines them
(https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets).

The replication policy is fixed at creation; labels, annotations and the other mutable
fields change through `update_mask`. Deleting a secret deletes its versions and IAM policy.
A regional secret (`location` set, issue #20) has no replication policy. Rotation, expiry and
delayed destruction are kept and validated with the bounds of Google's Secret and Rotation
schemas: `nextRotationTime` 5 minutes to 100 years ahead and required with `rotationPeriod`
(1 hour to 100 years), rotation only with `topics`, `expireTime` in the future (`ttl` positive),
`versionDestroyTtl` 1 to 1000 days
(https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets#Rotation,
https://cloud.google.com/secret-manager/docs/delay-secret-version-destroy).
"""

from __future__ import annotations

import time
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyless.clock import parse_duration, rfc3339
from keyless.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from keyless.iam.policy import get_policy_row
from keyless.secretmanager.filters import ListFilter
from keyless.secretmanager.names import check_secret_id, policy_resource, secret_name
from keyless.store.models import Project, SmSecret, SmSecretVersion

# Secret fields Keyless keeps as given (validated for shape) and echoes back.
ECHOED = ("annotations", "topics", "rotation", "expireTime", "versionAliases", "versionDestroyTtl",
          "customerManagedEncryption", "tags", "secretType")
# policyMember is output only: ignored on input, as Google does (issue #19)
SECRET_FIELDS = {"name", "replication", "createTime", "labels", "etag", "ttl", "policyMember", "secretType", *ECHOED}
SECRET_TYPES = {"SECRET_TYPE_UNSPECIFIED", "CLOUD_SQL_DB_CREDENTIALS", "ACCESS_KEY", "CERTIFICATE",
                "OTHER_DB_CREDENTIALS", "OTHER"}
MUTABLE = {"labels", "annotations", "topics", "rotation", "expireTime", "ttl", "versionAliases",
           "versionDestroyTtl", "customerManagedEncryption"}
SNAKE = {"create_time": "createTime", "expire_time": "expireTime", "version_aliases": "versionAliases",
         "version_destroy_ttl": "versionDestroyTtl", "customer_managed_encryption": "customerManagedEncryption",
         "user_managed": "userManaged", "kms_key_name": "kmsKeyName", "next_rotation_time": "nextRotationTime",
         "rotation_period": "rotationPeriod", "data_crc32c": "dataCrc32c"}
LOCATION = "abcdefghijklmnopqrstuvwxyz0123456789-"
MAX_ANNOTATIONS_BYTES = 16 * 1024
MIN_ROTATION_LEAD, MAX_ROTATION = 300, 3_153_600_000  # seconds (Rotation's bounds)
MIN_ROTATION_PERIOD = 3600
MIN_DESTROY_TTL, MAX_DESTROY_TTL = 86_400, 1000 * 86_400


def camel(body: dict[str, Any]) -> dict[str, Any]:
    """Google's JSON mapping accepts proto field names (`version_aliases`) as well as lowerCamel."""
    return {SNAKE.get(k, k): v for k, v in body.items()}


def new_etag() -> str:
    """Secret Manager etags are quoted hex strings ("\\"1620a40d0c7a76\\""), not base64."""
    return f'"{time.time_ns() // 1000:x}"'


def etag_matches(given: str, current: str) -> bool:
    return given.strip().strip('"') == current.strip('"')


def _unknown(name: str, where: str) -> InvalidArgument:
    return InvalidArgument(f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field.")


def validate_replication(raw: Any) -> dict[str, Any]:
    if raw is None or raw == {}:
        raise InvalidArgument("Secret.replication must be specified.")
    if not isinstance(raw, dict):
        raise InvalidArgument("Invalid value at 'secret.replication' (type.googleapis.com/"
                              "google.cloud.secretmanager.v1.Replication)")
    raw = camel(raw)
    for k in raw:
        if k not in ("automatic", "userManaged"):
            raise _unknown(k, "secret.replication")
    if len(raw) != 1:
        raise InvalidArgument("Secret.replication must set exactly one of automatic and user_managed.")
    if "automatic" in raw:
        auto = raw["automatic"] if raw["automatic"] is not None else {}
        if not isinstance(auto, dict):
            raise InvalidArgument("Invalid value at 'secret.replication.automatic'.")
        auto = camel(auto)
        for k in auto:
            if k != "customerManagedEncryption":
                raise _unknown(k, "secret.replication.automatic")
        out: dict[str, Any] = {}
        if auto.get("customerManagedEncryption"):
            out["customerManagedEncryption"] = _cmek(auto["customerManagedEncryption"],
                                                     "secret.replication.automatic.customer_managed_encryption")
        return {"automatic": out}
    managed = raw["userManaged"]
    if not isinstance(managed, dict):
        raise InvalidArgument("Invalid value at 'secret.replication.user_managed'.")
    for k in managed:
        if k != "replicas":
            raise _unknown(k, "secret.replication.user_managed")
    replicas = managed.get("replicas")
    if not isinstance(replicas, list) or not replicas or len(replicas) > 100:
        raise InvalidArgument("Secret.replication.user_managed.replicas must contain at least one replica.")
    seen: set[str] = set()
    out_replicas = []
    for i, replica in enumerate(replicas):
        where = f"secret.replication.user_managed.replicas[{i}]"
        if not isinstance(replica, dict):
            raise InvalidArgument(f"Invalid value at '{where}'.")
        replica = camel(replica)
        for k in replica:
            if k not in ("location", "customerManagedEncryption"):
                raise _unknown(k, where)
        location = replica.get("location")
        if (not isinstance(location, str) or not location or len(location) > 64
                or any(c not in LOCATION for c in location)):
            raise InvalidArgument(f"Invalid location in {where}: {str(location)[:80]!r}.")
        if location in seen:
            raise InvalidArgument(f"Duplicate replica location: {location}.")
        seen.add(location)
        entry: dict[str, Any] = {"location": location}
        if replica.get("customerManagedEncryption"):
            entry["customerManagedEncryption"] = _cmek(replica["customerManagedEncryption"],
                                                       f"{where}.customer_managed_encryption")
        out_replicas.append(entry)
    return {"userManaged": {"replicas": out_replicas}}


def _cmek(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidArgument(f"Invalid value at '{where}'.")
    raw = camel(raw)
    for k in raw:
        if k != "kmsKeyName":
            raise _unknown(k, where)
    name = raw.get("kmsKeyName")
    if not isinstance(name, str) or not name.startswith("projects/") or len(name) > 500:
        raise InvalidArgument(f"Invalid kms_key_name at '{where}': {str(name)[:80]!r}.")
    return {"kmsKeyName": name}


def _label_char(c: str, first: bool) -> bool:
    category = unicodedata.category(c)
    if category in ("Ll", "Lo"):
        return True
    return not first and (category.startswith("N") or c in "_-")


def validate_labels(raw: Any) -> dict[str, str]:
    """https://cloud.google.com/secret-manager/docs/labels: at most 64; keys
    [\\p{Ll}\\p{Lo}][\\p{Ll}\\p{Lo}\\p{N}_-]{0,62}, values [\\p{Ll}\\p{Lo}\\p{N}_-]{0,63}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument("Invalid value at 'secret.labels': expected a map of strings.")
    if len(raw) > 64:
        raise InvalidArgument("A secret can have at most 64 labels.")
    for k, v in raw.items():
        ok_key = (isinstance(k, str) and 1 <= len(k) <= 63 and len(k.encode()) <= 128
                  and all(_label_char(c, i == 0) for i, c in enumerate(k)))
        ok_value = (isinstance(v, str) and len(v) <= 63 and len(v.encode()) <= 128
                    and all(_label_char(c, False) for c in v))
        if not ok_key or not ok_value:
            raise InvalidArgument(f"Invalid label: {str(k)[:80]!r}: {str(v)[:80]!r}. Label keys must start with a "
                                  "lowercase letter and contain only lowercase letters, digits, underscores and "
                                  "dashes (at most 63 characters); values may also start with those characters.")
    return dict(raw)


def _annotation_key_ok(k: str) -> bool:
    if not 1 <= len(k) <= 63 or not k[0].isascii() or not k[0].isalnum() or not k[-1].isascii() \
            or not k[-1].isalnum():
        return False
    return all(c.isascii() and (c.isalnum() or c in "-_.") for c in k)


def _validate_echoed(body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    secret_type = body.get("secretType")
    if secret_type is not None:
        if secret_type not in SECRET_TYPES:
            raise InvalidArgument(f"Invalid value at 'secret.secret_type' (type.googleapis.com/"
                                  f"google.cloud.secretmanager.v1.Secret.SecretType), {str(secret_type)[:80]!r}")
        if secret_type != "SECRET_TYPE_UNSPECIFIED":
            out["secretType"] = secret_type
    annotations = body.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise InvalidArgument("Invalid value at 'secret.annotations': expected a map of strings.")
        if not all(isinstance(k, str) and _annotation_key_ok(k) for k in annotations):
            raise InvalidArgument("Annotation keys must be 1 to 63 characters, begin and end with an alphanumeric "
                                  "character and contain only alphanumerics, dashes, underscores and dots.")
        if sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items()) >= MAX_ANNOTATIONS_BYTES:
            raise InvalidArgument("The total size of annotation keys and values must be less than 16KiB.")
        if annotations:
            out["annotations"] = dict(annotations)
    aliases = body.get("versionAliases")
    if aliases is not None:
        if not isinstance(aliases, dict) or len(aliases) > 50:
            raise InvalidArgument("Invalid value at 'secret.version_aliases': expected at most 50 aliases.")
        clean = {}
        for k, v in aliases.items():
            if not isinstance(k, str) or not k or len(k) > 63 or k == "latest" or \
                    not all(c.isascii() and (c.isalnum() or c in "-_") for c in k) or k[0].isdigit():
                raise InvalidArgument(f"Invalid version alias: {str(k)[:80]!r}.")
            try:
                number = int(v)
            except (TypeError, ValueError) as exc:
                raise InvalidArgument(f"Invalid value at 'secret.version_aliases[{k}]' (TYPE_INT64), {v!r}") from exc
            if number < 1 or isinstance(v, bool):
                raise InvalidArgument(f"Invalid version number for alias {k}: {v!r}.")
            clean[k] = str(number)
        if clean:
            out["versionAliases"] = clean
    topics = body.get("topics")
    if topics is not None:
        if not isinstance(topics, list) or len(topics) > 10 or not all(
                isinstance(t, dict) and set(t) == {"name"} and isinstance(t["name"], str)
                and t["name"].startswith("projects/") and len(t["name"]) < 500 for t in topics):
            raise InvalidArgument("Invalid value at 'secret.topics': expected at most 10 {name: projects/*/topics/*}.")
        if topics:
            out["topics"] = topics
    rotation = body.get("rotation")
    if rotation is not None:
        if not isinstance(rotation, dict):
            raise InvalidArgument("Invalid value at 'secret.rotation'.")
        rotation = camel(rotation)
        for k in rotation:
            if k not in ("nextRotationTime", "rotationPeriod"):
                raise _unknown(k, "secret.rotation")
        now = datetime.now(UTC)
        if "rotationPeriod" in rotation:
            period = parse_duration(rotation["rotationPeriod"], "secret.rotation.rotation_period")
            if not MIN_ROTATION_PERIOD <= period <= MAX_ROTATION:
                raise InvalidArgument("Secret.rotation.rotation_period must be at least 3600s (1 hour) and at most "
                                      "3153600000s (100 years).")
            if "nextRotationTime" not in rotation:
                raise InvalidArgument("Secret.rotation.next_rotation_time must be set if rotation_period is set.")
        if "nextRotationTime" in rotation:
            at = _timestamp(rotation["nextRotationTime"], "secret.rotation.next_rotation_time")
            if not now + timedelta(seconds=MIN_ROTATION_LEAD) <= at <= now + timedelta(seconds=MAX_ROTATION):
                raise InvalidArgument("Secret.rotation.next_rotation_time must be at least 300s (5 minutes) and at "
                                      "most 3153600000s (100 years) in the future.")
            rotation["nextRotationTime"] = rfc3339(at)
        if rotation:
            out["rotation"] = rotation
    if body.get("expireTime") is not None:
        expire = _timestamp(body["expireTime"], "secret.expire_time")
        if expire <= datetime.now(UTC):
            raise InvalidArgument("Secret.expire_time must be in the future.")
        out["expireTime"] = rfc3339(expire)
    if body.get("ttl") is not None:
        seconds = parse_duration(body["ttl"], "secret.ttl")
        if seconds <= 0 or seconds > MAX_ROTATION:
            raise InvalidArgument("Secret.ttl must be positive and at most 3153600000s.")
        out["expireTime"] = rfc3339(datetime.now(UTC) + timedelta(seconds=seconds))
    if body.get("versionDestroyTtl") is not None:
        ttl = parse_duration(body["versionDestroyTtl"], "secret.version_destroy_ttl")
        if not MIN_DESTROY_TTL <= ttl <= MAX_DESTROY_TTL:
            raise InvalidArgument("Secret.version_destroy_ttl must be at least 86400s (1 day) and at most "
                                  "86400000s (1000 days).")
        out["versionDestroyTtl"] = body["versionDestroyTtl"]
    if body.get("customerManagedEncryption"):
        out["customerManagedEncryption"] = _cmek(body["customerManagedEncryption"],
                                                 "secret.customer_managed_encryption")
    tags = body.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise InvalidArgument("Invalid value at 'secret.tags': expected a map of strings.")
    return out


def _timestamp(text: Any, where: str) -> datetime:
    if not isinstance(text, str) or len(text) > 40:
        raise InvalidArgument(f"Invalid value at '{where}' (type.googleapis.com/google.protobuf.Timestamp)")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise InvalidArgument(f"Invalid value at '{where}' (type.googleapis.com/google.protobuf.Timestamp), "
                              f"{text!r}") from exc


def _check_rotation(echoed: dict[str, Any]) -> None:
    """Rotation notifies the secret's topics: Google refuses it without one."""
    if echoed.get("rotation") and not echoed.get("topics"):
        raise InvalidArgument("Secret.topics must be set to configure rotation.")


def _check_fields(body: dict[str, Any]) -> None:
    for k in body:
        if k not in SECRET_FIELDS:
            raise _unknown(k, "secret")
    if body.get("expireTime") is not None and body.get("ttl") is not None:
        raise InvalidArgument("Only one of expire_time and ttl may be set.")


# -- store operations ---------------------------------------------------------------------------


def find_secret(s: Session, project_id: str, secret_id: str, *, location: str = "",
                for_update: bool = False) -> SmSecret | None:
    query = select(SmSecret).where(SmSecret.project_id == project_id, SmSecret.location == location,
                                   SmSecret.secret_id == secret_id)
    if for_update:
        query = query.with_for_update()
    return s.scalars(query).first()


def get_secret(s: Session, project: Project, secret_id: str, *, location: str = "",
               for_update: bool = False) -> SmSecret:
    row = find_secret(s, project.project_id, secret_id, location=location, for_update=for_update)
    if row is None:
        raise NotFound(f"Secret [{secret_name(project.project_number, secret_id, location)}] not found.")
    return row


def create_secret(s: Session, project: Project, secret_id: str, body: dict[str, Any], location: str = "") -> SmSecret:
    check_secret_id(project.project_id, secret_id, location)
    body = camel(body)
    _check_fields(body)
    if location:
        if body.get("replication"):  # a regional secret lives in its location only
            raise InvalidArgument("Secret.replication must not be set for a regional secret.")
        replication: dict[str, Any] = {}
    else:
        replication = validate_replication(body.get("replication"))
    labels = validate_labels(body.get("labels"))
    echoed = _validate_echoed(body)
    _check_rotation(echoed)
    name = secret_name(project.project_number, secret_id, location)
    if find_secret(s, project.project_id, secret_id, location=location) is not None:
        raise AlreadyExists(f"Secret [{name}] already exists.")
    row = SmSecret(uid=str(uuid.uuid4()), project_id=project.project_id, project_number=project.project_number,
                   secret_id=secret_id, location=location, create_time=datetime.now(UTC), labels=labels,
                   replication=replication, body=echoed, etag=new_etag(), last_version=0)
    s.add(row)
    try:
        s.flush()  # the unique index refuses a concurrent create of the same id here
    except IntegrityError as exc:
        raise AlreadyExists(f"Secret [{name}] already exists.") from exc
    return row


def list_secrets(s: Session, project_id: str, text_filter: str | None, location: str = "") -> list[SmSecret]:
    rows = s.scalars(select(SmSecret).where(SmSecret.project_id == project_id, SmSecret.location == location)
                     .order_by(SmSecret.create_time.desc(), SmSecret.secret_id)).all()
    if not text_filter:
        return list(rows)
    f = ListFilter(text_filter)
    return [r for r in rows if f.matches(secret_fields(r))]


def secret_fields(row: SmSecret) -> dict[str, Any]:
    """What a list filter can test of a secret."""
    return {"name": secret_name(row.project_number, row.secret_id, row.location), "labels": row.labels or {},
            "create_time": rfc3339(row.create_time), "annotations": (row.body or {}).get("annotations", {}),
            "replication": "automatic" if "automatic" in (row.replication or {}) else "user_managed"}


def update_secret(row: SmSecret, body: dict[str, Any], mask: list[str] | None) -> SmSecret:
    body = camel(body)
    _check_fields(body)
    if not mask:
        raise InvalidArgument("update_mask must be specified.")
    paths = {SNAKE.get(p, p) for p in mask}
    for p in paths:
        if p == "replication":
            raise InvalidArgument("Secret.replication is immutable and cannot be updated.")
        if p not in MUTABLE:
            raise InvalidArgument(f"Invalid update_mask path: {p[:100]}")
    if isinstance(body.get("etag"), str) and body["etag"] and not etag_matches(body["etag"], row.etag):
        raise Aborted("The etag provided in the request does not match the current etag of the secret.")
    labels = validate_labels(body.get("labels")) if "labels" in paths else row.labels
    echoed = dict(row.body or {})
    given = _validate_echoed({k: body.get(k) for k in paths if k != "labels"})
    for p in paths - {"labels"}:
        target = "expireTime" if p == "ttl" else p
        if target in given:
            echoed[target] = given[target]
        else:
            echoed.pop(target, None)
    _check_rotation(echoed)
    row.labels = labels
    row.body = echoed
    row.etag = new_etag()
    return row


def delete_secret(s: Session, row: SmSecret, etag: str | None) -> None:
    if etag and not etag_matches(etag, row.etag):
        raise Aborted("The etag provided in the request does not match the current etag of the secret.")
    s.execute(delete(SmSecretVersion).where(SmSecretVersion.secret_uid == row.uid))
    policy = get_policy_row(s, policy_resource(row.project_number, row.secret_id, row.location))
    if policy is not None:
        s.delete(policy)
    s.delete(row)


def secret_json(row: SmSecret) -> dict[str, Any]:
    body: dict[str, Any] = {"name": secret_name(row.project_number, row.secret_id, row.location)}
    if not row.location:  # a regional secret has no replication policy
        body["replication"] = row.replication
    body["createTime"] = rfc3339(row.create_time)
    if row.labels:
        body["labels"] = row.labels
    body.update({k: v for k, v in (row.body or {}).items() if k in ECHOED})
    body["etag"] = row.etag
    return body
