"""Cloud Storage's long-running operations on the JSON API: objects.bulkRestore
(`POST /storage/v1/b/B/o/bulkRestore`) and buckets.operations.get/list
(`GET /storage/v1/b/B/operations[/ID]`), https://cloud.google.com/storage/docs/json_api/v1/objects/bulkRestore.

bulkRestore needs storage.objects.restore and storage.objects.create on the bucket (and
storage.objects.delete with allowOverwrite, as it displaces live objects), like objects.restore;
reading operations needs storage.bucketOperations.get/list. The restore is a Data Access
DATA_WRITE entry, reading operations ADMIN_READ ones (keyless.storage.bulk_restore has the rest).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.routing import Route

from keyless import operations
from keyless.api.storage.wire import (
    StorageCall,
    authorize_bucket,
    data_access,
    load_bucket,
    storage_endpoint,
)
from keyless.errors import InvalidArgument
from keyless.state import ServerState
from keyless.storage import bulk_restore
from keyless.storage.buckets import bucket_resource


def _operation_json(call: StorageCall, bucket: str, body: dict[str, Any]) -> dict[str, Any]:
    operation_id = body["name"].rsplit("/", 1)[1]
    return {**body, "selfLink": f"{call.base_url}/storage/v1/b/{bucket}/operations/{operation_id}"}


def bulk_restore_objects(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    authorize_bucket(call, row, "storage.objects.restore")
    authorize_bucket(call, row, "storage.objects.create")
    request = bulk_restore.Request(call.body)
    if request.allow_overwrite:
        authorize_bucket(call, row, "storage.objects.delete")
    created = datetime.now(UTC)
    with call.state.db.write(bump=False) as s:  # no cache depends on objects
        restored, skipped, failed, blobs = bulk_restore.restore(s, row.name, request)
        body = bulk_restore.record(s, row.name, operations.new_id(), created, restored, skipped, failed)
    for blob_id in blobs:
        call.storage.blobs.delete(blob_id)
    data_access(call, "storage.objects.bulkRestore", row, bucket_resource(row.name), "storage.objects.restore")
    return _operation_json(call, row.name, body)


def get_operation(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    authorize_bucket(call, row, "storage.bucketOperations.get")
    with call.read() as s:
        body = bulk_restore.get_operation(s, row.name, call.params["operationId"][:256])
    data_access(call, "storage.buckets.operations.get", row, body["name"], "storage.bucketOperations.get")
    return _operation_json(call, row.name, body)


def list_operations(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    authorize_bucket(call, row, "storage.bucketOperations.list")
    if call.arg("filter"):
        raise InvalidArgument("Invalid argument: filter is not supported: Keyless lists every operation of the bucket.")
    size = call.int_arg("pageSize")
    if size is not None and size < 0:
        raise InvalidArgument(f"Invalid value for pageSize: {size}")
    size = bulk_restore.MAX_LIST if not size or size > bulk_restore.MAX_LIST else size
    with call.read() as s:
        found, more = bulk_restore.list_operations(s, row.name, size, (call.arg("pageToken") or "")[:256] or None)
    data_access(call, "storage.buckets.operations.list", row, bucket_resource(row.name),
                "storage.bucketOperations.list")
    body: dict[str, Any] = {"kind": "storage#operations"}
    if found:
        body["operations"] = [_operation_json(call, row.name, o) for o in found]
    if more:
        body["nextPageToken"] = found[-1]["name"].rsplit("/", 1)[1]
    return body


def routes(state: ServerState) -> list[Route]:
    """Mounted with the JSON API's other routes, under /storage."""
    b = "/v1/b/{bucket}"
    return [
        Route(b + "/o/bulkRestore", storage_endpoint(state, bulk_restore_objects), methods=["POST"]),
        Route(b + "/operations", storage_endpoint(state, list_operations), methods=["GET"]),
        Route(b + "/operations/{operationId}", storage_endpoint(state, get_operation), methods=["GET"]),
    ]
