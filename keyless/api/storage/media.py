"""Cloud Storage media: uploads (`uploadType=media|multipart|resumable`,
https://cloud.google.com/storage/docs/uploads-downloads) and downloads (`alt=media`, with a
single `Range`, https://cloud.google.com/storage/docs/json_api/v1/objects/get).

Bytes stream to a temporary file and become an object only once complete and verified
(size against Content-Length / X-Upload-Content-Length, crc32c and md5Hash when the client
sends them): a short body, a bad checksum or a failed precondition stores nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, BinaryIO
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from keyless.api.http import BodyTooLarge, read_body
from keyless.api.storage.wire import (
    MAX_OBJECT_BYTES,
    StorageCall,
    authorize_object,
    data_access,
    load_bucket,
    read_preconditions,
)
from keyless.errors import InvalidArgument
from keyless.storage import buckets, objects, relocation
from keyless.storage.blobs import BlobWriter
from keyless.storage.errors import PayloadTooLarge, RangeNotSatisfiable
from keyless.storage.names import validate_object_name
from keyless.storage.objects import AnyObject, StoredBlob
from keyless.storage.uploads import UploadSession
from keyless.store.models import StorageBucket

MULTIPART_LIMIT = 64 * 1024 * 1024  # multipart bodies are parsed in memory; clients switch to resumable first
CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")
_session_locks: dict[str, asyncio.Lock] = {}


# -- uploads -------------------------------------------------------------------------------------

async def upload(call: StorageCall) -> Any:
    """POST /upload/storage/v1/b/B/o?uploadType=..."""
    upload_type = call.arg("uploadType")
    content_type = call.header("content-type") or ""
    if upload_type is None:
        upload_type = "multipart" if content_type.lower().startswith("multipart/") else "media"
    if call.arg("upload_id"):
        return await upload_chunk(call)
    if upload_type == "media":
        return await _upload_media(call)
    if upload_type == "multipart":
        return await _upload_multipart(call)
    if upload_type == "resumable":
        return await _start_resumable(call)
    raise InvalidArgument(f"Invalid upload type: {upload_type[:32]}")


def _declared_length(call: StorageCall) -> int | None:
    raw = call.header("content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidArgument("Invalid Content-Length header.") from exc
    if value > MAX_OBJECT_BYTES:
        raise PayloadTooLarge(f"Upload exceeds the maximum object size of {MAX_OBJECT_BYTES} bytes.")
    return value


def _prepare(call: StorageCall, name: str) -> StorageBucket:
    """Authorise a write of `name` before any byte is read: create, plus delete to replace."""
    row = load_bucket(call)
    call.touch(project_id=row.project_id, name=objects.object_resource(row.name, name), type="gcs_bucket")
    authorize_object(call, row, name, "storage.objects.create")
    with call.read() as s:
        existing = objects.find_object(s, row.name, name)
    if existing is not None and call.arg("ifGenerationMatch") != "0":
        authorize_object(call, row, name, "storage.objects.delete")
    return row


async def _stream_into(call: StorageCall, writer: BlobWriter) -> None:
    assert call.request is not None
    buffer = bytearray()
    async for chunk in call.request.stream():
        buffer += chunk
        if len(buffer) >= CHUNK:
            await run_in_threadpool(writer.write, bytes(buffer))
            buffer.clear()
    if buffer:
        await run_in_threadpool(writer.write, bytes(buffer))


async def _upload_media(call: StorageCall) -> dict[str, Any]:
    return await upload_media(call, validate_object_name(call.arg("name")))


async def upload_media(call: StorageCall, name: str, *,
                       received: Callable[[], None] | None = None) -> dict[str, Any]:
    """The request's body as the object `name` (its Content-Type; checked against X-Goog-Hash).
    `received`, called once the whole body is in, may refuse it before anything is stored."""
    declared = _declared_length(call)
    row = await run_in_threadpool(_prepare, call, name)
    writer = await run_in_threadpool(call.storage.blobs.writer, MAX_OBJECT_BYTES)
    try:
        await _stream_into(call, writer)
        if declared is not None and writer.size != declared:
            raise InvalidArgument(f"The request body has {writer.size} bytes but Content-Length declared {declared}.")
        if received is not None:
            received()
        await run_in_threadpool(writer.commit)
    except BaseException:
        await run_in_threadpool(writer.abort)
        raise
    blob = StoredBlob(writer.blob_id, writer.size, writer.hasher.md5_b64, writer.hasher.crc32c_b64)
    metadata = {"contentType": call.header("content-type")} if call.header("content-type") else {}
    expected = _goog_hash(call.header("x-goog-hash"))
    return await run_in_threadpool(commit_object, call, row, name, blob, metadata, expected)


def _goog_hash(header: str | None) -> dict[str, str]:
    """`X-Goog-Hash: crc32c=...,md5=...` -> {"crc32c": ..., "md5Hash": ...}."""
    out: dict[str, str] = {}
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "crc32c" and value:
            out["crc32c"] = value.strip()
        elif key == "md5" and value:
            out["md5Hash"] = value.strip()
    return out


async def _read_all(call: StorageCall, limit: int) -> bytes:
    assert call.request is not None
    declared = _declared_length(call)
    try:
        data = await read_body(call.request, limit)
    except BodyTooLarge as exc:
        raise PayloadTooLarge(exc.message) from None
    if declared is not None and len(data) != declared:
        raise InvalidArgument(f"The request body has {len(data)} bytes but Content-Length declared {declared}.")
    return bytes(data)


def parse_related(body: bytes, content_type: str) -> tuple[dict[str, Any], str, bytes]:
    """A multipart/related upload: (JSON metadata, media content type, media bytes)."""
    # gcloud (apitools) single-quotes its boundary: boundary='===...=='
    m = re.search(r"""boundary=(?:"([^"]{1,200})"|'([^']{1,200})'|([^";\s]{1,200}))""", content_type)
    if not content_type.lower().startswith("multipart/related") or m is None:
        raise InvalidArgument("Invalid multipart request: expected Content-Type multipart/related with a boundary.")
    delimiter = b"--" + next(g for g in m.groups() if g).encode()
    parts = body.split(delimiter)
    # ['', part1, part2, '--\r\n'] : each part is '\r\nheaders\r\n\r\ncontent\r\n'
    if len(parts) < 4 or not parts[-1].startswith(b"--"):
        raise InvalidArgument("Invalid multipart request: expected a metadata part and a media part.")
    sections = []
    for raw in parts[1:3]:
        # RFC 2046 says CRLF; gcloud (Python's email package) writes bare LF: accept both.
        eol = b"\r\n" if raw.startswith(b"\r\n") else b"\n"
        raw = raw[len(eol):] if raw.startswith(eol) else raw
        head, sep, content = raw.partition(eol + eol)
        if not sep:
            if raw.startswith(eol):  # no headers at all
                head, content = b"", raw[len(eol):]
            else:
                raise InvalidArgument("Invalid multipart request: a part has no header section.")
        if content.endswith(eol):  # the line break before the next delimiter belongs to it
            content = content[:-len(eol)]
        headers = {}
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        sections.append((headers, content))
    try:
        metadata = json.loads(sections[0][1] or b"{}")
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument("Invalid JSON payload received in the metadata part.") from exc
    if not isinstance(metadata, dict):
        raise InvalidArgument("Invalid JSON payload received in the metadata part: expected an object.")
    return metadata, sections[1][0].get("content-type", ""), sections[1][1]


async def _upload_multipart(call: StorageCall) -> dict[str, Any]:
    body = await _read_all(call, MULTIPART_LIMIT)
    metadata, media_type, data = parse_related(body, call.header("content-type") or "")
    name = validate_object_name(metadata.get("name") or call.arg("name"))
    settable = objects.validate_metadata(metadata)
    if media_type and "contentType" not in settable:
        settable["contentType"] = media_type
    expected = {k: metadata[k] for k in ("crc32c", "md5Hash") if isinstance(metadata.get(k), str)}
    row = await run_in_threadpool(_prepare, call, name)
    writer = await run_in_threadpool(call.storage.blobs.put, data, MAX_OBJECT_BYTES)
    blob = StoredBlob(writer.blob_id, writer.size, writer.hasher.md5_b64, writer.hasher.crc32c_b64)
    return await run_in_threadpool(commit_object, call, row, name, blob, settable, expected)


def commit_object(call: StorageCall, row: StorageBucket, name: str, blob: StoredBlob, metadata: dict[str, Any],
                  expected: dict[str, str] | None = None) -> dict[str, Any]:
    """Verify the checksums the client sent (`expected`: crc32c, md5Hash) and make the blob the
    object's live generation (uploads, copies, rewrites, composes); the blob is deleted if that
    fails, the generation it replaced once it is committed."""
    expected = expected or {}
    blobs = call.storage.blobs
    try:
        if metadata.get("contexts"):  # a new object with contexts (https://cloud.google.com/storage/docs/use-object-contexts)
            authorize_object(call, row, name, "storage.objects.createContext")
        if "crc32c" in expected and expected["crc32c"] != blob.crc32c_b64:
            raise InvalidArgument(f"Provided CRC32C \"{expected['crc32c'][:32]}\" doesn't match calculated "
                                  f"CRC32C \"{blob.crc32c_b64}\".")
        if "md5Hash" in expected and expected["md5Hash"] != blob.md5_b64:
            raise InvalidArgument(f"Provided MD5 hash \"{expected['md5Hash'][:32]}\" doesn't match calculated "
                                  f"MD5 hash \"{blob.md5_b64}\".")
        with call.state.db.write(bump=False) as s:  # no cache depends on objects
            # a resumable upload begun before a relocation's write downtime is lost in it, as on Google
            relocation.check_writable(buckets.get_bucket(s, row.name), datetime.now(UTC))
            obj, replaced = objects.put_object(s, row.name, name, blob, metadata, read_preconditions(call))
            s.flush()
            body = objects.object_json(obj, call.base_url)
    except BaseException:
        blobs.delete(blob.blob_id)
        raise
    if replaced:
        blobs.delete(replaced)
    data_access(call, "storage.objects.create", row, objects.object_resource(row.name, name),
                "storage.objects.create")
    return body


# -- resumable uploads ---------------------------------------------------------------------------

async def _start_resumable(call: StorageCall) -> Response:
    body = await _read_all(call, call.state.settings.max_body_bytes)
    try:
        metadata = json.loads(body) if body.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument("Invalid JSON payload received.") from exc
    if not isinstance(metadata, dict):
        raise InvalidArgument("Invalid JSON payload received. Expected an object at the top level.")
    name = validate_object_name(metadata.get("name") or call.arg("name"))
    settable = objects.validate_metadata(metadata)
    if call.header("x-upload-content-type") and "contentType" not in settable:
        settable["contentType"] = call.header("x-upload-content-type")
    declared = None
    if call.header("x-upload-content-length"):
        try:
            declared = int(call.header("x-upload-content-length") or "")
        except ValueError as exc:
            raise InvalidArgument("Invalid X-Upload-Content-Length header.") from exc
        if declared > MAX_OBJECT_BYTES:
            raise PayloadTooLarge(f"Upload exceeds the maximum object size of {MAX_OBJECT_BYTES} bytes.")
    row = await run_in_threadpool(_prepare, call, name)
    pre = read_preconditions(call)
    session = UploadSession(
        bucket=row.name, name=name, metadata=settable, member=call.principal.member, declared_size=declared,
        preconditions={k: getattr(pre, k) for k in ("if_generation_match", "if_generation_not_match",
                                                    "if_metageneration_match", "if_metageneration_not_match")},
        extra={k: metadata[k] for k in ("crc32c", "md5Hash") if isinstance(metadata.get(k), str)})
    session_id = await run_in_threadpool(call.storage.uploads.open, session)
    location = (f"{call.base_url}/upload/storage/v1/b/{quote(row.name, safe='')}/o?uploadType=resumable"
                f"&name={quote(name, safe='')}&upload_id={session_id}")
    return Response(status_code=200, headers={"Location": location, "X-GUploader-UploadID": session_id})


async def upload_chunk(call: StorageCall) -> Response | dict[str, Any]:
    """PUT <session URI> with `Content-Range: bytes A-B/TOTAL` (or `bytes */TOTAL` to ask)."""
    session_id = call.arg("upload_id") or ""
    uploads = call.storage.uploads
    lock = _session_locks.setdefault(session_id, asyncio.Lock())
    async with lock:
        session = await run_in_threadpool(uploads.get, session_id)
        start, total = _content_range(call.header("content-range"))
        have = await run_in_threadpool(uploads.received, session_id)
        if start is not None:
            await _append_stream(call, session_id, start, have)
            have = await run_in_threadpool(uploads.received, session_id)
        else:
            await _read_all(call, 0)
        limit = session.declared_size if session.declared_size is not None else total
        if total is not None and have > total:
            raise InvalidArgument(f"Invalid request. The upload has {have} bytes, more than the {total} declared.")
        if total is None or have < total:
            headers = {"Range": f"bytes=0-{have - 1}"} if have else {}
            return Response(status_code=308, headers=headers)
        if limit is not None and have != limit:
            await run_in_threadpool(uploads.close, session_id)
            raise InvalidArgument(f"The upload has {have} bytes but X-Upload-Content-Length declared {limit}.")
        try:
            body = await run_in_threadpool(_finish, call, session_id, session)
        finally:
            _session_locks.pop(session_id, None)
        return body  # rendered by the endpoint, with the request's system parameters


def _finish(call: StorageCall, session_id: str, session: UploadSession) -> dict[str, Any]:
    uploads = call.storage.uploads
    blob = uploads.finish(session_id)
    uploads.close(session_id)
    call.params["bucket"] = session.bucket
    row = load_bucket(call)
    pre = objects.Preconditions(**session.preconditions)
    call.query.update({k: [str(v)] for k, v in zip(
        ("ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch", "ifMetagenerationNotMatch"),
        (pre.if_generation_match, pre.if_generation_not_match, pre.if_metageneration_match,
         pre.if_metageneration_not_match), strict=True) if v is not None})
    expected = dict(session.extra) | _goog_hash(call.header("x-goog-hash"))
    return commit_object(call, row, session.name, blob, session.metadata, expected)


async def _append_stream(call: StorageCall, session_id: str, start: int, have: int) -> None:
    assert call.request is not None
    uploads = call.storage.uploads
    if start > have:
        raise InvalidArgument(f"Invalid request. The chunk starts at byte {start} but only {have} bytes were received.")
    offset = start
    buffer = bytearray()
    async for chunk in call.request.stream():
        buffer += chunk
        if len(buffer) >= CHUNK:
            await run_in_threadpool(uploads.append, session_id, offset, bytes(buffer), MAX_OBJECT_BYTES)
            offset += len(buffer)
            buffer.clear()
    if buffer:
        await run_in_threadpool(uploads.append, session_id, offset, bytes(buffer), MAX_OBJECT_BYTES)


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte of this chunk or None, total size or None)."""
    if not header:
        return 0, None
    m = _CONTENT_RANGE.match(header.strip())
    if m is None:
        raise InvalidArgument(f"Invalid Content-Range header: {header[:64]}")
    first, last, total = m.groups()
    size = None if total == "*" else int(total)
    if first is None:
        return None, size
    if int(last) < int(first):
        raise InvalidArgument(f"Invalid Content-Range header: {header[:64]}")
    return int(first), size


