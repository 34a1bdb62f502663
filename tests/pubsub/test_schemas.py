"""Pub/Sub schemas over REST against a real `keyless serve` (issue #20): create/get/list/delete,
revisions (commit, rollback, listRevisions, deleteRevision, `name@revision`), validate and
validateMessage with Avro and Protocol Buffers in JSON and binary encodings, a topic's schemaSettings enforced on
publish (Google's attributes on a message that matches, Google's INVALID_ARGUMENT on one that
does not), IAM on a schema, audit entries, and hostile definitions and messages. One server."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import fastavro
import httpx
import pytest
from sqlalchemy import func, select

from keyless.store.models import AuditEntry, PsMessage, PsSchemaRevision
from tests.api.helpers import audit_data_access, server_state, token_for_service_account
from tests.conftest import KeylessServer

PROJECT = "schema-project"
PS = f"/pubsub/v1/projects/{PROJECT}"
EDITOR_SA = "schema-editor@schema-project.iam.gserviceaccount.com"
PUBLISHER_SA = "schema-pub@schema-project.iam.gserviceaccount.com"
DENIED = "User not authorized to perform this action."
FAILED = "Invalid data in message: Message failed schema validation."

STATE = {"type": "record", "name": "State", "namespace": "utilities",
         "fields": [{"name": "name", "type": "string"}, {"name": "post_abbr", "type": "string"}]}
STATE_V2 = {**STATE, "fields": [*STATE["fields"], {"name": "population", "type": ["null", "long"], "default": None}]}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


def error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == status and body["error"]["status"] == code, body
    return dict(body["error"])


def avro_binary(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return out.getvalue()


def entries(srv: KeylessServer, method: str) -> list[dict[str, Any]]:
    with server_state(srv).db.read() as s:
        return [r.entry for r in s.scalars(select(AuditEntry).where(AuditEntry.method_name == method)
                                           .order_by(AuditEntry.id)).all()]


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    out = module_server.keyless("projects", "create", PROJECT, "--number", "246813579")
    assert out.returncode == 0, out.stderr
    for account in ("schema-editor", "schema-pub"):
        ok(module_server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account}))
    return module_server


def create(srv: KeylessServer, schema_id: str, definition: Any, schema_type: str = "AVRO",
           token: str | None = None) -> httpx.Response:
    text = definition if isinstance(definition, str) else json.dumps(definition)
    return srv.call("POST", f"{PS}/schemas?schemaId={schema_id}", body={"type": schema_type, "definition": text},
                    token=token)


def test_schema_lifecycle_and_revisions(srv: KeylessServer) -> None:
    made = ok(create(srv, "states", STATE))
    assert made["name"] == f"projects/{PROJECT}/schemas/states" and made["type"] == "AVRO"
    assert json.loads(made["definition"]) == STATE and len(made["revisionId"]) == 8
    assert made["revisionCreateTime"].endswith("Z")
    first = made["revisionId"]
    assert error(create(srv, "states", STATE), 409, "ALREADY_EXISTS")["message"] == \
        "Resource already exists in the project (resource=states)."
    assert ok(srv.call("GET", f"{PS}/schemas/states")) == made
    basic = {k: v for k, v in made.items() if k != "definition"}
    assert ok(srv.call("GET", f"{PS}/schemas/states?view=BASIC")) == basic
    assert ok(srv.call("GET", f"{PS}/schemas")) == {"schemas": [basic]}
    assert ok(srv.call("GET", f"{PS}/schemas?view=FULL"))["schemas"] == [made]

    second = ok(srv.call("POST", f"{PS}/schemas/states:commit",
                         body={"schema": {"type": "AVRO", "definition": json.dumps(STATE_V2)}}))
    assert second["revisionId"] != first and json.loads(second["definition"]) == STATE_V2
    assert json.loads(ok(srv.call("GET", f"{PS}/schemas/states"))["definition"]) == STATE_V2  # the newest
    assert ok(srv.call("GET", f"{PS}/schemas/states@{first}"))["revisionId"] == first
    revs = ok(srv.call("GET", f"{PS}/schemas/states:listRevisions?view=FULL"))["schemas"]
    assert [r["revisionId"] for r in revs] == [second["revisionId"], first]  # newest first
    assert "definition" not in ok(srv.call("GET", f"{PS}/schemas/states:listRevisions"))["schemas"][0]
    page = ok(srv.call("GET", f"{PS}/schemas/states:listRevisions?pageSize=1&view=FULL"))
    assert [r["revisionId"] for r in page["schemas"]] == [second["revisionId"]] and page["nextPageToken"]

    rolled = ok(srv.call("POST", f"{PS}/schemas/states:rollback", body={"revisionId": first}))
    assert rolled["revisionId"] not in (first, second["revisionId"]) and json.loads(rolled["definition"]) == STATE
    error(srv.call("POST", f"{PS}/schemas/states:rollback", body={"revisionId": "deadbeef"}), 404, "NOT_FOUND")
    after = ok(srv.call("DELETE", f"{PS}/schemas/states@{second['revisionId']}:deleteRevision"))
    assert after["revisionId"] == rolled["revisionId"]
    assert len(ok(srv.call("GET", f"{PS}/schemas/states:listRevisions"))["schemas"]) == 2
    error(srv.call("GET", f"{PS}/schemas/states@{second['revisionId']}"), 404, "NOT_FOUND")
    ok(srv.call("DELETE", f"{PS}/schemas/states@{first}:deleteRevision"))
    only = error(srv.call("DELETE", f"{PS}/schemas/states@{rolled['revisionId']}:deleteRevision"),
                 400, "FAILED_PRECONDITION")
    assert "only revision" in only["message"]
    error(srv.call("POST", f"{PS}/schemas/states:commit", body={"schema": {"type": "PROTOCOL_BUFFER",
          "definition": "syntax = \"proto3\"; message M { string a = 1; }"}}), 400, "INVALID_ARGUMENT")

    # at most 20 revisions per schema
    for _ in range(19):
        ok(srv.call("POST", f"{PS}/schemas/states:commit",
                    body={"schema": {"type": "AVRO", "definition": json.dumps(STATE)}}))
    error(srv.call("POST", f"{PS}/schemas/states:commit",
                   body={"schema": {"type": "AVRO", "definition": json.dumps(STATE)}}), 400, "FAILED_PRECONDITION")

    ok(srv.call("DELETE", f"{PS}/schemas/states"))
    assert error(srv.call("GET", f"{PS}/schemas/states"), 404, "NOT_FOUND")["message"] == \
        "Resource not found (resource=states)."
    with server_state(srv).db.read() as s:  # its revisions went with it
        assert not s.scalar(select(func.count()).select_from(PsSchemaRevision).where(
            PsSchemaRevision.definition.like('%"State"%')))


def test_validate_and_validate_message(srv: KeylessServer) -> None:
    ok(srv.call("POST", f"{PS}/schemas:validate", body={"schema": {"type": "AVRO", "definition": json.dumps(STATE)}}))
    bad = error(srv.call("POST", f"{PS}/schemas:validate",
                         body={"schema": {"type": "AVRO", "definition": json.dumps(
                             {"type": "record", "name": "R", "fields": [{"name": "x", "type": "Nope"}]})}}),
                400, "INVALID_ARGUMENT")
    assert bad["message"].startswith("Invalid schema definition: ") and "Nope" in bad["message"]
    error(srv.call("POST", f"{PS}/schemas:validate", body={"schema": {"type": "AVRO", "definition": "{not json"}}),
          400, "INVALID_ARGUMENT")
    ok(create(srv, "checked", STATE_V2))
    good_json = json.dumps({"name": "Alaska", "post_abbr": "AK", "population": {"long": 733391}}).encode()
    for body in ({"name": f"projects/{PROJECT}/schemas/checked", "encoding": "JSON", "message": b64(good_json)},
                 {"schema": {"type": "AVRO", "definition": json.dumps(STATE)}, "encoding": "BINARY",
                  "message": b64(avro_binary(STATE, {"name": "Alaska", "post_abbr": "AK"}))}):
        assert ok(srv.call("POST", f"{PS}/schemas:validateMessage", body=body)) == {}
    for encoding, message, why in (
            ("JSON", json.dumps({"name": "Alaska", "post_abbr": 7}).encode(),
             "JSON object with type number_integer does not match schema which expected string"),
            ("JSON", json.dumps({"name": "Alaska", "post_abbr": "AK", "extra": 1}).encode(), "extra"),
            ("JSON", json.dumps({"name": "Alaska", "post_abbr": "AK", "population": 5}).encode(), "union"),
            ("BINARY", avro_binary(STATE, {"name": "Alaska", "post_abbr": "AK"}) + b"\x00\x00",
             "Too much data to parse for schema."),
            ("BINARY", b"\x7f", "Not enough data")):
        refused = error(srv.call("POST", f"{PS}/schemas:validateMessage",
                                 body={"name": f"projects/{PROJECT}/schemas/checked", "encoding": encoding,
                                       "message": b64(message)}), 400, "INVALID_ARGUMENT")
        assert refused["message"] == FAILED
        info = refused["details"][0]
        assert info["reason"] == f"INVALID_{encoding}_AVRO_MESSAGE" and info["domain"] == "pubsub.googleapis.com"
        assert why in info["metadata"]["revisionInfo"], info
    error(srv.call("POST", f"{PS}/schemas:validateMessage", body={"encoding": "JSON", "message": b64(b"{}")}),
          400, "INVALID_ARGUMENT")
    error(srv.call("POST", f"{PS}/schemas:validateMessage",
                   body={"name": f"projects/{PROJECT}/schemas/missing", "message": b64(b"{}")}), 404, "NOT_FOUND")


def test_topic_schema_settings_enforced_on_publish(srv: KeylessServer) -> None:
    first = ok(create(srv, "topic-states", STATE))["revisionId"]
    schema = f"projects/{PROJECT}/schemas/topic-states"
    made = ok(srv.call("PUT", f"{PS}/topics/validated", body={"schemaSettings": {"schema": schema,
                                                                                  "encoding": "JSON"}}))
    assert made["schemaSettings"] == {"schema": schema, "encoding": "JSON"}
    ok(srv.call("PUT", f"{PS}/subscriptions/validated-sub", body={"topic": f"projects/{PROJECT}/topics/validated"}))
    good = json.dumps({"name": "Alaska", "post_abbr": "AK"}).encode()
    ok(srv.call("POST", f"{PS}/topics/validated:publish",
                body={"messages": [{"data": b64(good), "attributes": {"k": "v"}}]}))
    with server_state(srv).db.read() as s:
        before = s.scalar(select(func.count()).select_from(PsMessage))
    refused = error(srv.call("POST", f"{PS}/topics/validated:publish", body={"messages": [
        {"data": b64(good)}, {"data": b64(b'{"name": "Alaska"}')}]}), 400, "INVALID_ARGUMENT")
    assert refused["message"] == FAILED
    assert refused["details"][0]["metadata"]["revisionInfo"].startswith(
        f"Could not validate message with any schema revision for schema: {schema}, last checked revision: "
        f"revision_id={first} failed with status: ")
    with server_state(srv).db.read() as s:  # the whole request is refused: neither message is stored
        assert s.scalar(select(func.count()).select_from(PsMessage)) == before
    received = ok(srv.call("POST", f"{PS}/subscriptions/validated-sub:pull", body={"maxMessages": 10}))
    [message] = [r["message"] for r in received["receivedMessages"]]
    assert message["attributes"] == {"k": "v", "googclient_schemaname": schema, "googclient_schemaencoding": "JSON",
                                     "googclient_schemarevisionid": first}

    # a new revision: messages of either pass (newest tried first), each tagged with the revision it matched
    second = ok(srv.call("POST", f"{PS}/schemas/topic-states:commit", body={"schema": {
        "type": "AVRO", "definition": json.dumps({**STATE, "fields": [{"name": "code", "type": "int"}]})}}))["revisionId"]
    ok(srv.call("POST", f"{PS}/topics/validated:publish", body={"messages": [
        {"data": b64(good)}, {"data": b64(b'{"code": 7}')}]}))
    got = ok(srv.call("POST", f"{PS}/subscriptions/validated-sub:pull", body={"maxMessages": 10}))["receivedMessages"]
    tagged = {base64.b64decode(r["message"]["data"]): r["message"]["attributes"]["googclient_schemarevisionid"]
              for r in got[-2:] if "data" in r["message"]}
    assert tagged[good] == first and tagged[b'{"code": 7}'] == second

    # lastRevisionId = first: the newer revision's messages are refused; BINARY encoding on update
    ok(srv.call("PATCH", f"{PS}/topics/validated", body={"topic": {"schemaSettings": {
        "schema": schema, "encoding": "BINARY", "lastRevisionId": first}}, "updateMask": "schemaSettings"}))
    ok(srv.call("POST", f"{PS}/topics/validated:publish", body={"messages": [
        {"data": b64(avro_binary(STATE, {"name": "Ohio", "post_abbr": "OH"}))}]}))
    error(srv.call("POST", f"{PS}/topics/validated:publish", body={"messages": [{"data": b64(good)}]}),
          400, "INVALID_ARGUMENT")
    error(srv.call("PATCH", f"{PS}/topics/validated", body={"topic": {"schemaSettings": {
        "schema": schema, "encoding": "JSON", "firstRevisionId": second, "lastRevisionId": first}},
        "updateMask": "schemaSettings"}), 400, "INVALID_ARGUMENT")
    error(srv.call("PUT", f"{PS}/topics/nowhere", body={"schemaSettings": {
        "schema": f"projects/{PROJECT}/schemas/missing", "encoding": "JSON"}}), 404, "NOT_FOUND")

    # deleting the schema: the topic names `_deleted-schema_` and publishes unchecked
    ok(srv.call("DELETE", f"{PS}/schemas/topic-states"))
    assert ok(srv.call("GET", f"{PS}/topics/validated"))["schemaSettings"]["schema"] == "_deleted-schema_"
    ok(srv.call("POST", f"{PS}/topics/validated:publish", body={"messages": [{"data": b64(b"anything")}]}))


def test_iam_on_a_schema_and_attach(srv: KeylessServer) -> None:
    ok(create(srv, "guarded-schema", STATE))
    schema = f"projects/{PROJECT}/schemas/guarded-schema"
    editor = token_for_service_account(srv, EDITOR_SA)
    assert error(srv.call("GET", f"{PS}/schemas/guarded-schema", token=editor), 403,
                 "PERMISSION_DENIED")["message"] == DENIED
    assert error(create(srv, "by-editor", STATE, token=editor), 403, "PERMISSION_DENIED")["message"] == DENIED
    assert error(srv.call("GET", f"{PS}/schemas/no-such-schema", token=editor), 403, "PERMISSION_DENIED")
    ok(srv.call("POST", f"{PS}/schemas/guarded-schema:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/pubsub.editor", "members": [f"serviceAccount:{EDITOR_SA}"]}]}}))
    policy = ok(srv.call("GET", f"{PS}/schemas/guarded-schema:getIamPolicy"))
    assert policy["bindings"] == [{"role": "roles/pubsub.editor", "members": [f"serviceAccount:{EDITOR_SA}"]}]
    assert ok(srv.call("GET", f"{PS}/schemas/guarded-schema", token=editor))["name"] == schema
    ok(srv.call("POST", f"{PS}/schemas/guarded-schema:commit", token=editor,
                body={"schema": {"type": "AVRO", "definition": json.dumps(STATE_V2)}}))
    perms = ok(srv.call("POST", f"{PS}/schemas/guarded-schema:testIamPermissions", token=editor,
                        body={"permissions": ["pubsub.schemas.attach", "pubsub.schemas.setIamPolicy"]}))
    assert perms == {"permissions": ["pubsub.schemas.attach"]}
    # attaching needs pubsub.schemas.attach on the schema as well as topics.update on the topic
    ok(srv.call("PUT", f"{PS}/topics/attach-here", body={}))
    project_policy_path = f"/cloudresourcemanager/v1/projects/{PROJECT}"
    project_policy = ok(srv.call("POST", project_policy_path + ":getIamPolicy", body={}))
    project_policy["bindings"].append({"role": "roles/pubsub.publisher",
                                       "members": [f"serviceAccount:{PUBLISHER_SA}"]})
    ok(srv.call("POST", project_policy_path + ":setIamPolicy", body={"policy": project_policy}))
    ok(srv.call("POST", f"{PS}/topics/attach-here:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/pubsub.editor", "members": [f"serviceAccount:{PUBLISHER_SA}"]}]}}))
    publisher = token_for_service_account(srv, PUBLISHER_SA)
    settings = {"topic": {"schemaSettings": {"schema": schema, "encoding": "JSON"}}, "updateMask": "schemaSettings"}
    assert error(srv.call("PATCH", f"{PS}/topics/attach-here", body=settings, token=publisher), 403,
                 "PERMISSION_DENIED")["message"] == DENIED
    assert "schemaSettings" not in ok(srv.call("GET", f"{PS}/topics/attach-here"))
    ok(srv.call("POST", f"{PS}/schemas/guarded-schema:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/pubsub.editor", "members": [f"serviceAccount:{EDITOR_SA}", f"serviceAccount:{PUBLISHER_SA}"]}]}}))
    ok(srv.call("PATCH", f"{PS}/topics/attach-here", body=settings, token=publisher))
    error(srv.call("PATCH", f"{PS}/topics/attach-here", body=settings, token=editor), 403, "PERMISSION_DENIED")
    # the publisher may publish (topic permission), the schema validates
    ok(srv.call("POST", f"{PS}/topics/attach-here:publish", token=publisher,
                body={"messages": [{"data": b64(json.dumps({"name": "Iowa", "post_abbr": "IA"}).encode())}]}))

    # a schema named in a body, in a project the caller has nothing on: refused alike whether it
    # exists or not (validateMessage's name, a topic's schemaSettings)
    ok(srv.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": "schema-other"}))
    ok(srv.call("POST", "/pubsub/v1/projects/schema-other/schemas?schemaId=theirs",
                body={"type": "AVRO", "definition": json.dumps(STATE)}))
    project_policy = ok(srv.call("POST", project_policy_path + ":getIamPolicy", body={}))
    project_policy["bindings"].append({"role": "roles/pubsub.editor", "members": [f"serviceAccount:{EDITOR_SA}"]})
    ok(srv.call("POST", project_policy_path + ":setIamPolicy", body={"policy": project_policy}))
    message = b64(json.dumps({"name": "Iowa", "post_abbr": "IA"}).encode())
    assert ok(srv.call("POST", f"{PS}/schemas:validateMessage", token=editor, body={
        "name": schema, "encoding": "JSON", "message": message})) == {}
    for other in ("projects/schema-other/schemas/theirs", "projects/schema-other/schemas/missing",
                  "projects/no-such-project/schemas/theirs"):
        assert error(srv.call("POST", f"{PS}/schemas:validateMessage", token=editor, body={
            "name": other, "encoding": "JSON", "message": message}), 403, "PERMISSION_DENIED")["message"] == DENIED
        assert error(srv.call("PUT", f"{PS}/topics/cross-project", token=editor, body={"schemaSettings": {
            "schema": other, "encoding": "JSON"}}), 403, "PERMISSION_DENIED")["message"] == DENIED


def test_audit_entries(srv: KeylessServer) -> None:
    ok(create(srv, "audited-schema", STATE))
    entry = next(e for e in entries(srv, "google.pubsub.v1.SchemaService.CreateSchema")
                 if e["protoPayload"]["resourceName"] == f"projects/{PROJECT}/schemas/audited-schema")
    assert entry["logName"] == f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
    assert entry["resource"] == {"type": "pubsub_schema",
                                 "labels": {"project_id": PROJECT, "schema_id": "audited-schema"}}
    assert entry["protoPayload"]["authorizationInfo"][0]["permission"] == "pubsub.schemas.create"
    ok(srv.call("DELETE", f"{PS}/schemas/audited-schema"))
    assert any(e["protoPayload"]["resourceName"] == f"projects/{PROJECT}/schemas/audited-schema"
               for e in entries(srv, "google.pubsub.v1.SchemaService.DeleteSchema"))
    assert entries(srv, "google.pubsub.v1.SchemaService.GetSchema") == []  # Data Access off by default
    audit_data_access(srv, PROJECT, {"pubsub.googleapis.com": ["ADMIN_READ"]})
    ok(create(srv, "read-audited", STATE))
    ok(srv.call("GET", f"{PS}/schemas/read-audited"))
    method = "google.pubsub.v1.SchemaService.GetSchema"
    deadline = time.monotonic() + 10
    while not entries(srv, method) and time.monotonic() < deadline:
        server_state(srv).audit.flush()
        time.sleep(0.1)
    [found] = entries(srv, method)
    assert found["logName"] == f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Fdata_access"
    assert found["protoPayload"]["resourceName"] == f"projects/{PROJECT}/schemas/read-audited"


def test_hostile_definitions_and_messages(srv: KeylessServer) -> None:
    # a definition over 300 KB, one nested past the JSON parser's depth, recursive types
    big = json.dumps({**STATE, "doc": "x" * 300_001})
    assert "too large" in error(create(srv, "too-big", big), 400, "INVALID_ARGUMENT")["message"]
    deep = '{"type": "array", "items": ' * 5000 + '"int"' + "}" * 5000
    error(create(srv, "too-deep", deep), 400, "INVALID_ARGUMENT")
    for definition in ("[]", '["int", "int"]', '"nosuchtype"', '{"type": "record"}',
                       '{"type": "enum", "name": "E", "symbols": 5}', '{"type": "fixed", "name": "F", "size": -1}',
                       '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}, '
                       '{"name": "a", "type": "int"}]}'):
        error(create(srv, "malformed", definition), 400, "INVALID_ARGUMENT")
    error(srv.call("POST", f"{PS}/schemas?schemaId=goog-reserved", body={"type": "AVRO",
                   "definition": json.dumps(STATE)}), 400, "INVALID_ARGUMENT")
    error(srv.call("POST", f"{PS}/schemas?schemaId=unknown-type", body={"type": "XML", "definition": "<a/>"}),
          400, "INVALID_ARGUMENT")
    error(srv.call("POST", f"{PS}/schemas?schemaId=extra", body={"type": "AVRO", "definition": json.dumps(STATE),
                                                                  "bogus": 1}), 400, "INVALID_ARGUMENT")
    with server_state(srv).db.read() as s:  # nothing of the refused ones was stored
        assert not s.scalar(select(func.count()).select_from(PsSchemaRevision).where(
            PsSchemaRevision.definition.like('%"doc"%')))

    # messages built to exhaust the server: a billion zero-byte nulls, a list nested 10,000 deep
    nulls = {"type": "array", "items": "null"}
    linked = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    ok(create(srv, "nulls", nulls))
    ok(create(srv, "linked", linked))
    started = time.monotonic()
    for schema_id, encoding, message in (
            ("nulls", "BINARY", b"\x80\xa8\xd6\xb9\x07\x00"),  # block count 1,000,000,000 (zigzag varint)
            ("linked", "BINARY", b"\x02" * 10_000 + b"\x00"),
            ("linked", "JSON", ('{"next": {"Node": ' * 10_000 + "null" + "}}" * 10_000).encode())):
        refused = error(srv.call("POST", f"{PS}/schemas:validateMessage", body={
            "name": f"projects/{PROJECT}/schemas/{schema_id}", "encoding": encoding, "message": b64(message)}),
            400, "INVALID_ARGUMENT")
        assert refused["message"] == FAILED
    assert time.monotonic() - started < 10  # refused at once, not after decoding a billion values
    # a publish of 1,000 messages each just under the per-message limit (999,999 nulls in 4 bytes):
    # the allowance is the request's, so it is refused after the first, not after 10^9 decodes
    ok(srv.call("PUT", f"{PS}/topics/null-topic", body={"schemaSettings": {
        "schema": f"projects/{PROJECT}/schemas/nulls", "encoding": "BINARY"}}))
    count, varint = 999_999 << 1, b""
    while count >= 0x80:
        varint, count = varint + bytes([count & 0x7F | 0x80]), count >> 7
    block = varint + bytes([count]) + b"\x00"
    assert ok(srv.call("POST", f"{PS}/schemas:validateMessage", body={
        "name": f"projects/{PROJECT}/schemas/nulls", "encoding": "BINARY", "message": b64(block)})) == {}
    started = time.monotonic()
    refused = error(srv.call("POST", f"{PS}/topics/null-topic:publish",
                             body={"messages": [{"data": b64(block)}] * 1000}), 400, "INVALID_ARGUMENT")
    assert refused["message"] == FAILED and "More than 1000000 values" in refused["details"][0]["metadata"][
        "revisionInfo"]
    assert time.monotonic() - started < 10
    assert ok(srv.call("POST", f"{PS}/schemas:validateMessage", body={
        "name": f"projects/{PROJECT}/schemas/linked", "encoding": "BINARY", "message": b64(b"\x02\x02\x00")})) == {}


PROTO = """syntax = "proto3";
package utilities;

