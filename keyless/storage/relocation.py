"""Bucket relocation (https://cloud.google.com/storage/docs/bucket-relocation/overview,
https://cloud.google.com/storage/docs/json_api/v1/buckets/relocate and
.../operations/advanceRelocateBucket): a bucket moved to another location under one long-running
operation `projects/_/buckets/B/operations/ID` that buckets.operations.get/list/cancel answer.

The two relocation types, as Google's overview and `gcloud storage buckets relocate` tell them
apart: within one location (a multi-region to a configurable dual-region in it, or between such
placements) there is no write downtime, the operation completes after its incremental copy;
any other move copies incrementally until buckets.operations.advanceRelocateBucket starts the
final synchronization, during which object writes are refused (write downtime) until the
bucket's location swaps. If the final step outlasts its `ttl` (12 h by default) or
`expireTime`, the relocation reverts to the incremental copy. `validateOnly` is the dry run: it
checks and answers an operation born done. While a relocation runs the bucket's configuration
cannot change, and it is cancelled (an operation error of code 1, CANCELLED) only before its
final step. Buckets with a hierarchical namespace or Object Retention Lock do not relocate.

Google's documents publish no schema for the operation's metadata; Keyless's has commonMetadata
(as objects.bulkRestore's), sourceLocation, destinationLocation[, destinationCustomPlacementConfig,
destinationKmsKeyName], validateOnly, writeDowntime, and while it runs `state` (SYNCING, then
FINALIZING with writeDowntimeExpireTime). Refusals that depend on the operation's or bucket's state
(a second relocation, a locked configuration, the write downtime, cancelling a done operation)
are 400 FAILED_PRECONDITION, as google.longrunning's cancel of a finished operation is.

Keyless's bytes are local, so a step is a pause, not a copy: RELOCATION_STEP (5 s, or
$KEYLESS_STORAGE_RELOCATION_STEP_SECONDS) for the incremental copy of the no-downtime type and
for the final synchronization; a bucket's relocation settles when it is next read after that.
"""

from __future__ import annotations

import copy
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import FailedPrecondition, InvalidArgument, NotFound
from keyless.storage.buckets import get_bucket, location_type
from keyless.storage.bulk_restore import operation_prefix
from keyless.store.models import Operation, StorageBucket

FIELDS = {"destinationLocation", "destinationCustomPlacementConfig", "destinationKmsKeyName", "validateOnly"}
ADVANCE_FIELDS = {"ttl", "expireTime"}
METADATA_TYPE = "type.googleapis.com/google.storage.control.v2.RelocateBucketMetadata"
OPERATION_TYPE = "relocate-bucket"
RELOCATION_STEP = timedelta(seconds=float(os.environ.get("KEYLESS_STORAGE_RELOCATION_STEP_SECONDS", "5")))
DEFAULT_TTL = timedelta(hours=12)  # advanceRelocateBucket's default, as Google documents it
MAX_TTL = timedelta(days=365)  # a bound for the arithmetic; Google publishes none
SYNCING, FINALIZING = "SYNCING", "FINALIZING"  # the two steps of a running relocation
LOCATION = re.compile(r"^[A-Za-z0-9-]{1,64}$")
KMS_KEY = re.compile(r"^projects/[^/]{1,100}/locations/[^/]{1,64}/keyRings/[^/]{1,100}/cryptoKeys/[^/]{1,100}$")
CONFIGURATION_LOCKED = "The bucket's configuration cannot change while it is being relocated."
WRITE_DOWNTIME = ("The bucket is being relocated and is in its write downtime (final synchronization): "
                  "objects cannot be written until the relocation completes.")


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _when(raw: Any) -> datetime | None:
    return _aware(datetime.fromisoformat(raw)) if raw else None


def _duration(raw: Any) -> timedelta:
    """A google-duration (`"3600s"`, `"1.5s"`); gcloud sends whole seconds."""
    text = str(raw)[:32]
    match = re.fullmatch(r"(\d{1,12})(?:\.(\d{1,9}))?s", text)
    if not match:
        raise InvalidArgument(f"Invalid value for ttl: '{text}' is not a duration such as '43200s'.")
    value = timedelta(seconds=int(match[1]), microseconds=int((match[2] or "0").ljust(9, "0")[:6]))
    if not timedelta(0) < value <= MAX_TTL:
        raise InvalidArgument(f"Invalid value for ttl: '{text}' must be positive and at most {MAX_TTL.days} days.")
    return value


