"""objects.viewFullContext (`GET /storage/v1/b/B/o/O/viewFullContext?contextKey=K`,
https://cloud.google.com/storage/docs/use-object-contexts): one of an object's contexts as an
ObjectFullContext, extended data included (Keyless's contexts are all custom ones without any).

It needs storage.objects.viewFullContext on the object (Google grants it with Storage Object
User), a Data Access DATA_READ entry as objects.get. It shares its path with objects.get of an
object named `x/viewFullContext`: the escaped path tells them apart (keyless.api.storage.object_iam).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from keyless.api.storage.wire import StorageCall, authorize_object, data_access, load_bucket
from keyless.errors import InvalidArgument, NotFound
from keyless.storage import objects
from keyless.storage.names import validate_object_name

_PATH = re.compile(r"/b/[^/]+/o/([^/]+)/viewFullContext$")


def is_view_full_context(call: StorageCall) -> bool:
    """Whether a GET on `/o/...` is objects.viewFullContext; sets the object's name if so."""
    raw = call.request.scope.get("raw_path", b"") if call.request is not None else b""
    m = _PATH.search(raw.decode("latin-1"))
    if m is None:
        return False
    call.params["object"] = unquote(m.group(1))
    return True


def view_full_context(call: StorageCall) -> dict[str, Any]:
    row = load_bucket(call)
    name = validate_object_name(call.params["object"])
    key = call.arg("contextKey")
    if not key:
        raise InvalidArgument("Required parameter: contextKey")
    authorize_object(call, row, name, "storage.objects.viewFullContext")
    with call.read() as s:
        obj = objects.get_object(s, row.name, name, call.int_arg("generation"))
    payload = objects.custom_contexts(obj.body).get(key[:256])
    if payload is None:
        raise NotFound(f"Object context '{key[:256]}' not found on object {name}.")
    data_access(call, "storage.objects.viewFullContext", row, objects.object_resource(row.name, name),
                "storage.objects.viewFullContext")
    return {"kind": "storage#objectFullContext", "key": key[:256], "type": "CUSTOM", "value": payload["value"],
            "createTime": payload["createTime"], "updateTime": payload["updateTime"]}
