"""Objects (https://cloud.google.com/storage/docs/json_api/v1/objects): the live generation of
each name, its metadata, preconditions, and listing with prefix/delimiter/pagination.

Generations are microsecond timestamps that only grow, as on Google; a write that replaces
an object gives it a new generation and metageneration 1. Preconditions follow
https://cloud.google.com/storage/docs/request-preconditions (`ifGenerationMatch=0`: the
object must not exist). Listing orders names by their bytes (the `C` collation on
PostgreSQL), so a prefix's names are contiguous and page tokens are stable.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import InvalidArgument, NotFound
from keyless.iam.evaluate import ResourceContext
from keyless.storage.buckets import SERVICE, varint
from keyless.storage.errors import PRECONDITION_FAILED, PreconditionFailed, RetentionPolicyNotMet
from keyless.store.models import StorageBucket, StorageObject, StorageObjectVersion

# A generation, live or not: both tables carry the same columns.
AnyObject = StorageObject | StorageObjectVersion

MAX_CUSTOM_METADATA_BYTES = 8 * 1024  # Google's limit on the custom metadata of one object
# Object resource fields a client may set (the rest are computed).
WRITABLE = {"contentType", "contentEncoding", "contentDisposition", "contentLanguage", "cacheControl",
            "metadata", "customTime", "storageClass", "temporaryHold", "eventBasedHold", "contexts"}
# The object holds (https://cloud.google.com/storage/docs/object-holding): while either is true the
# object can be neither deleted nor replaced; their names in Google's refusal.
HOLDS = {"temporaryHold": "Temporary", "eventBasedHold": "Event-Based"}
# Fields of the Object resource for features Keyless lacks: known, and refused by name when set.
UNIMPLEMENTED = {"retention": "object retention", "kmsKeyName": "customer-managed encryption keys"}
# The rest are output only: ignored on input, as Google does (issue #19).
ACCEPTED = WRITABLE | UNIMPLEMENTED.keys() | {
    "name", "bucket", "md5Hash", "crc32c", "kind", "acl", "size", "id", "generation", "metageneration", "etag",
    "timeCreated", "updated", "selfLink", "mediaLink", "componentCount", "customerEncryption", "hardDeleteTime",
    "owner", "restoreToken", "retentionExpirationTime", "softDeleteTime", "timeDeleted", "timeFinalized",
    "timeStorageClassUpdated"}


OBJECT_TYPE = "storage.googleapis.com/Object"


def object_resource(bucket: str, name: str) -> str:
    """The resource name IAM conditions and audit entries see: projects/_/buckets/B/objects/O."""
    return f"projects/_/buckets/{bucket}/objects/{name}"


def object_context(bucket: str, name: str) -> ResourceContext:
    """What IAM conditions see of an object (resource.name/type/service)."""
    return ResourceContext(object_resource(bucket, name), OBJECT_TYPE, SERVICE)


def not_found(bucket: str, name: str) -> NotFound:
    return NotFound(f"No such object: {bucket}/{name}")


@dataclass(frozen=True)
class Preconditions:
    """ifGenerationMatch & co.; None where the request did not set one."""

    if_generation_match: int | None = None
    if_generation_not_match: int | None = None
    if_metageneration_match: int | None = None
    if_metageneration_not_match: int | None = None

    def check(self, row: AnyObject | None) -> None:
        generation = row.generation if row is not None else 0
        ok = True
        if self.if_generation_match is not None:
            ok &= generation == self.if_generation_match
        if self.if_generation_not_match is not None:
            ok &= generation != self.if_generation_not_match
        if self.if_metageneration_match is not None:
            ok &= row is not None and row.metageneration == self.if_metageneration_match
        if self.if_metageneration_not_match is not None:
            ok &= row is None or row.metageneration != self.if_metageneration_not_match
        if not ok:
            raise PreconditionFailed(PRECONDITION_FAILED)


@dataclass(frozen=True)
class StoredBlob:
    """Bytes already committed to the blob store, with their checksums."""

    blob_id: str
    size: int
    md5_b64: str
    crc32c_b64: str


def validate_metadata(body: dict[str, Any]) -> dict[str, Any]:
    """The client-settable fields of an Object resource, checked."""
    unknown = set(body) - ACCEPTED
    if unknown:
        raise InvalidArgument(f"Invalid argument: unknown field '{sorted(unknown)[0][:64]}'.")
    for name, feature in UNIMPLEMENTED.items():
        if body.get(name) not in (None, "", {}, []):
            raise InvalidArgument(f"Invalid argument: field '{name}' is not supported: Keyless does not implement "
                                  f"{feature}.")
    out: dict[str, Any] = {}
    for key in HOLDS:
        if body.get(key) is not None:
            if not isinstance(body[key], bool):
                raise InvalidArgument(f"Invalid value for {key}: expected a boolean.")
            out[key] = body[key]
    if body.get("contexts") is not None:
        contexts = {k: {"value": v} for k, v in validate_contexts(body["contexts"]).items() if v is not None}
        if contexts:
            out["contexts"] = {"custom": contexts}
    for key in WRITABLE - {"metadata", "contexts"} - HOLDS.keys():
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 1024:
            raise InvalidArgument(f"Invalid value for {key}: expected a string of at most 1024 characters.")
        out[key] = value
    custom = body.get("metadata")
    if custom is not None:
        if not isinstance(custom, dict) or not all(isinstance(k, str) and isinstance(v, str | None)
                                                   for k, v in custom.items()):
            raise InvalidArgument("Invalid value for metadata: expected a map of strings.")
        custom = {k: v for k, v in custom.items() if v is not None}
        if len(json.dumps(custom).encode()) > MAX_CUSTOM_METADATA_BYTES:
            raise InvalidArgument("Custom metadata exceeds the maximum size of 8 KiB.")
        if custom:
            out["metadata"] = custom
    return out


# -- object contexts (https://cloud.google.com/storage/docs/object-contexts) ----------------------
# `contexts.custom`: KEY -> {value, createTime, updateTime}. Keys and values are 1 to 256
# characters beginning with a letter or digit (https://cloud.google.com/storage/docs/use-object-contexts);
# MAX_CONTEXTS bounds how many one object keeps.
MAX_CONTEXTS = 50
CONTEXT_PAYLOAD = {"value", "createTime", "updateTime", "extendedDataTypeUrl"}  # the rest is output only


def _context_text(what: str, text: Any) -> str:
    if not isinstance(text, str) or not 1 <= len(text) <= 256 or not text[0].isalnum() \
            or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidArgument(f"Invalid object context {what} '{str(text)[:64]}': expected 1 to 256 characters "
                              "beginning with a letter or digit.")
    return text


def validate_contexts(raw: Any) -> dict[str, str | None]:
    """`contexts` of a request, checked: KEY -> value, None where a patch removes the key."""
    if not isinstance(raw, dict) or set(raw) - {"custom"}:
        raise InvalidArgument("Invalid value for contexts: expected {\"custom\": {KEY: {\"value\": VALUE}}}.")
    custom = raw.get("custom") or {}
    if not isinstance(custom, dict) or len(custom) > MAX_CONTEXTS:
        raise InvalidArgument(f"Invalid value for contexts.custom: expected a map of at most {MAX_CONTEXTS} "
                              "contexts.")
    out: dict[str, str | None] = {}
    for key, payload in custom.items():
        _context_text("key", key)
        if payload is None:
            out[key] = None
            continue
        if not isinstance(payload, dict) or set(payload) - CONTEXT_PAYLOAD or "value" not in payload:
            raise InvalidArgument(f"Invalid value for contexts.custom['{key[:64]}']: expected {{\"value\": VALUE}}.")
        out[key] = _context_text("value", payload["value"])
    return out


def custom_contexts(body: dict[str, Any] | None) -> dict[str, dict[str, str]]:
    """An object body's `contexts.custom` (empty when it has none)."""
    return dict(((body or {}).get("contexts") or {}).get("custom") or {})