def _placement(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    locations = raw.get("dataLocations") if isinstance(raw, dict) and set(raw) <= {"dataLocations"} else None
    if not isinstance(locations, list) or len(locations) != 2 or not all(
            isinstance(x, str) and LOCATION.match(x) for x in locations):
        raise InvalidArgument("Invalid value for destinationCustomPlacementConfig.dataLocations: expected two "
                              "regions of a configurable dual-region.")
    return [x.upper() for x in locations]


def _current_placement(row: StorageBucket) -> list[str] | None:
    config = (row.body or {}).get("customPlacementConfig") or {}
    found = config.get("dataLocations") if isinstance(config, dict) else None
    return [str(x).upper() for x in found] if isinstance(found, list) else None


def _incompatible(row: StorageBucket) -> str | None:
    body = row.body or {}
    if ((body.get("hierarchicalNamespace") or {}).get("enabled")):
        return "buckets with hierarchical namespace enabled cannot be relocated"
    if str((body.get("objectRetention") or {}).get("mode", "")).lower() == "enabled":
        return "buckets with Object Retention Lock enabled cannot be relocated"
    return None


def start(s: Session, bucket: str, body: dict[str, Any], operation_id: str, now: datetime) -> dict[str, Any]:
    """buckets.relocate: check the request against the bucket; record and return its operation."""
    unknown = set(body) - FIELDS
    if unknown:
        raise InvalidArgument(f"Invalid argument: unknown field '{sorted(unknown)[0][:64]}'.")
    raw_location = body.get("destinationLocation")
    if not raw_location:
        raise InvalidArgument("Required field: destinationLocation")
    if not isinstance(raw_location, str) or not LOCATION.match(raw_location):
        raise InvalidArgument(f"Invalid value for destinationLocation: '{str(raw_location)[:64]}'")
    destination = raw_location.upper()
    placement = _placement(body.get("destinationCustomPlacementConfig"))
    kms_key = body.get("destinationKmsKeyName")
    if kms_key is not None and (not isinstance(kms_key, str) or not KMS_KEY.match(kms_key)):
        raise InvalidArgument(f"Invalid value for destinationKmsKeyName: '{str(kms_key)[:128]}'")
    validate_only = body.get("validateOnly", False)
    if not isinstance(validate_only, bool):
        raise InvalidArgument("Invalid value for validateOnly: expected a boolean.")
    row = get_bucket(s, bucket)
    if row.relocation is not None:
        raise FailedPrecondition(f"Bucket {bucket} is already being relocated (operation "
                                 f"{row.relocation['operation']}).")
    reason = _incompatible(row)
    if reason:
        raise FailedPrecondition(f"Bucket {bucket} cannot be relocated: {reason}.")
    same_location = destination == row.location
    if same_location and (placement is None or placement == _current_placement(row)):
        raise InvalidArgument(f"Invalid argument: bucket {bucket} is already in {destination}; the destination "
                              "must be another location or another placement.")
    if placement is not None and location_type(destination) != "multi-region":
        raise InvalidArgument("Invalid argument: destinationCustomPlacementConfig applies to a multi-region "
                              "destination (a configurable dual-region).")
    downtime = not same_location
    metadata: dict[str, Any] = {
        "@type": METADATA_TYPE,
        "commonMetadata": {"createTime": rfc3339(now), "updateTime": rfc3339(now), "type": OPERATION_TYPE,
                           "requestedCancellation": False, "progressPercent": 0},
        "sourceLocation": row.location, "destinationLocation": destination, "validateOnly": validate_only,
        "writeDowntime": downtime,
    }
    if placement is not None:
        metadata["destinationCustomPlacementConfig"] = {"dataLocations": placement}
    if kms_key is not None:
        metadata["destinationKmsKeyName"] = kms_key
    op: dict[str, Any] = {"kind": "storage#operation", "name": operation_prefix(bucket) + operation_id,
                          "done": False, "metadata": metadata}
    if validate_only:  # the dry run: the checks above are all of it
        _finish(op, now, {"@type": "type.googleapis.com/google.protobuf.Empty"})
    else:
        metadata["state"] = SYNCING
        row.relocation = {"operation": operation_id, "state": SYNCING,
                          "until": None if downtime else (now + RELOCATION_STEP).isoformat(), "expire": None}
    s.add(Operation(name=op["name"], body=op, create_time=now))
    return op


def _finish(op: dict[str, Any], now: datetime, response: dict[str, Any] | None = None,
            error: dict[str, Any] | None = None) -> None:
    common = op["metadata"]["commonMetadata"]
    common.update(updateTime=rfc3339(now), endTime=rfc3339(now))
    op["done"] = True
    if error is not None:
        op["error"] = error
    else:
        common["progressPercent"] = 100
        op["response"] = response
    op["metadata"].pop("state", None)


def _load_operation(s: Session, bucket: str, operation_id: str) -> tuple[Operation, dict[str, Any]]:
    found = s.get(Operation, operation_prefix(bucket) + operation_id)
    if found is None:
        raise NotFound(f"Operation {operation_id} not found in bucket {bucket}.")
    return found, copy.deepcopy(found.body)  # nested changes must not reach the loaded value, or no UPDATE


def _save(found: Operation, op: dict[str, Any]) -> dict[str, Any]:
    found.body = op  # a new value, so the JSON column is written
    return op


def due(row: StorageBucket, now: datetime) -> bool:
    """Whether the bucket's relocation has a step that ended by `now`."""
    r = row.relocation
    if r is None:
        return False
    ends = [t for t in (_when(r.get("until")), _when(r.get("expire"))) if t is not None]
    return bool(ends) and min(ends) <= now


def settle(s: Session, bucket: str, now: datetime) -> StorageBucket:
    """Move the bucket's relocation on by what the clock says: complete it (the location swaps),
    or, a final step past its ttl, revert it to the incremental copy."""
    row = get_bucket(s, bucket)
    r = row.relocation
    if r is None or not due(row, now):
        return row
    found, op = _load_operation(s, bucket, r["operation"])
    until, expire = _when(r.get("until")), _when(r.get("expire"))
    metadata = op["metadata"]
    if r["state"] == FINALIZING and expire is not None and (until is None or expire < until):
        row.relocation = {**r, "state": SYNCING, "until": None, "expire": None}
        metadata["state"] = SYNCING
        metadata.pop("writeDowntimeExpireTime", None)
        metadata["commonMetadata"]["updateTime"] = rfc3339(now)
        _save(found, op)
        return row
    row.location = metadata["destinationLocation"]
    body = dict(row.body or {})
    if "destinationCustomPlacementConfig" in metadata:
        body["customPlacementConfig"] = metadata["destinationCustomPlacementConfig"]
    else:
        body.pop("customPlacementConfig", None)
    if "destinationKmsKeyName" in metadata:
        body["encryption"] = {**(body.get("encryption") or {}), "defaultKmsKeyName": metadata["destinationKmsKeyName"]}
    row.body = body
    row.relocation = None
    row.metageneration += 1
    row.update_time = now
    _finish(op, now, {"@type": "type.googleapis.com/google.protobuf.Empty"})
    _save(found, op)
    return row


def advance(s: Session, bucket: str, operation_id: str, body: dict[str, Any], now: datetime) -> None:
    """buckets.operations.advanceRelocateBucket: the write-downtime relocation's final step."""
    unknown = set(body) - ADVANCE_FIELDS
    if unknown:
        raise InvalidArgument(f"Invalid argument: unknown field '{sorted(unknown)[0][:64]}'.")
    if "ttl" in body and "expireTime" in body:
        raise InvalidArgument("Invalid argument: supply one of ttl and expireTime.")
    if "expireTime" in body:
        try:
            expire = _aware(datetime.fromisoformat(str(body["expireTime"])[:64].replace("Z", "+00:00")))
        except ValueError as exc:
            raise InvalidArgument(f"Invalid value for expireTime: '{str(body['expireTime'])[:64]}'") from exc
        if not now < expire <= now + MAX_TTL:
            raise InvalidArgument("Invalid value for expireTime: it must be in the future.")
    else:
        expire = now + (_duration(body["ttl"]) if body.get("ttl") is not None else DEFAULT_TTL)
    row = settle(s, bucket, now)
    found, op = _load_operation(s, bucket, operation_id)
    if op["metadata"].get("@type") != METADATA_TYPE:
        raise FailedPrecondition(f"Operation {operation_id} is not a bucket relocation.")
    r = row.relocation
    if op["done"] or r is None or r["operation"] != operation_id:
        raise FailedPrecondition(f"Operation {operation_id} has already completed.")
    if not op["metadata"]["writeDowntime"]:
        raise FailedPrecondition(f"Operation {operation_id} relocates without write downtime: it has no final "
                                 "step to advance to.")
    if r["state"] == FINALIZING:
        raise FailedPrecondition(f"Operation {operation_id} is already in its final synchronization.")
    row.relocation = {**r, "state": FINALIZING, "until": (now + RELOCATION_STEP).isoformat(),
                      "expire": expire.isoformat()}
    op["metadata"].update(state=FINALIZING, writeDowntimeExpireTime=rfc3339(expire))
    op["metadata"]["commonMetadata"].update(updateTime=rfc3339(now), progressPercent=50)
    _save(found, op)


def cancel(s: Session, bucket: str, operation_id: str, now: datetime) -> None:
    """buckets.operations.cancel: a running relocation before its final step stops, the bucket
    stays where it was; a done operation (any kind) cannot be cancelled."""
    row = settle(s, bucket, now)
    found, op = _load_operation(s, bucket, operation_id)
    if op["done"]:
        raise FailedPrecondition(f"Operation {operation_id} has already completed and cannot be cancelled.")
    r = row.relocation
    if r is not None and r["operation"] == operation_id and r["state"] == FINALIZING:
        raise FailedPrecondition(f"Operation {operation_id} is in its final synchronization and can no longer "
                                 "be cancelled.")
    if r is not None and r["operation"] == operation_id:
        row.relocation = None
    op["metadata"]["commonMetadata"]["requestedCancellation"] = True
    _finish(op, now, error={"code": 1, "message": "Operation was cancelled."})
    _save(found, op)


def check_configurable(row: StorageBucket) -> None:
    """Refuse a bucket configuration change (patch, update, lock, delete) during a relocation."""
    if row.relocation is not None:
        raise FailedPrecondition(CONFIGURATION_LOCKED)


def check_writable(row: StorageBucket, now: datetime) -> None:
    """Refuse an object write during the final synchronization (write downtime)."""
    r = row.relocation
    if r is None or r["state"] != FINALIZING:
        return
    until = _when(r.get("until"))
    expire = _when(r.get("expire"))
    if until is not None and now < until and (expire is None or now < expire):
        raise FailedPrecondition(WRITE_DOWNTIME)