async def cancel_upload(call: StorageCall) -> Response:
    session_id = call.arg("upload_id") or ""
    await run_in_threadpool(call.storage.uploads.get, session_id)
    await run_in_threadpool(call.storage.uploads.close, session_id)
    return Response(status_code=499)


# -- downloads -----------------------------------------------------------------------------------

def open_object(call: StorageCall) -> tuple[AnyObject, BinaryIO]:
    """The object the call names and its bytes, once storage.objects.get is granted (audited)."""
    row = load_bucket(call)
    name = validate_object_name(call.params["object"])
    authorize_object(call, row, name, "storage.objects.get")
    for _ in range(3):  # a concurrent overwrite may unlink the blob between the two reads
        with call.read() as s:
            obj = objects.get_object(s, row.name, name, call.int_arg("generation"))
        read_preconditions(call).check(obj)
        try:
            f = call.storage.blobs.open(obj.blob_id)
            break
        except FileNotFoundError:
            continue
    else:
        raise objects.not_found(row.name, name)
    data_access(call, "storage.objects.get", row, objects.object_resource(row.name, name), "storage.objects.get")
    return obj, f


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a `Range` header asks for; None for the whole object."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None  # unparsable or multiple ranges: the whole object, as HTTP allows
    first, last = m.groups()
    if first == "" and last == "":
        return None
    if first == "":
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable("The requested range cannot be satisfied.")
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise RangeNotSatisfiable("The requested range cannot be satisfied.")
    return start, end