def stamp_contexts(before: dict[str, Any] | None, after: dict[str, Any], now: datetime) -> None:
    """Give `after`'s contexts their times: a key's createTime is when it first came, its
    updateTime when its value last changed (`before`: the body it replaces, if any)."""
    new = custom_contexts(after)
    if not new:
        after.pop("contexts", None)
        return
    old = custom_contexts(before)
    stamped: dict[str, dict[str, str]] = {}
    for key, payload in new.items():
        kept = old.get(key)
        if kept is not None and kept.get("value") == payload["value"]:
            stamped[key] = dict(kept)
        else:
            stamped[key] = {"value": payload["value"], "createTime": kept["createTime"] if kept else rfc3339(now),
                            "updateTime": rfc3339(now)}
    after["contexts"] = {"custom": stamped}


def context_permissions(current: dict[str, Any] | None, body: dict[str, Any], replace_all: bool) -> list[str]:
    """What a patch (merge) or update (replace) of an object needs beyond storage.objects.update
    for the contexts it creates, changes and removes."""
    before = {k: p.get("value") for k, p in custom_contexts(current).items()}
    if "contexts" not in body and not replace_all:
        return []
    given = body.get("contexts")
    asked = validate_contexts(given) if given is not None else {}
    if replace_all or given is None or (isinstance(given, dict) and given.get("custom") is None):
        after = {k: v for k, v in asked.items() if v is not None}
    else:
        after = {k: v for k, v in {**before, **asked}.items() if v is not None}
    needed = []
    if set(after) - set(before):
        needed.append("storage.objects.createContext")
    if any(k in before and before[k] != v for k, v in after.items()):
        needed.append("storage.objects.updateContext")
    if set(before) - set(after):
        needed.append("storage.objects.deleteContext")
    return needed


