"""Cloud Storage managed folders on the JSON API (https://cloud.google.com/storage/docs/json_api/v1/managedFolders):
insert, get, list, delete and their IAM policies (getIamPolicy, setIamPolicy, testIamPermissions).

Permissions are Google's storage.managedFolders.*; create and list are checked on the bucket, the
rest on the folder, which inherits from enclosing folders and the bucket. Admin Activity entries
record create, delete and setIamPolicy; get, list and getIamPolicy are ADMIN_READ Data Access.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from keyless.api.storage.wire import (
    StorageCall,
    authorize_bucket,
    data_access,
    load_bucket,
    storage_endpoint,
    touch_bucket,
)
from keyless.errors import InvalidArgument
from keyless.iam.policy import audit_data, get_policy_row, parse_requested_version, policy_json, set_policy
from keyless.state import ServerState
from keyless.storage import managed_folders
from keyless.storage.managed_folders import folder_context, folder_name, folder_resource
from keyless.store.models import StorageBucket

MAX_PAGE = 1000


def _authorize_folder(call: StorageCall, row: StorageBucket, name: str, permission: str) -> None:
    with call.read() as s:
        chain = managed_folders.object_chain(s, row, name)  # the folder itself, then enclosing ones
    if not chain[0].endswith(f"/managedFolders/{name}"):
        chain.insert(0, folder_resource(row.name, name))
    call.authorize(permission, chain, folder_context(row.name, name), "managedFolder", row.project_id)


def insert_folder(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    name = folder_name(call.body.get("name"))
    if set(call.body) - {"name", "kind", "bucket", "id", "selfLink", "metageneration", "createTime", "updateTime"}:
        raise InvalidArgument("Invalid argument: a ManagedFolder sets only its name.")
    touch_bucket(call, row, folder_resource(row.name, name))
    authorize_bucket(call, row, "storage.managedFolders.create")
    with call.write() as s:
        folder = managed_folders.create(s, row.name, name)
        s.flush()
        return managed_folders.folder_json(folder, call.base_url)


def get_folder(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    name = folder_name(call.params["managedFolder"])
    _authorize_folder(call, row, name, "storage.managedFolders.get")
    with call.read() as s:
        folder = managed_folders.get(s, row.name, name)
    data_access(call, "storage.managedFolders.get", row, folder_resource(row.name, name), "storage.managedFolders.get")
    return managed_folders.folder_json(folder, call.base_url)


def list_folders(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    authorize_bucket(call, row, "storage.managedFolders.list")
    size = call.int_arg("pageSize") or MAX_PAGE
    if size < 1:
        raise InvalidArgument(f"Invalid value for pageSize: {size}")
    size = min(size, MAX_PAGE)
    with call.read() as s:
        rows = managed_folders.list_folders(s, row.name, call.arg("prefix") or "", call.arg("pageToken") or "",
                                            size + 1)
    data_access(call, "storage.managedFolders.list", row, f"projects/_/buckets/{row.name}",
                "storage.managedFolders.list")
    body: dict[str, Any] = {"kind": "storage#managedFolders"}
    if rows[:size]:
        body["items"] = [managed_folders.folder_json(f, call.base_url) for f in rows[:size]]
    if len(rows) > size:
        body["nextPageToken"] = rows[size - 1].name
    return body


def delete_folder(call: StorageCall) -> None:
    row = load_bucket(call)
    name = folder_name(call.params["managedFolder"])
    touch_bucket(call, row, folder_resource(row.name, name))
    _authorize_folder(call, row, name, "storage.managedFolders.delete")
    with call.write() as s:
        managed_folders.delete_folder(s, row.name, name, allow_non_empty=call.flag("allowNonEmpty"),
                                      if_metageneration_match=call.int_arg("ifMetagenerationMatch"),
                                      if_metageneration_not_match=call.int_arg("ifMetagenerationNotMatch"))
    return None


def _policy(row: StorageBucket, name: str, policy: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "storage#policy", "resourceId": folder_resource(row.name, name), **policy}


def get_folder_iam(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    name = folder_name(call.params["managedFolder"])
    _authorize_folder(call, row, name, "storage.managedFolders.getIamPolicy")
    version = parse_requested_version({"requestedPolicyVersion": call.arg("optionsRequestedPolicyVersion") or 1})
    with call.read() as s:
        managed_folders.get(s, row.name, name)
        policy = policy_json(get_policy_row(s, folder_resource(row.name, name)), version)
    data_access(call, "storage.managedFolders.getIamPolicy", row, folder_resource(row.name, name),
                "storage.managedFolders.getIamPolicy")
    return _policy(row, name, policy)


def set_folder_iam(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    name = folder_name(call.params["managedFolder"])
    touch_bucket(call, row, folder_resource(row.name, name))
    _authorize_folder(call, row, name, "storage.managedFolders.setIamPolicy")
    policy = {k: v for k, v in call.body.items() if k not in ("kind", "resourceId")}
    if "auditConfigs" in policy:
        raise InvalidArgument("Invalid argument: auditConfigs cannot be set on a managed folder policy.")
    with call.write() as s:
        managed_folders.get(s, row.name, name)
        before = list(old.bindings) if (old := get_policy_row(s, folder_resource(row.name, name))) is not None else []
        stored = set_policy(s, folder_resource(row.name, name), policy, "bindings,etag",
                            call.state.role_exists(s), call.state.member_check(s, "bucket"))
        if call.record is not None:
            call.record.service_data = audit_data(before, stored.bindings)
        return _policy(row, name, policy_json(stored, 3))


def test_folder_iam(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    name = folder_name(call.params["managedFolder"])
    wanted = call.args("permissions")
    if not wanted:
        raise InvalidArgument("Required parameter: permissions")
    if len(wanted) > 100:
        raise InvalidArgument("Too many permissions: at most 100 may be tested at once.")
    with call.read() as s:
        managed_folders.get(s, row.name, name)
        chain = managed_folders.object_chain(s, row, name)
    if not chain[0].endswith(f"/managedFolders/{name}"):
        chain.insert(0, folder_resource(row.name, name))
    ctx = folder_context(row.name, name)
    granted = [p for p in wanted if call.allowed(p, chain, ctx, row.project_id)]
    body: dict[str, Any] = {"kind": "storage#testIamPermissionsResponse"}
    if granted:
        body["permissions"] = granted
    return body


def routes(state: ServerState) -> list[Route]:
    """Under /storage, beside keyless.api.storage's routes."""
    f = "/v1/b/{bucket}/managedFolders"
    one = f + "/{managedFolder:path}"
    return [
        Route(f, storage_endpoint(state, insert_folder, method="storage.managedFolders.create"), methods=["POST"]),
        Route(f, storage_endpoint(state, list_folders), methods=["GET"]),
        Route(one + "/iam/testPermissions", storage_endpoint(state, test_folder_iam), methods=["GET"]),
        Route(one + "/iam", storage_endpoint(state, get_folder_iam), methods=["GET"]),
        Route(one + "/iam", storage_endpoint(state, set_folder_iam, method="storage.managedFolders.setIamPolicy"),
              methods=["PUT"]),
        Route(one, storage_endpoint(state, get_folder), methods=["GET"]),
        Route(one, storage_endpoint(state, delete_folder, method="storage.managedFolders.delete"),
              methods=["DELETE"]),
    ]
