"""Subscriptions: create, get, list, update and delete, as Pub/Sub v1 defines them
(https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.subscriptions), with Google's
defaults (ackDeadlineSeconds 10, 7 days' retention, expiry after 31 days idle) and bounds
(ack deadline 10-600 s; dead-letter maxDeliveryAttempts 5-100; retry backoff 0-600 s).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from keyless.clock import parse_duration
from keyless.errors import AlreadyExists, InvalidArgument, OutOfRange
from keyless.iam.policy import get_policy_row
from keyless.pubsub import names
from keyless.pubsub.filters import compile_filter
from keyless.pubsub.labels import validate_labels
from keyless.pubsub.push_config import validate_push_config
from keyless.pubsub.topics import mask_error, retention, unknown
from keyless.store.models import PsDelivery, PsSubscription, PsTopic

DEFAULT_ACK_DEADLINE = 10
MAX_ACK_DEADLINE = 600
DEFAULT_RETENTION = "604800s"
DEFAULT_EXPIRATION = {"ttl": "2678400s"}
DEFAULT_MAX_DELIVERY_ATTEMPTS = 5
# Fields Keyless keeps as given (validated for shape) and echoes back.
ECHOED = ("pushConfig", "bigqueryConfig", "cloudStorageConfig", "bigtableConfig", "retainAckedMessages",
          "messageRetentionDuration", "enableMessageOrdering", "expirationPolicy", "filter", "deadLetterPolicy",
          "retryPolicy", "detached", "enableExactlyOnceDelivery", "messageTransforms")
FIELDS = {"name", "topic", "ackDeadlineSeconds", "labels", "state", "tags", "topicMessageRetentionDuration",
          "analyticsHubSubscriptionInfo", *ECHOED}
MUTABLE = {"ackDeadlineSeconds", "labels", "pushConfig", "bigqueryConfig", "cloudStorageConfig", "bigtableConfig",
           "retainAckedMessages", "messageRetentionDuration", "expirationPolicy", "deadLetterPolicy", "retryPolicy",
           "enableExactlyOnceDelivery", "messageTransforms"}
SNAKE = {"ack_deadline_seconds": "ackDeadlineSeconds", "push_config": "pushConfig",
         "retain_acked_messages": "retainAckedMessages", "message_retention_duration": "messageRetentionDuration",
         "expiration_policy": "expirationPolicy", "dead_letter_policy": "deadLetterPolicy",
         "retry_policy": "retryPolicy", "enable_exactly_once_delivery": "enableExactlyOnceDelivery",
         "enable_message_ordering": "enableMessageOrdering", "bigquery_config": "bigqueryConfig",
         "cloud_storage_config": "cloudStorageConfig", "message_transforms": "messageTransforms"}


def ack_deadline(value: Any, where: str = "subscription.ack_deadline_seconds") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidArgument(f"Invalid value at '{where}' (TYPE_INT32), {str(value)[:100]}")
    try:
        seconds = int(value)
    except ValueError as exc:
        raise InvalidArgument(f"Invalid value at '{where}' (TYPE_INT32), \"{str(value)[:100]}\"") from exc
    if seconds == 0:
        return DEFAULT_ACK_DEADLINE
    if not DEFAULT_ACK_DEADLINE <= seconds <= MAX_ACK_DEADLINE:
        raise InvalidArgument(f"Invalid ack deadline given: {seconds}. The minimum deadline is "
                              f"{DEFAULT_ACK_DEADLINE} seconds and the maximum is {MAX_ACK_DEADLINE} seconds.")
    return seconds


def _object(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected an object.")
    for k in value:
        if k not in allowed:
            raise unknown(k, where)
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(f"Invalid value at '{where}' (TYPE_BOOL), {str(value)[:100]}")
    return value


def _echoed(s: Session, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in ECHOED:
        value = body.get(field)
        if value is None:
            continue
        where = "subscription." + field
        if field in ("retainAckedMessages", "enableMessageOrdering", "detached", "enableExactlyOnceDelivery"):
            if _bool(value, where):
                out[field] = True
        elif field == "messageRetentionDuration":
            out[field] = retention(value, "subscription.message_retention_duration")
        elif field == "filter":
            if not isinstance(value, str):
                raise InvalidArgument(f"Invalid value at '{where}' (TYPE_STRING)")
            if value:
                compile_filter(value)
                out[field] = value
        elif field == "expirationPolicy":
            policy = _object(value, where, {"ttl"})
            if policy.get("ttl") is not None:
                ttl = parse_duration(policy["ttl"], "subscription.expiration_policy.ttl")
                if ttl < 86400:
                    raise InvalidArgument("Invalid expiration policy: the minimum ttl is 1 day.")
            out[field] = dict(policy)
        elif field == "deadLetterPolicy":
            policy = _object(value, where, {"deadLetterTopic", "maxDeliveryAttempts"})
            topic = policy.get("deadLetterTopic")
            if topic is None or topic == "":
                continue
            project, topic_id = names.parse(topic, "topics")
            if s.scalars(select(PsTopic.uid).where(PsTopic.project_id == project,
                                                   PsTopic.topic_id == topic_id)).first() is None:
                raise names.not_found(topic_id)
            attempts = policy.get("maxDeliveryAttempts", DEFAULT_MAX_DELIVERY_ATTEMPTS) or DEFAULT_MAX_DELIVERY_ATTEMPTS
            if isinstance(attempts, bool) or not isinstance(attempts, int):
                raise InvalidArgument(f"Invalid value at '{where}.max_delivery_attempts' (TYPE_INT32).")
            if not 5 <= attempts <= 100:  # Google's wording and OUT_OF_RANGE, as its Pub/Sub emulator answers
                raise OutOfRange(f"The value for max_delivery_attempts is too {'small' if attempts < 5 else 'large'}. "
                                 f"You passed {attempts} in the request, but the "
                                 f"{'minimum value is 5' if attempts < 5 else 'maximum value is 100'}.")
            out[field] = {"deadLetterTopic": topic, "maxDeliveryAttempts": attempts}
        elif field == "retryPolicy":
            policy = _object(value, where, {"minimumBackoff", "maximumBackoff"})
            low = parse_duration(policy.get("minimumBackoff", "10s"), "subscription.retry_policy.minimum_backoff")
            high = parse_duration(policy.get("maximumBackoff", "600s"), "subscription.retry_policy.maximum_backoff")
            # Google's wording, as its Pub/Sub emulator answers (scripts/pubsub_emulator_diff.py)
            for field_name, given, seconds in (("minimum_backoff", policy.get("minimumBackoff", "10s"), low),
                                               ("maximum_backoff", policy.get("maximumBackoff", "600s"), high)):
                if not 0 <= seconds <= 600:
                    raise InvalidArgument(f"The value for {field_name} is out of bounds. You passed {str(given)[:40]} "
                                          "in the request, but the value must be between 0s and 600s.")
            if low > high:
                raise InvalidArgument(f"The value for maximum_backoff is too small. You passed "
                                      f"{str(policy.get('maximumBackoff'))[:40]} in the request, but the minimum value "
                                      f"is {str(policy.get('minimumBackoff', '10s'))[:40]}.")
            out[field] = {"minimumBackoff": policy.get("minimumBackoff", "10s"),
                          "maximumBackoff": policy.get("maximumBackoff", "600s")}
        elif field == "messageTransforms":
            if not isinstance(value, list) or len(value) > 5:
                raise InvalidArgument(f"Invalid value at '{where}'.")
            if value:
                out[field] = value
        elif field == "pushConfig":
            push = validate_push_config(value, "subscription.push_config")
            if push:
                out[field] = push
        else:
            out[field] = _object(value, where, set(value) if isinstance(value, dict) else set())
    return out


def _check_fields(body: dict[str, Any]) -> dict[str, Any]:
    body = {SNAKE.get(k, k): v for k, v in body.items()}
    for k in body:
        if k not in FIELDS:
            raise unknown(k, "subscription")
    return body


def find_subscription(s: Session, project_id: str, subscription_id: str, *,
                      for_update: bool = False) -> PsSubscription | None:
    query = select(PsSubscription).where(PsSubscription.project_id == project_id,
                                         PsSubscription.subscription_id == subscription_id)
    return s.scalars(query.with_for_update() if for_update else query).first()


def get_subscription(s: Session, project_id: str, subscription_id: str) -> PsSubscription:
    row = find_subscription(s, project_id, subscription_id)
    if row is None:
        raise names.not_found(subscription_id)
    return row


def create_subscription(s: Session, project_id: str, subscription_id: str, topic: PsTopic,
                        body: dict[str, Any]) -> PsSubscription:
    body = _check_fields(body)
    deadline = ack_deadline(body.get("ackDeadlineSeconds", 0))
    labels = validate_labels(body.get("labels"), "subscription")
    echoed = _echoed(s, body)
    if find_subscription(s, project_id, subscription_id) is not None:
        raise AlreadyExists(f"Resource already exists in the project (resource={subscription_id}).")
    row = PsSubscription(uid=str(uuid.uuid4()), project_id=project_id, subscription_id=subscription_id,
                         topic=names.name(topic.project_id, "topics", topic.topic_id), topic_uid=topic.uid,
                         ack_deadline_seconds=deadline, labels=labels, body=echoed)
    s.add(row)
    try:
        s.flush()
    except IntegrityError as exc:
        raise AlreadyExists(f"Resource already exists in the project (resource={subscription_id}).") from exc
    return row


def list_subscriptions(s: Session, project_id: str) -> list[PsSubscription]:
    return list(s.scalars(select(PsSubscription).where(PsSubscription.project_id == project_id)
                          .order_by(PsSubscription.subscription_id)))


def topic_subscriptions(s: Session, topic: PsTopic) -> list[PsSubscription]:
    return list(s.scalars(select(PsSubscription).where(PsSubscription.topic_uid == topic.uid)
                          .order_by(PsSubscription.project_id, PsSubscription.subscription_id)))


def update_subscription(s: Session, row: PsSubscription, body: dict[str, Any], mask: list[str] | None) -> PsSubscription:
    body = _check_fields(body)
    if not mask:
        raise InvalidArgument("The update_mask in the UpdateSubscriptionRequest must be set, and must contain a "
                              "non-empty paths list.")
    paths = {SNAKE.get(p, p) for p in mask}
    for p in paths:
        if p not in MUTABLE:  # the wording of Google's Pub/Sub emulator (scripts/pubsub_emulator_diff.py)
            raise InvalidArgument(mask_error("UpdateSubscriptionRequest", "Subscription", p, p in FIELDS,
                                             "push_config", "pushConfig"))
    if "ackDeadlineSeconds" in paths:
        row.ack_deadline_seconds = ack_deadline(body.get("ackDeadlineSeconds", 0))
    if "labels" in paths:
        row.labels = validate_labels(body.get("labels"), "subscription")
    given = _echoed(s, {k: body.get(k) for k in paths if k not in ("labels", "ackDeadlineSeconds")})
    echoed = dict(row.body or {})
    for p in paths - {"labels", "ackDeadlineSeconds"}:
        if p in given:
            echoed[p] = given[p]
        else:
            echoed.pop(p, None)
    row.body = echoed
    return row


def delete_subscription(s: Session, row: PsSubscription) -> None:
    from keyless.pubsub.messages import drop_orphans  # messages imports this module

    held = set(s.scalars(select(PsDelivery.message_id).where(PsDelivery.subscription_uid == row.uid)))
    s.execute(delete(PsDelivery).where(PsDelivery.subscription_uid == row.uid))
    drop_orphans(s, held)
    policy = get_policy_row(s, names.policy_resource(row.project_id, "subscriptions", row.subscription_id))
    if policy is not None:
        s.delete(policy)
    s.delete(row)


def subscription_json(row: PsSubscription) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": names.name(row.project_id, "subscriptions", row.subscription_id),
        "topic": row.topic,
        "pushConfig": {},
        "ackDeadlineSeconds": row.ack_deadline_seconds,
        "messageRetentionDuration": DEFAULT_RETENTION,
        "expirationPolicy": DEFAULT_EXPIRATION,
        "state": "ACTIVE",
    }
    if row.labels:
        body["labels"] = row.labels
    body.update({k: v for k, v in (row.body or {}).items() if k in ECHOED})
    return body