def context_filter(text: str) -> Callable[[AnyObject], bool]:
    """objects.list's `filter`, which Google supports for contexts only: terms joined by AND, each
    `contexts."KEY"="VALUE"` or `contexts."KEY":*` (present), negated by a leading `-` or NOT."""
    if len(text) > MAX_FILTER:
        raise InvalidArgument(f"Invalid filter: longer than {MAX_FILTER} characters.")
    terms: list[tuple[bool, str, str | None]] = []
    rest = text.strip()
    while rest:
        m = _FILTER_TERM.match(rest)
        if m is None:
            raise InvalidArgument(f"Invalid filter: '{text[:128]}'. Supported: contexts.\"KEY\"=\"VALUE\", "
                                  "contexts.\"KEY\":*, negated with - or NOT, joined with AND.")
        key = m.group("qkey") if m.group("qkey") is not None else m.group("key")
        value = m.group("qvalue") if m.group("qvalue") is not None else m.group("value")
        terms.append((bool(m.group("neg")), key, value))
        rest = rest[m.end():]
        if rest:
            joined = re.match(r"\s+AND\s+", rest)
            if joined is None:
                raise InvalidArgument(f"Invalid filter: '{text[:128]}': terms are joined with AND.")
            rest = rest[joined.end():]

    def matches(row: AnyObject) -> bool:
        found = custom_contexts(row.body)
        for negated, key, value in terms:
            hit = key in found and (value is None or found[key].get("value") == value)
            if hit == negated:
                return False
        return True
    return matches


MAX_FILTER = 4096
_FILTER_TERM = re.compile(
    r'(?P<neg>-|NOT\s+)?contexts\.(?:"(?P<qkey>[^"\\]{1,256})"|(?P<key>[A-Za-z0-9][\w.-]{0,255}))'
    r'(?:=(?:"(?P<qvalue>[^"\\]{1,256})"|(?P<value>[A-Za-z0-9][\w.-]{0,255}))|:\*)')


def find_object(s: Session, bucket: str, name: str) -> StorageObject | None:
    return s.scalar(select(StorageObject).where(StorageObject.bucket == bucket, StorageObject.name == name))


def get_object(s: Session, bucket: str, name: str, generation: int | None = None, *,
               soft_deleted: bool = False) -> AnyObject:
    """The live object, or with `generation` a noncurrent one; with `soft_deleted`, that
    generation among the soft-deleted (https://cloud.google.com/storage/docs/soft-delete)."""
    if soft_deleted:
        if generation is None:
            raise InvalidArgument("Required parameter: generation (with softDeleted=true).")
        found = _version(s, bucket, name, generation, soft_deleted=True)
        if found is None:
            raise not_found(bucket, name)
        return found
    row = find_object(s, bucket, name)
    if row is not None and (generation is None or row.generation == generation):
        return row
    version = _version(s, bucket, name, generation, soft_deleted=False) if generation is not None else None
    if version is None:
        raise not_found(bucket, name)
    return version


def get_live_object(s: Session, bucket: str, name: str, generation: int | None = None) -> StorageObject:
    row = find_object(s, bucket, name)
    if row is None or (generation is not None and row.generation != generation):
        raise not_found(bucket, name)
    return row


