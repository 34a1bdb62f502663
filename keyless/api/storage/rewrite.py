"""Cloud Storage's server-side writes from existing objects: objects.copy, objects.rewrite (resumable
with a rewriteToken, at most maxBytesRewrittenPerCall per call), objects.compose (up to 32 sources,
the composite's crc32c and componentCount, no md5Hash) and objects.move (an atomic rename)
(https://cloud.google.com/storage/docs/json_api/v1/objects/rewrite, .../compose, .../move).

Permissions as on Google: storage.objects.get on each source, storage.objects.create on the
destination, and storage.objects.delete on it when it exists and is replaced; move needs
storage.objects.move on the source. Data Access entries: storage.objects.get (DATA_READ) for
sources, storage.objects.create (DATA_WRITE) for the destination, storage.objects.delete for a
moved source. Object names are read from the raw (percent-encoded) path, so a name containing
`/copyTo/b/` cannot be mistaken for the separator.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from starlette.routing import Route

from keyless.api.storage.media import commit_object
from keyless.api.storage.wire import (
    MAX_OBJECT_BYTES,
    StorageCall,
    authorize_object,
    data_access,
    load_bucket,
    read_preconditions,
    storage_endpoint,
)
from keyless.errors import InvalidArgument, NotFound
from keyless.state import ServerState
from keyless.storage import objects
from keyless.storage.errors import PRECONDITION_FAILED, PreconditionFailed
from keyless.storage.names import validate_bucket_name, validate_object_name
from keyless.storage.objects import AnyObject, Preconditions, StoredBlob
from keyless.storage.uploads import UploadSession
from keyless.store.models import StorageBucket, StorageObject

MAX_COMPOSE_SOURCES = 32
REWRITE_UNIT = 1024 * 1024  # maxBytesRewrittenPerCall must be a multiple of 1 MiB, as on Google
COPY_CHUNK = 1024 * 1024
INVALID_TOKEN = "The rewrite token is invalid."
_COPY_PATH = re.compile(r"/b/([^/]+)/o/([^/]+)/(?:copyTo|rewriteTo)/b/([^/]+)/o/([^/]+)$")
_MOVE_PATH = re.compile(r"/b/([^/]+)/o/([^/]+)/moveTo/o/([^/]+)$")


def _raw_names(call: StorageCall, pattern: re.Pattern[str], keys: tuple[str, ...]) -> None:
    """Take the path's names from the encoded path when every name in it is one encoded segment
    (what Google's clients send); otherwise the router's split of the decoded path stands."""
    raw = call.request.scope.get("raw_path", b"") if call.request is not None else b""
    m = pattern.search(raw.decode("latin-1"))
    if m is not None:
        call.params.update({k: unquote(v) for k, v in zip(keys, m.groups(), strict=True)})


def _source_preconditions(call: StorageCall) -> Preconditions:
    return Preconditions(call.int_arg("ifSourceGenerationMatch"), call.int_arg("ifSourceGenerationNotMatch"),
                         call.int_arg("ifSourceMetagenerationMatch"), call.int_arg("ifSourceMetagenerationNotMatch"))


def _bucket(call: StorageCall, param: str) -> StorageBucket:
    call.params["bucket"] = validate_bucket_name(call.params[param])
    return load_bucket(call)


def _authorize_destination(call: StorageCall, row: StorageBucket, name: str) -> None:
    """create on the destination, and delete when it exists (the write replaces it)."""
    authorize_object(call, row, name, "storage.objects.create")
    with call.read() as s:
        existing = objects.find_object(s, row.name, name)
    if existing is not None and call.arg("ifGenerationMatch") != "0":
        authorize_object(call, row, name, "storage.objects.delete")


def _read_source(call: StorageCall, row: StorageBucket, name: str, generation: int | None,
                 pre: Preconditions) -> AnyObject:
    authorize_object(call, row, name, "storage.objects.get")
    with call.read() as s:
        obj = objects.get_object(s, row.name, name, generation)
    pre.check(obj)
    return obj


def _destination_metadata(call: StorageCall, source: AnyObject) -> dict[str, Any]:
    """The request body's metadata when it sets any writable field, else the source's (as Google copies)."""
    given = objects.validate_metadata(call.body)
    if given:  # the source's contexts persist unless the request sets its own, as on Google
        kept = (source.body or {}).get("contexts")
        return given if "contexts" in given or not kept else {**given, "contexts": kept}
    return {k: v for k, v in (source.body or {}).items() if k in objects.COPIED}



def _source_read(call: StorageCall, source_bucket: StorageBucket, source: AnyObject) -> None:
    data_access(call, "storage.objects.get", source_bucket, objects.object_resource(source_bucket.name, source.name),
                "storage.objects.get")


def _open_blob(call: StorageCall, source: AnyObject) -> Any:
    try:
        return call.storage.blobs.open(source.blob_id)
    except FileNotFoundError:  # replaced or deleted since it was read
        raise objects.not_found(source.bucket, source.name) from None


# -- copy ----------------------------------------------------------------------------------------

def copy_object(call: StorageCall) -> dict[str, Any]:
    """POST b/SB/o/SO/copyTo/b/DB/o/DO: the whole object in one call."""
    _raw_names(call, _COPY_PATH, ("sourceBucket", "sourceObject", "destinationBucket", "destinationObject"))
    src_bucket, dst_bucket, src, dst = _endpoints(call)
    call.touch(project_id=dst_bucket.project_id, name=objects.object_resource(dst_bucket.name, dst), type="gcs_bucket")
    source = _read_source(call, src_bucket, src, call.int_arg("sourceGeneration"), _source_preconditions(call))
    _authorize_destination(call, dst_bucket, dst)
    writer = call.storage.blobs.writer(MAX_OBJECT_BYTES)
    try:
        with _open_blob(call, source) as f:
            while chunk := f.read(COPY_CHUNK):
                writer.write(chunk)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    _source_read(call, src_bucket, source)
    blob = StoredBlob(writer.blob_id, writer.size, source.md5_hash, writer.hasher.crc32c_b64)
    return commit_object(call, dst_bucket, dst, blob, _destination_metadata(call, source))


def _endpoints(call: StorageCall) -> tuple[StorageBucket, StorageBucket, str, str]:
    src_bucket = _bucket(call, "sourceBucket")
    dst_bucket = _bucket(call, "destinationBucket")
    src = validate_object_name(call.params["sourceObject"])
    dst = validate_object_name(call.params["destinationObject"])
    return src_bucket, dst_bucket, src, dst


# -- rewrite -------------------------------------------------------------------------------------

def _max_bytes(call: StorageCall) -> int | None:
    value = call.int_arg("maxBytesRewrittenPerCall")
    if value is None:
        return None
    if value <= 0 or value % REWRITE_UNIT:
        raise InvalidArgument(f"Invalid argument: maxBytesRewrittenPerCall must be a positive multiple of "
                              f"{REWRITE_UNIT}.")
    return value


def rewrite_object(call: StorageCall) -> dict[str, Any]:
    """POST b/SB/o/SO/rewriteTo/b/DB/o/DO: copies at most maxBytesRewrittenPerCall bytes per call;
    until done the answer carries a rewriteToken bound to this caller, source generation and
    destination, and the bytes so far wait in a private file (never visible as an object)."""
    _raw_names(call, _COPY_PATH, ("sourceBucket", "sourceObject", "destinationBucket", "destinationObject"))
    src_bucket, dst_bucket, src, dst = _endpoints(call)
    call.touch(project_id=dst_bucket.project_id, name=objects.object_resource(dst_bucket.name, dst), type="gcs_bucket")
    limit = _max_bytes(call)
    rewrites = call.storage.rewrites
    token = call.arg("rewriteToken")
    generation: int | None
    if token:
        session = _resume(call, token, src_bucket.name, src, dst_bucket.name, dst)
        generation = int(session.extra["sourceGeneration"])
    else:
        generation = call.int_arg("sourceGeneration")
    source = _read_source(call, src_bucket, src, generation, _source_preconditions(call))
    _authorize_destination(call, dst_bucket, dst)
    if not token:
        metadata = _destination_metadata(call, source)
        token = rewrites.open(UploadSession(
            bucket=dst_bucket.name, name=dst, metadata=metadata, preconditions={}, member=call.principal.member,
            declared_size=source.size, extra={"sourceBucket": src_bucket.name, "sourceObject": src,
                                              "sourceGeneration": str(source.generation)}))
        session = rewrites.get(token)
    with rewrites.lock(token):
        done = rewrites.received(token)
        want = source.size - done if limit is None else min(limit, source.size - done)
        with _open_blob(call, source) as f:
            f.seek(done)
            while want > 0 and (chunk := f.read(min(COPY_CHUNK, want))):
                done = rewrites.append(token, done, chunk, MAX_OBJECT_BYTES)
                want -= len(chunk)
        if done < source.size:
            return {"kind": "storage#rewriteResponse", "totalBytesRewritten": str(done),
                    "objectSize": str(source.size), "done": False, "rewriteToken": token}
        stored = rewrites.finish(token)
        rewrites.close(token)
    _source_read(call, src_bucket, source)
    resource = commit_object(call, dst_bucket, dst, stored, session.metadata)
    return {"kind": "storage#rewriteResponse", "totalBytesRewritten": str(source.size),
            "objectSize": str(source.size), "done": True, "resource": resource}


def _resume(call: StorageCall, token: str, src_bucket: str, src: str, dst_bucket: str, dst: str) -> UploadSession:
    try:
        session = call.storage.rewrites.get(token)
    except NotFound:
        raise InvalidArgument(INVALID_TOKEN) from None
    extra = session.extra
    if (session.member != call.principal.member or session.bucket != dst_bucket or session.name != dst
            or extra.get("sourceBucket") != src_bucket or extra.get("sourceObject") != src):
        raise InvalidArgument(INVALID_TOKEN)
    asked = call.int_arg("sourceGeneration")
    if asked is not None and str(asked) != extra.get("sourceGeneration"):
        raise InvalidArgument(INVALID_TOKEN)
    return session


# -- compose -------------------------------------------------------------------------------------

def compose_object(call: StorageCall) -> dict[str, Any]:
    """POST b/B/o/O/compose: the sources' bytes in order, in the same bucket."""
    row = _bucket(call, "destinationBucket")
    dst = validate_object_name(call.params["destinationObject"])
    call.touch(project_id=row.project_id, name=objects.object_resource(row.name, dst), type="gcs_bucket")
    sources = call.body.get("sourceObjects")
    if not isinstance(sources, list) or not sources:
        raise InvalidArgument("Required field: sourceObjects.")
    if len(sources) > MAX_COMPOSE_SOURCES:
        raise InvalidArgument(f"The number of source components provided ({len(sources)}) exceeds the maximum "
                              f"({MAX_COMPOSE_SOURCES}).")
    destination = call.body.get("destination") or {}
    if not isinstance(destination, dict) or set(call.body) - {"kind", "sourceObjects", "destination",
                                                              "deleteSourceObjects"}:
        raise InvalidArgument("Invalid argument: a ComposeRequest has kind, sourceObjects, destination and "
                              "deleteSourceObjects.")
    if destination.get("bucket") not in (None, row.name):
        raise InvalidArgument("Invalid argument: the destination must be in the bucket of the request path.")
    metadata = objects.validate_metadata({k: v for k, v in destination.items() if k not in ("name", "bucket")})
    rows = [_compose_source(call, row, item) for item in sources]
    components = sum(int((r.body or {}).get("componentCount", 1)) for r in rows)
    if components > objects.MAX_COMPONENTS:
        raise InvalidArgument(f"The composite object would have {components} components, more than the maximum "
                              f"({objects.MAX_COMPONENTS}).")
    _authorize_destination(call, row, dst)
    delete_sources = bool(call.body.get("deleteSourceObjects"))
    if delete_sources:
        for r in rows:
            authorize_object(call, row, r.name, "storage.objects.delete")
    writer = call.storage.blobs.writer(MAX_OBJECT_BYTES)
    try:
        for r in rows:
            with _open_blob(call, r) as f:
                while chunk := f.read(COPY_CHUNK):
                    writer.write(chunk)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    for r in rows:
        _source_read(call, row, r)
    blob = StoredBlob(writer.blob_id, writer.size, "", writer.hasher.crc32c_b64)
    body = commit_object(call, row, dst, blob, {**metadata, "componentCount": components})
    if delete_sources:
        _delete_sources(call, row, [r for r in rows if r.name != dst])
    return body


def _compose_source(call: StorageCall, row: StorageBucket, item: Any) -> AnyObject:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InvalidArgument("Invalid argument: each of sourceObjects needs a name.")
    name = validate_object_name(item["name"])
    try:
        generation = int(item["generation"]) if item.get("generation") is not None else None
        pre = item.get("objectPreconditions") or {}
        match = int(pre["ifGenerationMatch"]) if isinstance(pre, dict) and "ifGenerationMatch" in pre else None
    except (TypeError, ValueError):
        raise InvalidArgument(f"Invalid generation for source object {name[:64]}.") from None
    if generation is not None and match is not None and generation != match:  # "must be the same value"
        raise PreconditionFailed(PRECONDITION_FAILED)
    return _read_source(call, row, name, generation, Preconditions(if_generation_match=match))


def _delete_sources(call: StorageCall, row: StorageBucket, rows: list[AnyObject]) -> None:
    """deleteSourceObjects: each source generation composed, deleted as objects.delete would."""
    gone: list[str] = []
    with call.state.db.write(bump=False) as s:
        for r in rows:
            if objects.find_object(s, row.name, r.name) is None and isinstance(r, StorageObject):
                continue  # already gone
            try:
                blob = objects.delete_object(s, row.name, r.name, Preconditions(), r.generation)
            except NotFound:
                continue
            if blob:
                gone.append(blob)
    for blob_id in gone:
        call.storage.blobs.delete(blob_id)


# -- move ----------------------------------------------------------------------------------------

def move_object(call: StorageCall) -> dict[str, Any]:
    """POST b/B/o/SO/moveTo/o/DO: one transaction renames the object; no byte is copied."""
    _raw_names(call, _MOVE_PATH, ("bucket", "sourceObject", "destinationObject"))
    row = load_bucket(call)
    src = validate_object_name(call.params["sourceObject"])
    dst = validate_object_name(call.params["destinationObject"])
    call.touch(project_id=row.project_id, name=objects.object_resource(row.name, dst), type="gcs_bucket")
    if src == dst:
        raise InvalidArgument("Invalid argument: the source and destination objects are the same.")
    authorize_object(call, row, src, "storage.objects.move")
    _authorize_destination(call, row, dst)
    with call.state.db.write(bump=False) as s:
        moved, replaced = objects.move_object(s, row.name, src, dst, _source_preconditions(call),
                                              read_preconditions(call))
        s.flush()
        body = objects.object_json(moved, call.base_url)
    if replaced:
        call.storage.blobs.delete(replaced)
    data_access(call, "storage.objects.delete", row, objects.object_resource(row.name, src), "storage.objects.move")
    data_access(call, "storage.objects.create", row, objects.object_resource(row.name, dst), "storage.objects.create")
    return body


def routes(state: ServerState) -> list[Route]:
    """Beside keyless.api.storage's routes, under /storage."""
    copy = "/v1/b/{sourceBucket}/o/{sourceObject:path}/{verb}/b/{destinationBucket}/o/{destinationObject:path}"
    return [
        Route(copy.replace("{verb}", "copyTo"), storage_endpoint(state, copy_object), methods=["POST"]),
        Route(copy.replace("{verb}", "rewriteTo"), storage_endpoint(state, rewrite_object), methods=["POST"]),
        Route("/v1/b/{bucket}/o/{sourceObject:path}/moveTo/o/{destinationObject:path}",
              storage_endpoint(state, move_object), methods=["POST"]),
        Route("/v1/b/{destinationBucket}/o/{destinationObject:path}/compose",
              storage_endpoint(state, compose_object), methods=["POST"]),
    ]

