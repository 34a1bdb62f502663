"""Kubernetes' protobuf request bodies (`application/vnd.kubernetes.protobuf`), read into the JSON
shape, for the kinds kubectl ≥ 1.32 sends that way: Namespace and ServiceAccount (`kubectl create`)
and TokenRequest (`kubectl create token`).

The body is the `k8s\\0` magic followed by a runtime.Unknown (typeMeta = 1, raw = 2) whose `raw`
is the object's message, with the field numbers of k8s.io/api's generated.proto
(https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding). Only the fields
these commands send are read; any other non-empty field is refused rather than dropped, and the
ones the server sets (uid, resourceVersion, status, ...) are ignored as the API server does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from keyless.errors import InvalidArgument

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise InvalidArgument("the protobuf body is truncated")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        shift += 7
        if not byte & 0x80:
            return value, at


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            size, at = _varint(data, at)
            if at + size > len(data):
                raise InvalidArgument("the protobuf body is truncated")
            yield number, data[at:at + size]
            at += size
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise InvalidArgument("the protobuf body uses an unsupported wire type")


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise InvalidArgument("the protobuf body has a number where a string belongs")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise InvalidArgument("the protobuf body has a string that is not UTF-8") from exc


def _entry(value: int | bytes) -> tuple[str, str]:
    if not isinstance(value, bytes):
        raise InvalidArgument("the protobuf body has a malformed map entry")
    got = {n: _text(v) for n, v in fields(value)}
    return got.get(1, ""), got.get(2, "")


Reader = Callable[[Any, int | bytes], Any]


def _message(value: int | bytes, readers: Mapping[int, tuple[str, Reader]],
             where: str) -> dict[str, Any]:
    if not isinstance(value, bytes):
        raise InvalidArgument(f"the protobuf body has a malformed {where}")
    out: dict[str, Any] = {}
    for number, item in fields(value):
        if number in SERVER_SET.get(where, ()) or item in (b"", 0):
            continue  # Go's encoder writes every field, empty or not; what the server sets is ignored
        if number not in readers:
            raise InvalidArgument(f"Keyless does not read field {number} of {where} in protobuf; send JSON")
        name, read = readers[number]
        out[name] = read(out.get(name), item)
    return out


def _string(_: Any, value: int | bytes) -> str:
    return _text(value)


def _strings(old: Any, value: int | bytes) -> list[str]:
    return [*(old or []), _text(value)]


def _map(old: Any, value: int | bytes) -> dict[str, str]:
    key, item = _entry(value)
    return {**(old or {}), key: item}


def _int(_: Any, value: int | bytes) -> int:
    if isinstance(value, bytes):
        raise InvalidArgument("the protobuf body has a string where a number belongs")
    return value


# Fields the API server sets itself (ObjectMeta's selfLink, uid, resourceVersion, generation,
# timestamps, owner references, managed fields): ignored in requests, as the API server does.
SERVER_SET = {"ObjectMeta": (4, 5, 6, 7, 8, 9, 10, 13, 17), "status": tuple(range(1, 32))}
OBJECT_META: dict[int, tuple[str, Reader]] = {1: ("name", _string), 2: ("generateName", _string), 3: ("namespace", _string),
               11: ("labels", _map), 12: ("annotations", _map), 14: ("finalizers", _strings)}


def _meta(_: Any, value: int | bytes) -> dict[str, Any]:
    return _message(value, OBJECT_META, "ObjectMeta")


def _namespace_spec(_: Any, value: int | bytes) -> dict[str, Any]:
    return _message(value, {1: ("finalizers", _strings)}, "NamespaceSpec")


def _bound_ref(_: Any, value: int | bytes) -> dict[str, Any]:
    return _message(value, {1: ("kind", _string), 2: ("apiVersion", _string), 3: ("name", _string),
                            4: ("uid", _string)}, "BoundObjectReference")


def _token_spec(_: Any, value: int | bytes) -> dict[str, Any]:
    return _message(value, {1: ("audiences", _strings), 3: ("boundObjectRef", _bound_ref),
                            4: ("expirationSeconds", _int)}, "TokenRequestSpec")


def _empty(_: Any, value: int | bytes) -> dict[str, Any]:
    return _message(value, {}, "status")


KINDS: dict[str, dict[int, tuple[str, Reader]]] = {
    "Namespace": {1: ("metadata", _meta), 2: ("spec", _namespace_spec), 3: ("status", _empty)},
    "ServiceAccount": {1: ("metadata", _meta)},
    "TokenRequest": {1: ("metadata", _meta), 2: ("spec", _token_spec), 3: ("status", _empty)},
}


def decode(body: bytes) -> dict[str, Any]:
    """The object of a protobuf request body, as its JSON form."""
    if not body.startswith(MAGIC):
        raise InvalidArgument("the protobuf body does not start with Kubernetes' magic number")
    envelope = dict(fields(body[len(MAGIC):]))
    type_meta = envelope.get(1)
    raw = envelope.get(2)
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise InvalidArgument("the protobuf body is not a runtime.Unknown")
    names = {n: _text(v) for n, v in fields(type_meta)}
    api_version, kind = names.get(1, ""), names.get(2, "")
    readers = KINDS.get(kind)
    if readers is None:
        raise InvalidArgument(f"Keyless reads {kind or 'this kind'} only as JSON (application/json)")
    return {"apiVersion": api_version, "kind": kind, **_message(raw, readers, kind)}


# -- OpenAPI v2, which kubectl 1.27 and 1.28 read (protobuf only) ---------------------------------

def _key(number: int, wire: int) -> bytes:
    return _encode_varint(number << 3 | wire)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _bytes(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _key(number, 2) + _encode_varint(len(data)) + data


def openapi_v2(operations: list[tuple[str, str, dict[str, str], list[str]]]) -> bytes:
    """A gnostic openapi_v2.Document (github.com/google/gnostic-models, OpenAPIv2.proto) listing one
    PATCH operation per (path, operationId, group-version-kind, query parameters): what kubectl's
    query-parameter verifier reads to learn that the server validates fields itself."""
    paths = b""
    for path, operation_id, gvk, params in operations:
        gvk_yaml = "".join(f"{k}: {json.dumps(v)}\n" for k, v in gvk.items())
        extension = _bytes(1, "x-kubernetes-group-version-kind") + _bytes(2, _bytes(2, gvk_yaml))  # NamedAny
        parameters = b"".join(
            _bytes(8, _bytes(1, _bytes(2, _bytes(3, _bytes(2, "query") + _bytes(4, name) + _bytes(6, "string")))))
            for name in params)  # ParametersItem.parameter.non_body_parameter.query_parameter_sub_schema
        operation = _bytes(5, operation_id) + parameters + _bytes(13, extension)
        paths += _bytes(2, _bytes(1, path) + _bytes(2, _bytes(8, operation)))  # NamedPathItem{name, PathItem{patch}}
    info = _bytes(1, "Kubernetes") + _bytes(2, "v1")
    return _bytes(1, "2.0") + _bytes(2, info) + _bytes(8, paths)