def _version(s: Session, bucket: str, name: str, generation: int, *,
             soft_deleted: bool) -> StorageObjectVersion | None:
    q = select(StorageObjectVersion).where(StorageObjectVersion.bucket == bucket, StorageObjectVersion.name == name,
                                           StorageObjectVersion.generation == generation)
    if soft_deleted:
        q = q.where(StorageObjectVersion.soft_delete_time.is_not(None),
                    StorageObjectVersion.hard_delete_time > datetime.now(UTC))
    else:
        q = q.where(StorageObjectVersion.soft_delete_time.is_(None))
    return s.scalars(q.limit(1)).first()


def bucket_retention(s: Session, bucket: str) -> tuple[bool, int]:
    """(versioning on, soft delete retention in seconds) of a bucket."""
    row = s.get(StorageBucket, bucket)
    body = (row.body or {}) if row is not None else {}
    versioned = bool((body.get("versioning") or {}).get("enabled"))
    try:
        soft = int((body.get("softDeletePolicy") or {}).get("retentionDurationSeconds") or 0)
    except (TypeError, ValueError):
        soft = 0
    return versioned, soft


def check_retention(s: Session, row: AnyObject, now: datetime) -> None:
    """Refuse to delete or replace an object under a hold, or younger than its bucket's
    retention period (counted from creation, or from the release of an event-based hold:
    the object's retentionExpirationTime)."""
    for key, label in HOLDS.items():
        if (row.body or {}).get(key):
            raise RetentionPolicyNotMet(f"Object '{row.bucket}/{row.name}' is under active {label} hold and cannot "
                                        f"be deleted, overwritten or archived until hold is removed.")
    period = retention_period(s.get(StorageBucket, row.bucket))
    if not period:  # no policy (or one since removed): nothing retains the object
        return
    created = row.create_time if row.create_time.tzinfo else row.create_time.replace(tzinfo=UTC)
    until = created + timedelta(seconds=period)
    released = (row.body or {}).get("retentionExpirationTime")
    if isinstance(released, str):
        until = max(until, datetime.fromisoformat(released.replace("Z", "+00:00")))
    if until > now:
        raise RetentionPolicyNotMet(f"Object '{row.bucket}/{row.name}' is subject to bucket's retention policy "
                                    f"or object retention and cannot be deleted or overwritten until "
                                    f"{rfc3339(until)}")


def retention_period(bucket: StorageBucket | None) -> int:
    """The bucket's retention period in seconds (0: none)."""
    policy = ((bucket.body or {}).get("retentionPolicy") or {}) if bucket is not None else {}
    try:
        return int(policy.get("retentionPeriod") or 0)
    except (TypeError, ValueError):
        return 0


def _retire(s: Session, row: StorageObject, now: datetime) -> str | None:
    """The live `row` stops being live: noncurrent in a versioned bucket, soft-deleted under a
    soft delete policy, else gone. Returns the blob to delete now (None when a version keeps it).
    Refused while the bucket's retention policy holds the object."""
    check_retention(s, row, now)
    versioned, soft = bucket_retention(s, row.bucket)
    if not versioned and not soft:
        return row.blob_id
    s.add(StorageObjectVersion(
        bucket=row.bucket, name=row.name, generation=row.generation, metageneration=row.metageneration,
        size=row.size, md5_hash=row.md5_hash, crc32c=row.crc32c, blob_id=row.blob_id, create_time=row.create_time,
        update_time=row.update_time, body=dict(row.body or {}), time_deleted=now,
        soft_delete_time=None if versioned else now, hard_delete_time=None if versioned else now + timedelta(
            seconds=soft)))
    return None


def put_object(s: Session, bucket: str, name: str, blob: StoredBlob, metadata: dict[str, Any],
               pre: Preconditions) -> tuple[StorageObject, str | None]:
    """Make `blob` the live generation of `name`; return the row and the blob it replaced."""
    row = find_object(s, bucket, name)
    pre.check(row)
    now = datetime.now(UTC)
    replaced = _retire(s, row, now) if row is not None else None
    previous = row.generation if row is not None else None
    if row is None:
        row = StorageObject(bucket=bucket, name=name, create_time=now)
        s.add(row)
    else:
        row.create_time = now
    row.generation = _generation_after(previous)
    row.metageneration = 1
    row.size, row.md5_hash, row.crc32c, row.blob_id = blob.size, blob.md5_b64, blob.crc32c_b64, blob.blob_id
    row.update_time = now
    body = dict(metadata)
    body.setdefault("contentType", "application/octet-stream")
    bucket_row = s.get(StorageBucket, bucket)
    if "eventBasedHold" not in body and bucket_row is not None and (bucket_row.body or {}).get("defaultEventBasedHold"):
        body["eventBasedHold"] = True  # the bucket's default hold, on every new object
    stamp_contexts(None, body, now)
    row.body = body
    return row, replaced