def object_headers(obj: AnyObject) -> dict[str, str]:
    """The headers a download (and the XML API's HEAD) answers with."""
    headers = {
        "Content-Type": str((obj.body or {}).get("contentType", "application/octet-stream")),
        "x-goog-generation": str(obj.generation),
        "x-goog-metageneration": str(obj.metageneration),
        "x-goog-stored-content-length": str(obj.size),
        "x-goog-stored-content-encoding": "identity",
        "x-goog-storage-class": "STANDARD",
        "x-goog-hash": f"crc32c={obj.crc32c},md5={obj.md5_hash}",
        "ETag": objects.object_etag(obj),
        "Accept-Ranges": "bytes",
    }
    for field, header in (("contentDisposition", "Content-Disposition"), ("cacheControl", "Cache-Control"),
                          ("contentLanguage", "Content-Language")):
        if (obj.body or {}).get(field):
            headers[header] = str(obj.body[field])
    return headers


async def download(call: StorageCall) -> Response:
    """GET .../o/O?alt=media: the bytes, or 206 with one Range."""
    obj, f = await run_in_threadpool(open_object, call)
    try:
        span = _range(call.header("range"), obj.size) if obj.size else None
    except BaseException:
        f.close()
        raise
    headers = object_headers(obj)
    status, start, length = 200, 0, obj.size
    if span is not None:
        status, start, length = 206, span[0], span[1] - span[0] + 1
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{obj.size}"
    headers["Content-Length"] = str(length)
    return StreamingResponse(_read(f, start, length), status_code=status, headers=headers)


async def _read(f: BinaryIO, start: int, length: int) -> AsyncIterator[bytes]:
    try:
        if start:
            await run_in_threadpool(f.seek, start)
        left = length
        while left > 0:
            chunk = await run_in_threadpool(f.read, min(1 << 20, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        f.close()
