"""Buckets (https://cloud.google.com/storage/docs/json_api/v1/buckets): insert, get, list,
delete, and the IAM policy every bucket starts with.

A bucket's policy is stored under `projects/_/buckets/NAME`, below its project's; a new
bucket gets Google's default for uniform bucket-level access: the project's owners and
editors own the bucket and its objects, its viewers read them (through the convenience
members `projectOwner:`, `projectEditor:`, `projectViewer:`).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from keyless.iam.evaluate import Authorizer, ResourceContext
from keyless.iam.policy import MemberCheck, RoleCheck, set_policy
from keyless.iam.principal import ANONYMOUS, Principal
from keyless.projects import ROOT, project_chain, project_resource
from keyless.storage.errors import PRECONDITION_FAILED, PreconditionFailed
from keyless.storage.names import validate_bucket_name
from keyless.store.models import (
    IamPolicy,
    Operation,
    Project,
    StorageBucket,
    StorageManagedFolder,
    StorageObject,
    StorageObjectVersion,
)

BUCKET_NOT_FOUND = "The specified bucket does not exist."
BUCKET_NOT_EMPTY = "The bucket you tried to delete is not empty."
YOU_OWN_IT = "Your previous request to create the named bucket succeeded and you already own it."
NAME_TAKEN = ("The requested bucket name is not available. The bucket namespace is shared by all users of "
              "the system. Please select a different name and try again.")
# New buckets soft-delete for 7 days unless created with another softDeletePolicy
# (https://cloud.google.com/storage/docs/soft-delete#default-policy); 0 turns soft delete off.
DEFAULT_SOFT_DELETE_SECONDS = 7 * 24 * 3600
MULTI_REGIONS = {"US", "EU", "ASIA"}
DUAL_REGIONS = {"NAM4", "EUR4", "ASIA1", "EUR5", "EUR7", "EUR8"}
STORAGE_CLASSES = {"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", "MULTI_REGIONAL", "REGIONAL",
                   "DURABLE_REDUCED_AVAILABILITY"}
# Fields of a Bucket resource Keyless accepts on insert and echoes back as given.
ECHOED = {"versioning", "lifecycle", "cors", "website", "logging", "retentionPolicy", "defaultEventBasedHold",
          "encryption", "billing", "autoclass", "rpo", "softDeletePolicy", "hierarchicalNamespace",
          "customPlacementConfig", "objectRetention", "iamConfiguration", "ipFilter"}
# The rest of the Bucket resource's fields are output only: ignored on insert, as Google does (issue #19).
ACCEPTED = ECHOED | {"name", "location", "storageClass", "labels", "kind", "id", "projectNumber", "acl",
                     "defaultObjectAcl", "locationType", "etag", "metageneration", "generation", "hardDeleteTime",
                     "owner", "satisfiesPZI", "satisfiesPZS", "selfLink", "softDeleteTime", "timeCreated", "updated"}


class ConflictError(AlreadyExists):
    """409 for the bucket name space (creation) and non-empty deletes."""


SERVICE = "storage.googleapis.com"
BUCKET_TYPE = "storage.googleapis.com/Bucket"


def bucket_resource(name: str) -> str:
    """The resource name of a bucket, for IAM policies, conditions and audit entries."""
    return f"projects/_/buckets/{name}"


def bucket_context(name: str) -> ResourceContext:
    """What IAM conditions see of a bucket (resource.name/type/service)."""
    return ResourceContext(bucket_resource(name), BUCKET_TYPE, SERVICE)


def bucket_chain(row: StorageBucket) -> list[str]:
    return [bucket_resource(row.name), project_resource(row.project_id), ROOT]


# The convenience members of bucket policies and the basic role on the project each stands for
# (https://cloud.google.com/storage/docs/access-control/iam#convenience-values).
CONVENIENCE_ROLES = {"projectOwner": "roles/owner", "projectEditor": "roles/editor", "projectViewer": "roles/viewer"}


def with_convenience_members(authz: Authorizer, principal: Principal, project_id: str) -> Principal:
    """`principal` with the member keys `projectOwner:P` & co. it matches: those of the basic roles
    it holds, unconditionally, on the bucket's project P."""
    if not project_id or principal is ANONYMOUS:
        return principal
    chain = project_chain(project_id)
    extra = {f"{kind}:{project_id}" for kind, role in CONVENIENCE_ROLES.items()
             if authz.holds_role(principal, role, chain)}
    return replace(principal, member_keys=principal.member_keys | extra) if extra else principal


