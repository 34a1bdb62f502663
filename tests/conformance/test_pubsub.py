"""Pub/Sub (pubsub.googleapis.com v1) through Google's discovery-based client: every served
method called in a realistic order, each answer checked against its response schema (issue #20)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import harness
from tests.conformance.harness import Flow, Step

DOC = "pubsub.v1"
PROJECT = "conformance-pubsub"
P = f"projects/{PROJECT}"
TOPIC = f"{P}/topics/conformance-topic"
SUB = f"{P}/subscriptions/conformance-sub"
SNAP = f"{P}/snapshots/conformance-snap"
SCHEMA = f"{P}/schemas/conformance-schema"
AVRO = json.dumps({"type": "record", "name": "Reading", "fields": [{"name": "celsius", "type": "double"}]})
AVRO_V2 = json.dumps({"type": "record", "name": "Reading", "fields": [
    {"name": "celsius", "type": "double"}, {"name": "station", "type": "string", "default": ""}]})


def fail_unless(condition: Callable[[dict[str, Any], Any], bool]) -> Callable[[dict[str, Any], Any], None]:
    def check(ctx: dict[str, Any], answer: Any) -> None:
        if not condition(ctx, answer):
            pytest.fail(str(answer))
    return check


def ack_ids(c: dict[str, Any]) -> list[str]:
    return [r["ackId"] for r in c["pulled"]["receivedMessages"]]


def iam_steps(kind: str, resource: str, role: str, permission: str) -> list[Step]:
    m = f"pubsub.projects.{kind}"
    return [
        Step(f"{m}.getIamPolicy", lambda c: {"resource": resource, "options_requestedPolicyVersion": 3},
             save=f"{kind}-policy", present=["etag"]),
        Step(f"{m}.setIamPolicy", lambda c: {"resource": resource, "body": {"policy": {
            "bindings": [{"role": role, "members": ["user:reader@example.com"]}],
            "etag": c[f"{kind}-policy"]["etag"]}}}, present=["etag", "bindings"]),
        Step(f"{m}.testIamPermissions", lambda c: {"resource": resource, "body": {"permissions": [permission]}},
             check=fail_unless(lambda c, a: a["permissions"] == [permission])),
    ]


FLOW = Flow(DOC, [
    Step("pubsub.projects.topics.create", lambda c: {"name": TOPIC, "body": {"labels": {"team": "conformance"}}},
         present=["name", "labels"]),
    Step("pubsub.projects.topics.get", lambda c: {"topic": TOPIC}, present=["name"]),
    Step("pubsub.projects.topics.list", lambda c: {"project": P, "pageSize": 10},
         check=fail_unless(lambda c, a: [t["name"] for t in a["topics"]] == [TOPIC])),
    Step("pubsub.projects.topics.patch", lambda c: {"name": TOPIC, "body": {
        "topic": {"labels": {"team": "patched"}}, "updateMask": "labels"}},
         check=fail_unless(lambda c, a: a["labels"] == {"team": "patched"})),
    Step("pubsub.projects.subscriptions.create", lambda c: {"name": SUB, "body": {
        "topic": TOPIC, "ackDeadlineSeconds": 20, "retainAckedMessages": True}},
         present=["name", "topic", "ackDeadlineSeconds", "messageRetentionDuration", "state"]),
    Step("pubsub.projects.subscriptions.get", lambda c: {"subscription": SUB},
         present=["name", "topic", "pushConfig", "ackDeadlineSeconds", "expirationPolicy.ttl"]),
    Step("pubsub.projects.subscriptions.list", lambda c: {"project": P},
         check=fail_unless(lambda c, a: [s["name"] for s in a["subscriptions"]] == [SUB])),
    Step("pubsub.projects.subscriptions.patch", lambda c: {"name": SUB, "body": {
        "subscription": {"ackDeadlineSeconds": 30}, "updateMask": "ackDeadlineSeconds"}},
         check=fail_unless(lambda c, a: a["ackDeadlineSeconds"] == 30)),
    Step("pubsub.projects.subscriptions.modifyPushConfig", lambda c: {"subscription": SUB, "body": {
        "pushConfig": {}}}),
    Step("pubsub.projects.topics.subscriptions.list", lambda c: {"topic": TOPIC},
         check=fail_unless(lambda c, a: a["subscriptions"] == [SUB])),
    Step("pubsub.projects.topics.publish", lambda c: {"topic": TOPIC, "body": {"messages": [
        {"data": base64.b64encode(b"conformance").decode(), "attributes": {"k": "v"}, "orderingKey": "o"}]}},
         save="published", present=["messageIds"]),
    Step("pubsub.projects.snapshots.create", lambda c: {"name": SNAP, "body": {"subscription": SUB}},
         present=["name", "topic", "expireTime"]),
    Step("pubsub.projects.snapshots.get", lambda c: {"snapshot": SNAP}, present=["name", "topic", "expireTime"]),
    Step("pubsub.projects.snapshots.list", lambda c: {"project": P},
         check=fail_unless(lambda c, a: [s["name"] for s in a["snapshots"]] == [SNAP])),
    Step("pubsub.projects.topics.snapshots.list", lambda c: {"topic": TOPIC},
         check=fail_unless(lambda c, a: a["snapshots"] == [SNAP])),
    Step("pubsub.projects.snapshots.patch", lambda c: {"name": SNAP, "body": {
        "snapshot": {"labels": {"a": "b"}}, "updateMask": "labels"}},
         check=fail_unless(lambda c, a: a["labels"] == {"a": "b"})),
    Step("pubsub.projects.subscriptions.pull", lambda c: {"subscription": SUB, "body": {"maxMessages": 5}},
         save="pulled", present=["receivedMessages"],
         check=fail_unless(lambda c, a: a["receivedMessages"][0]["message"]["messageId"]
                           == c["published"]["messageIds"][0]
                           and a["receivedMessages"][0]["message"]["orderingKey"] == "o")),
    Step("pubsub.projects.subscriptions.modifyAckDeadline", lambda c: {"subscription": SUB, "body": {
        "ackIds": ack_ids(c), "ackDeadlineSeconds": 60}}),
    Step("pubsub.projects.subscriptions.acknowledge", lambda c: {"subscription": SUB, "body": {"ackIds": ack_ids(c)}}),
    Step("pubsub.projects.subscriptions.seek", lambda c: {"subscription": SUB, "body": {"snapshot": SNAP}}),
    Step("pubsub.projects.subscriptions.pull", lambda c: {"subscription": SUB, "body": {"maxMessages": 5}},
         check=fail_unless(lambda c, a: len(a["receivedMessages"]) == 1)),  # the seek brought it back
    *iam_steps("topics", TOPIC, "roles/pubsub.publisher", "pubsub.topics.publish"),
    *iam_steps("subscriptions", SUB, "roles/pubsub.subscriber", "pubsub.subscriptions.consume"),
    *iam_steps("snapshots", SNAP, "roles/pubsub.editor", "pubsub.snapshots.seek"),
    Step("pubsub.projects.snapshots.delete", lambda c: {"snapshot": SNAP}),
    Step("pubsub.projects.subscriptions.detach", lambda c: {"subscription": SUB}),
    Step("pubsub.projects.subscriptions.delete", lambda c: {"subscription": SUB}),
    Step("pubsub.projects.topics.delete", lambda c: {"topic": TOPIC}),
    Step("pubsub.projects.topics.get", lambda c: {"topic": TOPIC}, error=404),
    # schemas and their revisions
    Step("pubsub.projects.schemas.validate", lambda c: {"parent": P, "body": {"schema": {
        "type": "AVRO", "definition": AVRO}}}),
    Step("pubsub.projects.schemas.create", lambda c: {"parent": P, "schemaId": "conformance-schema", "body": {
        "type": "AVRO", "definition": AVRO}}, save="schema",
         present=["name", "type", "definition", "revisionId", "revisionCreateTime"]),
    Step("pubsub.projects.schemas.get", lambda c: {"name": SCHEMA, "view": "FULL"},
         check=fail_unless(lambda c, a: a["revisionId"] == c["schema"]["revisionId"])),
    Step("pubsub.projects.schemas.list", lambda c: {"parent": P, "view": "BASIC"},
         check=fail_unless(lambda c, a: [s["name"] for s in a["schemas"]] == [SCHEMA]
                           and "definition" not in a["schemas"][0])),
    Step("pubsub.projects.schemas.validateMessage", lambda c: {"parent": P, "body": {
        "name": SCHEMA, "encoding": "JSON", "message": base64.b64encode(b'{"celsius": 21.5}').decode()}}),
    Step("pubsub.projects.schemas.commit", lambda c: {"name": SCHEMA, "body": {"schema": {
        "type": "AVRO", "definition": AVRO_V2}}}, save="second", present=["revisionId", "definition"]),
    Step("pubsub.projects.schemas.listRevisions", lambda c: {"name": SCHEMA, "view": "FULL"},
         check=fail_unless(lambda c, a: [s["revisionId"] for s in a["schemas"]]
                           == [c["second"]["revisionId"], c["schema"]["revisionId"]])),
    Step("pubsub.projects.schemas.rollback", lambda c: {"name": SCHEMA, "body": {
        "revisionId": c["schema"]["revisionId"]}}, check=fail_unless(lambda c, a: a["definition"] == AVRO)),
    Step("pubsub.projects.schemas.deleteRevision", lambda c: {"name": f"{SCHEMA}@{c['second']['revisionId']}"},
         present=["revisionId"]),
    *iam_steps("schemas", SCHEMA, "roles/pubsub.viewer", "pubsub.schemas.get"),
    Step("pubsub.projects.schemas.delete", lambda c: {"name": SCHEMA}),
    Step("pubsub.projects.schemas.get", lambda c: {"name": SCHEMA}, error=404),
])


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any]) -> dict[str, Any]:
    client("cloudresourcemanager.v1").projects().create(body={"projectId": PROJECT}).execute()
    return harness.run(client(DOC), FLOW, {})


def test_every_served_method_has_a_step() -> None:
    assert not FLOW.unflowed(harness.served_methods(DOC))


def test_flow(flowed: dict[str, Any]) -> None:
    assert flowed["called"] == [s.method for s in FLOW.steps]


# Probes create their own resources where the method creates one (ids in `fresh`).
FRESH = {"pubsub.projects.topics.create": {"name": f"{P}/topics/fields-probe"},
         "pubsub.projects.subscriptions.create": {"name": f"{P}/subscriptions/fields-probe"},
         "pubsub.projects.snapshots.create": {"name": f"{P}/snapshots/fields-probe"},
         "pubsub.projects.schemas.create": {"schemaId": "fields-probe"}}


@pytest.mark.parametrize("method_id", harness.body_methods(FLOW))
def test_every_defined_request_field_is_known(client: Callable[[str], Any], flowed: dict[str, Any],
                                              method_id: str) -> None:
    harness.probe_fields(client(DOC), FLOW, method_id, flowed, FRESH.get(method_id))
