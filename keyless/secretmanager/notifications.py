"""Event notifications: a secret with `topics` has each change published to them as a Pub/Sub
message (https://cloud.google.com/secret-manager/docs/event-notifications, issue #20).

A message's `data` is the JSON of the Secret or SecretVersion the event changed, as the API
answers it; its attributes are `eventType`, `dataFormat` (JSON_API_V1), `secretId` (the secret's
full name), `timestamp`, and `versionId` (the version's full name) on version events. Messages
are published as the Secret Manager service agent (keyless.iam.service_agents), which needs
pubsub.topics.publish on each topic: creating or updating a secret with a topic the agent cannot
publish to, or one that does not exist, is refused (FAILED_PRECONDITION naming the agent and the
topic: Google documents the requirement, not its error code), and each topic set on a create or
update first receives Google's TOPIC_CONFIGURED test message (attributes `eventType` only, no
data). A later publication that fails (the topic deleted, the grant removed) is dropped, as
Google drops it, and never fails the change that caused it.

Publication happens inside the caller's transaction, so a message exists only if the change
committed; the caller tells this process's streaming pulls afterwards (keyless.pubsub.notify).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from keyless.clock import now as clock_now
from keyless.clock import rfc3339
from keyless.errors import FailedPrecondition, InvalidArgument
from keyless.iam import service_agents
from keyless.iam.evaluate import Authorizer, ResourceContext
from keyless.pubsub import messages as pubsub_messages
from keyless.pubsub import names as pubsub_names
from keyless.secretmanager.names import secret_name
from keyless.store.models import PsTopic, SmSecret

SECRET_CREATE, SECRET_UPDATE, SECRET_DELETE = "SECRET_CREATE", "SECRET_UPDATE", "SECRET_DELETE"
SECRET_VERSION_ADD = "SECRET_VERSION_ADD"
SECRET_VERSION_ENABLE, SECRET_VERSION_DISABLE = "SECRET_VERSION_ENABLE", "SECRET_VERSION_DISABLE"
SECRET_VERSION_DESTROY = "SECRET_VERSION_DESTROY"
SECRET_VERSION_DESTROY_SCHEDULED = "SECRET_VERSION_DESTROY_SCHEDULED"  # a destroy delayed by versionDestroyTtl
SECRET_ROTATE, TOPIC_CONFIGURED = "SECRET_ROTATE", "TOPIC_CONFIGURED"
DATA_FORMAT = "JSON_API_V1"
PUBLISH = "pubsub.topics.publish"


def topic_names(row: SmSecret) -> list[str]:
    return [t["name"] for t in (row.body or {}).get("topics", []) if isinstance(t, dict) and "name" in t]


def _publishable(s: Session, authz: Authorizer, agent: str, name: str) -> tuple[PsTopic | None, str]:
    """The topic if the agent may publish to it; else None and why not."""
    project, topic_id = pubsub_names.parse(name, "topics")
    topic = pubsub_messages.topic_of(s, name)
    if topic is None:
        return None, f"Pub/Sub topic {name} does not exist."
    decision = authz.check(service_agents.principal(agent), PUBLISH, pubsub_names.chain(project, "topics", topic_id),
                           ResourceContext(name, pubsub_names.TOPIC_TYPE, pubsub_names.SERVICE))
    if not decision.granted:
        return None, (f"The Secret Manager service agent {agent} does not have {PUBLISH} on topic {name}: grant it "
                      f"roles/pubsub.publisher on the topic.")
    return topic, ""


def configure_topics(s: Session, authz: Authorizer, row: SmSecret) -> bool:
    """Check that the agent can publish to every topic of `row` and send each TOPIC_CONFIGURED;
    FAILED_PRECONDITION if it cannot. Whether anything was published."""
    agent = service_agents.secret_manager(row.project_number)
    topics = []
    for name in topic_names(row):
        topic, problem = _publishable(s, authz, agent, name)
        if topic is None:
            raise FailedPrecondition(problem)
        topics.append(topic)
    for topic in topics:
        pubsub_messages.publish(s, topic, [pubsub_messages.Outgoing(b"", {"eventType": TOPIC_CONFIGURED}, "")])
    return bool(topics)


def publish(s: Session, authz: Authorizer, row: SmSecret, event: str, resource: dict[str, Any],
            version_name: str = "", when: datetime | None = None) -> bool:
    """Publish `event` about `row` (data: `resource`, the Secret's or SecretVersion's JSON) to each
    topic the agent can publish to; whether anything was published."""
    names = topic_names(row)
    if not names:
        return False
    agent = service_agents.secret_manager(row.project_number)
    attributes = {"eventType": event, "dataFormat": DATA_FORMAT, "secretId": secret_name(row.project_number, row.secret_id, row.location),
                  "timestamp": rfc3339(when or clock_now())}
    if version_name:
        attributes["versionId"] = version_name
    data = json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode()
    published = False
    for name in names:
        try:
            topic, _ = _publishable(s, authz, agent, name)
        except InvalidArgument:  # a name stored before topics were checked: nothing to publish to
            continue
        if topic is not None:
            pubsub_messages.publish(s, topic, [pubsub_messages.Outgoing(data, dict(attributes), "")])
            published = True
    return published

