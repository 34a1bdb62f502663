"""Topic, subscription and snapshot names, with Pub/Sub's own rules and error messages
(https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names): an id starts with a letter,
has 3 to 255 letters, digits, `-` `.` `_` `~` `%` `+`, and does not start with `goog`. Names
carry the project id (not the number), as Google answers them.
"""

from __future__ import annotations

import re

from keyless.errors import InvalidArgument, NotFound
from keyless.projects import project_chain

SERVICE = "pubsub.googleapis.com"
RESOURCE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9\-._~%+]{2,254}$")
NAME = re.compile(r"^projects/([^/]{1,100})/(topics|subscriptions|snapshots)/([^/]{1,300})$")
DELETED_TOPIC = "_deleted-topic_"
TOPIC_TYPE = "pubsub.googleapis.com/Topic"
SUBSCRIPTION_TYPE = "pubsub.googleapis.com/Subscription"
SNAPSHOT_TYPE = "pubsub.googleapis.com/Snapshot"
SCHEMA_TYPE = "pubsub.googleapis.com/Schema"
DENIED = "User not authorized to perform this action."


def name(project_id: str, collection: str, resource_id: str) -> str:
    return f"projects/{project_id}/{collection}/{resource_id}"


def invalid_name(collection: str, full_name: str) -> InvalidArgument:
    return InvalidArgument(f"Invalid [{collection}] name: (name={full_name[:600]})")


def check_id(project: str, collection: str, resource_id: str) -> str:
    """`resource_id` if it is a valid topic/subscription/snapshot id, else Google's INVALID_ARGUMENT."""
    if not RESOURCE_ID.match(resource_id) or resource_id[:4].lower() == "goog":
        raise invalid_name(collection, name(project, collection, resource_id))
    return resource_id


def parse(full_name: object, collection: str) -> tuple[str, str]:
    """(project, id) of a full name of `collection` given in a request body (e.g. a subscription's topic)."""
    text = full_name if isinstance(full_name, str) else ""
    m = NAME.match(text)
    if m is None or m.group(2) != collection:
        raise invalid_name(collection, text)
    check_id(m.group(1), collection, m.group(3))
    return m.group(1), m.group(3)


def not_found(resource_id: str) -> NotFound:
    return NotFound(f"Resource not found (resource={resource_id}).")


def policy_resource(project_id: str, collection: str, resource_id: str) -> str:
    """Where a topic's, subscription's or snapshot's IAM policy is stored (deleted with it)."""
    return f"//{SERVICE}/{name(project_id, collection, resource_id)}"


def chain(project_id: str, collection: str, resource_id: str) -> list[str]:
    """The policies a topic or subscription inherits from: its own, the project's, the root's."""
    return [policy_resource(project_id, collection, resource_id), *project_chain(project_id)]