def _generation_after(previous: int | None) -> int:
    now = time.time_ns() // 1000
    return max(now, previous + 1) if previous is not None else now


def delete_object(s: Session, bucket: str, name: str, pre: Preconditions,
                  generation: int | None = None) -> str | None:
    """Delete the live object (noncurrent or soft-deleted if the bucket keeps it) or, with
    `generation`, a noncurrent one (soft-deleted under a policy). Returns the blob to delete."""
    row = get_object(s, bucket, name, generation)
    pre.check(row)
    now = datetime.now(UTC)
    if isinstance(row, StorageObject):
        blob = _retire(s, row, now)
        s.delete(row)
        return blob
    check_retention(s, row, now)
    _, soft = bucket_retention(s, bucket)
    if soft:
        row.soft_delete_time, row.hard_delete_time = now, now + timedelta(seconds=soft)
        return None
    s.delete(row)
    return row.blob_id


def restore_object(s: Session, bucket: str, name: str, generation: int,
                   pre: Preconditions) -> tuple[StorageObject, str | None]:
    """objects.restore: the soft-deleted `generation` becomes live again under a new generation
    (its bytes are not copied); a live object it displaces is retired. Returns the row and a blob to delete."""
    version = get_object(s, bucket, name, generation, soft_deleted=True)
    row = find_object(s, bucket, name)
    pre.check(row)
    now = datetime.now(UTC)
    replaced = _retire(s, row, now) if row is not None else None
    previous = max(row.generation if row is not None else 0, version.generation)
    if row is None:
        row = StorageObject(bucket=bucket, name=name)
        s.add(row)
    row.generation, row.metageneration = _generation_after(previous), 1
    row.size, row.md5_hash, row.crc32c, row.blob_id = version.size, version.md5_hash, version.crc32c, version.blob_id
    row.create_time, row.update_time, row.body = now, now, dict(version.body or {})
    s.delete(version)
    return row, replaced


def _bytewise(column: Any, s: Session) -> Any:
    return column.collate("C") if s.get_bind().dialect.name == "postgresql" else column


def _page_token(key: str, is_prefix: bool) -> str:
    return base64.urlsafe_b64encode(json.dumps([key, is_prefix]).encode()).decode()


def _parse_token(token: str) -> tuple[str, bool]:
    try:
        key, is_prefix = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        if isinstance(key, str) and isinstance(is_prefix, bool):
            return key, is_prefix
    except (ValueError, TypeError, UnicodeDecodeError):
        pass
    raise InvalidArgument("Invalid page token.")


def list_objects(s: Session, bucket: str, *, prefix: str = "", delimiter: str = "", max_results: int = 1000,
                 page_token: str | None = None, start_offset: str = "", end_offset: str = "",
                 include_trailing_delimiter: bool = False, matches: Callable[[AnyObject], bool] | None = None,
                 ) -> tuple[list[StorageObject], list[str], str | None]:
    """One page: (objects, prefixes, nextPageToken). maxResults counts both, as on Google."""
    name = _bytewise(StorageObject.name, s)
    lower: tuple[str, bool] | None = None  # (bound, inclusive)
    if page_token:
        key, is_prefix = _parse_token(page_token)
        lower = (_after_prefix(key), True) if is_prefix else (key, False)
    if start_offset and (lower is None or start_offset > lower[0]):
        lower = (start_offset, True)
    items: list[StorageObject] = []
    prefixes: list[str] = []
    batch = min(max_results + 1, 1000)
    while True:
        conds: list[ColumnElement[bool]] = [StorageObject.bucket == bucket]
        if prefix:
            conds.append(StorageObject.name.startswith(prefix, autoescape=True))
        if lower is not None:
            conds.append(name >= lower[0] if lower[1] else name > lower[0])
        if end_offset:
            conds.append(name < end_offset)
        rows = s.scalars(select(StorageObject).where(*conds).order_by(name).limit(batch)).all()
        if not rows:
            return items, prefixes, None
        for row in rows:
            if len(items) + len(prefixes) >= max_results:
                last_prefix = bool(prefixes) and (not items or prefixes[-1] > items[-1].name)
                key = prefixes[-1] if last_prefix else items[-1].name
                return items, prefixes, _page_token(key, last_prefix)
            cut = row.name.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                p = row.name[:cut + len(delimiter)]
                prefixes.append(p)
                if include_trailing_delimiter and row.name == p and (matches is None or matches(row)):
                    items.append(row)
                lower = (_after_prefix(p), True)  # skip the rest of this prefix in one query
                break
            if matches is None or matches(row):  # the prefixes are exempt from the filter, as on Google
                items.append(row)
            lower = (row.name, False)
        else:
            if len(rows) < batch:
                return items, prefixes, None


