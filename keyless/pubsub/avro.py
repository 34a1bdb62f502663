"""Avro schemas for Pub/Sub (https://cloud.google.com/pubsub/docs/schemas, Avro 1.11
specification https://avro.apache.org/docs/1.11.1/specification/): a definition is parsed by
fastavro; a message is checked against it in Avro's binary encoding or its JSON encoding
(unions as `{"type": value}`, bytes as code points 0-255), as Pub/Sub validates on publish.

The message checks are Keyless's own, bounded for hostile input: nesting (recursive types) at
most MAX_DEPTH levels, at most MAX_ITEMS decoded values per message, or per publish (a Budget:
an array block of a billion zero-byte nulls costs no input), and every length checked against
the bytes left before anything is read. A binary message with bytes after its datum fails as Google's does
("Too much data to parse for schema.").
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

MAX_DEPTH = 100
MAX_ITEMS = 1_000_000
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class AvroError(ValueError):
    """The definition or the message does not fit; the text says why (Google's words where known)."""


class Parsed:
    """A parsed Avro schema: its root and its named types by full name."""

    def __init__(self, root: Any, named: dict[str, Any]) -> None:
        self.root, self.named = root, named


def parse_definition(definition: str) -> Parsed:
    """The parsed schema of an Avro definition (JSON text), or AvroError."""
    try:
        raw = json.loads(definition)
        named: dict[str, Any] = {}
        root = fastavro.parse_schema(raw, named_schemas=named)
    except RecursionError:
        raise AvroError("The schema is nested too deeply.") from None
    except json.JSONDecodeError as exc:
        raise AvroError(f"The definition is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}.") \
            from None
    except UnknownType as exc:
        raise AvroError(f"Undefined name: {str(exc)[:200]}") from None
    except (SchemaParseException, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise AvroError(f"{type(exc).__name__}: {str(exc)[:300]}") from None
    parsed = Parsed(root, named)
    _check_structure(parsed, root, set(), 0)
    return parsed


def _check_structure(parsed: Parsed, schema: Any, seen: set[str], depth: int) -> None:
    """What the specification requires and fastavro lets pass: unions of distinct, non-union
    branches (at least one), unique field names and enum symbols, Avro names, fixed sizes >= 0."""
    if depth > MAX_DEPTH:
        raise AvroError(f"The schema is nested more than {MAX_DEPTH} levels deep.")
    if isinstance(schema, str):
        if schema not in PRIMITIVES and schema not in seen:
            seen.add(schema)
            _check_structure(parsed, _resolve(parsed, schema), seen, depth + 1)
        return
    if isinstance(schema, list):
        if not schema:
            raise AvroError("A union must have at least one branch.")
        branch_names = []
        for branch in schema:
            resolved = _resolve(parsed, branch)
            if isinstance(resolved, list):
                raise AvroError("Unions may not immediately contain other unions.")
            branch_names.append(_type_name(resolved))
            _check_structure(parsed, branch, seen, depth + 1)
        if len(set(branch_names)) != len(branch_names):
            raise AvroError(f"Duplicate in union: {sorted(branch_names)[:20]}")
        return
    kind = _kind(schema)
    if kind in ("record", "error", "enum", "fixed"):
        seen.add(str(schema["name"]))
    if kind in ("record", "error"):
        fields = [f.get("name") for f in schema["fields"]]
        for field_name in fields:
            if not isinstance(field_name, str) or not NAME.match(field_name):
                raise AvroError(f"Invalid field name: {str(field_name)[:100]!r}")
        if len(set(fields)) != len(fields):
            raise AvroError(f"Duplicate field name in record {str(schema['name'])[:100]}.")
        for field in schema["fields"]:
            _check_structure(parsed, field["type"], seen, depth + 1)
    elif kind == "enum":
        symbols = schema["symbols"]
        if not isinstance(symbols, list) or not all(isinstance(x, str) and NAME.match(x) for x in symbols) \
                or len(set(symbols)) != len(symbols):
            raise AvroError(f"Invalid symbols of enum {str(schema['name'])[:100]}: unique Avro names are required.")
    elif kind == "fixed":
        size = schema.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise AvroError(f"Invalid size of fixed {str(schema['name'])[:100]}: a non-negative integer is required.")
    elif kind == "array":
        _check_structure(parsed, schema["items"], seen, depth + 1)
    elif kind == "map":
        _check_structure(parsed, schema["values"], seen, depth + 1)


class Budget:
    """Values decoded so far, against a limit: one per message, or one shared by every message
    and revision a publish checks (keyless.pubsub.schemas)."""

    def __init__(self, limit: int = MAX_ITEMS) -> None:
        self.items, self.limit = 0, limit

    def spend(self, n: int = 1) -> None:
        self.afford(n)
        self.items += n

    def afford(self, n: int) -> None:
        if self.items + n > self.limit:
            raise AvroError(f"More than {self.limit} values to check.")


def _resolve(parsed: Parsed, schema: Any) -> Any:
    if isinstance(schema, str) and schema not in PRIMITIVES:
        found = parsed.named.get(schema)
        if found is None:
            raise AvroError(f"Undefined name: {schema[:200]}")
        return found
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    return str(schema["type"])


# -- binary encoding ------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise AvroError("Not enough data to parse for schema.")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def long(self) -> int:
        shift, value = 0, 0
        while True:
            if self.pos >= len(self.data):
                raise AvroError("Not enough data to parse for schema.")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise AvroError("Invalid varint in message.")
        return (value >> 1) ^ -(value & 1)


def read_binary(parsed: Parsed, data: bytes, budget: Budget | None = None) -> None:
    """Check that `data` is exactly one datum of the schema in Avro's binary encoding."""
    reader = _Reader(data)
    _read(parsed, parsed.root, reader, budget or Budget(), 0)
    if reader.pos != len(data):
        raise AvroError("Too much data to parse for schema.")


def _read(parsed: Parsed, schema: Any, r: _Reader, budget: Budget, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AvroError(f"The message is nested more than {MAX_DEPTH} levels deep.")
    budget.spend()
    schema = _resolve(parsed, schema)
    kind = _kind(schema)
    if kind == "null":
        return
    if kind == "boolean":
        if r.take(1)[0] > 1:
            raise AvroError("Invalid boolean value in message.")
    elif kind == "int":
        if not INT32[0] <= r.long() <= INT32[1]:
            raise AvroError("Value out of range for int.")
    elif kind == "long":
        r.long()
    elif kind == "float":
        r.take(4)
    elif kind == "double":
        r.take(8)
    elif kind in ("bytes", "string"):
        raw = r.take(r.long())
        if kind == "string":
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise AvroError("Invalid UTF-8 in a string value.") from None
    elif kind == "fixed":
        r.take(int(schema["size"]))
    elif kind == "enum":
        if not 0 <= r.long() < len(schema["symbols"]):
            raise AvroError("Enum index out of range.")
    elif kind == "union":
        index = r.long()
        if not 0 <= index < len(schema):
            raise AvroError("Union index out of range.")
        _read(parsed, schema[index], r, budget, depth + 1)
    elif kind == "record" or kind == "error":
        for field in schema["fields"]:
            _read(parsed, field["type"], r, budget, depth + 1)
    elif kind in ("array", "map"):
        while True:
            count = r.long()
            if count == 0:
                break
            if count < 0:  # a negative count is followed by the block's size in bytes
                count = -count
                r.long()
            budget.afford(count)  # before the loop: a huge count of zero-byte items is refused at once
            for _ in range(count):
                if kind == "map":
                    r.take(r.long())
                    _read(parsed, schema["values"], r, budget, depth + 1)
                else:
                    _read(parsed, schema["items"], r, budget, depth + 1)
    else:
        raise AvroError(f"Unsupported type {kind[:100]}.")


# -- JSON encoding ----------------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "number_integer"
    if isinstance(value, float):
        return "number_float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _mismatch(value: Any, expected: str) -> AvroError:
    return AvroError(f"JSON object with type {_json_type(value)} does not match schema which expected {expected}")


def read_json(parsed: Parsed, text: bytes, budget: Budget | None = None) -> None:
    """Check that `text` is one datum of the schema in Avro's JSON encoding."""
    try:
        value = json.loads(text.decode("utf-8"))
    except RecursionError:
        raise AvroError("The message is nested too deeply.") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AvroError("Message is not valid JSON.") from None
    _check(parsed, parsed.root, value, budget or Budget(), 0)


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, dict) and schema.get("type") in ("record", "enum", "fixed", "error"):
        return str(schema["name"])
    return str(schema.get("type")) if isinstance(schema, dict) else "union"


def _check(parsed: Parsed, schema: Any, value: Any, budget: Budget, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AvroError(f"The message is nested more than {MAX_DEPTH} levels deep.")
    budget.spend()
    schema = _resolve(parsed, schema)
    kind = _kind(schema)
    if kind == "null":
        if value is not None:
            raise _mismatch(value, "null")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise _mismatch(value, "boolean")
    elif kind in ("int", "long"):
        bounds = INT32 if kind == "int" else INT64
        if isinstance(value, bool) or not isinstance(value, int):
            raise _mismatch(value, "number_integer")
        if not bounds[0] <= value <= bounds[1]:
            raise AvroError(f"Value out of range for {kind}.")
    elif kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not math.isfinite(value)):
            raise _mismatch(value, "number")
        if kind == "float" and isinstance(value, float) and math.isfinite(value):
            try:
                struct.pack("<f", value)
            except OverflowError:
                raise AvroError("Value out of range for float.") from None
    elif kind == "string":
        if not isinstance(value, str):
            raise _mismatch(value, "string")
    elif kind in ("bytes", "fixed"):
        if not isinstance(value, str):
            raise _mismatch(value, "string")
        if any(ord(c) > 255 for c in value):
            raise AvroError("A bytes value has a character above \\u00ff.")
        if kind == "fixed" and len(value) != int(schema["size"]):
            raise AvroError(f"A fixed value of {schema['name'][:100]} has {len(value)} bytes, not {schema['size']}.")
    elif kind == "enum":
        if not isinstance(value, str):
            raise _mismatch(value, "string")
        if value not in schema["symbols"]:
            raise AvroError(f"Enum symbol {value[:100]!r} is not one of {schema['name'][:100]}'s symbols.")
    elif kind == "union":
        _check_union(parsed, schema, value, budget, depth)
    elif kind in ("record", "error"):
        if not isinstance(value, dict):
            raise _mismatch(value, "object")
        fields = {f["name"]: f for f in schema["fields"]}
        for key in value:
            if key not in fields:
                raise AvroError(f"Field {str(key)[:100]!r} is not in the schema of {schema['name'][:100]}.")
        for name, field in fields.items():
            if name in value:
                _check(parsed, field["type"], value[name], budget, depth + 1)
            elif "default" not in field:
                raise AvroError(f"Missing field {name[:100]!r} of {schema['name'][:100]}.")
    elif kind == "array":
        if not isinstance(value, list):
            raise _mismatch(value, "array")
        for item in value:
            _check(parsed, schema["items"], item, budget, depth + 1)
    elif kind == "map":
        if not isinstance(value, dict):
            raise _mismatch(value, "object")
        for item in value.values():
            _check(parsed, schema["values"], item, budget, depth + 1)
    else:
        raise AvroError(f"Unsupported type {kind[:100]}.")


def _check_union(parsed: Parsed, branches: list[Any], value: Any, budget: Budget, depth: int) -> None:
    if value is None:
        if "null" not in branches:
            raise _mismatch(value, "union")
        return
    if not isinstance(value, dict) or len(value) != 1:
        raise _mismatch(value, "union: an object of one member naming the branch")
    (name, inner), = value.items()
    for branch in branches:
        resolved = _resolve(parsed, branch)
        if name == _type_name(resolved) or name == branch:
            _check(parsed, resolved, inner, budget, depth + 1)
            return
    raise AvroError(f"Union branch {str(name)[:100]!r} is not one of the schema's.")