def default_bindings(project_id: str) -> list[dict[str, Any]]:
    owners = [f"projectEditor:{project_id}", f"projectOwner:{project_id}"]
    viewers = [f"projectViewer:{project_id}"]
    return [{"role": "roles/storage.legacyBucketOwner", "members": owners},
            {"role": "roles/storage.legacyBucketReader", "members": viewers},
            {"role": "roles/storage.legacyObjectOwner", "members": owners},
            {"role": "roles/storage.legacyObjectReader", "members": viewers}]


def _labels(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > 64 or not all(
            isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= 63 and len(v) <= 63 for k, v in raw.items()):
        raise InvalidArgument("Invalid argument: labels must be a map of at most 64 short strings.")
    return dict(raw)


def create_bucket(s: Session, project: Project, body: dict[str, Any],
                  role_exists: RoleCheck, check_member: MemberCheck) -> StorageBucket:
    unknown = set(body) - ACCEPTED
    if unknown:
        raise InvalidArgument(f"Invalid argument: unknown field '{sorted(unknown)[0]}'.")
    name = validate_bucket_name(body.get("name"))
    existing = s.get(StorageBucket, name)
    if existing is not None:
        raise ConflictError(YOU_OWN_IT if existing.project_id == project.project_id else NAME_TAKEN)
    location = body.get("location") or "US"
    if not isinstance(location, str) or not location.replace("-", "").isalnum() or len(location) > 64:
        raise InvalidArgument(f"Invalid location: '{str(location)[:64]}'")
    storage_class = body.get("storageClass") or "STANDARD"
    if storage_class not in STORAGE_CLASSES:
        raise InvalidArgument(f"Invalid argument: unknown storage class '{str(storage_class)[:64]}'.")
    now = datetime.now(UTC)
    echoed = {k: v for k, v in body.items() if k in ECHOED}
    if "softDeletePolicy" not in echoed:  # Google's default for new buckets since 2024-03-01
        echoed["softDeletePolicy"] = {"retentionDurationSeconds": str(DEFAULT_SOFT_DELETE_SECONDS),
                                      "effectiveTime": rfc3339(now)}
    row = StorageBucket(name=name, project_id=project.project_id, project_number=project.project_number,
                        location=location.upper(), storage_class=storage_class, metageneration=1,
                        create_time=now, update_time=now, labels=_labels(body.get("labels")), body=echoed,
                        generation=time.time_ns() // 1000)
    s.add(row)
    set_policy(s, bucket_resource(name), {"bindings": default_bindings(project.project_id)}, None,
               role_exists, check_member)
    return row


def find_bucket(s: Session, name: str) -> StorageBucket | None:
    return s.get(StorageBucket, name)


def get_bucket(s: Session, name: str) -> StorageBucket:
    row = s.get(StorageBucket, name)
    if row is None:
        raise NotFound(BUCKET_NOT_FOUND)
    return row


def list_buckets(s: Session, project_id: str, prefix: str = "") -> list[StorageBucket]:
    q = select(StorageBucket).where(StorageBucket.project_id == project_id).order_by(StorageBucket.name)
    return [b for b in s.scalars(q).all() if b.name.startswith(prefix)]


def check_deletable(s: Session, row: StorageBucket, if_metageneration_match: int | None) -> None:
    """A bucket is deleted only when empty: noncurrent versions count, soft-deleted ones do not."""
    if if_metageneration_match is not None and row.metageneration != if_metageneration_match:
        raise PreconditionFailed(PRECONDITION_FAILED)
    name = row.name
    if s.scalar(select(StorageObject.id).where(StorageObject.bucket == name).limit(1)) is not None or s.scalar(
            select(StorageObjectVersion.id).where(StorageObjectVersion.bucket == name,
                                                  StorageObjectVersion.soft_delete_time.is_(None)).limit(1)) is not None:
        raise ConflictError(BUCKET_NOT_EMPTY)


def drop_bucket(s: Session, row: StorageBucket) -> None:
    """Remove the live bucket `row`, its policy, managed folders (and theirs) and operations; its
    object versions are the caller's (hard delete drops them, soft delete parks them)."""
    name = row.name
    s.execute(delete(StorageManagedFolder).where(StorageManagedFolder.bucket == name))
    s.execute(delete(IamPolicy).where(IamPolicy.resource.startswith(f"{bucket_resource(name)}/managedFolders/",
                                                                    autoescape=True)))
    # its long-running operations (objects.bulkRestore) go too: a new bucket of the name must not see them
    s.execute(delete(Operation).where(Operation.name.startswith(f"{bucket_resource(name)}/operations/",
                                                                autoescape=True)))
    s.delete(row)
    s.execute(delete(IamPolicy).where(IamPolicy.resource == bucket_resource(name)))


def soft_delete_seconds(row: StorageBucket) -> int:
    """The bucket's soft delete retention in seconds (0: deletes are for good)."""
    try:
        return int(((row.body or {}).get("softDeletePolicy") or {}).get("retentionDurationSeconds") or 0)
    except (TypeError, ValueError):
        return 0


def bucket_generation(row: StorageBucket) -> int:
    """The bucket's generation (buckets created before migration 0016 have their creation time's)."""
    if row.generation is not None:
        return row.generation
    created = row.create_time if row.create_time.tzinfo else row.create_time.replace(tzinfo=UTC)
    return int(created.timestamp() * 1_000_000)


def location_type(location: str) -> str:
    if location in MULTI_REGIONS:
        return "multi-region"
    if location in DUAL_REGIONS:
        return "dual-region"
    return "region"


def varint(n: int) -> bytes:
    """A protobuf varint (Cloud Storage's etags are small protobuf messages, base64)."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def metageneration_etag(metageneration: int) -> str:
    """A bucket's etag: field 1 = metageneration ("CAE=" for 1)."""
    return base64.b64encode(b"\x08" + varint(metageneration)).decode()


def bucket_json(row: StorageBucket, base_url: str) -> dict[str, Any]:
    """The JSON API Bucket resource (projection=noAcl)."""
    created = rfc3339(row.create_time)
    body: dict[str, Any] = {
        "kind": "storage#bucket",
        "selfLink": f"{base_url}/storage/v1/b/{row.name}",
        "id": row.name,
        "name": row.name,
        "projectNumber": row.project_number,
        "metageneration": str(row.metageneration),
        "location": row.location,
        "storageClass": row.storage_class,
        "etag": metageneration_etag(row.metageneration),
        "generation": str(bucket_generation(row)),
        "timeCreated": created,
        "updated": rfc3339(row.update_time),
        "iamConfiguration": {
            "bucketPolicyOnly": {"enabled": True, "lockedTime": created},
            "uniformBucketLevelAccess": {"enabled": True, "lockedTime": created},
            "publicAccessPrevention": ((row.body or {}).get("iamConfiguration") or {}).get(
                "publicAccessPrevention", "inherited"),
        },
        "locationType": location_type(row.location),
        "rpo": "DEFAULT",
    }
    body.update({k: v for k, v in (row.body or {}).items() if k != "iamConfiguration"})
    for key, field in (("retentionPolicy", "retentionPeriod"), ("softDeletePolicy", "retentionDurationSeconds")):
        if isinstance(body.get(key), dict) and field in body[key]:  # int64s are strings; Google adds effectiveTime
            body[key] = {**body[key], field: str(body[key][field]), "effectiveTime": body[key].get(
                "effectiveTime", rfc3339(row.create_time))}
    if row.labels:
        body["labels"] = row.labels
    return body



# -- patch and update (https://cloud.google.com/storage/docs/json_api/v1/buckets/patch) ---------

# Fields patch/update may change; the rest of ACCEPTED are output only or fixed at creation.
MUTABLE = (ECHOED - {"hierarchicalNamespace", "customPlacementConfig"}) | {"labels", "storageClass"}
# Sub-fields of iamConfiguration Keyless keeps (uniform bucket-level access is always on).
MAX_ECHOED_BYTES = 64 * 1024  # bounds what a bucket keeps of fields it only echoes
IAM_CONFIGURATION = {"uniformBucketLevelAccess", "bucketPolicyOnly", "publicAccessPrevention"}


@dataclass(frozen=True)
class MetagenerationPreconditions:
    """ifMetagenerationMatch/NotMatch on a bucket (https://cloud.google.com/storage/docs/request-preconditions)."""

    match: int | None = None
    not_match: int | None = None

    def check(self, row: StorageBucket) -> None:
        if (self.match is not None and row.metageneration != self.match) or \
                (self.not_match is not None and row.metageneration == self.not_match):
            raise PreconditionFailed(PRECONDITION_FAILED)


def _merge(current: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7396): what a PATCH of the JSON API does to nested fields."""
    if not isinstance(patch, dict) or not isinstance(current, dict):
        return patch
    out = dict(current)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


def _check_iam_configuration(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) - IAM_CONFIGURATION:
        raise InvalidArgument("Invalid argument: iamConfiguration accepts uniformBucketLevelAccess, "
                              "bucketPolicyOnly and publicAccessPrevention.")
    for key in ("uniformBucketLevelAccess", "bucketPolicyOnly"):
        ubla = value.get(key)
        if ubla is not None and (not isinstance(ubla, dict) or ubla.get("enabled") is False):
            raise InvalidArgument(f"Invalid argument: iamConfiguration.{key}.enabled cannot be false: Keyless "
                                  "does not implement access control lists, so every bucket has uniform "
                                  "bucket-level access.")
    pap = value.get("publicAccessPrevention")
    if pap is not None and pap not in ("inherited", "enforced", "unspecified"):
        raise InvalidArgument(f"Invalid value for publicAccessPrevention: '{str(pap)[:32]}'")
    return {"publicAccessPrevention": pap} if pap else {}


# The echoed fields whose value is a JSON object (cors is a list, rpo a string, defaultEventBasedHold a boolean).
OBJECT_FIELDS = ECHOED - {"cors", "rpo", "defaultEventBasedHold"}


def _check_echoed(key: str, value: Any, locked: bool = False) -> None:
    expected: type = dict if key in OBJECT_FIELDS else list if key == "cors" else bool \
        if key == "defaultEventBasedHold" else str
    if value is not None and not isinstance(value, expected):
        raise InvalidArgument(f"Invalid value for {key}: expected {'an object' if expected is dict else expected.__name__}.")
    if value is not None and len(json.dumps(value)) > MAX_ECHOED_BYTES:
        raise InvalidArgument(f"Invalid value for {key}: more than {MAX_ECHOED_BYTES} bytes.")
    if not isinstance(value, dict):
        return
    if key == "versioning" and not isinstance(value.get("enabled", False), bool):
        raise InvalidArgument("Invalid value for versioning.enabled: expected a boolean.")
    if key in ("retentionPolicy", "softDeletePolicy") and value:
        field = "retentionPeriod" if key == "retentionPolicy" else "retentionDurationSeconds"
        try:
            seconds = int(value.get(field, 0))
        except (TypeError, ValueError):
            seconds = -1
        if not 0 <= seconds <= 3_155_760_000:  # at most 100 years, as Google allows
            raise InvalidArgument(f"Invalid value for {key}.{field}.")
        if key == "retentionPolicy" and value.get("isLocked") and not locked:
            raise InvalidArgument("Invalid argument: a retention policy is locked with lockRetentionPolicy.")


def update_bucket(s: Session, name: str, body: dict[str, Any], *, replace_all: bool,
                  pre: MetagenerationPreconditions) -> StorageBucket:
    """buckets.patch (`replace_all=False`: a merge of the given fields) or buckets.update (the
    whole writable resource: mutable fields left out are cleared). The metageneration grows."""
    unknown = set(body) - ACCEPTED
    if unknown:
        raise InvalidArgument(f"Invalid argument: unknown field '{sorted(unknown)[0][:64]}'.")
    row = get_bucket(s, name)
    pre.check(row)
    now = datetime.now(UTC)
    if "name" in body and body["name"] not in (None, name):
        raise InvalidArgument("Invalid argument: a bucket's name cannot change.")
    if body.get("location") not in (None, row.location, row.location.lower()):
        raise InvalidArgument("Invalid argument: a bucket's location cannot change.")
    given = {k: v for k, v in body.items() if k in MUTABLE}
    locked = retention_locked(row)
    for key, value in given.items():
        if key in ECHOED and key != "iamConfiguration":
            _check_echoed(key, value, locked)
    if "storageClass" in given and given["storageClass"] is not None:
        if given["storageClass"] not in STORAGE_CLASSES:
            raise InvalidArgument(f"Invalid argument: unknown storage class '{str(given['storageClass'])[:64]}'.")
        row.storage_class = given["storageClass"]
    if "labels" in given or replace_all:
        labels = given.get("labels")
        merged = _merge(row.labels or {}, labels or {}) if not replace_all and labels is not None else labels
        row.labels = _labels(merged)
    echoed = dict(row.body or {}) if not replace_all else {}
    for key in ECHOED & MUTABLE:
        if key not in given:
            continue
        value = given[key]
        if key == "iamConfiguration":
            value = _check_iam_configuration(value) if value is not None else None
        merged = _merge(echoed.get(key), value) if not replace_all else value
        if key in ("retentionPolicy", "softDeletePolicy") and isinstance(merged, dict):
            merged = {**merged, "effectiveTime": rfc3339(now)}
        if merged in (None, {}):
            echoed.pop(key, None)
        else:
            echoed[key] = merged
    if replace_all:  # fields fixed at creation stay
        echoed.update({k: v for k, v in (row.body or {}).items() if k in ECHOED - MUTABLE})
    if locked:
        _keep_locked(row.body["retentionPolicy"], echoed)
    row.body = echoed
    row.metageneration += 1
    row.update_time = now
    return row


# -- bucket lock (https://cloud.google.com/storage/docs/bucket-lock) -----------------------------

LOCKED_REMOVED = "Cannot remove a locked retention policy."  # 403 forbidden, as Google answers
LOCKED_REDUCED = "Cannot reduce the retention period of a locked retention policy."


def retention_locked(row: StorageBucket) -> bool:
    return bool(((row.body or {}).get("retentionPolicy") or {}).get("isLocked"))


def _keep_locked(before: dict[str, Any], echoed: dict[str, Any]) -> None:
    """A locked policy stays, locked, with a period at least as long: else 403, nothing changed."""
    after = echoed.get("retentionPolicy")
    if not isinstance(after, dict) or not after.get("retentionPeriod"):
        raise PermissionDenied(LOCKED_REMOVED)
    if int(after["retentionPeriod"]) < int(before["retentionPeriod"]):
        raise PermissionDenied(LOCKED_REDUCED)
    kept = {**after, "isLocked": True}  # still locked, effective since it was first set
    kept.pop("effectiveTime", None)
    if "effectiveTime" in before:
        kept["effectiveTime"] = before["effectiveTime"]
    echoed["retentionPolicy"] = kept


def lock_retention_policy(s: Session, name: str, if_metageneration_match: int | None) -> StorageBucket:
    """buckets.lockRetentionPolicy: ifMetagenerationMatch is required (the caller locks the policy
    it saw); locking is for good. Locking a locked policy again changes nothing."""
    if if_metageneration_match is None:
        raise InvalidArgument("Required parameter: ifMetagenerationMatch")
    row = get_bucket(s, name)
    MetagenerationPreconditions(if_metageneration_match).check(row)
    policy = (row.body or {}).get("retentionPolicy")
    if not isinstance(policy, dict) or not policy.get("retentionPeriod"):
        raise InvalidArgument("Invalid argument: the bucket has no retention policy to lock.")
    if policy.get("isLocked"):
        return row
    row.body = {**row.body, "retentionPolicy": {**policy, "isLocked": True}}
    row.metageneration += 1
    row.update_time = datetime.now(UTC)
    return row


def versioning_enabled(row: StorageBucket) -> bool:
    return bool(((row.body or {}).get("versioning") or {}).get("enabled"))


def storage_layout_json(row: StorageBucket) -> dict[str, Any]:
    """The StorageLayout resource (buckets.getStorageLayout): where and how the bucket stores objects."""
    body: dict[str, Any] = {"kind": "storage#storageLayout", "bucket": row.name, "location": row.location,
                            "locationType": location_type(row.location),
                            "hierarchicalNamespace": {"enabled": bool(((row.body or {}).get(
                                "hierarchicalNamespace") or {}).get("enabled"))}}
    if (row.body or {}).get("customPlacementConfig"):
        body["customPlacementConfig"] = row.body["customPlacementConfig"]
    return body
