"""Checks a JSON value against a discovery document's schema, and makes request bodies from one.

Discovery's schema format is not JSON Schema: `$ref` names a schema of the same document, 64-bit
integers (`format: int64`/`uint64`) travel as decimal strings, `google-datetime`/`google-duration`/
`byte` are string formats, maps are `additionalProperties`, `type: any` is anything
(https://developers.google.com/discovery/v1/type-format). Every field of an answer must be one the
schema defines, spelt as it defines it, of its type, and an enum value among its enum.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from tests.conformance.discovery import schema

INT64 = re.compile(r"-?[0-9]+")
UINT64 = re.compile(r"[0-9]+")
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
DURATION = re.compile(r"-?\d+(\.\d{1,9})?s")
FIELD_MASK = re.compile(r"[A-Za-z0-9_.,]*")


def problems(doc: dict[str, Any], value: Any, spec: dict[str, Any] | str, where: str = "$") -> list[str]:
    """What is wrong with `value` as an instance of `spec` (a property spec, or a schema name)."""
    if isinstance(spec, str):
        spec = {"$ref": spec}
    if "$ref" in spec:
        return problems(doc, value, schema(doc, spec["$ref"]), where)
    kind = spec.get("type", "any")
    if kind == "any":
        return []
    if kind == "object":
        return _object(doc, value, spec, where)
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: expected an array, got {type(value).__name__}"]
        return [p for i, item in enumerate(value) for p in problems(doc, item, spec.get("items", {}), f"{where}[{i}]")]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]
    if kind == "integer":
        if spec.get("format") in ("int64", "uint64") and isinstance(value, str):  # accepted both ways on input
            return [] if INT64.fullmatch(value) else [f"{where}: expected an integer, got {value!r}"]
        return [] if isinstance(value, int) and not isinstance(value, bool) else \
            [f"{where}: expected an integer, got {value!r}"]
    if kind == "number":
        ok = (isinstance(value, int | float) and not isinstance(value, bool)) or value in ("NaN", "Infinity",
                                                                                         "-Infinity")
        return [] if ok else [f"{where}: expected a number, got {value!r}"]
    if kind == "string":
        return _string(value, spec, where)
    return [f"{where}: unknown schema type {kind!r}"]


def _object(doc: dict[str, Any], value: Any, spec: dict[str, Any], where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {type(value).__name__}"]
    properties: dict[str, Any] = spec.get("properties", {})
    extra = spec.get("additionalProperties")
    if not properties and extra is None:
        return []  # a free-form object (google.protobuf.Struct and the like)
    found = []
    for name, item in value.items():
        if name in properties:
            found += problems(doc, item, properties[name], f"{where}.{name}")
        elif extra is not None:
            found += problems(doc, item, extra, f"{where}[{name!r}]")
        else:
            found.append(f"{where}.{name}: not a field of {spec.get('id', 'this object')} "
                         f"(defined: {', '.join(sorted(properties))})")
    return found


def _string(value: Any, spec: dict[str, Any], where: str) -> list[str]:
    if not isinstance(value, str):
        return [f"{where}: expected a string ({spec.get('format', 'text')}), got {value!r}"]
    fmt = spec.get("format")
    if "enum" in spec and value not in spec["enum"]:
        return [f"{where}: {value!r} is not one of {spec['enum']}"]
    checks = {"int64": INT64, "uint64": UINT64, "google-datetime": DATETIME, "google-duration": DURATION,
              "google-fieldmask": FIELD_MASK}
    if fmt in checks and not checks[fmt].fullmatch(value):
        return [f"{where}: {value!r} is not a {fmt}"]
    if fmt == "byte":
        try:
            base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            return [f"{where}: {value!r} is not base64"]
    return []


def missing(value: dict[str, Any], names: list[str]) -> list[str]:
    """The names (dotted paths) `value` lacks."""
    out = []
    for name in names:
        node: Any = value
        for part in name.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            out.append(name)
    return out


# -- request bodies: every field the schema defines ------------------------------------------------

def full_body(doc: dict[str, Any], name: str, depth: int = 0) -> dict[str, Any]:
    """An instance of schema `name` with every field set (output-only ones too: servers ignore
    them on input), each to a value of its type; nested messages to three levels."""
    out = {}
    for field, spec in schema(doc, name).get("properties", {}).items():
        value = _sample(doc, spec, depth)
        if value is not None:
            out[field] = value
    return out


def _sample(doc: dict[str, Any], spec: dict[str, Any], depth: int) -> Any:
    if "$ref" in spec:
        return full_body(doc, spec["$ref"], depth + 1) if depth < 3 else None
    kind = spec.get("type", "any")
    if "enum" in spec:
        usable = [v for v in spec["enum"] if not v.endswith("UNSPECIFIED")] or spec["enum"]
        return usable[0]
    fmt = spec.get("format")
    if kind == "string":
        return {"int64": "1", "uint64": "1", "google-datetime": "2030-01-01T00:00:00Z", "google-duration": "3600s",
                "byte": "a2V5bGVzcw==", "google-fieldmask": ""}.get(fmt or "", "sample")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "array":
        item = _sample(doc, spec.get("items", {}), depth)
        return [] if item is None else [item]
    if kind == "object":
        extra = spec.get("additionalProperties")
        if extra is not None:
            value = _sample(doc, extra, depth)
            return {} if value is None else {"key": value}
        return {}
    return None
