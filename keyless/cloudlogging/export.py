"""Routing: each enabled sink sends the entries of its project that arrive after it, match its
filter and none of its exclusions, to its destination, as Google's Log Router does
(https://cloud.google.com/logging/docs/routing/overview).

Cloud Storage destinations get Google's sink files
(https://cloud.google.com/logging/docs/export/storage#gcs-organization):
`LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_Sn.json`, one LogEntry JSON per line, grouped by the hour of
each entry's timestamp (UTC); each round of routing writes the next shard `Sn` of an hour, since
objects are immutable. A file is written only if the sink's writer identity may create objects
in the bucket (`storage.objects.create`, e.g. roles/storage.objectCreator), checked with the
bucket's IAM as for any caller; otherwise nothing is written, the entries of that round are not
retried (Google retries for a while, then drops them), and the sink records why: in its
`last_error`, and, when the error is new, in an ERROR entry of the project's
`logging.googleapis.com/sink_error` log on a `logging_sink` resource (never routed itself).
Pub/Sub topics get one message per entry
(https://cloud.google.com/logging/docs/export/pubsub): its data the LogEntry's JSON, its attribute
`logging.googleapis.com/timestamp` the entry's timestamp, published only if the writer identity
may publish to the topic (`pubsub.topics.publish`, roles/pubsub.publisher), with the same error
handling as buckets.

Rounds run on a thread of the serving process (`Router`): every few seconds, and at once when
woken (after entries.write or a sink change). Several processes may route at once: each sink's
row is locked for its round, so an entry is routed once.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.audit import filter as lq
from keyless.audit.log import entry_of
from keyless.background import Worker
from keyless.clock import rfc3339
from keyless.cloudlogging import entries, names
from keyless.iam.evaluate import Authorizer, ResourceContext
from keyless.iam.members import member_keys_for_service_account
from keyless.iam.principal import Principal
from keyless.pubsub import messages as pubsub_messages
from keyless.pubsub import names as pubsub_names
from keyless.pubsub import notify as pubsub_notify
from keyless.storage import buckets, objects
from keyless.storage.blobs import BlobStore
from keyless.store.db import Database
from keyless.store.models import AuditEntry, LoggingSink, StorageObject

logger = logging.getLogger("keyless.logging")
BATCH = 2_000  # entries a sink reads per round
MAX_BATCHES = 50  # rounds of one sink before the next sink's turn
MAX_FILE_BYTES = 1 << 30


def writer_principal(identity: str) -> Principal:
    """The sink's writer identity as IAM sees it (a service account)."""
    email = identity.split(":", 1)[1]
    return Principal(member=identity, member_keys=member_keys_for_service_account(email), email=email,
                     subject=identity)


def file_name(entry: dict[str, Any], when: datetime) -> str:
    """The file prefix of an entry's hour: `LOG_ID/YYYY/MM/DD/HH:00:00_HH:59:59_S` (shard to follow)."""
    log_id = unquote(entry["logName"].split("/logs/", 1)[1])
    hour = f"{when.hour:02d}"
    return f"{log_id}/{when:%Y/%m/%d}/{hour}:00:00_{hour}:59:59_S"


def _next_shard(s: Session, bucket: str, prefix: str) -> int:
    taken = s.scalars(select(StorageObject.name).where(StorageObject.bucket == bucket,
                                                       StorageObject.name.startswith(prefix, autoescape=True)))
    numbers = [int(n[len(prefix):-5]) for n in taken if n.endswith(".json") and n[len(prefix):-5].isdigit()]
    return max(numbers, default=-1) + 1


SINK_ERROR_LOG = "logging.googleapis.com/sink_error"
SINK_ERROR_SUFFIX = "/logs/" + quote(SINK_ERROR_LOG, safe="")


def _record_error(s: Session, sink: LoggingSink, error: str) -> None:
    """The sink_error entry of a new routing error."""
    now = datetime.now(UTC)
    entry = {"jsonPayload": {"sink": sink.sink_id, "destination": sink.body["destination"], "error": error},
             "insertId": "", "timestamp": rfc3339(now), "receiveTimestamp": rfc3339(now), "severity": "ERROR",
             "logName": "",
             "resource": {"type": "logging_sink", "labels": {"project_id": sink.project_id, "name": sink.sink_id,
                                                             "destination": sink.body["destination"]}}}
    entries.store(s, [(entries.Written(names.LogName(sink.project_id, SINK_ERROR_LOG), entry), sink.project_id)], {})


def _matching(s: Session, sink: LoggingSink) -> tuple[list[tuple[AuditEntry, dict[str, Any]]], int]:
    """The entries after the sink's cursor it routes, and the cursor after them."""
    rows = s.scalars(select(AuditEntry).where(AuditEntry.project_id == sink.project_id, AuditEntry.id > sink.cursor)
                     .order_by(AuditEntry.id).limit(BATCH)).all()
    if not rows:
        return [], sink.cursor
    tree = lq.parse(sink.body.get("filter", ""))
    excluded = [lq.parse(e["filter"]) for e in sink.body.get("exclusions", []) if not e.get("disabled")]
    picked = []
    for row in rows:
        if row.log_name.endswith(SINK_ERROR_SUFFIX):
            continue  # a sink's errors are never routed: they would feed the error back
        entry = entry_of(row)
        if lq.matches(tree, entry) and not any(lq.matches(x, entry) for x in excluded):
            picked.append((row, entry))
    return picked, rows[-1].id


