"""Pub/Sub schemas and their revisions (https://cloud.google.com/pubsub/docs/schemas,
https://cloud.google.com/pubsub/docs/commit-schema-revision), and a topic's schemaSettings
enforced on publish (https://cloud.google.com/pubsub/docs/publish-topics-schema).

A schema is its revisions: creating one makes the first, commit adds one, rollback adds a copy
of an older one, deleteRevision removes one (never the last). Each has Google's eight-hex-digit
revision id. A message published to a topic with schemaSettings must match one revision in the
settings' range, tried from the newest to the oldest; it then carries the attributes
googclient_schemaname, googclient_schemaencoding and googclient_schemarevisionid. A message
that matches none is refused with Google's INVALID_ARGUMENT ("Invalid data in message: Message
failed schema validation.", ErrorInfo INVALID_{JSON,BINARY}_AVRO_MESSAGE naming the last revision
tried). Deleting a schema leaves its topics naming `_deleted-schema_`; they publish unchecked.

Schema types: AVRO (keyless.pubsub.avro) and PROTOCOL_BUFFER (keyless.pubsub.proto_schema).
Limits as Google's quotas page gives them: a definition of at most 300 KB, at most 20 revisions
per schema. Keyless's own, against hostile publishes: one publish may have at most 1,000,000 Avro
values and 20 MB of message bytes checked, across its messages and the revisions tried.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyless.clock import now as clock_now
from keyless.clock import rfc3339
from keyless.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from keyless.iam.policy import get_policy_row
from keyless.pubsub import avro, names, proto_schema
from keyless.pubsub.messages import Outgoing
from keyless.store.models import PsSchema, PsSchemaRevision, PsTopic

TYPES = ("AVRO", "PROTOCOL_BUFFER")
ENCODINGS = ("JSON", "BINARY")
VIEWS = ("SCHEMA_VIEW_UNSPECIFIED", "BASIC", "FULL")
MAX_DEFINITION_BYTES = 300 * 1000
MAX_REVISIONS = 20
DELETED_SCHEMA = "_deleted-schema_"
SCHEMA_FIELDS = {"name", "type", "definition", "revisionId", "revisionCreateTime", "compiledProtoSchema"}
SETTINGS_FIELDS = {"schema", "encoding", "firstRevisionId", "lastRevisionId"}
FAILED = "Invalid data in message: Message failed schema validation."
MAX_VALUES_PER_PUBLISH = avro.MAX_ITEMS  # Avro values decoded for one publish, all messages and revisions
MAX_BYTES_PER_PUBLISH = 20 * 1000 * 1000  # message bytes checked for one publish (twice the request's 10 MB)


def schema_name(project_id: str, schema_id: str) -> str:
    return f"projects/{project_id}/schemas/{schema_id}"


def policy_resource(project_id: str, schema_id: str) -> str:
    return names.policy_resource(project_id, "schemas", schema_id)


def split_revision(resource_id: str) -> tuple[str, str | None]:
    """`schema@revision` -> (schema, revision); a plain id has no revision."""
    schema_id, at, revision = resource_id.partition("@")
    return schema_id, (revision if at else None)


# -- definitions ----------------------------------------------------------------------------------


# A message that does not match a revision (the text says why).
MISMATCH = (avro.AvroError, proto_schema.ProtoError)


@functools.lru_cache(maxsize=256)
def parsed_definition(schema_type: str, definition: str) -> avro.Parsed | proto_schema.Parsed:
    """The parsed definition (cached: a topic's publishes parse its revisions once)."""
    try:
        if schema_type == "AVRO":
            return avro.parse_definition(definition)
        return proto_schema.parse_definition(definition)
    except MISMATCH as exc:
        raise InvalidArgument(f"Invalid schema definition: {exc}") from None


def check_schema(body: Any, where: str) -> tuple[str, str]:
    """(type, definition) of a Schema in a request, its definition parsed."""
    if not isinstance(body, dict):
        raise InvalidArgument(f"Invalid value at '{where}' (type.googleapis.com/google.pubsub.v1.Schema)")
    for key in body:
        if key not in SCHEMA_FIELDS:
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{str(key)[:100]}\" at '{where}': "
                                  "Cannot find field.")
    schema_type, definition = body.get("type"), body.get("definition")
    if body.get("compiledProtoSchema") is not None:
        raise InvalidArgument("compiledProtoSchema is not supported by this server: give the schema's definition.")
    if schema_type in (None, "", "TYPE_UNSPECIFIED"):
        raise InvalidArgument("Schema type must be specified.")
    if schema_type not in TYPES:
        raise InvalidArgument(f"Invalid value at '{where}.type' (type.googleapis.com/google.pubsub.v1.Schema.Type), "
                              f"\"{str(schema_type)[:100]}\"")
    if not isinstance(definition, str) or not definition.strip():
        raise InvalidArgument("Schema definition must be specified.")
    if len(definition.encode()) > MAX_DEFINITION_BYTES:
        raise InvalidArgument(f"Schema definition is too large: {len(definition.encode())} bytes; the maximum is "
                              f"{MAX_DEFINITION_BYTES} bytes.")
    parsed_definition(schema_type, definition)
    return schema_type, definition