def _after_prefix(p: str) -> str:
    """The smallest string greater than every string starting with `p` (bytewise order)."""
    return p[:-1] + chr(ord(p[-1]) + 1)


def object_json(row: AnyObject, base_url: str) -> dict[str, Any]:
    """The JSON API Object resource (projection=noAcl)."""
    quoted = quote(row.name, safe="")
    created, updated = rfc3339(row.create_time), rfc3339(row.update_time)
    body: dict[str, Any] = {
        "kind": "storage#object",
        "id": f"{row.bucket}/{row.name}/{row.generation}",
        "selfLink": f"{base_url}/storage/v1/b/{row.bucket}/o/{quoted}",
        "mediaLink": f"{base_url}/download/storage/v1/b/{row.bucket}/o/{quoted}?generation={row.generation}&alt=media",
        "name": row.name,
        "bucket": row.bucket,
        "generation": str(row.generation),
        "metageneration": str(row.metageneration),
        "storageClass": "STANDARD",
        "size": str(row.size),
        "crc32c": row.crc32c,
        "etag": object_etag(row),
        "timeCreated": created,
        "updated": updated,
        "timeStorageClassUpdated": created,
        "timeFinalized": created,
    }
    if isinstance(row, StorageObjectVersion):
        body["timeDeleted"] = rfc3339(row.time_deleted)
        if row.soft_delete_time is not None and row.hard_delete_time is not None:
            body["softDeleteTime"], body["hardDeleteTime"] = rfc3339(row.soft_delete_time), rfc3339(row.hard_delete_time)
    if row.md5_hash:  # composite objects have none (https://cloud.google.com/storage/docs/composite-objects)
        body["md5Hash"] = row.md5_hash
    body.update(row.body or {})
    return body


def object_etag(row: AnyObject) -> str:
    """An object's etag: field 1 = generation, field 2 = metageneration, as Google's."""
    return base64.b64encode(b"\x08" + varint(row.generation) + b"\x10" + varint(row.metageneration)).decode()


# -- metadata updates, moves (https://cloud.google.com/storage/docs/json_api/v1/objects/patch) ----

# What the server keeps in an object's body beside the client's fields (kept across updates).
COMPUTED = {"componentCount", "retentionExpirationTime"}
# What a copy or rewrite takes from its source: not its holds nor its retention (the bucket's
# defaultEventBasedHold applies to the copy, as to any new object).
COPIED = (WRITABLE - HOLDS.keys()) | {"componentCount"}
MAX_COMPONENTS = 1024  # https://cloud.google.com/storage/docs/composite-objects#limitations


