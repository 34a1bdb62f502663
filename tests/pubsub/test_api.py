"""Pub/Sub v1 over REST against a real `keyless serve` (issue #20): topics and subscriptions,
publish/pull/ack with redelivery and ordering keys, dead letters, retry backoff, filters, seek and
snapshots, IAM on one topic or subscription, audit entries, hostile input, and messages that
outlive a restart. One server for the file."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from keyless.store.models import AuditEntry, PsDelivery, PsMessage, PsTopic
from tests.api.helpers import audit_data_access, server_state, token_for_service_account
from tests.conftest import KeylessServer

PROJECT = "ps-project"
PS = f"/pubsub/v1/projects/{PROJECT}"
PUBLISHER_SA = "pub-sa@ps-project.iam.gserviceaccount.com"
SUBSCRIBER_SA = "sub-sa@ps-project.iam.gserviceaccount.com"
VIEWER_SA = "view-sa@ps-project.iam.gserviceaccount.com"
DENIED = "User not authorized to perform this action."


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


def error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == status and body["error"]["status"] == code, body
    return str(body["error"]["message"])


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    out = module_server.keyless("projects", "create", PROJECT, "--number", "135792468")
    assert out.returncode == 0, out.stderr
    for account in ("pub-sa", "sub-sa", "view-sa"):
        ok(module_server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account}))
    return module_server


def topic(srv: KeylessServer, topic_id: str, **body: Any) -> dict[str, Any]:
    return dict(ok(srv.call("PUT", f"{PS}/topics/{topic_id}", body=body)))


def subscription(srv: KeylessServer, sub_id: str, topic_id: str, **body: Any) -> dict[str, Any]:
    return dict(ok(srv.call("PUT", f"{PS}/subscriptions/{sub_id}",
                            body={"topic": f"projects/{PROJECT}/topics/{topic_id}", **body})))


def publish(srv: KeylessServer, topic_id: str, *messages: dict[str, Any], token: str | None = None) -> list[str]:
    return list(ok(srv.call("POST", f"{PS}/topics/{topic_id}:publish", body={"messages": list(messages)},
                            token=token))["messageIds"])


def pull(srv: KeylessServer, sub_id: str, n: int = 10, token: str | None = None) -> list[dict[str, Any]]:
    return list(ok(srv.call("POST", f"{PS}/subscriptions/{sub_id}:pull", body={"maxMessages": n},
                            token=token)).get("receivedMessages", []))


def ack(srv: KeylessServer, sub_id: str, received: list[dict[str, Any]]) -> None:
    ok(srv.call("POST", f"{PS}/subscriptions/{sub_id}:acknowledge", body={"ackIds": [r["ackId"] for r in received]}))


def datas(received: list[dict[str, Any]]) -> list[bytes]:
    return [base64.b64decode(r["message"].get("data", "")) for r in received]


def count(srv: KeylessServer, model: Any) -> int:
    with server_state(srv).db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def entries(srv: KeylessServer, method: str) -> list[dict[str, Any]]:
    with server_state(srv).db.read() as s:
        return [r.entry for r in s.scalars(select(AuditEntry).where(AuditEntry.method_name == method)
                                           .order_by(AuditEntry.id)).all()]


def test_topics_and_subscriptions_crud_with_googles_errors(srv: KeylessServer) -> None:
    created = topic(srv, "orders", labels={"team": "shop"})
    assert created == {"name": f"projects/{PROJECT}/topics/orders", "labels": {"team": "shop"}}
    assert ok(srv.call("GET", f"{PS}/topics/orders")) == created
    msg = error(srv.call("PUT", f"{PS}/topics/orders", body={}), 409, "ALREADY_EXISTS")
    assert msg == "Resource already exists in the project (resource=orders)."
    msg = error(srv.call("GET", f"{PS}/topics/nope-topic"), 404, "NOT_FOUND")
    assert msg == "Resource not found (resource=nope-topic)."
    for bad in ("ab", "1starts-with-digit", "goog-reserved", "has space", "x" * 256, "bad*char"):
        msg = error(srv.call("PUT", f"{PS}/topics/{bad}", body={}), 400, "INVALID_ARGUMENT")
        assert msg.startswith("Invalid [topics] name: (name=projects/ps-project/topics/"), msg
    assert ok(srv.call("PUT", f"{PS}/topics/Ok.name_with~all%25chars+", body={}))["name"].endswith("+")

    patched = ok(srv.call("PATCH", f"{PS}/topics/orders",
                          body={"topic": {"labels": {"team": "billing"}, "messageRetentionDuration": "3600s"},
                                "updateMask": "labels"}))
    assert patched == {"name": f"projects/{PROJECT}/topics/orders", "labels": {"team": "billing"}}
    error(srv.call("PATCH", f"{PS}/topics/orders", body={"topic": {"name": "x"}, "updateMask": "name"}),
          400, "INVALID_ARGUMENT")

    sub = subscription(srv, "orders-sub", "orders", ackDeadlineSeconds=30, labels={"env": "prod"})
    assert sub == {"name": f"projects/{PROJECT}/subscriptions/orders-sub", "topic": f"projects/{PROJECT}/topics/orders",
                   "pushConfig": {}, "ackDeadlineSeconds": 30, "messageRetentionDuration": "604800s",
                   "expirationPolicy": {"ttl": "2678400s"}, "state": "ACTIVE", "labels": {"env": "prod"}}
    assert ok(srv.call("GET", f"{PS}/subscriptions/orders-sub")) == sub
    msg = error(srv.call("PUT", f"{PS}/subscriptions/to-nowhere", body={"topic": f"projects/{PROJECT}/topics/gone"}),
                404, "NOT_FOUND")
    assert msg == "Resource not found (resource=gone)."
    msg = error(srv.call("PUT", f"{PS}/subscriptions/bad-topic-name", body={"topic": "topics/x"}), 400,
                "INVALID_ARGUMENT")
    assert msg == "Invalid [topics] name: (name=topics/x)"
    msg = error(srv.call("PUT", f"{PS}/subscriptions/short-deadline",
                         body={"topic": f"projects/{PROJECT}/topics/orders", "ackDeadlineSeconds": 5}),
                400, "INVALID_ARGUMENT")
    assert msg.startswith("Invalid ack deadline given: 5.")
    error(srv.call("PUT", f"{PS}/subscriptions/bad-filter",
                   body={"topic": f"projects/{PROJECT}/topics/orders", "filter": "attributes.a = 1"}),
          400, "INVALID_ARGUMENT")
    patched_sub = ok(srv.call("PATCH", f"{PS}/subscriptions/orders-sub",
                              body={"subscription": {"ackDeadlineSeconds": 60}, "updateMask": "ackDeadlineSeconds"}))
    assert patched_sub["ackDeadlineSeconds"] == 60 and patched_sub["labels"] == {"env": "prod"}

    listed = ok(srv.call("GET", f"{PS}/topics", params={"pageSize": 1}))
    assert len(listed["topics"]) == 1 and listed["nextPageToken"]
    names = [t["name"] for t in ok(srv.call("GET", f"{PS}/topics"))["topics"]]
    assert f"projects/{PROJECT}/topics/orders" in names
    assert ok(srv.call("GET", f"{PS}/topics/orders/subscriptions")) == {
        "subscriptions": [f"projects/{PROJECT}/subscriptions/orders-sub"]}
    assert [s["name"] for s in ok(srv.call("GET", f"{PS}/subscriptions"))["subscriptions"]] == [sub["name"]]

    assert ok(srv.call("DELETE", f"{PS}/topics/orders")) == {}
    error(srv.call("GET", f"{PS}/topics/orders"), 404, "NOT_FOUND")
    assert ok(srv.call("GET", f"{PS}/subscriptions/orders-sub"))["topic"] == "_deleted-topic_"
    assert ok(srv.call("DELETE", f"{PS}/subscriptions/orders-sub")) == {}
    error(srv.call("DELETE", f"{PS}/subscriptions/orders-sub"), 404, "NOT_FOUND")
    # Unknown project: an owner learns it is missing, in Pub/Sub's words
    msg = error(srv.call("GET", "/pubsub/v1/projects/no-such-project/topics"), 404, "NOT_FOUND")
    assert msg.startswith("Requested project not found or user does not have access to it (project=no-such-project).")
    # Google's host routes to the same API
    assert ok(srv.call("GET", f"/v1/projects/{PROJECT}/topics/Ok.name_with~all%25chars+",
                       headers={"Host": "pubsub.googleapis.com"}))["name"].endswith("chars+")


def test_publish_pull_ack_redelivery_and_ordering(srv: KeylessServer) -> None:
    topic(srv, "events")
    subscription(srv, "events-a", "events")
    subscription(srv, "events-ordered", "events", enableMessageOrdering=True)
    ids = publish(srv, "events", {"data": b64(b"one"), "attributes": {"k": "v"}, "orderingKey": "cust-1"},
                  {"data": b64(b"two"), "orderingKey": "cust-1"}, {"attributes": {"only": "attrs"}})
    assert len(ids) == 3 and all(i.isdigit() for i in ids) and len(set(ids)) == 3
    subscription(srv, "events-late", "events")  # created after: sees only later messages

    got = pull(srv, "events-a")
    assert datas(got) == [b"one", b"two", b""]
    first = got[0]["message"]
    assert first["messageId"] == ids[0] and first["attributes"] == {"k": "v"} and first["orderingKey"] == "cust-1"
    assert datetime.fromisoformat(first["publishTime"].replace("Z", "+00:00")) <= datetime.now(UTC)
    assert got[2]["message"]["attributes"] == {"only": "attrs"} and "deliveryAttempt" not in got[0]
    assert pull(srv, "events-a") == []  # leased for the ack deadline
    assert pull(srv, "events-late") == []

    # a nack (deadline 0) redelivers at once, under a new ack id; the old one then acks nothing
    ok(srv.call("POST", f"{PS}/subscriptions/events-a:modifyAckDeadline",
                body={"ackIds": [got[1]["ackId"]], "ackDeadlineSeconds": 0}))
    again = pull(srv, "events-a")
    assert datas(again) == [b"two"] and again[0]["ackId"] != got[1]["ackId"]
    ack(srv, "events-a", [got[1]])
    ack(srv, "events-a", [got[0], got[2]])
    # the deadline passing (its lease moved into the past in the store) redelivers the unacked one
    with server_state(srv).db.write() as s:
        s.execute(update(PsDelivery).where(PsDelivery.ack_id == again[0]["ackId"])
                  .values(visible_at=datetime.now(UTC) - timedelta(seconds=1)))
    expired = pull(srv, "events-a")
    assert datas(expired) == [b"two"]
    ack(srv, "events-a", expired)
    assert pull(srv, "events-a") == []

    # ordering: while cust-1's first message is leased, its second is held back; other keys flow
    publish(srv, "events", {"data": b64(b"three"), "orderingKey": "cust-2"})
    one = pull(srv, "events-ordered", 1)
    assert datas(one) == [b"one"]
    rest = pull(srv, "events-ordered")
    assert datas(rest) == [b"", b"three"]  # "two" waits for "one"
    ack(srv, "events-ordered", one)
    assert datas(pull(srv, "events-ordered")) == [b"two"]


def test_exactly_once_delivery_fails_each_invalid_or_expired_ack_id(srv: KeylessServer) -> None:
    topic(srv, "once")
    sub = subscription(srv, "once-sub", "once", enableExactlyOnceDelivery=True)
    assert sub["enableExactlyOnceDelivery"] is True
    publish(srv, "once", {"data": b64(b"a")}, {"data": b64(b"b")})
    got = pull(srv, "once-sub")
    assert sorted(datas(got)) == [b"a", b"b"]
    assert pull(srv, "once-sub") == []  # leased: not redelivered before the deadline
    first, second = got
    forged = first["ackId"].split("-")[0] + "-" + "0" * 24  # the right delivery, the wrong lease
    resp = srv.call("POST", f"{PS}/subscriptions/once-sub:acknowledge",
                    body={"ackIds": [first["ackId"], "not-an-ack-id", forged]})
    assert error(resp, 400, "INVALID_ARGUMENT").startswith("Some acknowledgement ids in the request were invalid.")
    [info] = resp.json()["error"]["details"]
    assert info == {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "EXACTLY_ONCE_ACKID_FAILURE",
                    "domain": "pubsub.googleapis.com",
                    "metadata": {"not-an-ack-id": "PERMANENT_FAILURE_INVALID_ACK_ID",
                                 forged: "PERMANENT_FAILURE_INVALID_ACK_ID"}}
    # the valid one was acked all the same: acking it again fails, since it is no longer leased
    resp = srv.call("POST", f"{PS}/subscriptions/once-sub:acknowledge", body={"ackIds": [first["ackId"]]})
    assert resp.json()["error"]["details"][0]["metadata"] == {first["ackId"]: "PERMANENT_FAILURE_INVALID_ACK_ID"}

    # an expired lease: its ack id can neither extend nor ack (at least once, the ack would land)
    ok(srv.call("POST", f"{PS}/subscriptions/once-sub:modifyAckDeadline",
                body={"ackIds": [second["ackId"]], "ackDeadlineSeconds": 60}))
    with server_state(srv).db.write() as s:
        s.execute(update(PsDelivery).where(PsDelivery.ack_id == second["ackId"])
                  .values(visible_at=datetime.now(UTC) - timedelta(seconds=1)))
    for verb, extra in (("modifyAckDeadline", {"ackDeadlineSeconds": 30}), ("acknowledge", {})):
        resp = srv.call("POST", f"{PS}/subscriptions/once-sub:{verb}", body={"ackIds": [second["ackId"]], **extra})
        error(resp, 400, "INVALID_ARGUMENT")
        assert resp.json()["error"]["details"][0]["metadata"] == {second["ackId"]: "PERMANENT_FAILURE_INVALID_ACK_ID"}
    again = pull(srv, "once-sub")
    assert datas(again) == [b"b"] and again[0]["ackId"] != second["ackId"]
    ack(srv, "once-sub", again)
    assert pull(srv, "once-sub") == []
    # at least once (the default), the same invalid ack ids are ignored, as Google does
    subscription(srv, "once-loose", "once")
    ok(srv.call("POST", f"{PS}/subscriptions/once-loose:acknowledge", body={"ackIds": [forged]}))


def test_messages_survive_a_restart(srv: KeylessServer) -> None:
    topic(srv, "durable")
    subscription(srv, "durable-sub", "durable")
    ids = publish(srv, "durable", {"data": b64(b"kept"), "attributes": {"a": "1"}, "orderingKey": "k"})
    srv.restart()
    got = pull(srv, "durable-sub")
    assert [r["message"]["messageId"] for r in got] == ids and datas(got) == [b"kept"]
    assert got[0]["message"]["attributes"] == {"a": "1"} and got[0]["message"]["orderingKey"] == "k"
    # acked by its only subscription: the message itself is deleted, not kept forever
    ack(srv, "durable-sub", got)
    topic(srv, "nobody-listens")
    unheard = publish(srv, "nobody-listens", {"data": b64(b"dropped")})  # no subscription: nothing to keep
    with server_state(srv).db.read() as s:
        assert s.get(PsMessage, int(ids[0])) is None and s.get(PsMessage, int(unheard[0])) is None


def test_dead_letter_retry_policy_and_filters(srv: KeylessServer) -> None:
    topic(srv, "work")
    topic(srv, "work-dead")
    subscription(srv, "dead-sub", "work-dead")
    subscription(srv, "work-sub", "work", deadLetterPolicy={
        "deadLetterTopic": f"projects/{PROJECT}/topics/work-dead", "maxDeliveryAttempts": 5})
    subscription(srv, "work-filtered", "work", filter='attributes.kind = "urgent" AND NOT attributes:test')
    subscription(srv, "work-prefix", "work", filter='hasPrefix(attributes.region, "eu-") OR attributes.kind = "x"')
    publish(srv, "work", {"data": b64(b"poison"), "attributes": {"kind": "urgent", "region": "eu-west"}},
            {"data": b64(b"tested"), "attributes": {"kind": "urgent", "test": "1"}})
    for attempt in range(1, 6):
        got = pull(srv, "work-sub", 1)
        assert [r["deliveryAttempt"] for r in got] == [attempt]
        ok(srv.call("POST", f"{PS}/subscriptions/work-sub:modifyAckDeadline",
                    body={"ackIds": [got[0]["ackId"]], "ackDeadlineSeconds": 0}))
    assert datas(pull(srv, "work-sub", 1)) == [b"tested"]  # poison went to the dead-letter topic
    dead = pull(srv, "dead-sub")
    assert datas(dead) == [b"poison"]
    attrs = dead[0]["message"]["attributes"]
    assert attrs["CloudPubSubDeadLetterSourceDeliveryCount"] == "5" and attrs["kind"] == "urgent"
    assert attrs["CloudPubSubDeadLetterSourceSubscription"] == "work-sub"
    assert datas(pull(srv, "work-filtered")) == [b"poison"]
    assert datas(pull(srv, "work-prefix")) == [b"poison"]

    subscription(srv, "retry-sub", "work", retryPolicy={"minimumBackoff": "30s", "maximumBackoff": "60s"})
    assert ok(srv.call("GET", f"{PS}/subscriptions/retry-sub"))["retryPolicy"] == {
        "minimumBackoff": "30s", "maximumBackoff": "60s"}
    publish(srv, "work", {"data": b64(b"retry-me")})
    got = pull(srv, "retry-sub")
    ok(srv.call("POST", f"{PS}/subscriptions/retry-sub:modifyAckDeadline",
                body={"ackIds": [got[0]["ackId"]], "ackDeadlineSeconds": 0}))
    assert pull(srv, "retry-sub") == []  # nacked, but held back for the 30 s minimum backoff
    # Google's words and codes for out-of-range policies, as its Pub/Sub emulator answers them
    # (scripts/pubsub_emulator_diff.py)
    assert error(srv.call("PUT", f"{PS}/subscriptions/bad-dlq", body={
        "topic": f"projects/{PROJECT}/topics/work",
        "deadLetterPolicy": {"deadLetterTopic": f"projects/{PROJECT}/topics/work-dead", "maxDeliveryAttempts": 2}}),
        400, "OUT_OF_RANGE") == ("The value for max_delivery_attempts is too small. You passed 2 in the request, "
                                 "but the minimum value is 5.")
    assert error(srv.call("PUT", f"{PS}/subscriptions/bad-dlq", body={
        "topic": f"projects/{PROJECT}/topics/work",
        "deadLetterPolicy": {"deadLetterTopic": f"projects/{PROJECT}/topics/work-dead", "maxDeliveryAttempts": 101}}),
        400, "OUT_OF_RANGE").startswith("The value for max_delivery_attempts is too large. You passed 101")
    assert error(srv.call("PUT", f"{PS}/subscriptions/bad-retry", body={
        "topic": f"projects/{PROJECT}/topics/work", "retryPolicy": {"minimumBackoff": "60s", "maximumBackoff": "10s"}}),
        400, "INVALID_ARGUMENT") == ("The value for maximum_backoff is too small. You passed 10s in the request, but "
                                     "the minimum value is 60s.")
    assert error(srv.call("PUT", f"{PS}/subscriptions/bad-retry", body={
        "topic": f"projects/{PROJECT}/topics/work", "retryPolicy": {"maximumBackoff": "700s"}}),
        400, "INVALID_ARGUMENT") == ("The value for maximum_backoff is out of bounds. You passed 700s in the request, "
                                     "but the value must be between 0s and 600s.")
    assert error(srv.call("PATCH", f"{PS}/subscriptions/work-sub", body={"subscription": {"ackDeadlineSeconds": 20}}),
                 400, "INVALID_ARGUMENT") == ("The update_mask in the UpdateSubscriptionRequest must be set, and must "
                                              "contain a non-empty paths list.")
    assert error(srv.call("PATCH", f"{PS}/subscriptions/work-sub", body={
        "subscription": {"topic": f"projects/{PROJECT}/topics/work-dead"}, "updateMask": "topic"}),
        400, "INVALID_ARGUMENT") == ("Invalid update_mask provided in the UpdateSubscriptionRequest: the topic field "
                                     "in the Subscription is not mutable.")
    assert error(srv.call("PATCH", f"{PS}/topics/work", body={"topic": {}, "updateMask": "bogus"}),
                 400, "INVALID_ARGUMENT").startswith(
        "Invalid update_mask provided in the UpdateTopicRequest: bogus is not a known Topic field.")
    assert ok(srv.call("GET", f"{PS}/subscriptions/work-sub"))["topic"] == f"projects/{PROJECT}/topics/work"


def test_snapshots_and_seek(srv: KeylessServer) -> None:
    topic(srv, "replay")
    subscription(srv, "replay-sub", "replay", retainAckedMessages=True)
    publish(srv, "replay", {"data": b64(b"m1")}, {"data": b64(b"m2")})
    snap = ok(srv.call("PUT", f"{PS}/snapshots/before-acks",
                       body={"subscription": f"projects/{PROJECT}/subscriptions/replay-sub", "labels": {"a": "b"}}))
    assert snap["name"] == f"projects/{PROJECT}/snapshots/before-acks"
    assert snap["topic"] == f"projects/{PROJECT}/topics/replay" and snap["labels"] == {"a": "b"}
    assert ok(srv.call("GET", f"{PS}/topics/replay/snapshots")) == {"snapshots": [snap["name"]]}
    assert [x["name"] for x in ok(srv.call("GET", f"{PS}/snapshots"))["snapshots"]] == [snap["name"]]
    got = pull(srv, "replay-sub")
    ack(srv, "replay-sub", got)
    assert pull(srv, "replay-sub") == []
    ok(srv.call("POST", f"{PS}/subscriptions/replay-sub:seek", body={"snapshot": snap["name"]}))
    assert sorted(datas(pull(srv, "replay-sub"))) == [b"m1", b"m2"]
    # seek to a time in the future acks everything retained
    ok(srv.call("POST", f"{PS}/subscriptions/replay-sub:seek", body={"time": "2999-01-01T00:00:00Z"}))
    assert pull(srv, "replay-sub") == []
    ok(srv.call("POST", f"{PS}/subscriptions/replay-sub:seek", body={"time": "2000-01-01T00:00:00Z"}))
    assert sorted(datas(pull(srv, "replay-sub"))) == [b"m1", b"m2"]
    assert error(srv.call("POST", f"{PS}/subscriptions/replay-sub:seek", body={}), 400, "INVALID_ARGUMENT") == (
        "No target was specified in the SeekRequest. Must specify either a time or a snapshot")
    assert ok(srv.call("PATCH", f"{PS}/snapshots/before-acks",
                       body={"snapshot": {"labels": {"c": "d"}}, "updateMask": "labels"}))["labels"] == {"c": "d"}
    assert ok(srv.call("DELETE", f"{PS}/snapshots/before-acks")) == {}
    error(srv.call("GET", f"{PS}/snapshots/before-acks"), 404, "NOT_FOUND")


def test_iam_on_one_topic_and_one_subscription(srv: KeylessServer) -> None:
    topic(srv, "guarded")
    topic(srv, "other-topic")
    subscription(srv, "guarded-sub", "guarded")
    subscription(srv, "other-sub", "guarded")
    ok(srv.call("POST", f"{PS}/topics/guarded:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/pubsub.publisher", "members": [f"serviceAccount:{PUBLISHER_SA}"]}]}}))
    ok(srv.call("POST", f"{PS}/subscriptions/guarded-sub:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/pubsub.subscriber", "members": [f"serviceAccount:{SUBSCRIBER_SA}"]}]}}))
    policy = ok(srv.call("GET", f"{PS}/topics/guarded:getIamPolicy"))
    assert policy["bindings"] == [{"role": "roles/pubsub.publisher", "members": [f"serviceAccount:{PUBLISHER_SA}"]}]
    publisher = token_for_service_account(srv, PUBLISHER_SA)
    subscriber = token_for_service_account(srv, SUBSCRIBER_SA)

    assert publish(srv, "guarded", {"data": b64(b"allowed")}, token=publisher)
    for path, body in ((f"{PS}/topics/other-topic:publish", {"messages": [{"data": b64(b"x")}]}),
                       (f"{PS}/subscriptions/guarded-sub:pull", {"maxMessages": 1}),
                       (f"{PS}/topics/nonexistent:publish", {"messages": [{"data": b64(b"x")}]})):
        assert error(srv.call("POST", path, body=body, token=publisher), 403, "PERMISSION_DENIED") == DENIED
    error(srv.call("DELETE", f"{PS}/topics/guarded", token=publisher), 403, "PERMISSION_DENIED")
    assert datas(pull(srv, "guarded-sub", token=subscriber)) == [b"allowed"]
    error(srv.call("POST", f"{PS}/subscriptions/other-sub:pull", body={"maxMessages": 1}, token=subscriber),
          403, "PERMISSION_DENIED")
    error(srv.call("POST", f"{PS}/topics/guarded:publish", body={"messages": [{"data": b64(b"x")}]},
                   token=subscriber), 403, "PERMISSION_DENIED")
    perms = ok(srv.call("POST", f"{PS}/topics/guarded:testIamPermissions", token=publisher,
                        body={"permissions": ["pubsub.topics.publish", "pubsub.topics.delete"]}))
    assert perms == {"permissions": ["pubsub.topics.publish"]}
    assert ok(srv.call("POST", f"{PS}/topics/other-topic:testIamPermissions", token=publisher,
                       body={"permissions": ["pubsub.topics.publish"]})) == {}

    # a project-level grant is inherited by every topic and subscription
    path = f"/cloudresourcemanager/v1/projects/{PROJECT}"
    project_policy = ok(srv.call("POST", path + ":getIamPolicy", body={}))
    project_policy["bindings"].append({"role": "roles/pubsub.viewer", "members": [f"serviceAccount:{VIEWER_SA}"]})
    ok(srv.call("POST", path + ":setIamPolicy", body={"policy": project_policy}))
    viewer = token_for_service_account(srv, VIEWER_SA)
    assert ok(srv.call("GET", f"{PS}/topics/other-topic", token=viewer))["name"].endswith("other-topic")
    assert ok(srv.call("GET", f"{PS}/subscriptions", token=viewer))["subscriptions"]
    msg = error(srv.call("GET", f"{PS}/topics/missing-topic", token=viewer), 404, "NOT_FOUND")
    assert msg == "Resource not found (resource=missing-topic)."
    error(srv.call("POST", f"{PS}/topics/other-topic:publish", body={"messages": [{"data": b64(b"x")}]},
                   token=viewer), 403, "PERMISSION_DENIED")
    # an unknown project is no different from a forbidden one to a stranger
    assert error(srv.call("GET", "/pubsub/v1/projects/no-such-project/topics/t1x", token=publisher),
                 403, "PERMISSION_DENIED") == DENIED
    error(srv.call("GET", f"{PS}/topics/guarded", token=""), 401, "UNAUTHENTICATED")

    # OAuth scopes as the discovery document lists them: .../auth/pubsub serves, a storage scope does not
    from keyless.iam.service_accounts import find_by_email
    from keyless.state import service_account_principal

    st = server_state(srv)
    with st.db.read() as s:
        row = find_by_email(s, PUBLISHER_SA)
    assert row is not None
    scoped = st.tokens.mint(service_account_principal(row), ["https://www.googleapis.com/auth/pubsub"], 600).token
    assert publish(srv, "guarded", {"data": b64(b"scoped")}, token=scoped)
    storage_only = st.tokens.mint(service_account_principal(row),
                                  ["https://www.googleapis.com/auth/devstorage.read_only"], 600).token
    refused = srv.call("POST", f"{PS}/topics/guarded:publish", body={"messages": [{"data": b64(b"x")}]},
                       token=storage_only)
    assert error(refused, 403, "PERMISSION_DENIED") == "Request had insufficient authentication scopes."
    assert refused.json()["error"]["details"][0]["metadata"]["method"] == "pubsub.projects.topics.publish"


def test_audit_admin_activity_and_no_data_access_for_messages(srv: KeylessServer) -> None:
    topic(srv, "audited")
    subscription(srv, "audited-sub", "audited")
    created = entries(srv, "google.pubsub.v1.Publisher.CreateTopic")
    entry = next(e for e in created if e["protoPayload"]["resourceName"] == f"projects/{PROJECT}/topics/audited")
    assert entry["logName"] == f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"
    assert entry["resource"] == {"type": "pubsub_topic", "labels": {"project_id": PROJECT, "topic_id": "audited"}}
    assert entry["protoPayload"]["authorizationInfo"][0]["permission"] == "pubsub.topics.create"
    assert any(e["protoPayload"]["resourceName"] == f"projects/{PROJECT}/subscriptions/audited-sub"
               for e in entries(srv, "google.pubsub.v1.Subscriber.CreateSubscription"))
    ok(srv.call("DELETE", f"{PS}/topics/audited"))
    error(srv.call("DELETE", f"{PS}/topics/audited"), 404, "NOT_FOUND")  # a refused delete is audited too
    deleted = [e["protoPayload"] for e in entries(srv, "google.pubsub.v1.Publisher.DeleteTopic")
               if e["protoPayload"]["resourceName"] == f"projects/{PROJECT}/topics/audited"]
    assert [p["status"].get("code", 0) for p in deleted] == [0, 5]

    audit_data_access(srv, PROJECT, {"pubsub.googleapis.com": ["ADMIN_READ", "DATA_READ", "DATA_WRITE"]})
    topic(srv, "audited-2")
    ok(srv.call("GET", f"{PS}/topics/audited-2:getIamPolicy"))
    publish(srv, "audited-2", {"data": b64(b"x")})
    method = "google.iam.v1.IAMPolicy.GetIamPolicy"
    deadline = time.monotonic() + 10
    while not entries(srv, method) and time.monotonic() < deadline:
        server_state(srv).audit.flush()
        time.sleep(0.1)
    found = entries(srv, method)
    assert [e["protoPayload"]["resourceName"] for e in found] == [f"projects/{PROJECT}/topics/audited-2"]
    assert found[0]["logName"] == f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Fdata_access"
    # Google writes no Data Access entries for message operations, even when enabled
    assert entries(srv, "google.pubsub.v1.Publisher.Publish") == []


def test_hostile_input_is_refused_and_nothing_is_stored(srv: KeylessServer) -> None:
    topic(srv, "hostile")
    subscription(srv, "hostile-sub", "hostile")
    before = count(srv, PsMessage), count(srv, PsTopic)
    big = "x" * 1025
    cases: list[dict[str, Any]] = [
        {"messages": []},
        {"messages": [{}]},
        {"messages": [{"data": "not base64!"}]},
        {"messages": [{"data": b64(b"x"), "attributes": {"k": big}}]},
        {"messages": [{"data": b64(b"x"), "attributes": {"googkey": "v"}}]},
        {"messages": [{"data": b64(b"x"), "attributes": {f"k{i}": "v" for i in range(101)}}]},
        {"messages": [{"data": b64(b"x"), "orderingKey": "k" * 1025}]},
        {"messages": [{"data": b64(b"x")}] * 1001},
        {"messages": [{"data": b64(b"x"), "extra": 1}]},
        {"messages": "nope"},
    ]
    for body in cases:
        error(srv.call("POST", f"{PS}/topics/hostile:publish", body=body), 400, "INVALID_ARGUMENT")
    r = srv.call("POST", f"{PS}/topics/hostile:publish",
                 raw=b'{"messages":[{"data":"' + b"A" * (11 * 1024 * 1024) + b'"}]}',
                 headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    for ack_ids in (["garbage"], ["1-2"], "x", [1], ["9" * 30 + "-" + "a" * 24]):
        error(srv.call("POST", f"{PS}/subscriptions/hostile-sub:acknowledge", body={"ackIds": ack_ids}),
              400, "INVALID_ARGUMENT")
    for n in (0, -1, "x", True):
        error(srv.call("POST", f"{PS}/subscriptions/hostile-sub:pull", body={"maxMessages": n}), 400,
              "INVALID_ARGUMENT")
    error(srv.call("POST", f"{PS}/subscriptions/hostile-sub:modifyAckDeadline",
                   body={"ackIds": ["1-" + "a" * 24], "ackDeadlineSeconds": 601}), 400, "INVALID_ARGUMENT")
    error(srv.call("PUT", f"{PS}/topics/labelled", body={"labels": {"Bad": "x"}}), 400, "INVALID_ARGUMENT")
    error(srv.call("PUT", f"{PS}/topics/nul-topic", body={"labels": {"a": "b\u0000"}}), 400, "INVALID_ARGUMENT")
    error(srv.call("PUT", f"{PS}/topics/unknown-field", body={"foo": 1}), 400, "INVALID_ARGUMENT")
    error(srv.call("PUT", f"{PS}/subscriptions/deep-filter", body={
        "topic": f"projects/{PROJECT}/topics/hostile", "filter": "(" * 200 + "attributes:a" + ")" * 200}),
        400, "INVALID_ARGUMENT")
    # a valid ack id of another subscription acks nothing here
    topic(srv, "hostile-2")
    subscription(srv, "hostile-2-sub", "hostile-2")
    publish(srv, "hostile-2", {"data": b64(b"mine")})
    theirs = pull(srv, "hostile-2-sub")
    ok(srv.call("POST", f"{PS}/subscriptions/hostile-sub:acknowledge", body={"ackIds": [theirs[0]["ackId"]]}))
    with server_state(srv).db.read() as s:
        assert s.scalar(select(PsDelivery.acked).where(PsDelivery.ack_id == theirs[0]["ackId"])) is False
    assert (count(srv, PsMessage), count(srv, PsTopic)) == (before[0] + 1, before[1] + 1)