def _to_bucket(s: Session, sink: LoggingSink, bucket_name: str, picked: list[tuple[AuditEntry, dict[str, Any]]],
               authz: Authorizer, blobs: BlobStore) -> str:
    """Write the sink files; '' or the error that kept them from being written."""
    bucket = buckets.find_bucket(s, bucket_name)
    if bucket is None:
        return f"The destination bucket {bucket_name} does not exist."
    identity = sink.body["writerIdentity"]
    decision = authz.check(writer_principal(identity), "storage.objects.create", buckets.bucket_chain(bucket),
                           buckets.bucket_context(bucket_name))
    if not decision.granted:
        return (f"The sink's writer identity {identity} does not have storage.objects.create on bucket "
                f"{bucket_name}: grant it roles/storage.objectCreator on the bucket.")
    files: dict[str, list[str]] = defaultdict(list)
    for row, entry in picked:
        files[file_name(entry, lq.parse_timestamp(entry["timestamp"]) or row.timestamp)].append(
            json.dumps(entry, separators=(",", ":"), ensure_ascii=False))
    for prefix, lines in files.items():
        name = f"{prefix}{_next_shard(s, bucket_name, prefix)}.json"
        writer = blobs.put(("\n".join(lines) + "\n").encode(), MAX_FILE_BYTES)
        blob = objects.StoredBlob(writer.blob_id, writer.size, writer.hasher.md5_b64, writer.hasher.crc32c_b64)
        objects.put_object(s, bucket_name, name, blob, {"contentType": "application/json"}, objects.Preconditions())
    return ""


PUBSUB_TIMESTAMP = "logging.googleapis.com/timestamp"


def _to_topic(s: Session, sink: LoggingSink, topic_name: str, picked: list[tuple[AuditEntry, dict[str, Any]]],
              authz: Authorizer) -> str:
    """Publish one message per entry; '' or the error that kept them from being published."""
    topic = pubsub_messages.topic_of(s, topic_name)
    if topic is None:
        return f"The destination topic {topic_name} does not exist."
    identity = sink.body["writerIdentity"]
    context = ResourceContext(topic_name, pubsub_names.TOPIC_TYPE, pubsub_names.SERVICE)
    decision = authz.check(writer_principal(identity), "pubsub.topics.publish",
                           pubsub_names.chain(topic.project_id, "topics", topic.topic_id), context)
    if not decision.granted:
        return (f"The sink's writer identity {identity} does not have pubsub.topics.publish on topic "
                f"{topic_name}: grant it roles/pubsub.publisher on the topic.")
    outgoing = [pubsub_messages.Outgoing(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode(),
                                         {PUBSUB_TIMESTAMP: str(entry.get("timestamp", ""))}, "")
                for _, entry in picked]
    step = pubsub_messages.MAX_MESSAGES_PER_PUBLISH
    for start in range(0, len(outgoing), step):
        pubsub_messages.publish(s, topic, outgoing[start:start + step])
    return ""


def route_sink(db: Database, authz: Authorizer, blobs: BlobStore, project_id: str, sink_id: str) -> int:
    """One round of one sink; how many entries it wrote to its destination."""
    with db.write(bump=False) as s:
        sink = s.get(LoggingSink, (project_id, sink_id), with_for_update=True)
        if sink is None:
            return 0
        picked, cursor = _matching(s, sink)
        if cursor == sink.cursor:
            return 0
        destination = names.parse_destination(sink.body["destination"])
        written, error = 0, ""
        if sink.body.get("disabled"):
            picked = []
        if picked and destination.kind == "storage":
            error = _to_bucket(s, sink, destination.bucket, picked, authz, blobs)
            written = 0 if error else len(picked)
        elif picked and destination.kind == "pubsub":
            error = _to_topic(s, sink, destination.topic, picked, authz)
            written = 0 if error else len(picked)
        sink.cursor = cursor
        if error and error != sink.last_error:
            _record_error(s, sink, error)
        if error or picked:
            sink.last_error = error
    if written and destination.kind == "pubsub":
        pubsub_notify.published()  # committed: this process's streaming pulls look at once
    return written


def route_all(db: Database, authz: Authorizer, blobs: BlobStore) -> int:
    """One round of every sink; how many entries were written."""
    with db.read() as s:
        keys = [(p, k) for p, k in s.execute(select(LoggingSink.project_id, LoggingSink.sink_id))]
    total = 0
    for project_id, sink_id in keys:
        for _ in range(MAX_BATCHES):  # until the sink has caught up, or others' turn (a busy log)
            try:
                total += route_sink(db, authz, blobs, project_id, sink_id)
            except Exception:
                logger.exception("could not route the entries of sink %s of %s", sink_id, project_id)
                break
            if not _behind(db, project_id, sink_id):
                break
    return total


def _behind(db: Database, project_id: str, sink_id: str) -> bool:
    with db.read() as s:
        sink = s.get(LoggingSink, (project_id, sink_id))
        if sink is None:
            return False
        return s.scalar(select(AuditEntry.id).where(AuditEntry.project_id == project_id,
                                                    AuditEntry.id > sink.cursor).limit(1)) is not None


class Router(Worker):
    """The routing thread of one serving process."""

    def __init__(self, db: Database, authz: Authorizer, blobs: BlobStore, *, before: Callable[[], Any] = lambda: None,
                 interval: float = 1.0) -> None:
        super().__init__(interval, name="keyless-log-router", logger=logger, failure="log routing failed")
        self._db, self._authz, self._blobs, self._before = db, authz, blobs, before

    def round(self) -> None:
        self.run_once()

    def run_once(self) -> int:
        with self._db.read() as s:
            if s.scalar(select(LoggingSink.sink_id).limit(1)) is None:
                return 0
        self._before()  # entries queued for the audit writer are committed first
        return route_all(self._db, self._authz, self._blobs)

