"""Object IAM on the JSON API (https://cloud.google.com/storage/docs/json_api/v1/objects/getIamPolicy,
setIamPolicy, testIamPermissions): `GET|PUT /storage/v1/b/B/o/O/iam`, `GET .../iam/testPermissions`.

An object's IAM policy is the IAM view of its ACL, and Google refuses it on a bucket with uniform
bucket-level access (400 `invalid`, "Object policies are disabled for bucket ... when uniform
bucket-level access is enabled", after the storage.objects.getIamPolicy/setIamPolicy check); every
Keyless bucket has uniform bucket-level access, so get and set always answer that. testIamPermissions
works on such buckets: it answers which of the permissions the caller holds on the object, through
the object's managed folders, its bucket and project, as objects.get and the rest are decided.

These share the object path with objects.get and objects.update (an object may be named `x/iam`):
the encoded path tells them apart, as it does on Google, since clients send the object name as
one escaped segment.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from keyless.api.storage.wire import SERVICE, StorageCall, authorize_object, load_bucket, touch_bucket
from keyless.audit.log import AuditRecord
from keyless.errors import InvalidArgument
from keyless.storage import managed_folders, objects
from keyless.storage.names import validate_object_name
from keyless.storage.objects import object_context, object_resource

UNIFORM_ACCESS = ("Object policies are disabled for bucket '{bucket}' when uniform bucket-level access is enabled. "
                  "Read more at https://cloud.google.com/storage/docs/uniform-bucket-level-access.")
MAX_TESTED = 100
_IAM_PATH = re.compile(r"/b/[^/]+/o/([^/]+)/iam(/testPermissions)?$")


def get_object_iam(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    name = validate_object_name(call.params["object"])
    authorize_object(call, row, name, "storage.objects.getIamPolicy")
    raise InvalidArgument(UNIFORM_ACCESS.format(bucket=row.name))


def set_object_iam(call: StorageCall) -> dict[str, Any]:
    """Refused as getIamPolicy is; an Admin Activity entry of the failed call (storage.setIamPermissions)."""
    call.record = AuditRecord(service=SERVICE, method="storage.setIamPermissions")
    row = load_bucket(call)
    name = validate_object_name(call.params["object"])
    touch_bucket(call, row, object_resource(row.name, name))
    authorize_object(call, row, name, "storage.objects.setIamPolicy")
    raise InvalidArgument(UNIFORM_ACCESS.format(bucket=row.name))


def test_object_iam(call: StorageCall) -> dict[str, Any]:
    """The tested permissions the caller holds on the object (404 when it does not exist)."""
    row = load_bucket(call)
    name = validate_object_name(call.params["object"])
    wanted = call.args("permissions")
    if not wanted:
        raise InvalidArgument("Required parameter: permissions")
    if len(wanted) > MAX_TESTED:
        raise InvalidArgument(f"Too many permissions: at most {MAX_TESTED} may be tested at once.")
    with call.read() as s:
        objects.get_object(s, row.name, name, call.int_arg("generation"))
        chain = managed_folders.object_chain(s, row, name)
    ctx = object_context(row.name, name)
    granted = [p for p in wanted if call.allowed(p[:256], chain, ctx, row.project_id)]
    body: dict[str, Any] = {"kind": "storage#testIamPermissionsResponse"}
    if granted:
        body["permissions"] = granted
    return body


def object_iam_handler(call: StorageCall) -> Callable[[StorageCall], dict[str, Any]] | None:
    """The object IAM method a GET or PUT on `/o/NAME/iam[/testPermissions]` names, with the
    object's name taken from its encoded segment; None for objects.get/update."""
    raw = call.request.scope.get("raw_path", b"") if call.request is not None else b""
    m = _IAM_PATH.search(raw.decode("latin-1"))
    if m is None:
        return None
    call.params["object"] = unquote(m.group(1))
    if call.request is not None and call.request.method == "PUT":
        return None if m.group(2) else set_object_iam
    return test_object_iam if m.group(2) else get_object_iam
