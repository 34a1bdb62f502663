"""Messages: publish to a topic, pull from a subscription, acknowledge and modify ack deadlines
(https://cloud.google.com/pubsub/docs/reference/rest/v1/projects.topics/publish and the
subscription methods), at-least-once as Google delivers.

Publishing stores the message once and one delivery row per attached subscription whose filter
matches (a subscription created later sees only later messages). Pulling leases deliveries for
the ack deadline under a fresh ack id; an expired lease makes the message deliverable again. With
`enableMessageOrdering`, messages of one ordering key are delivered in publish order and not while
an earlier one of that key is leased. With a dead-letter policy, a message delivered
maxDeliveryAttempts times is forwarded to the dead-letter topic instead; with a retry policy, a
nacked message comes back after its exponential backoff.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from keyless.clock import now as clock_now
from keyless.clock import parse_duration, rfc3339
from keyless.errors import InvalidArgument
from keyless.pubsub import names
from keyless.pubsub.filters import compile_filter
from keyless.pubsub.subscriptions import DEFAULT_RETENTION, MAX_ACK_DEADLINE
from keyless.store.models import PsDelivery, PsMessage, PsSnapshot, PsSubscription, PsTopic

MAX_MESSAGES_PER_PUBLISH = 1000
MAX_MESSAGE_BYTES = 10 * 1000 * 1000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024
MAX_ORDERING_KEY_BYTES = 1024
MAX_PULL = 1000
MAX_ACK_IDS = 2500
INVALID_ACK_ID = "PERMANENT_FAILURE_INVALID_ACK_ID"
SCAN = 5000  # deliveries examined per pull at most (ordering may skip leased keys)


@dataclass(frozen=True)
class Outgoing:
    """A message to publish, validated."""

    data: bytes
    attributes: dict[str, str]
    ordering_key: str


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored UTC)."""
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_messages(body: dict[str, Any]) -> list[Outgoing]:
    """PublishRequest.messages, validated with Google's limits and messages."""
    for k in body:
        if k != "messages":
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{k[:100]}\": Cannot find field.")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidArgument("The request must contain at least one message.")
    if len(raw) > MAX_MESSAGES_PER_PUBLISH:
        raise InvalidArgument(f"The value for message count is too large. You passed {len(raw)} in the request, "
                              f"but the maximum value is {MAX_MESSAGES_PER_PUBLISH}.")
    out = []
    for i, message in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidArgument(f"Invalid value at '{where}' (type.googleapis.com/google.pubsub.v1.PubsubMessage)")
        for k in message:
            if k not in ("data", "attributes", "orderingKey", "ordering_key", "messageId", "publishTime"):
                raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{k[:100]}\" at '{where}': "
                                      "Cannot find field.")
        text = message.get("data") or ""
        if not isinstance(text, str):
            raise InvalidArgument(f"Invalid value at '{where}.data' (TYPE_BYTES)")
        if len(text) > 4 * (MAX_MESSAGE_BYTES // 3) + 4:
            raise InvalidArgument(f"Request payload size exceeds the limit: {MAX_MESSAGE_BYTES} bytes.")
        clean = text.strip().replace("-", "+").replace("_", "/")  # proto JSON accepts either alphabet
        try:
            data = base64.b64decode(clean + "=" * (-len(clean) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidArgument(f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding failed for "
                                  f"\"{text[:100]}\"") from exc
        attributes = message.get("attributes") or {}
        if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
            raise InvalidArgument(f"Invalid value at '{where}.attributes': expected a map of strings.")
        if len(attributes) > MAX_ATTRIBUTES:
            raise InvalidArgument(f"Too many attributes: {len(attributes)}; a message has at most {MAX_ATTRIBUTES}.")
        for key, value in attributes.items():
            if not key or len(key.encode()) > MAX_ATTRIBUTE_KEY_BYTES or key.lower().startswith("goog"):
                raise InvalidArgument(f"Invalid attribute key: {key[:100]!r}: keys are 1 to "
                                      f"{MAX_ATTRIBUTE_KEY_BYTES} bytes and do not start with \"goog\".")
            if len(value.encode()) > MAX_ATTRIBUTE_VALUE_BYTES:
                raise InvalidArgument(f"The value of attribute {key[:100]!r} is longer than "
                                      f"{MAX_ATTRIBUTE_VALUE_BYTES} bytes.")
        if not data and not attributes:
            raise InvalidArgument("Some messages are empty. Each message must contain non-empty data, "
                                  "or at least one attribute.")
        key = message.get("orderingKey", message.get("ordering_key")) or ""
        if not isinstance(key, str) or len(key.encode()) > MAX_ORDERING_KEY_BYTES:
            raise InvalidArgument(f"Invalid value at '{where}.ordering_key': at most {MAX_ORDERING_KEY_BYTES} bytes.")
        out.append(Outgoing(data, dict(attributes), key))
    if sum(len(m.data) for m in out) > MAX_MESSAGE_BYTES:
        raise InvalidArgument(f"Request payload size exceeds the limit: {MAX_MESSAGE_BYTES} bytes.")
    return out


def publish(s: Session, topic: PsTopic, messages: list[Outgoing], when: datetime | None = None) -> list[str]:
    """Store `messages` on `topic` and fan them out to its subscriptions; their message ids."""
    when = when or clock_now()
    subscriptions = [(sub.uid, _filter(sub)) for sub in s.scalars(
        select(PsSubscription).where(PsSubscription.topic_uid == topic.uid))
        if not (sub.body or {}).get("detached")]
    rows = [PsMessage(topic_uid=topic.uid, data=m.data, attributes=m.attributes, ordering_key=m.ordering_key,
                      publish_time=when) for m in messages]
    s.add_all(rows)
    s.flush()  # assigns the ids
    deliveries = [PsDelivery(subscription_uid=uid, message_id=row.id, ordering_key=row.ordering_key,
                             publish_time=when, visible_at=when, attempts=0, acked=False)
                  for row in rows for uid, matches in subscriptions if matches is None or matches(row.attributes)]
    s.add_all(deliveries)
    s.flush()
    unheld = {row.id for row in rows} - {d.message_id for d in deliveries}
    drop_orphans(s, unheld)  # no subscription wants them: nothing to keep (unless the topic retains)
    return [str(row.id) for row in rows]


def _filter(sub: PsSubscription) -> Any:
    text = (sub.body or {}).get("filter")
    return compile_filter(text) if text else None


def message_json(row: PsMessage) -> dict[str, Any]:
    body: dict[str, Any] = {"data": base64.b64encode(row.data).decode(), "messageId": str(row.id),
                            "publishTime": rfc3339(_utc(row.publish_time))}
    if row.attributes:
        body["attributes"] = row.attributes
    if row.ordering_key:
        body["orderingKey"] = row.ordering_key
    return body


def _retention(sub: PsSubscription) -> timedelta:
    return timedelta(seconds=parse_duration((sub.body or {}).get("messageRetentionDuration", DEFAULT_RETENTION),
                                            "subscription.message_retention_duration"))


def pull(s: Session, sub: PsSubscription, max_messages: int, dead_letter: Any = None,
         when: datetime | None = None) -> list[dict[str, Any]]:
    """Lease up to `max_messages` deliverable messages; ReceivedMessage JSON for each.
    `dead_letter(topic_name)` finds the dead-letter topic (None: gone, the message stays)."""
    when = when or clock_now()
    body = sub.body or {}
    ordered = bool(body.get("enableMessageOrdering"))
    policy = body.get("deadLetterPolicy")
    oldest = when - _retention(sub)
    query = (select(PsDelivery).where(PsDelivery.subscription_uid == sub.uid, PsDelivery.acked.is_(False))
             .order_by(PsDelivery.id).limit(SCAN))
    if not ordered:  # ordering needs to see leased deliveries to hold their keys back
        query = query.where(PsDelivery.visible_at <= when)
    chosen: list[PsDelivery] = []
    blocked: set[str] = set()
    expired: list[int] = []
    for row in s.scalars(query.with_for_update(skip_locked=True)):
        if _utc(row.publish_time) < oldest:
            expired.append(row.id)
            continue
        key = row.ordering_key if ordered else ""
        if key and key in blocked:
            continue
        if _utc(row.visible_at) > when:
            if key:
                blocked.add(key)
            continue
        if policy and row.attempts >= int(policy["maxDeliveryAttempts"]) and dead_letter is not None:
            target = dead_letter(policy["deadLetterTopic"])
            if target is not None:
                _forward(s, sub, row, target, when)
                continue
        chosen.append(row)
        if len(chosen) >= max_messages:
            break
    if expired:
        gone = set(s.scalars(select(PsDelivery.message_id).where(PsDelivery.id.in_(expired))))
        s.execute(delete(PsDelivery).where(PsDelivery.id.in_(expired)))
        drop_orphans(s, gone)
    if not chosen:
        return []
    messages = {m.id: m for m in s.scalars(select(PsMessage).where(PsMessage.id.in_([r.message_id for r in chosen])))}
    lease = when + timedelta(seconds=sub.ack_deadline_seconds)
    out = []
    for row in chosen:
        row.attempts += 1
        row.ack_id = f"{row.id}-{secrets.token_hex(12)}"
        row.visible_at = lease
        received: dict[str, Any] = {"ackId": row.ack_id, "message": message_json(messages[row.message_id])}
        if policy:
            received["deliveryAttempt"] = row.attempts
        out.append(received)
    return out


def _forward(s: Session, sub: PsSubscription, row: PsDelivery, target: PsTopic, when: datetime) -> None:
    """Google's dead-lettering: republish with the source's attributes, and ack the original."""
    original = s.get(PsMessage, row.message_id)
    if original is not None:
        attributes = {**(original.attributes or {}),
                      "CloudPubSubDeadLetterSourceDeliveryCount": str(row.attempts),
                      "CloudPubSubDeadLetterSourceSubscription": sub.subscription_id,
                      "CloudPubSubDeadLetterSourceSubscriptionProject": sub.project_id,
                      "CloudPubSubDeadLetterSourceTopicPublishTime": rfc3339(_utc(original.publish_time))}
        publish(s, target, [Outgoing(original.data, attributes, original.ordering_key)], when)
    _settle(s, sub, [row])


def _settle(s: Session, sub: PsSubscription, rows: list[PsDelivery]) -> None:
    if (sub.body or {}).get("retainAckedMessages"):
        for row in rows:
            row.acked, row.ack_id = True, None
    else:
        s.execute(delete(PsDelivery).where(PsDelivery.id.in_([r.id for r in rows])))
        drop_orphans(s, {r.message_id for r in rows})


def drop_orphans(s: Session, message_ids: set[int]) -> None:
    """Delete the messages of `message_ids` no subscription still holds, unless their topic
    retains messages (messageRetentionDuration) or an unexpired snapshot keeps them."""
    if not message_ids:
        return
    held = set(s.scalars(select(PsDelivery.message_id).where(PsDelivery.message_id.in_(message_ids))))
    candidates = message_ids - held
    if not candidates:
        return
    topics = set(s.scalars(select(PsMessage.topic_uid).where(PsMessage.id.in_(candidates))))
    retained = {t.uid for t in s.scalars(select(PsTopic).where(PsTopic.uid.in_(topics)))
                if (t.body or {}).get("messageRetentionDuration")}
    when = clock_now()
    for snapshot in s.scalars(select(PsSnapshot).where(PsSnapshot.topic_uid.in_(topics))):
        if _utc(snapshot.expire_time) > when:
            candidates -= {int(i) for i in snapshot.unacked or []}
    if retained:
        candidates -= set(s.scalars(select(PsMessage.id).where(PsMessage.id.in_(candidates),
                                                               PsMessage.topic_uid.in_(retained))))
    if candidates:
        s.execute(delete(PsMessage).where(PsMessage.id.in_(candidates)))


def exactly_once(sub: PsSubscription) -> bool:
    return bool((sub.body or {}).get("enableExactlyOnceDelivery"))


def _ack_rows(s: Session, sub: PsSubscription, ack_ids: Any, where: str,
              failures: dict[str, str] | None = None, when: datetime | None = None) -> list[PsDelivery]:
    """The leased deliveries `ack_ids` name. At least once, an unknown or stale ack id is ignored;
    with `failures` (exactly-once delivery) it is recorded there as Google's
    PERMANENT_FAILURE_INVALID_ACK_ID, and so is the ack id of a lease that has expired."""
    if not isinstance(ack_ids, list) or not all(isinstance(a, str) for a in ack_ids):
        raise InvalidArgument(f"Invalid value at '{where}': expected a list of ack ids.")
    if not ack_ids:
        raise InvalidArgument("No ack ids specified.")
    if len(ack_ids) > MAX_ACK_IDS:
        raise InvalidArgument(f"Too many ack ids: {len(ack_ids)}; at most {MAX_ACK_IDS} per request.")
    ids = []
    for ack_id in ack_ids:
        head, _, tail = ack_id.partition("-")
        if not head.isdigit() or len(head) > 18 or len(tail) != 24:
            if failures is None:
                raise InvalidArgument(f"You have passed an invalid ack ID to the service (ack_id={ack_id[:100]}).")
            failures[ack_id[:200]] = INVALID_ACK_ID
            continue
        ids.append(int(head))
    rows = s.scalars(select(PsDelivery).where(PsDelivery.id.in_(ids), PsDelivery.subscription_uid == sub.uid,
                                              PsDelivery.acked.is_(False)).with_for_update())
    wanted = set(ack_ids)
    found = [r for r in rows if r.ack_id in wanted]  # a stale ack id (since redelivered) acks nothing
    if failures is None:
        return found
    when = when or clock_now()
    live = [r for r in found if _utc(r.visible_at) > when]
    held = {r.ack_id for r in live}
    for ack_id in wanted - held:
        failures.setdefault(ack_id[:200], INVALID_ACK_ID)
    return live


def ack_id_failures(failures: dict[str, str]) -> InvalidArgument:
    """Google's answer to acks or modacks of invalid ack ids under exactly-once delivery: the
    ErrorInfo google-cloud-pubsub reads to fail each one's future
    (https://cloud.google.com/pubsub/docs/exactly-once-delivery)."""
    return InvalidArgument(
        "Some acknowledgement ids in the request were invalid. This could be because the acknowledgement ids "
        "have expired or the acknowledgement ids were malformed.",
        details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "EXACTLY_ONCE_ACKID_FAILURE",
                  "domain": names.SERVICE, "metadata": dict(failures)}])


def acknowledge(s: Session, sub: PsSubscription, ack_ids: Any, failures: dict[str, str] | None = None) -> int:
    rows = _ack_rows(s, sub, ack_ids, "ack_ids", failures)
    if rows:
        _settle(s, sub, rows)
    return len(rows)


def modify_ack_deadline(s: Session, sub: PsSubscription, ack_ids: Any, seconds: Any,
                        when: datetime | None = None, failures: dict[str, str] | None = None) -> int:
    """Extend (or, with 0, end: a nack) the leases of `ack_ids`."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 0 <= seconds <= MAX_ACK_DEADLINE:
        raise InvalidArgument(f"Invalid ack deadline given: {str(seconds)[:40]}. The deadline must be between 0 "
                              f"and {MAX_ACK_DEADLINE} seconds.")
    when = when or clock_now()
    rows = _ack_rows(s, sub, ack_ids, "ack_ids", failures, when)
    retry = (sub.body or {}).get("retryPolicy")
    for row in rows:
        delay = float(seconds)
        if seconds == 0 and retry:
            delay = retry_backoff(retry, row.attempts)
        row.visible_at = when + timedelta(seconds=delay)
    return len(rows)


def retry_backoff(retry: dict[str, Any], attempts: int) -> float:
    """A retryPolicy's exponential backoff after `attempts` deliveries."""
    low = parse_duration(retry["minimumBackoff"], "minimum_backoff")
    high = parse_duration(retry["maximumBackoff"], "maximum_backoff")
    return float(min(high, low * 2 ** max(0, attempts - 1)))


def nack_after(s: Session, sub: PsSubscription, ack_ids: list[str], delay_of: Any,
               when: datetime | None = None) -> int:
    """Nack `ack_ids`, each deliverable again `delay_of(attempts)` seconds from now (push retries)."""
    when = when or clock_now()
    rows = _ack_rows(s, sub, ack_ids, "ack_ids")
    for row in rows:
        row.visible_at = when + timedelta(seconds=float(delay_of(row.attempts)))
    return len(rows)


def redeliver_from(s: Session, sub: PsSubscription, unacked_ids: set[int], since: datetime | None) -> None:
    """Seek: the deliveries of `unacked_ids` and of messages published at or after `since` become
    unacked and deliverable now; every other delivery of the subscription is acked."""
    when = clock_now()
    rows = list(s.scalars(select(PsDelivery).where(PsDelivery.subscription_uid == sub.uid).with_for_update()))
    present = {r.message_id for r in rows}
    again: list[PsDelivery] = []
    settled: list[PsDelivery] = []
    for row in rows:
        if row.message_id in unacked_ids or (since is not None and _utc(row.publish_time) >= since):
            row.acked, row.ack_id, row.visible_at = False, None, when
        else:
            settled.append(row)
    if settled:
        if (sub.body or {}).get("retainAckedMessages"):
            s.execute(update(PsDelivery).where(PsDelivery.id.in_([r.id for r in settled]))
                      .values(acked=True, ack_id=None))
        else:
            s.execute(delete(PsDelivery).where(PsDelivery.id.in_([r.id for r in settled])))
            drop_orphans(s, {r.message_id for r in settled})
    missing = unacked_ids - present
    if missing and sub.topic_uid:
        for message in s.scalars(select(PsMessage).where(PsMessage.id.in_(missing),
                                                         PsMessage.topic_uid == sub.topic_uid)):
            again.append(PsDelivery(subscription_uid=sub.uid, message_id=message.id,
                                    ordering_key=message.ordering_key, publish_time=message.publish_time,
                                    visible_at=when, attempts=0, acked=False))
    s.add_all(again)


def unacked_message_ids(s: Session, sub: PsSubscription) -> list[int]:
    return list(s.scalars(select(PsDelivery.message_id).where(PsDelivery.subscription_uid == sub.uid,
                                                             PsDelivery.acked.is_(False)).order_by(PsDelivery.id)))


def topic_of(s: Session, name: str) -> PsTopic | None:
    project, topic_id = names.parse(name, "topics")
    return s.scalars(select(PsTopic).where(PsTopic.project_id == project, PsTopic.topic_id == topic_id)).first()
