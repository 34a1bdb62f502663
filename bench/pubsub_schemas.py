"""Pub/Sub schema validation (issue #20): messages checked per second against an Avro schema (JSON
and binary encodings) and a Protocol Buffer schema (JSON and binary), the work a publish to a
topic with schemaSettings adds per message; and how long the hostile inputs the tests send take to
be refused (a billion-item Avro array block, a 10,000-deep recursive message, a 300 KB definition).

    .venv/bin/python bench/pubsub_schemas.py [--messages 20000]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402

from keyless.pubsub import avro, proto_schema  # noqa: E402

AVRO = {"type": "record", "name": "Reading", "fields": [
    {"name": "station", "type": "string"}, {"name": "celsius", "type": "double"},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "note", "type": ["null", "string"], "default": None}]}
PROTO = """syntax = "proto3";
message Reading { string station = 1; double celsius = 2; repeated string tags = 3; optional string note = 4; }
"""
RECORD = {"station": "north-7", "celsius": 21.5, "tags": ["roof", "hourly"], "note": "calibrated"}


def rate(label: str, n: int, check: Callable[[], None]) -> None:
    started = time.perf_counter()
    for _ in range(n):
        check()
    elapsed = time.perf_counter() - started
    print(f"{label:<34} {n / elapsed:>10,.0f} messages/s  ({elapsed / n * 1e6:.1f} µs each)")


def refused(label: str, check: Callable[[], None]) -> None:
    started = time.perf_counter()
    try:
        check()
        outcome = "ACCEPTED"
    except ValueError as exc:
        outcome = f"refused: {str(exc)[:60]}"
    print(f"{label:<34} {(time.perf_counter() - started) * 1000:>10.1f} ms  {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    n = parser.parse_args().messages

    parsed_avro = avro.parse_definition(json.dumps(AVRO))
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO), RECORD)
    avro_binary = out.getvalue()
    avro_json = json.dumps({**RECORD, "note": {"string": RECORD["note"]}}).encode()
    parsed_proto = proto_schema.parse_definition(PROTO)
    proto_binary = parsed_proto.message_class(**RECORD).SerializeToString()
    proto_json = json.dumps(RECORD).encode()

    print(f"validation, {n} messages each")
    rate("Avro binary", n, lambda: avro.read_binary(parsed_avro, avro_binary))
    rate("Avro JSON", n, lambda: avro.read_json(parsed_avro, avro_json))
    rate("Protocol Buffer binary", n, lambda: proto_schema.read_binary(parsed_proto, proto_binary))
    rate("Protocol Buffer JSON", n, lambda: proto_schema.read_json(parsed_proto, proto_json))

    print("hostile input, time to refuse")
    nulls = avro.parse_definition(json.dumps({"type": "array", "items": "null"}))
    linked = avro.parse_definition(json.dumps({"type": "record", "name": "Node", "fields": [
        {"name": "next", "type": ["null", "Node"]}]}))
    refused("Avro block of 1e9 nulls", lambda: avro.read_binary(nulls, b"\x80\xa8\xd6\xb9\x07\x00"))
    refused("Avro list 10,000 deep (binary)", lambda: avro.read_binary(linked, b"\x02" * 10_000 + b"\x00"))
    refused("Avro definition 5,000 deep", lambda: avro.parse_definition(
        '{"type": "array", "items": ' * 5000 + '"int"' + "}" * 5000))
    refused("proto definition 300 KB, 1 field name", lambda: proto_schema.parse_definition(
        'syntax = "proto3"; message A { ' + "int32 f = 1; " * 23_000 + "}"))
    refused("proto messages nested 5,000 deep", lambda: proto_schema.parse_definition(
        "message A { " + "message B { " * 5000 + "}" * 5001))


if __name__ == "__main__":
    main()
