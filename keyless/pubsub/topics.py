"""Topics: create, get, list, update and delete, as Pub/Sub v1 defines them
(https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics).

Deleting a topic keeps its subscriptions, whose topic then reads `_deleted-topic_`, and
deletes the topic's IAM policy.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyless.clock import parse_duration
from keyless.errors import AlreadyExists, InvalidArgument
from keyless.iam.policy import get_policy_row
from keyless.pubsub import names
from keyless.pubsub.labels import validate_labels
from keyless.store.models import PsSubscription, PsTopic

# Topic fields Keyless keeps as given (validated for shape) and echoes back.
ECHOED = ("messageStoragePolicy", "kmsKeyName", "schemaSettings", "messageRetentionDuration",
          "ingestionDataSourceSettings", "messageTransforms", "satisfiesPzs")
TOPIC_FIELDS = {"name", "labels", "state", "tags", *ECHOED}
MUTABLE = {"labels", *ECHOED}
MAX_RETENTION_SECONDS = 31 * 24 * 3600
MIN_RETENTION_SECONDS = 600


def mask_error(request: str, resource: str, path: str, known: bool, snake: str, misspelt: str) -> str:
    """An update_mask path that cannot be updated, in Google's words: an immutable field, or an unknown one
    (Google's hint names a field in snake_case beside a misspelt camelCase, as its emulator does)."""
    if known:
        return f"Invalid update_mask provided in the {request}: the {path[:100]} field in the {resource} is not mutable."
    return (f"Invalid update_mask provided in the {request}: {path[:100]} is not a known {resource} field. Note that "
            f"field paths must be of the form '{snake}' rather than '{misspelt}'.")


def unknown(field: str, where: str) -> InvalidArgument:
    return InvalidArgument(f"Invalid JSON payload received. Unknown name \"{field[:100]}\" at '{where}': "
                           "Cannot find field.")


def retention(value: Any, where: str) -> str:
    """A message retention duration: between 10 minutes and 31 days, as Google bounds it."""
    seconds = parse_duration(value, where)
    if not MIN_RETENTION_SECONDS <= seconds <= MAX_RETENTION_SECONDS:
        raise InvalidArgument(f"Invalid {where}: must be between 10 minutes and 31 days, got {value}.")
    return str(value)


def _echoed(body: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in ECHOED:
        value = body.get(field)
        if value is None:
            continue
        if field == "messageRetentionDuration":
            out[field] = retention(value, f"{where}.message_retention_duration")
        elif field == "kmsKeyName":
            if not isinstance(value, str) or len(value) > 500:
                raise InvalidArgument(f"Invalid value at '{where}.kms_key_name' (TYPE_STRING)")
            if value:
                out[field] = value
        elif field == "satisfiesPzs":
            if not isinstance(value, bool):
                raise InvalidArgument(f"Invalid value at '{where}.satisfies_pzs' (TYPE_BOOL)")
        elif field == "messageTransforms":
            if not isinstance(value, list) or len(value) > 5:
                raise InvalidArgument(f"Invalid value at '{where}.message_transforms'.")
            if value:
                out[field] = value
        else:
            if not isinstance(value, dict):
                raise InvalidArgument(f"Invalid value at '{where}.{field}': expected an object.")
            if value:
                out[field] = value
    return out


def _check_fields(body: dict[str, Any], where: str) -> None:
    for field in body:
        if field not in TOPIC_FIELDS:
            raise unknown(field, where)


def find_topic(s: Session, project_id: str, topic_id: str) -> PsTopic | None:
    return s.scalars(select(PsTopic).where(PsTopic.project_id == project_id, PsTopic.topic_id == topic_id)).first()


def get_topic(s: Session, project_id: str, topic_id: str) -> PsTopic:
    row = find_topic(s, project_id, topic_id)
    if row is None:
        raise names.not_found(topic_id)
    return row


def create_topic(s: Session, project_id: str, topic_id: str, body: dict[str, Any]) -> PsTopic:
    _check_fields(body, "topic")
    given = body.get("name")
    if given is not None and given != names.name(project_id, "topics", topic_id):
        raise InvalidArgument("Topic name in the body does not match the name in the URL.")
    labels = validate_labels(body.get("labels"), "topic")
    echoed = _echoed(body, "topic")
    if find_topic(s, project_id, topic_id) is not None:
        raise AlreadyExists(f"Resource already exists in the project (resource={topic_id}).")
    row = PsTopic(uid=str(uuid.uuid4()), project_id=project_id, topic_id=topic_id, labels=labels, body=echoed)
    s.add(row)
    try:
        s.flush()  # the unique index refuses a concurrent create of the same id here
    except IntegrityError as exc:
        raise AlreadyExists(f"Resource already exists in the project (resource={topic_id}).") from exc
    return row


def list_topics(s: Session, project_id: str) -> list[PsTopic]:
    return list(s.scalars(select(PsTopic).where(PsTopic.project_id == project_id).order_by(PsTopic.topic_id)))


def update_topic(row: PsTopic, body: dict[str, Any], mask: list[str] | None) -> PsTopic:
    _check_fields(body, "topic")
    if not mask:
        raise InvalidArgument("The update_mask in the UpdateTopicRequest must be set, and must contain a non-empty "
                              "paths list.")
    snake = {"message_storage_policy": "messageStoragePolicy", "kms_key_name": "kmsKeyName",
             "schema_settings": "schemaSettings", "message_retention_duration": "messageRetentionDuration",
             "ingestion_data_source_settings": "ingestionDataSourceSettings",
             "message_transforms": "messageTransforms"}
    paths = {snake.get(p, p) for p in mask}
    for p in paths:
        if p not in MUTABLE:  # the wording of Google's Pub/Sub emulator (scripts/pubsub_emulator_diff.py)
            raise InvalidArgument(mask_error("UpdateTopicRequest", "Topic", p, p in TOPIC_FIELDS, "schema_settings",
                                             "schemaSetings"))
    labels = validate_labels(body.get("labels"), "topic") if "labels" in paths else row.labels
    given = _echoed({k: body.get(k) for k in paths if k != "labels"}, "topic")
    echoed = dict(row.body or {})
    for p in paths - {"labels"}:
        if p in given:
            echoed[p] = given[p]
        else:
            echoed.pop(p, None)
    row.labels, row.body = labels, echoed
    return row


def delete_topic(s: Session, row: PsTopic) -> None:
    s.execute(update(PsSubscription).where(PsSubscription.topic_uid == row.uid)
              .values(topic=names.DELETED_TOPIC, topic_uid=None))
    policy = get_policy_row(s, names.policy_resource(row.project_id, "topics", row.topic_id))
    if policy is not None:
        s.delete(policy)
    s.delete(row)


def topic_json(row: PsTopic) -> dict[str, Any]:
    body: dict[str, Any] = {"name": names.name(row.project_id, "topics", row.topic_id)}
    if row.labels:
        body["labels"] = row.labels
    body.update({k: v for k, v in (row.body or {}).items() if k in ECHOED})
    return body
