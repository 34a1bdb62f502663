"""Secret Manager event notifications and rotation schedules (issue #20,
https://cloud.google.com/secret-manager/docs/event-notifications,
https://cloud.google.com/secret-manager/docs/secret-rotation): google-cloud-secret-manager (REST)
changes secrets with `topics`, google-cloud-pubsub (REST) pulls what Keyless published as the
Secret Manager service agent. The agent must be granted pubsub.topics.publish on each topic:
without that check any secret admin could have Keyless publish into any topic of any project."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import google.oauth2.credentials
import pytest
from google.api_core import exceptions
from google.protobuf import field_mask_pb2
from sqlalchemy import select

from keyless.clock import rfc3339
from keyless.secretmanager import rotation
from keyless.store.models import SmSecret
from tests.api.helpers import server_state
from tests.conftest import KeylessServer

PROJECT, NUMBER = "notify-project", "135792468"
AGENT = f"service-{NUMBER}@gcp-sa-secretmanager.iam.gserviceaccount.com"
PS = f"/pubsub/v1/projects/{PROJECT}"
EVENTS = f"projects/{PROJECT}/topics/secret-events"
UNGRANTED = f"projects/{PROJECT}/topics/no-agent-grant"
SUBSCRIPTION = f"projects/{PROJECT}/subscriptions/secret-events-sub"


def ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    out = module_server.keyless("projects", "create", PROJECT, "--number", NUMBER)
    assert out.returncode == 0, out.stderr
    for topic in (EVENTS, UNGRANTED):
        ok(module_server.call("PUT", f"/pubsub/v1/{topic}", body={}))
    ok(module_server.call("PUT", f"/pubsub/v1/{SUBSCRIPTION}", body={"topic": EVENTS}))
    return module_server


@pytest.fixture(scope="module")
def clients(srv: KeylessServer) -> tuple[Any, Any]:
    from google.cloud import pubsub_v1, secretmanager

    creds = google.oauth2.credentials.Credentials(srv.owner_token)
    sm = secretmanager.SecretManagerServiceClient(
        credentials=creds, transport="rest", client_options={"api_endpoint": f"{srv.base_url}/secretmanager"})
    sub = pubsub_v1.SubscriberClient(credentials=creds, transport="rest",
                                     client_options={"api_endpoint": f"{srv.base_url}/pubsub"})
    return sm, sub


def drain(subscriber: Any, want: int, timeout: float = 10) -> list[Any]:
    """Pull and acknowledge until `want` messages came (or the time is up), in publish order."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        answer = subscriber.pull(request={"subscription": SUBSCRIPTION, "max_messages": 50,
                                          "return_immediately": True})
        if answer.received_messages:
            subscriber.acknowledge(request={"subscription": SUBSCRIPTION,
                                            "ack_ids": [m.ack_id for m in answer.received_messages]})
            got += [m.message for m in answer.received_messages]
        else:
            time.sleep(0.05)
    return sorted(got, key=lambda m: int(m.message_id))


def failed_precondition(error: exceptions.GoogleAPICallError) -> str:
    """Google's FAILED_PRECONDITION is HTTP 400: the REST client raises BadRequest; the status says which."""
    assert isinstance(error, exceptions.BadRequest), error
    assert error.response.json()["error"]["status"] == "FAILED_PRECONDITION", error.response.text
    return str(error.message)


def grant_agent(srv: KeylessServer, topic: str) -> None:
    policy = ok(srv.call("POST", f"/pubsub/v1/{topic}:getIamPolicy", body={}))
    policy.setdefault("bindings", []).append({"role": "roles/pubsub.publisher", "members": [f"serviceAccount:{AGENT}"]})
    ok(srv.call("POST", f"/pubsub/v1/{topic}:setIamPolicy", body={"policy": policy}))