def check_view(view: str | None) -> str:
    if view is None:
        return "SCHEMA_VIEW_UNSPECIFIED"
    if view not in VIEWS:
        raise InvalidArgument(f"Invalid value at 'view' (type.googleapis.com/google.pubsub.v1.SchemaView), "
                              f"\"{view[:100]}\"")
    return view


# -- schemas and revisions ------------------------------------------------------------------------


def find_schema(s: Session, project_id: str, schema_id: str, *, for_update: bool = False) -> PsSchema | None:
    """The schema; `for_update` locks its row, so revisions are added and deleted one writer at a
    time (two deleteRevision calls racing must not delete a schema's last two revisions)."""
    query = select(PsSchema).where(PsSchema.project_id == project_id, PsSchema.schema_id == schema_id)
    return s.scalars(query.with_for_update() if for_update else query).first()


def get_schema(s: Session, project_id: str, schema_id: str, *, for_update: bool = False) -> PsSchema:
    row = find_schema(s, project_id, schema_id, for_update=for_update)
    if row is None:
        raise names.not_found(schema_id)
    return row


def revisions(s: Session, schema: PsSchema) -> list[PsSchemaRevision]:
    """Newest first, as ListSchemaRevisions answers."""
    return list(s.scalars(select(PsSchemaRevision).where(PsSchemaRevision.schema_uid == schema.uid)
                          .order_by(PsSchemaRevision.seq.desc())))


def revision(s: Session, schema: PsSchema, revision_id: str | None) -> PsSchemaRevision:
    """The named revision, or the newest."""
    query = select(PsSchemaRevision).where(PsSchemaRevision.schema_uid == schema.uid)
    if revision_id is not None:
        query = query.where(PsSchemaRevision.revision_id == revision_id)
    row = s.scalars(query.order_by(PsSchemaRevision.seq.desc())).first()
    if row is None:
        raise NotFound(f"Resource not found (resource={schema.schema_id}@{(revision_id or '')[:100]}).")
    return row


def _add_revision(s: Session, schema: PsSchema, schema_type: str, definition: str,
                  when: datetime | None = None) -> PsSchemaRevision:
    count = s.scalar(select(func.count()).select_from(PsSchemaRevision)
                     .where(PsSchemaRevision.schema_uid == schema.uid)) or 0
    if count >= MAX_REVISIONS:
        raise FailedPrecondition(f"The schema {schema.schema_id} has the maximum of {MAX_REVISIONS} revisions; "
                                 "delete a revision before committing another.")
    taken = set(s.scalars(select(PsSchemaRevision.revision_id).where(PsSchemaRevision.schema_uid == schema.uid)))
    revision_id = secrets.token_hex(4)
    while revision_id in taken:
        revision_id = secrets.token_hex(4)
    row = PsSchemaRevision(schema_uid=schema.uid, revision_id=revision_id, type=schema_type, definition=definition,
                           create_time=when or clock_now())
    s.add(row)
    s.flush()
    return row


def create_schema(s: Session, project_id: str, schema_id: str, body: Any) -> tuple[PsSchema, PsSchemaRevision]:
    schema_type, definition = check_schema(body, "schema")
    given = body.get("name")
    if given not in (None, "", schema_name(project_id, schema_id)) and not str(given).endswith(f"/{schema_id}"):
        raise InvalidArgument("Schema name in the body does not match the name in the URL.")
    if find_schema(s, project_id, schema_id) is not None:
        raise AlreadyExists(f"Resource already exists in the project (resource={schema_id}).")
    row = PsSchema(uid=str(uuid.uuid4()), project_id=project_id, schema_id=schema_id)
    s.add(row)
    try:
        s.flush()  # the unique index refuses a concurrent create of the same id here
    except IntegrityError as exc:
        raise AlreadyExists(f"Resource already exists in the project (resource={schema_id}).") from exc
    return row, _add_revision(s, row, schema_type, definition)


def list_schemas(s: Session, project_id: str) -> list[PsSchema]:
    return list(s.scalars(select(PsSchema).where(PsSchema.project_id == project_id).order_by(PsSchema.schema_id)))


