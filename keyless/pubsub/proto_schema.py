"""Protocol Buffer schemas for Pub/Sub (https://cloud.google.com/pubsub/docs/schemas#protocol-buffer-schemas):
a `.proto` definition (proto2 or proto3) with exactly one top-level message, parsed here into a
FileDescriptorProto that protobuf's own descriptor pool then checks (field numbers, names, type
references) and builds; messages are checked by protobuf itself, in the binary wire format or in
proto3's JSON mapping (unknown fields refused, proto2 required fields enforced).

The parser (the language guide's grammar, https://protobuf.dev/reference/protobuf/proto3-spec/,
less what one self-contained message does not need: imports, services, extensions, groups and
editions are refused) reads tokens with one linear regular expression and nests at most MAX_DEPTH
messages deep, so a hostile definition costs time in proportion to its size (bounded to 300 KB
by keyless.pubsub.schemas). Decoding is bounded by protobuf's recursion limit (100 levels).
"""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message

MAX_DEPTH = 32
TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9A-Fa-f]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)\b)
  | (?P<ident>\.?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<symbol>[{}\[\]()<>=;,:/-])
""", re.VERBOSE | re.DOTALL)
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {"double": FDP.TYPE_DOUBLE, "float": FDP.TYPE_FLOAT, "int64": FDP.TYPE_INT64, "uint64": FDP.TYPE_UINT64,
           "int32": FDP.TYPE_INT32, "fixed64": FDP.TYPE_FIXED64, "fixed32": FDP.TYPE_FIXED32, "bool": FDP.TYPE_BOOL,
           "string": FDP.TYPE_STRING, "bytes": FDP.TYPE_BYTES, "uint32": FDP.TYPE_UINT32,
           "sfixed32": FDP.TYPE_SFIXED32, "sfixed64": FDP.TYPE_SFIXED64, "sint32": FDP.TYPE_SINT32,
           "sint64": FDP.TYPE_SINT64}
LABELS = {"optional": FDP.LABEL_OPTIONAL, "required": FDP.LABEL_REQUIRED, "repeated": FDP.LABEL_REPEATED}


class ProtoError(ValueError):
    """The definition or the message does not fit; the text says why."""


class Parsed:
    """A built schema: the class of its one top-level message."""

    def __init__(self, message_class: type[Message]) -> None:
        self.message_class = message_class


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if m is None:
            raise ProtoError(f"Unexpected character {text[pos]!r} at line {text.count(chr(10), 0, pos) + 1}.")
        if m.lastgroup != "space":
            out.append((m.lastgroup or "", m.group()))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.syntax = "proto2"

    # -- tokens -----------------------------------------------------------------------------------

    def peek(self) -> str:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else ""

    def kind(self) -> str:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else ""

    def next(self) -> str:
        if self.i >= len(self.tokens):
            raise ProtoError("Unexpected end of the definition.")
        self.i += 1
        return self.tokens[self.i - 1][1]

    def expect(self, value: str) -> None:
        got = self.next()
        if got != value:
            raise ProtoError(f"Expected {value!r}, found {got[:100]!r}.")

    def ident(self) -> str:
        if self.kind() != "ident":
            raise ProtoError(f"Expected a name, found {self.peek()[:100]!r}.")
        return self.next()

    def integer(self) -> int:
        text = self.next()
        try:
            return int(text, 0)
        except ValueError:
            pass
        try:
            return int(text, 8)  # proto's octal literals: a leading 0
        except ValueError:
            raise ProtoError(f"Expected an integer, found {text[:100]!r}.") from None

    def skip_statement(self) -> None:
        """An option or reserved statement, up to its `;` (an aggregate value's braces included)."""
        depth = 0
        while True:
            token = self.next()
            if token == "{":
                depth += 1
            elif token == "}":
                depth -= 1
            elif token == ";" and depth <= 0:
                return

    # -- the file ---------------------------------------------------------------------------------

    def file(self) -> descriptor_pb2.FileDescriptorProto:
        out = descriptor_pb2.FileDescriptorProto(name="pubsub_schema.proto")
        while self.i < len(self.tokens):
            word = self.next()
            if word == "syntax":
                self.expect("=")
                value = self.next().strip("\"'")
                if value not in ("proto2", "proto3"):
                    raise ProtoError(f"Unrecognized syntax identifier {value[:100]!r}: proto2 or proto3.")
                self.syntax = value
                self.expect(";")
            elif word == "edition":
                raise ProtoError("Editions are not supported: use syntax = \"proto2\" or \"proto3\".")
            elif word == "package":
                out.package = self.ident().lstrip(".")
                self.expect(";")
            elif word == "option":
                self.skip_statement()
            elif word == "import":
                raise ProtoError("Imports are not supported: the schema must be self-contained.")
            elif word == "message":
                self.message(out.message_type.add(), 0)
            elif word == "enum":
                self.enum(out.enum_type.add())
            elif word == ";":
                continue
            else:
                raise ProtoError(f"Expected a top-level statement, found {word[:100]!r}.")
        if self.syntax == "proto3":
            out.syntax = "proto3"
        if len(out.message_type) != 1:
            raise ProtoError(f"The schema must define exactly one top-level message; it defines "
                             f"{len(out.message_type)}.")
        return out

    def message(self, out: descriptor_pb2.DescriptorProto, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ProtoError(f"Messages are nested more than {MAX_DEPTH} levels deep.")
        out.name = self.ident()
        self.expect("{")
        synthetic: list[descriptor_pb2.FieldDescriptorProto] = []
        while True:
            word = self.peek()
            if word == "}":
                self.next()
                break
            if word == "message":
                self.next()
                self.message(out.nested_type.add(), depth + 1)
            elif word == "enum":
                self.next()
                self.enum(out.enum_type.add())
            elif word in ("option", "reserved", "extensions"):
                self.skip_statement()
            elif word == ";":
                self.next()
            elif word == "oneof":
                self.next()
                index = len(out.oneof_decl)
                out.oneof_decl.add(name=self.ident())
                self.expect("{")
                while self.peek() != "}":
                    if self.peek() == "option":
                        self.skip_statement()
                        continue
                    field = self.field(out, None)
                    field.oneof_index = index
                self.next()
            elif word in ("extend", "service", "group"):
                raise ProtoError(f"{word} is not supported in a Pub/Sub schema.")
            else:
                label = LABELS.get(word)
                if label is not None:
                    self.next()
                field = self.field(out, label)
                if label == FDP.LABEL_OPTIONAL and self.syntax == "proto3":
                    field.proto3_optional = True
                    synthetic.append(field)
        for field in synthetic:  # proto3 `optional`: a synthetic oneof each, after the real ones
            field.oneof_index = len(out.oneof_decl)
            out.oneof_decl.add(name="_" + field.name)

    def field(self, owner: descriptor_pb2.DescriptorProto, label: int | None) -> descriptor_pb2.FieldDescriptorProto:
        if self.peek() == "map":
            self.next()
            self.expect("<")
            key = self.ident()
            self.expect(",")
            value = self.ident()
            self.expect(">")
            name = self.ident()
            entry = owner.nested_type.add(name="".join(p[:1].upper() + p[1:] for p in name.split("_")) + "Entry")
            entry.options.map_entry = True
            self._typed(entry.field.add(name="key", number=1, label=FDP.LABEL_OPTIONAL), key)
            self._typed(entry.field.add(name="value", number=2, label=FDP.LABEL_OPTIONAL), value)
            field = owner.field.add(name=name, label=FDP.LABEL_REPEATED, type_name=entry.name)
        else:
            type_name = self.ident()
            field = owner.field.add(name=self.ident(), label=label or FDP.LABEL_OPTIONAL)
            self._typed(field, type_name)
        self.expect("=")
        field.number = self.integer()
        if self.peek() == "[":
            self.next()
            while True:
                option = self.next()
                if option == "(":
                    raise ProtoError("Custom options are not supported.")
                self.expect("=")
                value = self.next()
                if option == "default":
                    field.default_value = value.strip("\"'")
                elif option == "json_name":
                    field.json_name = value.strip("\"'")
                separator = self.next()
                if separator == "]":
                    break
                if separator != ",":
                    raise ProtoError(f"Expected ',' or ']', found {separator[:100]!r}.")
        self.expect(";")
        return field

    def _typed(self, field: descriptor_pb2.FieldDescriptorProto, type_name: str) -> None:
        if type_name == "group":
            raise ProtoError("Groups are not supported.")
        scalar = SCALARS.get(type_name)
        if scalar is not None:
            field.type = scalar
        else:
            field.type_name = type_name  # resolved (message or enum) by the descriptor pool

    def enum(self, out: descriptor_pb2.EnumDescriptorProto) -> None:
        out.name = self.ident()
        self.expect("{")
        while True:
            word = self.next()
            if word == "}":
                return
            if word in ("option", "reserved"):
                self.i -= 1
                self.skip_statement()
            elif word == ";":
                continue
            else:
                if not IDENT.match(word):
                    raise ProtoError(f"Expected an enum value name, found {word[:100]!r}.")
                self.expect("=")
                out.value.add(name=word, number=self.integer())
                if self.peek() == "[":
                    while self.next() != "]":
                        pass
                self.expect(";")


def parse_definition(definition: str) -> Parsed:
    """The built schema of a `.proto` definition, or ProtoError."""
    try:
        file_proto = _Parser(definition).file()
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file_proto)
        root = file_proto.message_type[0].name
        full = f"{file_proto.package}.{root}" if file_proto.package else root
        return Parsed(message_factory.GetMessageClass(pool.FindMessageTypeByName(full)))
    except ProtoError:
        raise
    except RecursionError:
        raise ProtoError("The definition is nested too deeply.") from None
    except (TypeError, ValueError, KeyError) as exc:  # the descriptor pool's refusals
        raise ProtoError(str(exc)[:300]) from None


def read_binary(parsed: Parsed, data: bytes) -> None:
    message = parsed.message_class()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise ProtoError(f"Failed to parse the message: {str(exc)[:200]}") from None
    if not message.IsInitialized():
        raise ProtoError(f"Message missing required fields: {', '.join(message.FindInitializationErrors())[:200]}")


def read_json(parsed: Parsed, text: bytes) -> None:
    message = parsed.message_class()
    try:
        value: Any = json.loads(text.decode("utf-8"))
        json_format.ParseDict(value, message)
    except RecursionError:
        raise ProtoError("The message is nested too deeply.") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtoError("Message is not valid JSON.") from None
    except json_format.ParseError as exc:
        raise ProtoError(str(exc)[:300]) from None
    if not message.IsInitialized():
        raise ProtoError(f"Message missing required fields: {', '.join(message.FindInitializationErrors())[:200]}")