message StateProto {
  string name = 1;
  string post_abbr = 2;
  optional int64 population = 3;
  map<string, int32> counts = 4;
  enum Kind { STATE = 0; TERRITORY = 1; }
  Kind kind = 5;
  repeated Tag tags = 6;
  message Tag { string value = 1; }
}
"""


def test_protocol_buffer_schemas_and_topic_enforcement(srv: KeylessServer) -> None:
    made = ok(create(srv, "proto-states", PROTO, "PROTOCOL_BUFFER"))
    assert made["type"] == "PROTOCOL_BUFFER" and made["definition"] == PROTO
    ok(srv.call("POST", f"{PS}/schemas:validate", body={"schema": {"type": "PROTOCOL_BUFFER", "definition": PROTO}}))
    # the binary message, serialised by protobuf from the definition's message class
    from keyless.pubsub.proto_schema import parse_definition

    cls = parse_definition(PROTO).message_class
    binary = cls(name="Utah", post_abbr="UT", population=3_271_616, counts={"a": 1}, kind=1,
                 tags=[{"value": "x"}]).SerializeToString()
    name = f"projects/{PROJECT}/schemas/proto-states"
    for encoding, message in (("BINARY", binary),
                              ("JSON", b'{"name": "Utah", "postAbbr": "UT", "kind": "TERRITORY", "counts": {"a": 2}}')):
        assert ok(srv.call("POST", f"{PS}/schemas:validateMessage",
                           body={"name": name, "encoding": encoding, "message": b64(message)})) == {}
    for encoding, message in (("JSON", b'{"name": 5}'), ("JSON", b'{"unknown": "field"}'),
                              ("JSON", b'{"kind": "CITY"}'), ("BINARY", b"\xff\xff\xff")):
        refused = error(srv.call("POST", f"{PS}/schemas:validateMessage",
                                 body={"name": name, "encoding": encoding, "message": b64(message)}),
                        400, "INVALID_ARGUMENT")
        assert refused["message"] == FAILED and refused["details"][0]["reason"] == f"INVALID_{encoding}_PROTO_MESSAGE"

    ok(srv.call("PUT", f"{PS}/topics/proto-topic", body={"schemaSettings": {"schema": name, "encoding": "BINARY"}}))
    ok(srv.call("PUT", f"{PS}/subscriptions/proto-sub", body={"topic": f"projects/{PROJECT}/topics/proto-topic"}))
    ok(srv.call("POST", f"{PS}/topics/proto-topic:publish", body={"messages": [{"data": b64(binary)}]}))
    error(srv.call("POST", f"{PS}/topics/proto-topic:publish", body={"messages": [{"data": b64(b"\xff\xff")}]}),
          400, "INVALID_ARGUMENT")
    [got] = ok(srv.call("POST", f"{PS}/subscriptions/proto-sub:pull", body={"maxMessages": 5}))["receivedMessages"]
    assert base64.b64decode(got["message"]["data"]) == binary
    assert got["message"]["attributes"] == {"googclient_schemaname": name, "googclient_schemaencoding": "BINARY",
                                            "googclient_schemarevisionid": made["revisionId"]}

    # definitions the parser or protobuf's descriptor pool refuses, hostile ones refused at once
    started = time.monotonic()
    for definition in ("message A {} message B {}", 'import "other.proto"; message A {}',
                       'syntax = "proto3"; message A { string a = 1; string b = 1; }',
                       'syntax = "proto3"; message A { Missing m = 1; }', "message A {",
                       'edition = "2023"; message A {}', "message A { " + "message B { " * 5000 + "}" * 5001,
                       'syntax = "proto3"; message A { ' + "int32 f = 1; " * 20_000 + "}"):
        assert error(create(srv, "bad-proto", definition, "PROTOCOL_BUFFER"), 400,
                     "INVALID_ARGUMENT")["message"].startswith(("Invalid schema definition: ", "Schema definition is"))
    assert time.monotonic() - started < 10
    nested = ok(create(srv, "proto-linked", 'syntax = "proto3"; message N { N next = 1; }', "PROTOCOL_BUFFER"))
    deep = b"{}"
    for _ in range(3000):
        deep = b'{"next": ' + deep + b"}"
    error(srv.call("POST", f"{PS}/schemas:validateMessage", body={"name": nested["name"], "encoding": "JSON",
                                                                    "message": b64(deep)}), 400, "INVALID_ARGUMENT")
