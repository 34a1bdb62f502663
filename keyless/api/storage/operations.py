"""Cloud Storage's long-running operations on the JSON API: objects.bulkRestore
(`POST /storage/v1/b/B/o/bulkRestore`), buckets.relocate (`POST /storage/v1/b/B/relocate`) and
buckets.operations.get/list/cancel/advanceRelocateBucket (`/storage/v1/b/B/operations[/ID[/VERB]]`),
https://cloud.google.com/storage/docs/json_api/v1/objects/bulkRestore,
https://cloud.google.com/storage/docs/json_api/v1/buckets/relocate.

bulkRestore needs storage.objects.restore and storage.objects.create on the bucket (and
storage.objects.delete with allowOverwrite, as it displaces live objects), like objects.restore;
reading operations needs storage.bucketOperations.get/list. The restore is a Data Access
DATA_WRITE entry, reading operations ADMIN_READ ones (keyless.storage.bulk_restore has the rest).
relocate and advanceRelocateBucket need storage.buckets.relocate, cancel needs
storage.bucketOperations.cancel, all on the bucket; each is an Admin Activity entry
(keyless.storage.relocation has the rest).
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
    touch_bucket,
)
from keyless.errors import InvalidArgument
from keyless.state import ServerState
from keyless.storage import bulk_restore, relocation
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
        body = bulk_restore.get_operation(s, row.name, _operation_id(call))
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


def relocate_bucket(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    touch_bucket(call, row)
    authorize_bucket(call, row, "storage.buckets.relocate")
    with call.write() as s:
        body = relocation.start(s, row.name, call.body, operations.new_id(), datetime.now(UTC))
    return _operation_json(call, row.name, body)


def _operation_id(call: StorageCall) -> str:
    return call.params["operationId"][:256]


def advance_relocate_bucket(call: StorageCall) -> None:
    row = load_bucket(call)
    touch_bucket(call, row, bulk_restore.operation_prefix(row.name) + _operation_id(call))
    authorize_bucket(call, row, "storage.buckets.relocate")
    with call.write() as s:
        relocation.advance(s, row.name, _operation_id(call), call.body, datetime.now(UTC))
    return None


def cancel_operation(call: StorageCall) -> None:
    row = load_bucket(call)
    touch_bucket(call, row, bulk_restore.operation_prefix(row.name) + _operation_id(call))
    authorize_bucket(call, row, "storage.bucketOperations.cancel")
    with call.write() as s:
        relocation.cancel(s, row.name, _operation_id(call), datetime.now(UTC))
    return None


def routes(state: ServerState) -> list[Route]:
    """Mounted with the JSON API's other routes, under /storage."""
    b = "/v1/b/{bucket}"
    return [
        Route(b + "/o/bulkRestore", storage_endpoint(state, bulk_restore_objects), methods=["POST"]),
        Route(b + "/operations", storage_endpoint(state, list_operations), methods=["GET"]),
        Route(b + "/operations/{operationId}", storage_endpoint(state, get_operation), methods=["GET"]),
        Route(b + "/relocate", storage_endpoint(state, relocate_bucket, method="storage.buckets.relocate"),
              methods=["POST"]),
        Route(b + "/operations/{operationId}/cancel", storage_endpoint(
            state, cancel_operation, method="storage.buckets.operations.cancel"), methods=["POST"]),
        Route(b + "/operations/{operationId}/advanceRelocateBucket", storage_endpoint(
            state, advance_relocate_bucket, method="storage.buckets.operations.advanceRelocateBucket"),
              methods=["POST"]),
    ]