def test_each_change_is_published_once_the_agent_may_publish(srv: KeylessServer, clients: tuple[Any, Any]) -> None:
    sm, subscriber = clients
    parent = f"projects/{PROJECT}"
    secret = {"replication": {"automatic": {}}, "topics": [{"name": EVENTS}]}
    # the agent has no grant yet: refused, naming the agent, and nothing is created
    with pytest.raises(exceptions.BadRequest) as refused:
        sm.create_secret(request={"parent": parent, "secret_id": "db-password", "secret": secret})
    message = failed_precondition(refused.value)
    assert AGENT in message and "pubsub.topics.publish" in message
    with pytest.raises(exceptions.NotFound):
        sm.get_secret(request={"name": f"{parent}/secrets/db-password"})
    with pytest.raises(exceptions.BadRequest) as refused:  # a topic that does not exist
        sm.create_secret(request={"parent": parent, "secret_id": "db-password", "secret": {
            **secret, "topics": [{"name": f"projects/{PROJECT}/topics/never-made"}]}})
    assert "never-made does not exist" in failed_precondition(refused.value)

    grant_agent(srv, EVENTS)
    created = sm.create_secret(request={"parent": parent, "secret_id": "db-password", "secret": secret})
    name = created.name
    assert name == f"projects/{NUMBER}/secrets/db-password"
    version = sm.add_secret_version(request={"parent": name, "payload": {"data": b"s3cret"}})
    sm.disable_secret_version(request={"name": version.name})
    sm.enable_secret_version(request={"name": version.name})
    sm.update_secret(request={"secret": {"name": name, "labels": {"team": "db"}},
                              "update_mask": field_mask_pb2.FieldMask(paths=["labels"])})
    sm.get_secret(request={"name": name})  # reads publish nothing
    sm.access_secret_version(request={"name": version.name})
    sm.destroy_secret_version(request={"name": version.name})
    # a topic the agent cannot publish to is refused on update too, and the secret is unchanged
    with pytest.raises(exceptions.BadRequest) as refused:
        sm.update_secret(request={"secret": {"name": name, "topics": [{"name": EVENTS}, {"name": UNGRANTED}]},
                                  "update_mask": field_mask_pb2.FieldMask(paths=["topics"])})
    assert UNGRANTED in failed_precondition(refused.value)
    assert [t.name for t in sm.get_secret(request={"name": name}).topics] == [EVENTS]
    sm.delete_secret(request={"name": name})

    messages = drain(subscriber, 8)
    events = [m.attributes["eventType"] for m in messages]
    assert events == ["TOPIC_CONFIGURED", "SECRET_CREATE", "SECRET_VERSION_ADD", "SECRET_VERSION_DISABLE",
                      "SECRET_VERSION_ENABLE", "SECRET_UPDATE", "SECRET_VERSION_DESTROY", "SECRET_DELETE"], events
    assert dict(messages[0].attributes) == {"eventType": "TOPIC_CONFIGURED"} and messages[0].data == b""
    for m in messages[1:]:
        assert m.attributes["dataFormat"] == "JSON_API_V1" and m.attributes["secretId"] == name
        assert datetime.fromisoformat(m.attributes["timestamp"].replace("Z", "+00:00")) > \
            datetime.now(UTC) - timedelta(minutes=5)
    data = [json.loads(m.data) for m in messages[1:]]
    assert data[0]["name"] == name and data[0]["topics"] == [{"name": EVENTS}]  # the Secret
    assert data[1]["name"] == version.name and data[1]["state"] == "ENABLED"  # the SecretVersion
    assert messages[2].attributes["versionId"] == version.name and data[2]["state"] == "DISABLED"
    assert data[4]["labels"] == {"team": "db"}
    assert data[5]["state"] == "DESTROYED"
    assert "versionId" not in messages[7].attributes and data[6]["name"] == name


def test_rotation_schedule_publishes_secret_rotate_and_advances(srv: KeylessServer, clients: tuple[Any, Any]) -> None:
    sm, subscriber = clients
    grant_agent(srv, EVENTS)
    parent = f"projects/{PROJECT}"
    first = datetime.now(UTC) + timedelta(hours=1)
    base = {"replication": {"automatic": {}}, "topics": [{"name": EVENTS}]}
    periodic = sm.create_secret(request={"parent": parent, "secret_id": "api-key", "secret": {
        **base, "rotation": {"next_rotation_time": first, "rotation_period": timedelta(hours=2)}}})
    once = sm.create_secret(request={"parent": parent, "secret_id": "cert", "secret": {
        **base, "rotation": {"next_rotation_time": first}}})
    assert [m.attributes["eventType"] for m in drain(subscriber, 4)].count("SECRET_CREATE") == 2

    # the rotation times pass (Google refuses one less than 5 minutes ahead: the store is set back)
    state = server_state(srv)
    passed = datetime.now(UTC) - timedelta(seconds=1)
    with state.db.write() as s:
        for row in s.scalars(select(SmSecret).where(SmSecret.project_id == PROJECT)):
            body = dict(row.body)
            body["rotation"] = {**body["rotation"], "nextRotationTime": rfc3339(passed)}
            row.body = body
    # the serving process's check, as a thread (checking often, so the test need not wait)
    rotator = rotation.Rotator(state.db, state.authz, interval=0.05)
    rotator.start()
    try:
        messages = drain(subscriber, 2)
    finally:
        rotator.stop()
    assert [m.attributes["eventType"] for m in messages] == ["SECRET_ROTATE", "SECRET_ROTATE"], messages
    assert {m.attributes["secretId"] for m in messages} == {periodic.name, once.name}
    assert json.loads(messages[0].data)["name"] in (periodic.name, once.name)

    advanced = sm.get_secret(request={"name": periodic.name}).rotation.next_rotation_time
    assert abs((advanced - (passed + timedelta(hours=2))).total_seconds()) < 1, advanced
    assert "next_rotation_time" not in sm.get_secret(request={"name": once.name}).rotation  # fired once
    assert rotation.rotate_due(state.db, state.authz) == 0  # nothing is due twice
    assert drain(subscriber, 1, timeout=0.3) == []
