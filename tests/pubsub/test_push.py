"""Pub/Sub push subscriptions against a real `keyless serve` (issue #20): a real HTTP endpoint on
loopback in this process receives Google's wrapped (or unwrapped) pushes with an ID token that
google-auth verifies against Keyless's certs URL; a failing endpoint is retried with backoff, then
acked; dead letters; modifyPushConfig switches between pull and push; non-loopback endpoints are
refused; iam.serviceAccounts.actAs is enforced on whoever attaches a token's account. One server
and one endpoint for the file."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from google.auth.transport.requests import Request
from google.oauth2 import id_token
from sqlalchemy import func, select

from keyless.store.models import AuditEntry, PsDelivery, PsSubscription
from tests.api.helpers import server_state, token_for_service_account
from tests.conftest import KeylessServer

PROJECT = "push-project"
PS = f"/pubsub/v1/projects/{PROJECT}"
PUSHER_SA = f"pusher@{PROJECT}.iam.gserviceaccount.com"
DEV_SA = f"developer@{PROJECT}.iam.gserviceaccount.com"
DENIED = "User not authorized to perform this action."


class Endpoint:
    """A push endpoint: records every request per path; `fail[path]` requests answer 503 first."""

    def __init__(self) -> None:
        self.requests: dict[str, list[dict[str, Any]]] = {}
        self.fail: dict[str, int] = {}
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with endpoint.lock:
                    endpoint.requests.setdefault(self.path, []).append(
                        {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                         "at": time.monotonic()})
                    failing = endpoint.fail.get(self.path, 0)
                    if failing:
                        endpoint.fail[self.path] = failing - 1
                status = 503 if failing else 204
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, path: str, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                got = list(self.requests.get(path, []))
            if len(got) >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(got)} pushes of {n} after {timeout} s")

    def count(self, path: str) -> int:
        with self.lock:
            return len(self.requests.get(path, []))


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
    out = module_server.keyless("projects", "create", PROJECT, "--number", "246813579")
    assert out.returncode == 0, out.stderr
    for account in ("pusher", "developer"):
        ok(module_server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account}))
    for topic_id in ("events", "dead"):
        ok(module_server.call("PUT", f"{PS}/topics/{topic_id}", body={}))
    return module_server


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    yield ep
    ep.server.shutdown()


def subscribe(srv: KeylessServer, sub_id: str, token: str | None = None, **body: Any) -> httpx.Response:
    return srv.call("PUT", f"{PS}/subscriptions/{sub_id}", token=token,
                    body={"topic": f"projects/{PROJECT}/topics/events", **body})


def publish(srv: KeylessServer, *messages: dict[str, Any]) -> list[str]:
    return list(ok(srv.call("POST", f"{PS}/topics/events:publish", body={"messages": list(messages)}))["messageIds"])


def backlog(srv: KeylessServer, sub_id: str) -> int:
    with server_state(srv).db.read() as s:
        uid = s.scalar(select(PsSubscription.uid).where(PsSubscription.subscription_id == sub_id))
        return int(s.scalar(select(func.count()).select_from(PsDelivery).where(PsDelivery.subscription_uid == uid))
                   or 0)


def wait_backlog(srv: KeylessServer, sub_id: str, n: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while backlog(srv, sub_id) != n:
        assert time.monotonic() < end, f"{sub_id}: backlog {backlog(srv, sub_id)}, wanted {n}"
        time.sleep(0.05)


def test_wrapped_push_carries_an_id_token_google_auth_verifies(srv: KeylessServer, endpoint: Endpoint) -> None:
    push = {"pushEndpoint": f"{endpoint.url}/wrapped",
            "oidcToken": {"serviceAccountEmail": PUSHER_SA, "audience": "https://push.example.com/handler"}}
    created = ok(subscribe(srv, "wrapped", pushConfig=push, ackDeadlineSeconds=10))
    assert created["pushConfig"] == push
    assert ok(srv.call("GET", f"{PS}/subscriptions/wrapped"))["pushConfig"] == push
    [message_id] = publish(srv, {"data": base64.b64encode(b"hello push").decode(), "attributes": {"k": "v"},
                                 "orderingKey": "order-1"})
    [got] = endpoint.wait("/wrapped", 1)
    body = json.loads(got["body"])
    assert got["headers"]["content-type"] == "application/json"
    assert set(body) == {"message", "subscription"}  # no deliveryAttempt without a dead-letter policy
    assert body["subscription"] == f"projects/{PROJECT}/subscriptions/wrapped"
    message = body["message"]
    assert base64.b64decode(message["data"]) == b"hello push"
    assert message["attributes"] == {"k": "v"} and message["orderingKey"] == "order-1"
    assert message["messageId"] == message["message_id"] == message_id
    assert message["publishTime"] == message["publish_time"]

    scheme, _, token = got["headers"]["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = id_token.verify_token(token, Request(), audience="https://push.example.com/handler",
                                   certs_url=f"{srv.base_url}/oauth2/v3/certs")
    assert claims["iss"] == "https://accounts.google.com"
    assert claims["email"] == PUSHER_SA and claims["email_verified"] is True
    with server_state(srv).db.read() as s:
        from keyless.store.models import ServiceAccount

        unique_id = s.scalar(select(ServiceAccount.unique_id).where(ServiceAccount.email == PUSHER_SA))
    assert claims["sub"] == unique_id
    with pytest.raises(Exception, match="(?i)audience"):  # another audience's verifier refuses it
        id_token.verify_token(token, Request(), audience="https://elsewhere.example.com",
                              certs_url=f"{srv.base_url}/oauth2/v3/certs")
    wait_backlog(srv, "wrapped", 0)  # a 204 acked it
    assert endpoint.count("/wrapped") == 1

    # without an audience the token's aud is the endpoint URL
    push = {"pushEndpoint": f"{endpoint.url}/no-audience", "oidcToken": {"serviceAccountEmail": PUSHER_SA}}
    ok(srv.call("POST", f"{PS}/subscriptions/wrapped:modifyPushConfig", body={"pushConfig": push}))
    publish(srv, {"data": base64.b64encode(b"second").decode()})
    [got] = endpoint.wait("/no-audience", 1)
    token = got["headers"]["authorization"].split(" ", 1)[1]
    claims = id_token.verify_token(token, Request(), audience=f"{endpoint.url}/no-audience",
                                   certs_url=f"{srv.base_url}/oauth2/v3/certs")
    assert claims["email"] == PUSHER_SA


def test_failing_endpoint_is_retried_with_backoff_then_acked_and_dead_lettered(
        srv: KeylessServer, endpoint: Endpoint) -> None:
    ok(srv.call("PUT", f"{PS}/subscriptions/dead-sub", body={"topic": f"projects/{PROJECT}/topics/dead"}))
    dead_letter = {"deadLetterTopic": f"projects/{PROJECT}/topics/dead", "maxDeliveryAttempts": 5}
    ok(subscribe(srv, "flaky", pushConfig={"pushEndpoint": f"{endpoint.url}/flaky"}, deadLetterPolicy=dead_letter))
    endpoint.fail["/flaky"] = 2
    publish(srv, {"data": base64.b64encode(b"retry me").decode()})
    got = endpoint.wait("/flaky", 3)
    attempts = [json.loads(r["body"])["deliveryAttempt"] for r in got]
    assert attempts == [1, 2, 3]
    # Google's push backoff without a retry policy: 100 ms, then 200 ms
    assert got[1]["at"] - got[0]["at"] >= 0.09 and got[2]["at"] - got[1]["at"] >= 0.19
    assert "authorization" not in got[0]["headers"]  # no oidcToken, no token
    wait_backlog(srv, "flaky", 0)
    time.sleep(0.3)
    assert endpoint.count("/flaky") == 3  # acked: never pushed again

    # an endpoint that always fails: retried maxDeliveryAttempts times, then dead-lettered
    ok(subscribe(srv, "doomed", pushConfig={"pushEndpoint": f"{endpoint.url}/doomed"}, deadLetterPolicy=dead_letter,
                 retryPolicy={"minimumBackoff": "0.1s", "maximumBackoff": "0.2s"}))
    ok(srv.call("POST", f"{PS}/subscriptions/flaky:modifyPushConfig", body={"pushConfig": {}}))  # pull now
    endpoint.fail["/doomed"] = 1000
    publish(srv, {"data": base64.b64encode(b"poison").decode()})
    got = endpoint.wait("/doomed", 5)
    wait_backlog(srv, "doomed", 0)
    assert endpoint.count("/doomed") == 5
    pulled = ok(srv.call("POST", f"{PS}/subscriptions/dead-sub:pull", body={"maxMessages": 10}))["receivedMessages"]
    [forwarded] = [r for r in pulled if base64.b64decode(r["message"]["data"]) == b"poison"]
    assert forwarded["message"]["attributes"]["CloudPubSubDeadLetterSourceSubscription"] == "doomed"
    assert forwarded["message"]["attributes"]["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"


def test_ordered_push_sends_one_key_in_order_and_waits_for_a_failed_one(srv: KeylessServer,
                                                                         endpoint: Endpoint) -> None:
    ok(srv.call("PUT", f"{PS}/topics/ordered", body={}))
    ok(srv.call("PUT", f"{PS}/subscriptions/ordered-push", body={
        "topic": f"projects/{PROJECT}/topics/ordered", "enableMessageOrdering": True,
        "pushConfig": {"pushEndpoint": f"{endpoint.url}/ordered"}}))
    endpoint.fail["/ordered"] = 1  # the first message fails once: the others of its key must wait
    ok(srv.call("POST", f"{PS}/topics/ordered:publish", body={"messages": [
        {"data": base64.b64encode(f"m{i}".encode()).decode(), "orderingKey": "k"} for i in range(4)]}))
    got = endpoint.wait("/ordered", 5)
    sent = [base64.b64decode(json.loads(r["body"])["message"]["data"]).decode() for r in got]
    assert sent == ["m0", "m0", "m1", "m2", "m3"]
    wait_backlog(srv, "ordered-push", 0)


def test_unwrapped_push_writes_metadata_as_headers(srv: KeylessServer, endpoint: Endpoint) -> None:
    push = {"pushEndpoint": f"{endpoint.url}/raw", "noWrapper": {"writeMetadata": True}}
    assert ok(subscribe(srv, "raw", pushConfig=push))["pushConfig"] == push
    [message_id] = publish(srv, {"data": base64.b64encode(b'{"status": "hi"}').decode(),
                                 "attributes": {"Content-Type": "application/json", "bad header": "x",
                                                "Authorization": "Bearer forged", "x-goog-pubsub-message-id": "7"}})
    [got] = endpoint.wait("/raw", 1)
    assert got["body"] == b'{"status": "hi"}'
    headers = got["headers"]
    assert headers["x-goog-pubsub-subscription-name"] == f"projects/{PROJECT}/subscriptions/raw"
    assert headers["x-goog-pubsub-message-id"] == message_id and headers["x-goog-pubsub-publish-time"]
    assert headers["content-type"] == "application/json"  # the attribute, as a header
    assert "bad header" not in headers  # not a valid header name: left out rather than smuggled
    assert "authorization" not in headers  # a publisher cannot forge the push's token, nor its metadata
    wait_backlog(srv, "raw", 0)


def test_modify_push_config_switches_between_pull_and_push(srv: KeylessServer, endpoint: Endpoint) -> None:
    ok(subscribe(srv, "switch"))
    publish(srv, {"data": base64.b64encode(b"while pulling").decode()})
    assert backlog(srv, "switch") == 1
    ok(srv.call("POST", f"{PS}/subscriptions/switch:modifyPushConfig",
                body={"pushConfig": {"pushEndpoint": f"{endpoint.url}/switch"}}))
    [got] = endpoint.wait("/switch", 1)  # the backlog is pushed
    assert base64.b64decode(json.loads(got["body"])["message"]["data"]) == b"while pulling"
    wait_backlog(srv, "switch", 0)
    ok(srv.call("PATCH", f"{PS}/subscriptions/switch", body={"subscription": {"pushConfig": {}},
                                                             "updateMask": "pushConfig"}))
    assert ok(srv.call("GET", f"{PS}/subscriptions/switch"))["pushConfig"] == {}
    publish(srv, {"data": base64.b64encode(b"pull me").decode()})
    pulled = ok(srv.call("POST", f"{PS}/subscriptions/switch:pull", body={"maxMessages": 5}))["receivedMessages"]
    assert [base64.b64decode(r["message"]["data"]) for r in pulled] == [b"pull me"]
    assert endpoint.count("/switch") == 1
    entries = []
    with server_state(srv).db.read() as s:
        entries = [r.entry for r in s.scalars(select(AuditEntry).where(
            AuditEntry.method_name == "google.pubsub.v1.Subscriber.ModifyPushConfig"))]
    assert any(e["protoPayload"]["resourceName"] == f"projects/{PROJECT}/subscriptions/switch" for e in entries)


REFUSED = ["http://10.0.0.1/push", "https://example.com/push", "http://localhost:8080/push", "http://0.0.0.0/push",
           "http://169.254.169.254/computeMetadata/v1/", "http://[::ffff:10.0.0.1]/", "ftp://127.0.0.1/push",
           "http://user:pw@127.0.0.1/push", "http://127.0.0.1:99999/push", "http://127.0.0.1.nip.io/push",
           "http://2130706433/push", "http://" + "1" * 3000, 42]


def test_only_loopback_endpoints_are_accepted(srv: KeylessServer) -> None:
    kept = {"pushEndpoint": "http://127.0.0.2:9/kept"}
    ok(subscribe(srv, "kept", pushConfig=kept))
    ok(subscribe(srv, "ipv6", pushConfig={"pushEndpoint": "https://[::1]:9/v6"}))
    for url in REFUSED:
        msg = error(subscribe(srv, "elsewhere", pushConfig={"pushEndpoint": url}), 400, "INVALID_ARGUMENT")
        assert msg.startswith("Invalid push endpoint given"), url
        error(srv.call("POST", f"{PS}/subscriptions/kept:modifyPushConfig", body={"pushConfig": {"pushEndpoint": url}}),
              400, "INVALID_ARGUMENT")
    error(srv.call("PATCH", f"{PS}/subscriptions/kept", body={  # the same check on every path that sets one
        "subscription": {"pushConfig": {"pushEndpoint": REFUSED[0]}}, "updateMask": "pushConfig"}),
        400, "INVALID_ARGUMENT")
    error(srv.call("GET", f"{PS}/subscriptions/elsewhere"), 404, "NOT_FOUND")
    assert ok(srv.call("GET", f"{PS}/subscriptions/kept"))["pushConfig"] == kept  # unchanged
    for bad in ({"pushEndpoint": kept["pushEndpoint"], "noWrapper": {"writeMetadata": "yes"}},
                {"pushEndpoint": kept["pushEndpoint"], "oidcToken": {"serviceAccountEmail": 7}},
                {"pushEndpoint": kept["pushEndpoint"], "headers": {"x": "y"}},
                {"oidcToken": {"serviceAccountEmail": PUSHER_SA}}):
        error(srv.call("POST", f"{PS}/subscriptions/kept:modifyPushConfig", body={"pushConfig": bad}),
              400, "INVALID_ARGUMENT")
    assert ok(srv.call("GET", f"{PS}/subscriptions/kept"))["pushConfig"] == kept


def test_attaching_a_token_account_needs_act_as(srv: KeylessServer, endpoint: Endpoint) -> None:
    path = f"/cloudresourcemanager/v1/projects/{PROJECT}"
    policy = ok(srv.call("POST", path + ":getIamPolicy", body={}))
    policy["bindings"].append({"role": "roles/pubsub.editor", "members": [f"serviceAccount:{DEV_SA}"]})
    ok(srv.call("POST", path + ":setIamPolicy", body={"policy": policy}))
    dev = token_for_service_account(srv, DEV_SA)
    push = {"pushEndpoint": f"{endpoint.url}/act-as", "oidcToken": {"serviceAccountEmail": PUSHER_SA}}

    ok(subscribe(srv, "dev-plain", token=dev, pushConfig={"pushEndpoint": f"{endpoint.url}/plain"}))  # no token
    assert error(subscribe(srv, "dev-push", token=dev, pushConfig=push), 403, "PERMISSION_DENIED") == DENIED
    error(srv.call("GET", f"{PS}/subscriptions/dev-push"), 404, "NOT_FOUND")  # nothing was created
    assert error(srv.call("POST", f"{PS}/subscriptions/dev-plain:modifyPushConfig", token=dev,
                          body={"pushConfig": push}), 403, "PERMISSION_DENIED") == DENIED
    assert error(srv.call("PATCH", f"{PS}/subscriptions/dev-plain", token=dev, body={
        "subscription": {"pushConfig": push}, "updateMask": "pushConfig"}), 403, "PERMISSION_DENIED") == DENIED
    assert "oidcToken" not in ok(srv.call("GET", f"{PS}/subscriptions/dev-plain"))["pushConfig"]
    unknown = {**push, "oidcToken": {"serviceAccountEmail": f"ghost@{PROJECT}.iam.gserviceaccount.com"}}
    error(subscribe(srv, "ghost", pushConfig=unknown), 403, "PERMISSION_DENIED")  # even the owner: no account

    sa_policy = f"/iam/v1/projects/{PROJECT}/serviceAccounts/{PUSHER_SA}"
    ok(srv.call("POST", sa_policy + ":setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/iam.serviceAccountUser", "members": [f"serviceAccount:{DEV_SA}"]}]}}))
    assert ok(subscribe(srv, "dev-push", token=dev, pushConfig=push))["pushConfig"] == push
    ok(srv.call("POST", f"{PS}/subscriptions/dev-plain:modifyPushConfig", token=dev, body={"pushConfig": push}))
    with server_state(srv).db.read() as s:
        entry = s.scalars(select(AuditEntry).where(
            AuditEntry.method_name == "google.pubsub.v1.Subscriber.CreateSubscription")
            .order_by(AuditEntry.id.desc())).first()
    assert entry is not None
    checks = entry.entry["protoPayload"]["authorizationInfo"]
    assert {"permission": "iam.serviceAccounts.actAs", "granted": True} in [
        {k: c[k] for k in ("permission", "granted")} for c in checks]