def newest_revisions(s: Session, schemas: list[PsSchema]) -> dict[str, PsSchemaRevision]:
    """Each schema's newest revision, in one query."""
    if not schemas:
        return {}
    newest = (select(PsSchemaRevision.schema_uid, func.max(PsSchemaRevision.seq).label("seq"))
              .where(PsSchemaRevision.schema_uid.in_([r.uid for r in schemas]))
              .group_by(PsSchemaRevision.schema_uid).subquery())
    rows = s.scalars(select(PsSchemaRevision).join(newest, PsSchemaRevision.seq == newest.c.seq))
    return {r.schema_uid: r for r in rows}


def commit(s: Session, schema: PsSchema, body: Any) -> PsSchemaRevision:
    schema_type, definition = check_schema(body, "schema")
    current = revision(s, schema, None)
    if schema_type != current.type:
        raise InvalidArgument(f"The schema type cannot be changed: the schema is {current.type}.")
    return _add_revision(s, schema, schema_type, definition)


def rollback(s: Session, schema: PsSchema, revision_id: Any) -> PsSchemaRevision:
    """A new revision with the definition of `revision_id` (Google's rollback)."""
    if not isinstance(revision_id, str) or not revision_id:
        raise InvalidArgument("The revision ID to roll back to must be specified.")
    old = revision(s, schema, revision_id)
    return _add_revision(s, schema, old.type, old.definition)


def delete_revision(s: Session, schema: PsSchema, revision_id: str | None) -> PsSchemaRevision:
    """Delete one revision; the schema's newest remaining one is returned."""
    if not revision_id:
        raise InvalidArgument("The revision ID to delete must be specified in the name (schema@revision).")
    row = revision(s, schema, revision_id)
    if len(revisions(s, schema)) == 1:
        raise FailedPrecondition("Cannot delete the only revision of a schema; delete the schema instead.")
    s.delete(row)
    s.flush()
    return revision(s, schema, None)


def delete_schema(s: Session, schema: PsSchema) -> None:
    """Delete the schema, its revisions and IAM policy; topics that named it now name `_deleted-schema_`."""
    full = schema_name(schema.project_id, schema.schema_id)
    # A coarse textual match narrows the topics, the exact comparison decides (both stores keep JSON as text).
    for topic in s.scalars(select(PsTopic).where(cast(PsTopic.body, String).like(f"%{full}%"))):
        settings = (topic.body or {}).get("schemaSettings") or {}
        if settings.get("schema") == full:
            topic.body = {**topic.body, "schemaSettings": {**settings, "schema": DELETED_SCHEMA}}
    s.execute(delete(PsSchemaRevision).where(PsSchemaRevision.schema_uid == schema.uid))
    policy = get_policy_row(s, policy_resource(schema.project_id, schema.schema_id))
    if policy is not None:
        s.delete(policy)
    s.delete(schema)


def schema_json(schema: PsSchema, rev: PsSchemaRevision, view: str = "FULL") -> dict[str, Any]:
    """A Schema; BASIC (list's default) leaves out the definition, as Google's SchemaView says."""
    body: dict[str, Any] = {"name": schema_name(schema.project_id, schema.schema_id), "type": rev.type}
    if view == "FULL":
        body["definition"] = rev.definition
    body.update({"revisionId": rev.revision_id, "revisionCreateTime": rfc3339(_utc(rev.create_time))})
    return body


def _utc(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- messages -------------------------------------------------------------------------------------


def check_message(schema_type: str, definition: str, encoding: str, data: bytes,
                  budget: avro.Budget | None = None) -> None:
    """Raise one of MISMATCH unless `data` is a message of the schema in `encoding`."""
    parsed = parsed_definition(schema_type, definition)
    if isinstance(parsed, avro.Parsed):
        (avro.read_binary if encoding == "BINARY" else avro.read_json)(parsed, data, budget)
    else:
        (proto_schema.read_binary if encoding == "BINARY" else proto_schema.read_json)(parsed, data)


def message_failed(encoding: str, schema_type: str, revision_info: str | None) -> InvalidArgument:
    """Google's refusal of a message that does not match (publish and validateMessage)."""
    kind = "AVRO" if schema_type == "AVRO" else "PROTO"
    metadata = {"message": "Message failed schema validation"}
    if revision_info is not None:
        metadata["revisionInfo"] = revision_info
    return InvalidArgument(FAILED, details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                             "reason": f"INVALID_{encoding}_{kind}_MESSAGE",
                                             "domain": names.SERVICE, "metadata": metadata}])


