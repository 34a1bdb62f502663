"""Cloud Storage JSON API v1 (https://cloud.google.com/storage/docs/json_api/v1): buckets,
bucket IAM, object metadata, listing and deletion, under `/storage/v1/...`; media uploads
and downloads live in keyless.api.storage.media (`/upload/...`, `/download/...`).

Every call is authorised with Cloud Storage's permissions on [bucket, project, root]
(IAM conditions see resource.name `projects/_/buckets/B[/objects/O]`, resource.type and
resource.service). Admin Activity entries record bucket create/delete/setIamPolicy; Data
Access entries (DATA_READ, DATA_WRITE, ADMIN_READ) are written only where the project's
auditConfigs enable them for storage.googleapis.com, as on Google.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

from keyless.api.storage import contexts, folders, media, object_iam, operations, rewrite
from keyless.api.storage.wire import (
    StorageCall,
    authorize_bucket,
    authorize_object,
    bucket_context,
    data_access,
    load_bucket,
    read_preconditions,
    storage_endpoint,
    touch_bucket,
)
from keyless.errors import InvalidArgument
from keyless.iam.evaluate import ResourceContext
from keyless.iam.policy import audit_data, get_policy_row, parse_requested_version, policy_json, set_policy
from keyless.projects import active_project, project_chain, project_resource
from keyless.state import ServerState
from keyless.storage import buckets, objects, relocation, soft_deleted_buckets
from keyless.storage.names import validate_bucket_name, validate_object_name
from keyless.store.models import StorageBucket

MAX_LIST_RESULTS = 1000


def _max_results(call: StorageCall) -> int:
    value = call.int_arg("maxResults")
    if value is None or value > MAX_LIST_RESULTS:
        return MAX_LIST_RESULTS
    if value < 1:
        raise InvalidArgument(f"Invalid value for maxResults: {value}")
    return value


# -- buckets -------------------------------------------------------------------------------------

def insert_bucket(call: StorageCall) -> dict[str, Any]:
    project_id = call.arg("project")
    if not project_id:
        raise InvalidArgument("Required parameter: project")
    with call.read() as s:
        project = active_project(s, project_id)
    name = call.body.get("name")
    call.touch(project_id=project.project_id, name=buckets.bucket_resource(str(name)), type="gcs_bucket",
               labels={"bucket_name": str(name), "location": str(call.body.get("location") or "US").lower(),
                       "project_id": project.project_id})
    call.authorize("storage.buckets.create", project_chain(project.project_id),
                   ResourceContext(project_resource(project.project_id), "cloudresourcemanager.googleapis.com/Project",
                                   "cloudresourcemanager.googleapis.com"), "project")
    with call.write() as s:
        row = buckets.create_bucket(s, project, call.body, call.state.role_exists(s),
                                    call.state.member_check(s, "bucket"))
        s.flush()
        touch_bucket(call, row)
        return buckets.bucket_json(row, call.base_url)


def get_bucket(call: StorageCall) -> dict[str, Any]:
    if call.flag("softDeleted"):
        return get_soft_deleted_bucket(call)
    row = load_bucket(call)
    authorize_bucket(call, row, "storage.buckets.get")
    data_access(call, "storage.buckets.get", row, buckets.bucket_resource(row.name), "storage.buckets.get")
    return buckets.bucket_json(row, call.base_url)


def get_storage_layout(call: StorageCall) -> dict[str, Any]:
    """buckets.getStorageLayout (gcloud asks before `storage mv`): needs storage.objects.list, as on Google."""
    row = load_bucket(call)
    authorize_bucket(call, row, "storage.objects.list")
    data_access(call, "storage.buckets.getStorageLayout", row, buckets.bucket_resource(row.name),
                "storage.objects.list")
    return buckets.storage_layout_json(row)


def list_buckets(call: StorageCall) -> dict[str, Any]:
    project_id = call.arg("project")
    if not project_id:
        raise InvalidArgument("Required parameter: project")
    with call.read() as s:
        project = active_project(s, project_id)
    call.authorize("storage.buckets.list", project_chain(project.project_id),
                   ResourceContext(project_resource(project.project_id), "cloudresourcemanager.googleapis.com/Project",
                                   "cloudresourcemanager.googleapis.com"), "project")
    if call.flag("softDeleted"):
        return _list_soft_deleted(call, project.project_id)
    with call.read() as s:
        rows = buckets.list_buckets(s, project.project_id, call.arg("prefix") or "")
    start = 0
    token = call.arg("pageToken")
    if token:
        start = next((i for i, b in enumerate(rows) if b.name > token), len(rows))
    page = rows[start:start + _max_results(call)]
    body: dict[str, Any] = {"kind": "storage#buckets", "items": [buckets.bucket_json(b, call.base_url) for b in page]}
    if start + len(page) < len(rows):
        body["nextPageToken"] = page[-1].name
    return body


# -- soft-deleted buckets (keyless.storage.soft_deleted_buckets) ----------------------------------

def _list_soft_deleted(call: StorageCall, project_id: str) -> dict[str, Any]:
    """buckets.list?softDeleted=true: storage.buckets.list on the project, as a live listing.
    Names repeat (one per generation): the page token is `NAME:GENERATION` (no bucket name has `:`)."""
    with call.read() as s:
        rows = soft_deleted_buckets.list_soft_deleted(s, project_id, call.arg("prefix") or "")
    start = 0
    token = (call.arg("pageToken") or "")[:256]
    if token:
        name, _, generation = token.partition(":")
        after = (name, int(generation) if generation.isdigit() else 0)
        start = next((i for i, b in enumerate(rows) if (b.name, b.generation) > after), len(rows))
    page = rows[start:start + _max_results(call)]
    body: dict[str, Any] = {"kind": "storage#buckets",
                            "items": [soft_deleted_buckets.soft_deleted_json(b, call.base_url) for b in page]}
    if start + len(page) < len(rows):
        body["nextPageToken"] = f"{page[-1].name}:{page[-1].generation}"
    return body


def _soft_deleted_generation(call: StorageCall) -> int:
    generation = call.int_arg("generation")
    if generation is None:
        raise InvalidArgument("Required parameter: generation")
    return generation


def get_soft_deleted_bucket(call: StorageCall) -> dict[str, Any]:
    """buckets.get?softDeleted=true&generation=N: storage.buckets.list on the bucket's project, what
    buckets.list?softDeleted=true needs to show the same resource (the bucket's own policy, which
    grants storage.buckets.get to the project's owners, is parked with it, and no basic role
    holds storage.buckets.get on the project)."""
    name = validate_bucket_name(call.params["bucket"])
    generation = _soft_deleted_generation(call)
    with call.read() as s:
        row = soft_deleted_buckets.get_soft_deleted(s, name, generation)
    call.authorize("storage.buckets.list", project_chain(row.project_id), bucket_context(name), "bucket",
                   row.project_id)
    data_access(call, "storage.buckets.get", soft_deleted_buckets.as_bucket(row), buckets.bucket_resource(name),
                "storage.buckets.list")
    return soft_deleted_buckets.soft_deleted_json(row, call.base_url)


def restore_bucket(call: StorageCall) -> dict[str, Any]:
    """buckets.restore: storage.buckets.restore on the project (or above), an Admin Activity entry."""
    name = validate_bucket_name(call.params["bucket"])
    generation = _soft_deleted_generation(call)
    with call.read() as s:
        parked = soft_deleted_buckets.get_soft_deleted(s, name, generation)
    touch_bucket(call, soft_deleted_buckets.as_bucket(parked))
    call.authorize("storage.buckets.restore", project_chain(parked.project_id), bucket_context(name), "bucket",
                   parked.project_id)
    with call.read() as s:  # as buckets.insert: not into a project pending deletion
        active_project(s, parked.project_id)
    with call.write() as s:
        row = soft_deleted_buckets.restore_bucket(s, name, generation)
        s.flush()
        return buckets.bucket_json(row, call.base_url)


def delete_bucket(call: StorageCall) -> None:
    row = load_bucket(call)
    touch_bucket(call, row)
    authorize_bucket(call, row, "storage.buckets.delete")
    relocation.check_configurable(row)
    with call.write() as s:
        soft_deleted = soft_deleted_buckets.delete_bucket(s, row.name, call.int_arg("ifMetagenerationMatch"),
                                                          datetime.now(UTC))
    for blob_id in soft_deleted:
        call.storage.blobs.delete(blob_id)
    return None


def _update_bucket(call: StorageCall, replace_all: bool) -> dict[str, Any]:
    """buckets.patch / buckets.update: an Admin Activity entry (storage.buckets.update), as on Google."""
    row = load_bucket(call)
    touch_bucket(call, row)
    authorize_bucket(call, row, "storage.buckets.update")
    relocation.check_configurable(row)
    pre = buckets.MetagenerationPreconditions(call.int_arg("ifMetagenerationMatch"),
                                              call.int_arg("ifMetagenerationNotMatch"))
    with call.write() as s:
        updated = buckets.update_bucket(s, row.name, call.body, replace_all=replace_all, pre=pre)
        s.flush()
        return buckets.bucket_json(updated, call.base_url)


def lock_retention_policy(call: StorageCall) -> dict[str, Any]:
    """buckets.lockRetentionPolicy: storage.buckets.update, an Admin Activity entry as a bucket
    update (https://cloud.google.com/storage/docs/using-bucket-lock#lock-bucket)."""
    row = load_bucket(call)
    touch_bucket(call, row)
    authorize_bucket(call, row, "storage.buckets.update")
    relocation.check_configurable(row)
    with call.write() as s:
        locked = buckets.lock_retention_policy(s, row.name, call.int_arg("ifMetagenerationMatch"))
        s.flush()
        return buckets.bucket_json(locked, call.base_url)


def patch_bucket(call: StorageCall) -> dict[str, Any]:
    return _update_bucket(call, replace_all=False)


def update_bucket(call: StorageCall) -> dict[str, Any]:
    return _update_bucket(call, replace_all=True)


# -- bucket IAM ----------------------------------------------------------------------------------

def _storage_policy(row: StorageBucket, policy: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "storage#policy", "resourceId": buckets.bucket_resource(row.name), **policy}


def get_bucket_iam(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    authorize_bucket(call, row, "storage.buckets.getIamPolicy")
    version = parse_requested_version({"requestedPolicyVersion": call.arg("optionsRequestedPolicyVersion") or 1})
    with call.read() as s:
        policy = policy_json(get_policy_row(s, buckets.bucket_resource(row.name)), version)
    data_access(call, "storage.getIamPermissions", row, buckets.bucket_resource(row.name),
                "storage.buckets.getIamPolicy")
    return _storage_policy(row, policy)


def set_bucket_iam(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    touch_bucket(call, row)
    authorize_bucket(call, row, "storage.buckets.setIamPolicy")
    policy = {k: v for k, v in call.body.items() if k not in ("kind", "resourceId")}
    if "auditConfigs" in policy:
        raise InvalidArgument("Invalid argument: auditConfigs cannot be set on a bucket policy.")
    with call.write() as s:
        before = list(old.bindings) if (old := get_policy_row(s, buckets.bucket_resource(row.name))) is not None else []
        stored = set_policy(s, buckets.bucket_resource(row.name), policy, "bindings,etag",
                            call.state.role_exists(s), call.state.member_check(s, "bucket"))
        if call.record is not None:
            call.record.service_data = audit_data(before, stored.bindings)
        return _storage_policy(row, policy_json(stored, 3))


def test_bucket_iam(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    wanted = call.args("permissions")
    if not wanted:
        raise InvalidArgument("Required parameter: permissions")
    if len(wanted) > 100:
        raise InvalidArgument("Too many permissions: at most 100 may be tested at once.")
    chain, ctx = buckets.bucket_chain(row), bucket_context(row.name)
    granted = [p for p in wanted if call.allowed(p, chain, ctx, row.project_id)]
    body: dict[str, Any] = {"kind": "storage#testIamPermissionsResponse"}
    if granted:
        body["permissions"] = granted
    return body


# -- objects -------------------------------------------------------------------------------------

def list_objects(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    authorize_bucket(call, row, "storage.objects.list")
    matches = objects.context_filter(call.arg("filter") or "") if call.arg("filter") else None
    with call.read() as s:
        if call.flag("versions") or call.flag("softDeleted"):
            items, prefixes, token = objects.list_versions(
                s, row.name, prefix=call.arg("prefix") or "", delimiter=call.arg("delimiter") or "",
                max_results=_max_results(call), page_token=call.arg("pageToken"), soft_deleted=call.flag("softDeleted"),
                matches=matches)
        else:
            items, prefixes, token = objects.list_objects(  # type: ignore[assignment]
                s, row.name, prefix=call.arg("prefix") or "", delimiter=call.arg("delimiter") or "",
                max_results=_max_results(call), page_token=call.arg("pageToken"),
                start_offset=call.arg("startOffset") or "", end_offset=call.arg("endOffset") or "",
                include_trailing_delimiter=call.flag("includeTrailingDelimiter"),
                matches=matches)
    data_access(call, "storage.objects.list", row, buckets.bucket_resource(row.name), "storage.objects.list")
    body: dict[str, Any] = {"kind": "storage#objects"}
    if prefixes:
        body["prefixes"] = prefixes
    if items:
        body["items"] = [objects.object_json(o, call.base_url) for o in items]
    if token:
        body["nextPageToken"] = token
    return body


async def get_object(call: StorageCall) -> Any:
    """Metadata, or the bytes with alt=media (the JSON API serves both at one path), or the
    object's IAM policy or permissions (`/iam`, `/iam/testPermissions`: keyless.api.storage.object_iam)."""
    iam = object_iam.object_iam_handler(call)
    if iam is not None:
        return await run_in_threadpool(iam, call)
    if contexts.is_view_full_context(call):
        return await run_in_threadpool(contexts.view_full_context, call)
    if call.arg("alt") == "media":
        return await media.download(call)
    return await run_in_threadpool(get_object_metadata, call)


def get_object_metadata(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    name = validate_object_name(call.params["object"])
    authorize_object(call, row, name, "storage.objects.get")
    with call.read() as s:
        obj = objects.get_object(s, row.name, name, call.int_arg("generation"), soft_deleted=call.flag("softDeleted"))
    read_preconditions(call).check(obj)
    data_access(call, "storage.objects.get", row, objects.object_resource(row.name, name), "storage.objects.get")
    return objects.object_json(obj, call.base_url)


def delete_object(call: StorageCall) -> None:
    row = load_bucket(call)
    name = validate_object_name(call.params["object"])
    authorize_object(call, row, name, "storage.objects.delete")
    with call.state.db.write(bump=False) as s:  # no cache depends on objects
        blob_id = objects.delete_object(s, row.name, name, read_preconditions(call), call.int_arg("generation"))
    if blob_id:
        call.storage.blobs.delete(blob_id)
    data_access(call, "storage.objects.delete", row, objects.object_resource(row.name, name),
                "storage.objects.delete")
    return None


def _update_object(call: StorageCall, replace_all: bool) -> dict[str, Any]:
    """objects.patch / objects.update: a Data Access DATA_WRITE entry (storage.objects.update)."""
    row = load_bucket(call)
    name = validate_object_name(call.params["object"])
    authorize_object(call, row, name, "storage.objects.update")
    if "contexts" in call.body or replace_all:  # creating, changing, removing contexts need their own
        with call.read() as s:
            current = objects.get_object(s, row.name, name, call.int_arg("generation"))
        for permission in objects.context_permissions(current.body, call.body, replace_all):
            authorize_object(call, row, name, permission)
    with call.state.db.write(bump=False) as s:  # no cache depends on objects
        obj = objects.update_object(s, row.name, name, call.body, replace_all=replace_all,
                                    generation=call.int_arg("generation"), pre=read_preconditions(call))
        s.flush()
        body = objects.object_json(obj, call.base_url)
    data_access(call, "storage.objects.update", row, objects.object_resource(row.name, name),
                "storage.objects.update")
    return body


def restore_object(call: StorageCall) -> dict[str, Any]:
    """objects.restore: a soft-deleted generation live again; storage.objects.restore and
    storage.objects.create (delete too if it displaces a live object), DATA_WRITE as a create."""
    row = load_bucket(call)
    name = validate_object_name(call.params["object"])
    generation = call.int_arg("generation")
    if generation is None:
        raise InvalidArgument("Required parameter: generation")
    authorize_object(call, row, name, "storage.objects.restore")
    authorize_object(call, row, name, "storage.objects.create")
    with call.read() as s:
        live = objects.find_object(s, row.name, name)
    if live is not None:
        authorize_object(call, row, name, "storage.objects.delete")
    with call.state.db.write(bump=False) as s:
        obj, replaced = objects.restore_object(s, row.name, name, generation, read_preconditions(call))
        s.flush()
        body = objects.object_json(obj, call.base_url)
    if replaced:
        call.storage.blobs.delete(replaced)
    data_access(call, "storage.objects.create", row, objects.object_resource(row.name, name),
                "storage.objects.restore")
    return body


async def get_object_iam_path(call: StorageCall) -> Any:
    """GET /o/O/iam (getIamPolicy); an object whose escaped name ends in `/iam` is objects.get's."""
    if object_iam.object_iam_handler(call) is None:
        call.params["object"] += "/iam"
    return await get_object(call)


async def view_full_context_path(call: StorageCall) -> Any:
    """GET /o/O/viewFullContext (objects.viewFullContext), or objects.get of a name ending so."""
    if not contexts.is_view_full_context(call):
        call.params["object"] += "/viewFullContext"
    return await get_object(call)


async def test_object_iam_path(call: StorageCall) -> Any:
    """GET /o/O/iam/testPermissions (testIamPermissions), or objects.get of a name ending so."""
    if object_iam.object_iam_handler(call) is None:
        call.params["object"] += "/iam/testPermissions"
    return await get_object(call)


def set_object_iam_path(call: StorageCall) -> dict[str, Any]:
    """PUT /o/O/iam (setIamPolicy), or objects.update of a name ending in `/iam`."""
    if object_iam.object_iam_handler(call) is None:
        call.params["object"] += "/iam"
    return update_object(call)


def patch_object(call: StorageCall) -> dict[str, Any]:
    return _update_object(call, replace_all=False)


def update_object(call: StorageCall) -> dict[str, Any]:
    iam = object_iam.object_iam_handler(call)  # PUT .../o/O/iam is objects.setIamPolicy
    if iam is not None:
        return iam(call)
    return _update_object(call, replace_all=True)


# -- routes --------------------------------------------------------------------------------------

def routes(state: ServerState) -> list[Route]:
    """Mounted at /storage."""
    from keyless.api.storage import xml_api  # it reuses this module's handlers

    b = "/v1/b/{bucket}"
    return [
        Route("/v1/b", storage_endpoint(state, insert_bucket, method="storage.buckets.create"), methods=["POST"]),
        Route("/v1/b", storage_endpoint(state, list_buckets), methods=["GET"]),
        Route(b, storage_endpoint(state, get_bucket), methods=["GET"]),
        Route(b, storage_endpoint(state, delete_bucket, method="storage.buckets.delete"), methods=["DELETE"]),
        Route(b, storage_endpoint(state, patch_bucket, method="storage.buckets.update"), methods=["PATCH"]),
        Route(b, storage_endpoint(state, update_bucket, method="storage.buckets.update"), methods=["PUT"]),
        Route(b + "/lockRetentionPolicy", storage_endpoint(state, lock_retention_policy,
                                                           method="storage.buckets.update"), methods=["POST"]),
        Route(b + "/restore", storage_endpoint(state, restore_bucket, method="storage.buckets.restore"),
              methods=["POST"]),
        Route(b + "/storageLayout", storage_endpoint(state, get_storage_layout), methods=["GET"]),
        Route(b + "/iam", storage_endpoint(state, get_bucket_iam), methods=["GET"]),
        Route(b + "/iam", storage_endpoint(state, set_bucket_iam, method="storage.setIamPermissions"),
              methods=["PUT"]),
        Route(b + "/iam/testPermissions", storage_endpoint(state, test_bucket_iam), methods=["GET"]),
        Route(b + "/o", storage_endpoint(state, list_objects), methods=["GET"]),
        Route(b + "/o", storage_endpoint(state, media.upload, json_body=False), methods=["POST"]),
        # one-segment object names first (the escaped name decides: keyless.api.storage.object_iam)
        Route(b + "/o/{object}/iam", storage_endpoint(state, get_object_iam_path, media=True), methods=["GET"]),
        Route(b + "/o/{object}/iam", storage_endpoint(state, set_object_iam_path), methods=["PUT"]),
        Route(b + "/o/{object}/iam/testPermissions", storage_endpoint(state, test_object_iam_path, media=True),
              methods=["GET"]),
        Route(b + "/o/{object}/viewFullContext", storage_endpoint(state, view_full_context_path, media=True),
              methods=["GET"]),
        Route(b + "/o/{object:path}", storage_endpoint(state, get_object, media=True), methods=["GET"]),
        *rewrite.routes(state),
        *folders.routes(state),
        *operations.routes(state),
        Route(b + "/o/{object:path}/restore", storage_endpoint(state, restore_object), methods=["POST"]),
        Route(b + "/o/{object:path}", storage_endpoint(state, delete_object), methods=["DELETE"]),
        Route(b + "/o/{object:path}", storage_endpoint(state, patch_object), methods=["PATCH"]),
        Route(b + "/o/{object:path}", storage_endpoint(state, update_object), methods=["PUT"]),
        *xml_api.routes(state),  # /storage/BUCKET/OBJECT, and every signed URL (last: it takes any path)
    ]


def upload_routes(state: ServerState, prefix: str = "") -> list[Route]:
    """Mounted at /upload: /upload/storage/v1/b/B/o (media, multipart, resumable)."""
    o = prefix + "/storage/v1/b/{bucket}/o"
    return [
        Route(o, storage_endpoint(state, media.upload, json_body=False), methods=["POST"]),
        Route(o, storage_endpoint(state, media.upload_chunk, json_body=False), methods=["PUT"]),
        Route(o, storage_endpoint(state, media.cancel_upload, json_body=False), methods=["DELETE"]),
    ]


def download_routes(state: ServerState) -> list[Route]:
    """Mounted at /download: /download/storage/v1/b/B/o/O?alt=media."""
    return [Route("/storage/v1/b/{bucket}/o/{object:path}", storage_endpoint(state, media.download, media=True),
                  methods=["GET"])]


def resumable_routes(state: ServerState) -> list[Route]:
    """Mounted at /resumable: gcloud starts resumable uploads at /resumable/upload/storage/v1/b/B/o."""
    return upload_routes(state, "/upload")
