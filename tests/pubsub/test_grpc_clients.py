"""google-cloud-pubsub with its DEFAULT transport, gRPC, against Keyless's TLS port (issue #20):
PublisherClient (batching, ordering keys) and SubscriberClient.subscribe (StreamingPull with
FlowControl) pointed at Keyless with `client_options={"api_endpoint": ...}` and a token from
Keyless, as a user of the library does. The client trusts Keyless's CA through
GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (read when grpc loads, so the client runs in a subprocess).
Also the real gcloud: `gcloud pubsub topics create/publish`, `subscriptions create/pull --auto-ack`
through the pubsub override `keyless configure-gcloud` writes. And Pub/Sub schemas: SchemaServiceClient
over gRPC (every SchemaService RPC and the schema's IAM policy), a topic with schemaSettings published
to by PublisherClient (Google's googclient_* attributes; an invalid message's future fails with
INVALID_ARGUMENT), and `gcloud pubsub schemas create/describe/list/validate-message/commit`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.helpers import token_for_service_account
from tests.conftest import GCLOUD, Gcloud, KeylessServer, free_port, fresh_database_url

# Client matrices over the REST methods tests/pubsub/test_api.py runs on both stores.
pytestmark = pytest.mark.store_independent

PROJECT = "my-project"
PS = f"/pubsub/v1/projects/{PROJECT}"
APP_SA = "app-sa@my-project.iam.gserviceaccount.com"


def ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    tls_port = free_port()
    server = KeylessServer(tmp_path_factory.mktemp("psgrpc") / "data", fresh_database_url(), "--tls-port", str(tls_port))
    server.tls_port = tls_port  # type: ignore[attr-defined]
    assert server.keyless("projects", "create", PROJECT, "--number", "123456789").returncode == 0
    ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "app-sa"}))
    yield server
    server.stop()


# The client: steps named on the command line, each answer or error as one JSON object.
CLIENT = r'''
import json, sys, threading
from concurrent import futures
from google.api_core import exceptions
from google.cloud import pubsub_v1
import google.cloud.pubsub_v1.subscriber.exceptions
from google.oauth2.credentials import Credentials

endpoint, token, script = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
creds = Credentials(token)
options = {"api_endpoint": endpoint}
publisher = pubsub_v1.PublisherClient(
    credentials=creds, client_options=options,
    batch_settings=pubsub_v1.types.BatchSettings(max_messages=50, max_latency=0.05),
    publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True))
subscriber = pubsub_v1.SubscriberClient(credentials=creds, client_options=options)
out = {"transport": type(publisher._transport).__name__}
for step, (action, args) in enumerate(script):
    try:
        if action == "setup":
            topic = publisher.create_topic(request={"name": args["topic"], "labels": {"via": "grpc"}})
            sub = subscriber.create_subscription(request={"name": args["subscription"], "topic": topic.name,
                                                          "ack_deadline_seconds": 20,
                                                          "enable_message_ordering": True})
            got = publisher.get_topic(request={"topic": topic.name})
            listed = [t.name for t in publisher.list_topics(request={"project": args["project"]})]
            policy = publisher.get_iam_policy(request={"resource": topic.name})
            policy.bindings.add(role="roles/pubsub.publisher", members=[args["member"]])
            publisher.set_iam_policy(request={"resource": topic.name, "policy": policy})
            sub_policy = subscriber.get_iam_policy(request={"resource": sub.name})
            sub_policy.bindings.add(role="roles/pubsub.subscriber", members=[args["member"]])
            subscriber.set_iam_policy(request={"resource": sub.name, "policy": sub_policy})
            out[step] = {"topic": got.name, "labels": dict(got.labels), "subscription": sub.name,
                         "deadline": sub.ack_deadline_seconds, "listed": listed,
                         "roles": [b.role for b in publisher.get_iam_policy(request={"resource": topic.name}).bindings]}
        elif action == "publish_subscribe":
            n = args["count"]
            sent = [publisher.publish(args["topic"], f"m{i}".encode(), ordering_key="key-%d" % (i % 3), n=str(i))
                    for i in range(n)]
            ids = [f.result(timeout=30) for f in sent]
            received, lock, done, arrivals = {}, threading.Lock(), threading.Event(), []

            def callback(message):
                with lock:
                    arrivals.append((message.ordering_key, int(message.attributes["n"])))
                    received.setdefault(message.data.decode(), []).append(
                        (message.attributes["n"], message.ordering_key, message.message_id))
                message.ack()
                if len(received) >= n:
                    done.set()

            future = subscriber.subscribe(args["subscription"], callback,
                                          flow_control=pubsub_v1.types.FlowControl(max_messages=args["flow"]))
            done.wait(60)
            future.cancel()
            try:
                future.result(timeout=10)
            except Exception:
                pass
            per_key = {}
            for key, n_ in arrivals:
                if n_ not in per_key.setdefault(key, []):
                    per_key[key].append(n_)
            out[step] = {"published": len(set(ids)), "received": sorted(received), "ids": sorted(ids) == sorted(
                         d[0][2] for d in received.values()), "in_order": all(v == sorted(v) for v in per_key.values()),
                         "keys": sorted(per_key)}
        elif action == "exactly_once":
            sub = subscriber.create_subscription(request={"name": args["subscription"], "topic": args["topic"],
                                                          "enable_exactly_once_delivery": True})
            publisher.publish(args["topic"], b"once").result(timeout=30)
            got, done = {}, threading.Event()

            def callback(message):
                first = message.ack_with_response()
                try:
                    got["first"] = first.result(timeout=30).name
                except Exception as e:
                    got["first"] = repr(e)
                second = message.ack_with_response()  # acked already: its ack id is no longer valid
                try:
                    got["second"] = second.result(timeout=30).name
                except pubsub_v1.subscriber.exceptions.AcknowledgeError as e:
                    got["second"] = e.error_code.name
                got["data"] = message.data.decode()
                done.set()

            future = subscriber.subscribe(args["subscription"], callback)
            done.wait(60)
            future.cancel()
            try:
                future.result(timeout=10)
            except Exception:
                pass
            out[step] = {"enabled": sub.enable_exactly_once_delivery, **got}
        elif action == "push_config":
            push = subscriber.create_subscription(request={
                "name": args["subscription"], "topic": args["topic"],
                "push_config": {"push_endpoint": args["endpoint"], "no_wrapper": {"write_metadata": True},
                                "oidc_token": {"service_account_email": args["account"], "audience": "aud"}}})
            subscriber.modify_push_config(request={"subscription": push.name, "push_config": {}})
            pulled = subscriber.get_subscription(request={"subscription": push.name})
            out[step] = {"endpoint": push.push_config.push_endpoint,
                         "account": push.push_config.oidc_token.service_account_email,
                         "write_metadata": push.push_config.no_wrapper.write_metadata,
                         "after_modify": pulled.push_config.push_endpoint}
        elif action == "pull_denied":
            response = subscriber.pull(request={"subscription": args["subscription"], "max_messages": 1})
            out[step] = {"messages": len(response.received_messages)}
        elif action == "publish_one":
            out[step] = {"id": publisher.publish(args["topic"], b"x").result(timeout=30)}
        elif action == "get_topic":
            out[step] = {"name": publisher.get_topic(request={"topic": args["topic"]}).name}
        elif action == "stream_denied":
            future = subscriber.subscribe(args["subscription"], lambda m: m.ack())
            try:
                future.result(timeout=30)
                out[step] = {"ended": True}
            except exceptions.GoogleAPICallError as e:
                out[step] = {"error": type(e).__name__, "message": e.message}
    except exceptions.GoogleAPICallError as e:
        out[step] = {"error": type(e).__name__, "grpc": e.grpc_status_code.name if e.grpc_status_code else None,
                     "message": e.message}
    except futures.TimeoutError:
        out[step] = {"error": "timeout"}
publisher.stop()
print(json.dumps(out))
'''


def run_client(srv: KeylessServer, tmp_path: Path, token: str, script: list[Any]) -> dict[str, Any]:
    (tmp_path / "client.py").write_text(CLIENT)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GRPC_", "PUBSUB_"))},
           "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(srv.data_dir / "tls" / "ca.pem")}
    endpoint = f"localhost:{srv.tls_port}"  # type: ignore[attr-defined]
    run = subprocess.run([sys.executable, str(tmp_path / "client.py"), endpoint, token, json.dumps(script)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:] + srv.logs()[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out.pop("transport") == "PublisherGrpcTransport"  # the default: gRPC, not REST
    return out


def test_publisher_batches_and_streaming_pull_delivers_everything(srv: KeylessServer, tmp_path: Path) -> None:
    topic, sub = f"projects/{PROJECT}/topics/grpc-topic", f"projects/{PROJECT}/subscriptions/grpc-sub"
    out = run_client(srv, tmp_path, srv.owner_token, [
        ("setup", {"topic": topic, "subscription": sub, "project": f"projects/{PROJECT}",
                   "member": f"serviceAccount:{APP_SA}"}),
        ("publish_subscribe", {"topic": topic, "subscription": sub, "count": 30, "flow": 5}),
    ])
    assert out["0"] == {"topic": topic, "labels": {"via": "grpc"}, "subscription": sub, "deadline": 20,
                        "listed": [topic], "roles": ["roles/pubsub.publisher"]}
    delivered = out["1"]
    assert delivered["published"] == 30 and delivered["received"] == sorted(f"m{i}" for i in range(30))
    assert delivered["ids"] is True  # each message arrived under the id its publish returned
    # ordering keys: each key's messages arrived in the order they were published
    assert delivered["keys"] == ["key-0", "key-1", "key-2"] and delivered["in_order"] is True
    # REST sees the same state: nothing left to pull, and the IAM binding made over gRPC
    assert ok(srv.call("POST", f"{PS}/subscriptions/grpc-sub:pull", body={"maxMessages": 10})) == {}
    policy = ok(srv.call("GET", f"{PS}/subscriptions/grpc-sub:getIamPolicy"))
    assert policy["bindings"] == [{"role": "roles/pubsub.subscriber", "members": [f"serviceAccount:{APP_SA}"]}]

    # the service account: publish and stream on what it was granted, refused elsewhere in Google's words
    ok(srv.call("PUT", f"{PS}/topics/not-yours", body={}))
    ok(srv.call("PUT", f"{PS}/subscriptions/not-yours-sub", body={"topic": f"projects/{PROJECT}/topics/not-yours"}))
    token = token_for_service_account(srv, APP_SA)
    out = run_client(srv, tmp_path, token, [
        ("publish_one", {"topic": topic}),
        ("get_topic", {"topic": f"projects/{PROJECT}/topics/not-yours"}),
        ("stream_denied", {"subscription": f"projects/{PROJECT}/subscriptions/not-yours-sub"}),
        ("get_topic", {"topic": f"projects/{PROJECT}/topics/missing"}),
    ])
    assert out["0"]["id"].isdigit()
    assert out["1"] == {"error": "PermissionDenied", "grpc": "PERMISSION_DENIED",
                        "message": "User not authorized to perform this action."}
    assert out["2"] == {"error": "PermissionDenied", "message": "User not authorized to perform this action."}
    assert out["3"]["grpc"] == "PERMISSION_DENIED"  # no grant there: a stranger cannot tell it is missing
    pulled = ok(srv.call("POST", f"{PS}/subscriptions/grpc-sub:pull", body={"maxMessages": 10}))
    assert [base64.b64decode(r["message"]["data"]) for r in pulled["receivedMessages"]] == [b"x"]


def test_exactly_once_ack_futures_and_push_configs(srv: KeylessServer, tmp_path: Path) -> None:
    topic, sub = f"projects/{PROJECT}/topics/once-topic", f"projects/{PROJECT}/subscriptions/once-sub"
    ok(srv.call("PUT", f"{PS}/topics/once-topic", body={}))
    out = run_client(srv, tmp_path, srv.owner_token, [
        ("exactly_once", {"topic": topic, "subscription": sub}),
        ("push_config", {"topic": topic, "subscription": sub + "-push", "endpoint": "http://127.0.0.1:9/push",
                         "account": APP_SA})])
    # ack_with_response(): the first ack succeeds; the second, of an ack id already used, fails as on Google
    assert out["0"] == {"enabled": True, "first": "SUCCESS", "second": "INVALID_ACK_ID", "data": "once"}
    # a push config over gRPC (transcoded to REST): kept as given, and modifyPushConfig makes it pull again
    assert out["1"] == {"endpoint": "http://127.0.0.1:9/push", "account": APP_SA, "write_metadata": True,
                        "after_modify": ""}
    assert ok(srv.call("POST", f"{PS}/subscriptions/once-sub:pull", body={"maxMessages": 10})) == {}


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed: needs the Google Cloud CLI on PATH")
def test_gcloud_pubsub_topics_and_subscriptions(srv: KeylessServer, tmp_path: Path) -> None:
    g = Gcloud(srv, tmp_path / "gcloud", project=PROJECT)
    g.run("pubsub", "topics", "create", "gcloud-topic")
    g.run("pubsub", "subscriptions", "create", "gcloud-sub", "--topic", "gcloud-topic", "--ack-deadline", "30")
    published = g.json("pubsub", "topics", "publish", "gcloud-topic", "--message", "hello from gcloud",
                       "--attribute", "origin=cli")
    assert len(published["messageIds"]) == 1
    pulled = g.json("pubsub", "subscriptions", "pull", "gcloud-sub", "--auto-ack", "--limit", "5")
    assert [p["message"]["data"] for p in pulled] == [base64.b64encode(b"hello from gcloud").decode()]
    assert pulled[0]["message"]["attributes"] == {"origin": "cli"}
    assert pulled[0]["message"]["messageId"] == published["messageIds"][0]
    # acked by --auto-ack: nothing left
    assert ok(srv.call("POST", f"{PS}/subscriptions/gcloud-sub:pull", body={"maxMessages": 5})) == {}


def test_hostile_streaming_pull_requests_are_refused(srv: KeylessServer) -> None:
    """Raw StreamingPull requests no library would send: a name that is no subscription's, an ack
    deadline out of Google's bounds, a missing credential; each ends the stream with Google's code."""
    import grpc
    from google.pubsub_v1.types import pubsub

    ca = (srv.data_dir / "tls" / "ca.pem").read_bytes()
    channel = grpc.secure_channel(f"localhost:{srv.tls_port}",  # type: ignore[attr-defined]
                                  grpc.ssl_channel_credentials(root_certificates=ca))
    stream = channel.stream_stream("/google.pubsub.v1.Subscriber/StreamingPull",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=pubsub.StreamingPullResponse.pb().FromString)
    auth = (("authorization", f"Bearer {srv.owner_token}"),)
    ok(srv.call("PUT", f"{PS}/topics/hostile-topic", body={}))
    ok(srv.call("PUT", f"{PS}/subscriptions/hostile-sub", body={"topic": f"projects/{PROJECT}/topics/hostile-topic"}))
    good = f"projects/{PROJECT}/subscriptions/hostile-sub"
    cases = [(pubsub.StreamingPullRequest.pb()(subscription="projects/x/topics/../../etc", stream_ack_deadline_seconds=10),
              auth, grpc.StatusCode.INVALID_ARGUMENT),
             (pubsub.StreamingPullRequest.pb()(subscription=good, stream_ack_deadline_seconds=100000), auth,
              grpc.StatusCode.INVALID_ARGUMENT),
             (pubsub.StreamingPullRequest.pb()(subscription=good, stream_ack_deadline_seconds=10,
                                               ack_ids=["not-an-ack-id"]), auth, grpc.StatusCode.INVALID_ARGUMENT),
             (pubsub.StreamingPullRequest.pb()(subscription=good, stream_ack_deadline_seconds=10), (),
              grpc.StatusCode.UNAUTHENTICATED)]
    stop = threading.Event()

    def held_open(request: Any) -> Iterator[Any]:  # the client keeps its side open, as libraries do
        yield request
        stop.wait(30)

    try:
        for request, metadata, code in cases:
            with pytest.raises(grpc.RpcError) as raised:
                for _ in stream(held_open(request), metadata=metadata, timeout=20):
                    pass
            assert raised.value.code() == code, (request, raised.value)
    finally:
        stop.set()
        channel.close()


def test_streaming_pull_honours_max_outstanding_messages(srv: KeylessServer) -> None:
    """The server's side of flow control: a stream with max_outstanding_messages=2 gets two messages,
    and two more only once those are acked on the stream."""
    import queue

    import grpc
    from google.pubsub_v1.types import pubsub

    ok(srv.call("PUT", f"{PS}/topics/flow-topic", body={}))
    ok(srv.call("PUT", f"{PS}/subscriptions/flow-sub", body={"topic": f"projects/{PROJECT}/topics/flow-topic"}))
    ok(srv.call("POST", f"{PS}/topics/flow-topic:publish", body={"messages": [
        {"data": base64.b64encode(f"f{i}".encode()).decode()} for i in range(5)]}))
    ca = (srv.data_dir / "tls" / "ca.pem").read_bytes()
    channel = grpc.secure_channel(f"localhost:{srv.tls_port}",  # type: ignore[attr-defined]
                                  grpc.ssl_channel_credentials(root_certificates=ca))
    stream = channel.stream_stream("/google.pubsub.v1.Subscriber/StreamingPull",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=pubsub.StreamingPullResponse.pb().FromString)
    outbox: queue.Queue[Any] = queue.Queue()
    Request = pubsub.StreamingPullRequest.pb()
    outbox.put(Request(subscription=f"projects/{PROJECT}/subscriptions/flow-sub", stream_ack_deadline_seconds=60,
                       max_outstanding_messages=2))

    def requests() -> Iterator[Any]:
        while (item := outbox.get()) is not None:
            yield item

    responses = stream(requests(), metadata=(("authorization", f"Bearer {srv.owner_token}"),), timeout=60)
    seen: list[str] = []
    try:
        for response in responses:
            batch = [m.message.data.decode() for m in response.received_messages]
            assert 0 < len(batch) <= 2, batch  # never more than the two the stream may hold
            seen += batch
            if len(seen) == 5:
                break
            outbox.put(Request(ack_ids=[m.ack_id for m in response.received_messages]))
    finally:
        outbox.put(None)
        responses.cancel()
        channel.close()
    assert sorted(seen) == [f"f{i}" for i in range(5)]


# -- Pub/Sub schemas (issue #20): SchemaServiceClient over gRPC, a topic with schemaSettings
# published to by PublisherClient, and `gcloud pubsub schemas` -------------------------------------

SCHEMA_STATE = {"type": "record", "name": "State", "namespace": "utilities",
                "fields": [{"name": "name", "type": "string"}, {"name": "post_abbr", "type": "string"}]}


SCHEMA_CLIENT = r'''
import json, sys, threading
from google.api_core import exceptions
from google.cloud import pubsub_v1
from google.pubsub_v1 import SchemaServiceClient
from google.pubsub_v1.types import Encoding, Schema, SchemaView
from google.oauth2.credentials import Credentials

endpoint, token, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
creds = Credentials(token)
options = {"api_endpoint": endpoint}
schemas = SchemaServiceClient(credentials=creds, client_options=options)
publisher = pubsub_v1.PublisherClient(credentials=creds, client_options=options)
subscriber = pubsub_v1.SubscriberClient(credentials=creds, client_options=options)
out = {"transport": type(schemas._transport).__name__}
project, definition, v2 = args["project"], args["definition"], args["definition_v2"]


def attempt(key, fn):
    try:
        out[key] = fn()
    except exceptions.GoogleAPICallError as e:
        out[key] = {"error": type(e).__name__, "message": e.message,
                    "reasons": [getattr(d, "reason", "") for d in e.details or []]}


if args["mode"] == "owner":
    made = schemas.create_schema(request={"parent": project, "schema_id": "grpc-states",
                                          "schema": {"type_": Schema.Type.AVRO, "definition": definition}})
    name = made.name
    out["created"] = {"name": name, "type": Schema.Type(made.type_).name, "revision": made.revision_id}
    out["get"] = schemas.get_schema(request={"name": name}).definition == definition
    out["basic"] = schemas.get_schema(request={"name": name, "view": SchemaView.BASIC}).definition
    out["list"] = [s.name for s in schemas.list_schemas(request={"parent": project})]
    second = schemas.commit_schema(request={"name": name, "schema": {"type_": Schema.Type.AVRO, "definition": v2}})
    out["revisions"] = [s.revision_id for s in schemas.list_schema_revisions(
        request={"name": name, "view": SchemaView.FULL})]
    out["second"] = second.revision_id
    rolled = schemas.rollback_schema(request={"name": name, "revision_id": made.revision_id})
    out["rolled_definition"] = rolled.definition == definition
    after = schemas.delete_schema_revision(request={"name": f"{name}@{second.revision_id}"})
    out["after_delete_revision"] = after.revision_id == rolled.revision_id
    schemas.validate_schema(request={"parent": project, "schema": {"type_": Schema.Type.AVRO, "definition": v2}})
    schemas.validate_message(request={"parent": project, "name": name, "encoding": Encoding.JSON,
                                      "message": json.dumps({"name": "Utah", "post_abbr": "UT"}).encode()})
    attempt("invalid_message", lambda: schemas.validate_message(request={
        "parent": project, "name": name, "encoding": Encoding.JSON, "message": b'{"name": 1}'}))
    attempt("invalid_schema", lambda: schemas.validate_schema(request={
        "parent": project, "schema": {"type_": Schema.Type.AVRO, "definition": '{"type": "nope"}'}}))
    policy = schemas.get_iam_policy(request={"resource": name})
    policy.bindings.add(role="roles/pubsub.viewer", members=[args["member"]])
    schemas.set_iam_policy(request={"resource": name, "policy": policy})
    out["roles"] = [b.role for b in schemas.get_iam_policy(request={"resource": name}).bindings]

    topic = publisher.create_topic(request={"name": args["topic"], "schema_settings": {
        "schema": name, "encoding": Encoding.JSON}})
    out["topic_schema"] = topic.schema_settings.schema
    sub = subscriber.create_subscription(request={"name": args["subscription"], "topic": topic.name})
    good = publisher.publish(topic.name, json.dumps({"name": "Utah", "post_abbr": "UT"}).encode(), origin="grpc")
    out["good"] = good.result(timeout=30).isdigit()
    bad = publisher.publish(topic.name, b'{"name": "Utah"}')
    try:
        bad.result(timeout=30)
        out["bad"] = "published"
    except exceptions.GoogleAPICallError as e:
        out["bad"] = {"error": type(e).__name__, "message": e.message}
    pulled = subscriber.pull(request={"subscription": sub.name, "max_messages": 10})
    out["attributes"] = [dict(r.message.attributes) for r in pulled.received_messages]
else:
    name = args["name"]
    out["get"] = schemas.get_schema(request={"name": name}).name
    attempt("commit", lambda: schemas.commit_schema(request={"name": name, "schema": {
        "type_": Schema.Type.AVRO, "definition": definition}}).name)
    attempt("create", lambda: schemas.create_schema(request={"parent": project, "schema_id": "not-mine",
        "schema": {"type_": Schema.Type.AVRO, "definition": definition}}).name)
    out["permissions"] = list(schemas.test_iam_permissions(request={
        "resource": name, "permissions": ["pubsub.schemas.get", "pubsub.schemas.commit"]}).permissions)
publisher.stop()
print(json.dumps(out))
'''


def run_schema_client(srv: KeylessServer, tmp_path: Path, token: str, args: dict[str, Any]) -> dict[str, Any]:
    (tmp_path / "client.py").write_text(SCHEMA_CLIENT)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GRPC_", "PUBSUB_"))},
           "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(srv.data_dir / "tls" / "ca.pem")}
    endpoint = f"localhost:{srv.tls_port}"  # type: ignore[attr-defined]
    run = subprocess.run([sys.executable, str(tmp_path / "client.py"), endpoint, token, json.dumps(args)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:] + srv.logs()[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out.pop("transport") == "SchemaServiceGrpcTransport"  # the default: gRPC, not REST
    return out


def test_schema_service_client_and_publisher_over_grpc(srv: KeylessServer, tmp_path: Path) -> None:
    definition = json.dumps(SCHEMA_STATE)
    v2 = json.dumps({**SCHEMA_STATE, "fields": [*SCHEMA_STATE["fields"], {"name": "capital", "type": ["null", "string"],
                                                             "default": None}]})
    common = {"project": f"projects/{PROJECT}", "definition": definition, "definition_v2": v2}
    out = run_schema_client(srv, tmp_path, srv.owner_token, {
        **common, "mode": "owner", "member": f"serviceAccount:{APP_SA}",
        "topic": f"projects/{PROJECT}/topics/grpc-validated", "subscription": f"projects/{PROJECT}/subscriptions/grpc-validated-sub"})
    name = f"projects/{PROJECT}/schemas/grpc-states"
    first = out["created"]["revision"]
    assert out["created"]["name"] == name and out["created"]["type"] == "AVRO" and len(first) == 8
    assert out["get"] is True and out["basic"] == "" and out["list"] == [name]
    assert out["revisions"] == [out["second"], first]
    assert out["rolled_definition"] is True and out["after_delete_revision"] is True
    assert out["invalid_message"]["error"] == "InvalidArgument"
    assert out["invalid_message"]["message"] == "Invalid data in message: Message failed schema validation."
    assert out["invalid_message"]["reasons"] == ["INVALID_JSON_AVRO_MESSAGE"]
    assert out["invalid_schema"]["error"] == "InvalidArgument"
    assert out["roles"] == ["roles/pubsub.viewer"]
    # the topic with schema settings: the valid message published, the invalid one's future failed
    assert out["topic_schema"] == name and out["good"] is True
    assert out["bad"] == {"error": "InvalidArgument",
                          "message": "Invalid data in message: Message failed schema validation."}
    [attributes] = out["attributes"]
    revision = ok(srv.call("GET", f"{PS}/schemas/grpc-states"))["revisionId"]
    assert attributes == {"origin": "grpc", "googclient_schemaname": name, "googclient_schemaencoding": "JSON",
                          "googclient_schemarevisionid": revision}

    # the viewer bound on the schema: reads it, may not commit or create
    viewer = run_schema_client(srv, tmp_path, token_for_service_account(srv, APP_SA),
                        {**common, "mode": "viewer", "name": name})
    assert viewer["get"] == name
    assert viewer["commit"]["error"] == "PermissionDenied"
    assert viewer["commit"]["message"] == "User not authorized to perform this action."
    assert viewer["create"]["error"] == "PermissionDenied"
    assert viewer["permissions"] == ["pubsub.schemas.get"]
    assert len(ok(srv.call("GET", f"{PS}/schemas/grpc-states:listRevisions"))["schemas"]) == 2  # no commit landed


@pytest.mark.skipif(GCLOUD is None, reason="gcloud is not installed: needs the Google Cloud CLI on PATH")
def test_gcloud_pubsub_schemas(srv: KeylessServer, tmp_path: Path) -> None:
    g = Gcloud(srv, tmp_path / "gcloud", project=PROJECT)
    made = g.json("pubsub", "schemas", "create", "cli-states", "--type", "avro", "--definition", json.dumps(SCHEMA_STATE))
    assert made["name"] == f"projects/{PROJECT}/schemas/cli-states" and made["type"] == "AVRO"
    described = g.json("pubsub", "schemas", "describe", "cli-states")
    assert json.loads(described["definition"]) == SCHEMA_STATE and described["revisionId"] == made["revisionId"]
    assert f"projects/{PROJECT}/schemas/cli-states" in [s["name"] for s in g.json("pubsub", "schemas", "list")]
    g.run("pubsub", "schemas", "validate-message", "--schema-name", "cli-states", "--message-encoding", "json",
          "--message", json.dumps({"name": "Ohio", "post_abbr": "OH"}))
    refused = g.run("pubsub", "schemas", "validate-message", "--schema-name", "cli-states", "--message-encoding",
                    "json", "--message", '{"name": 1}', check=False)
    assert refused.returncode != 0 and "Message failed schema validation" in refused.stderr
    committed = g.json("pubsub", "schemas", "commit", "cli-states", "--type", "avro", "--definition",
                       json.dumps({**SCHEMA_STATE, "doc": "second"}))
    assert committed["revisionId"] != made["revisionId"]
    revisions = ok(srv.call("GET", f"{PS}/schemas/cli-states:listRevisions"))["schemas"]
    assert [r["revisionId"] for r in revisions] == [committed["revisionId"], made["revisionId"]]