def check_encoding(value: Any, where: str) -> str:
    if value in (None, "", "ENCODING_UNSPECIFIED"):
        return "JSON"  # Google validates an unspecified encoding as JSON
    if value not in ENCODINGS:
        raise InvalidArgument(f"Invalid value at '{where}' (type.googleapis.com/google.pubsub.v1.Encoding), "
                              f"\"{str(value)[:100]}\"")
    return str(value)


# -- topics' schemaSettings -------------------------------------------------------------------------


def parse_schema_name(value: Any, where: str) -> tuple[str, str]:
    """(project, schema id) of `projects/P/schemas/S`."""
    text = value if isinstance(value, str) else ""
    parts = text.split("/")
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "schemas" or not parts[1] or len(parts[1]) > 100:
        raise InvalidArgument(f"Invalid schema name: (name={text[:600]}) at '{where}'.")
    names.check_id(parts[1], "schemas", split_revision(parts[3])[0])
    return parts[1], parts[3]


def check_settings(s: Session, settings: Any, project_id: str, schema_id: str) -> dict[str, Any]:
    """A topic's SchemaSettings naming the (authorised, existing) schema, normalised."""
    if not isinstance(settings, dict):
        raise InvalidArgument("Invalid value at 'topic.schema_settings': expected an object.")
    for key in settings:
        if key not in SETTINGS_FIELDS:
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{str(key)[:100]}\" at "
                                  "'topic.schema_settings': Cannot find field.")
    schema = get_schema(s, project_id, schema_id)
    out: dict[str, Any] = {"schema": schema_name(schema.project_id, schema.schema_id),
                           "encoding": check_encoding(settings.get("encoding"), "topic.schema_settings.encoding")}
    seqs = {r.revision_id: r.seq for r in revisions(s, schema)}
    for field in ("firstRevisionId", "lastRevisionId"):
        value = settings.get(field)
        if value in (None, ""):
            continue
        if not isinstance(value, str) or value not in seqs:
            raise InvalidArgument(f"The schema revision {str(value)[:100]} ({field}) does not exist in schema "
                                  f"{out['schema']}.")
        out[field] = value
    first, last = out.get("firstRevisionId"), out.get("lastRevisionId")
    if first and last and seqs[first] > seqs[last]:
        raise InvalidArgument("The first revision ID must not be newer than the last revision ID.")
    return out


def conform(s: Session, settings: dict[str, Any], messages: list[Outgoing]) -> list[Outgoing]:
    """`messages` with the schema attributes Google adds, once each matches a revision in range."""
    encoding = settings.get("encoding") or "JSON"
    full = settings.get("schema") or DELETED_SCHEMA
    schema = None
    if full != DELETED_SCHEMA:
        project_id, schema_id = full.split("/")[1], full.split("/")[3]
        schema = find_schema(s, project_id, schema_id)
    if schema is None:  # deleted: Google delivers the messages unchecked, naming `_deleted-schema_`
        tags = {"googclient_schemaname": DELETED_SCHEMA, "googclient_schemaencoding": encoding}
        return [dataclasses.replace(m, attributes={**m.attributes, **tags}) for m in messages]
    in_range = _in_range(revisions(s, schema), settings.get("firstRevisionId"), settings.get("lastRevisionId"))
    # One allowance for the whole request, every message and revision tried: up to 20 revisions
    # times 10 MB of messages would otherwise be hours of decoding.
    budget, bytes_left = avro.Budget(MAX_VALUES_PER_PUBLISH), MAX_BYTES_PER_PUBLISH
    out = []
    for message in messages:
        matched, last_error, last_tried = None, "no revision in range", ""
        for rev in in_range:
            last_tried = rev.revision_id
            bytes_left -= len(message.data)
            try:
                if bytes_left < 0:
                    raise avro.AvroError(f"The request needs more than {MAX_BYTES_PER_PUBLISH} bytes checked.")
                check_message(rev.type, rev.definition, encoding, message.data, budget)
            except MISMATCH as exc:
                last_error = str(exc)
                continue
            matched = rev
            break
        if matched is None:
            raise message_failed(encoding, in_range[-1].type if in_range else "AVRO",
                                 f"Could not validate message with any schema revision for schema: {full}, last "
                                 f"checked revision: revision_id={last_tried} failed with status: {last_error}")
        out.append(dataclasses.replace(message, attributes={
            **message.attributes, "googclient_schemaname": full, "googclient_schemaencoding": encoding,
            "googclient_schemarevisionid": matched.revision_id}))
    return out


def _in_range(newest_first: list[PsSchemaRevision], first: str | None, last: str | None) -> list[PsSchemaRevision]:
    ids = [r.revision_id for r in newest_first]
    start = ids.index(last) if last in ids else 0
    end = ids.index(first) + 1 if first in ids else len(ids)
    return newest_first[start:end]