def _merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396 merge of the writable fields: null removes a field, or a key of `metadata`."""
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key == "metadata" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {k: v for k, v in {**out[key], **value}.items() if v is not None}
        elif key == "contexts" and isinstance(value, dict) and isinstance(value.get("custom"), dict):
            merged = {k: v for k, v in {**custom_contexts(out), **value["custom"]}.items() if v is not None}
            out[key] = {"custom": merged}
        else:
            out[key] = value
    return out


def update_object(s: Session, bucket: str, name: str, body: dict[str, Any], *, replace_all: bool,
                  generation: int | None, pre: Preconditions) -> AnyObject:
    """objects.patch (a merge) or objects.update (the writable fields replaced as a whole); the
    metageneration grows, the bytes and generation stay."""
    validate_metadata(body)  # unknown and unimplemented fields refused before anything changes
    row = get_object(s, bucket, name, generation)
    pre.check(row)
    current = {k: v for k, v in (row.body or {}).items() if k in WRITABLE}
    given = {k: v for k, v in body.items() if k in WRITABLE}
    merged = {k: v for k, v in given.items() if v is not None} if replace_all else _merge_patch(current, given)
    new_body = validate_metadata(merged)
    new_body.update({k: v for k, v in (row.body or {}).items() if k in COMPUTED})
    now = datetime.now(UTC)
    period = retention_period(s.get(StorageBucket, bucket))
    if (row.body or {}).get("eventBasedHold") and not new_body.get("eventBasedHold") and period:
        # releasing an event-based hold starts the retention period afresh (the "event")
        new_body["retentionExpirationTime"] = rfc3339(now + timedelta(seconds=period))
    stamp_contexts(row.body, new_body, now)
    row.body = new_body
    row.metageneration += 1
    row.update_time = now
    return row


def move_object(s: Session, bucket: str, source: str, destination: str, source_pre: Preconditions,
                destination_pre: Preconditions) -> tuple[StorageObject, str | None]:
    """objects.move: rename in one transaction, the bytes untouched (no copy); the moved object
    gets a new generation. Returns the row and the blob of an object it replaced."""
    if source == destination:
        raise InvalidArgument("Invalid argument: the source and destination objects are the same.")
    row = get_live_object(s, bucket, source)
    source_pre.check(row)
    check_retention(s, row, datetime.now(UTC))
    existing = find_object(s, bucket, destination)
    destination_pre.check(existing)
    replaced = None
    if existing is not None:
        replaced = _retire(s, existing, datetime.now(UTC))
        s.delete(existing)
        s.flush()
    row.name = destination
    row.generation = _generation_after(max(row.generation, existing.generation if existing is not None else 0))
    row.metageneration = 1
    row.update_time = datetime.now(UTC)
    return row, replaced


def list_versions(s: Session, bucket: str, *, prefix: str = "", delimiter: str = "", max_results: int = 1000,
                  page_token: str | None = None, soft_deleted: bool = False,
                  matches: Callable[[AnyObject], bool] | None = None,
                  ) -> tuple[list[AnyObject], list[str], str | None]:
    """objects.list with versions=true (live and noncurrent generations, by name then generation)
    or softDeleted=true (the soft-deleted only). Page tokens are (name, generation) keys; each page
    reads at most maxResults+1 rows of each table."""
    after: tuple[str, int] | None = None
    if page_token:
        key, _ = _parse_token(page_token)
        name_text, _, gen_text = key.rpartition("#")
        if not gen_text.isdigit():
            raise InvalidArgument("Invalid page token.")
        after = (name_text, int(gen_text))
    limit = min(max_results, 1000) + 1
    rows: list[AnyObject] = []
    tables: list[type[StorageObject] | type[StorageObjectVersion]] = \
        [StorageObjectVersion] if soft_deleted else [StorageObject, StorageObjectVersion]
    for table in tables:
        name = _bytewise(table.name, s)
        conds: list[ColumnElement[bool]] = [table.bucket == bucket]
        if prefix:
            conds.append(table.name.startswith(prefix, autoescape=True))
        if after is not None:
            conds.append(or_(name > after[0], and_(table.name == after[0], table.generation > after[1])))
        if table is StorageObjectVersion:
            live = StorageObjectVersion.soft_delete_time.is_not(None) if soft_deleted \
                else StorageObjectVersion.soft_delete_time.is_(None)
            conds.append(live)
            if soft_deleted:
                conds.append(StorageObjectVersion.hard_delete_time > datetime.now(UTC))
        found: list[AnyObject] = list(s.scalars(  # type: ignore[arg-type]
            select(table).where(*conds).order_by(name, table.generation).limit(limit)).all())
        rows += found
    rows.sort(key=lambda r: (r.name.encode(), r.generation))
    items: list[AnyObject] = []
    prefixes: list[str] = []
    for row in rows[:limit - 1]:
        cut = row.name.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            p = row.name[:cut + len(delimiter)]
            if p not in prefixes:
                prefixes.append(p)
            continue
        if matches is None or matches(row):  # a page may come out short: the token follows the rows read
            items.append(row)
    token = None
    if len(rows) >= limit:
        last = rows[limit - 2]
        token = _page_token(f"{last.name}#{last.generation}", False)
    return items, prefixes, token
