"""Pub/Sub over gRPC (`google.pubsub.v1.Publisher`, `google.pubsub.v1.Subscriber`,
`google.pubsub.v1.SchemaService` and `google.iam.v1.IAMPolicy` on Pub/Sub's host: google-cloud-pubsub's default transport). Unary RPCs
are transcoded by the `google.api.http` rules of Google's pubsub.proto to the REST methods of
keyless.api.pubsub.rest, so both transports share one implementation (authorisation, audit
entries, errors). StreamingPull, which has no HTTP rule, is a bidirectional stream built here
on the same REST methods: the client's acks, modacks and deadline changes become
acknowledge/modifyAckDeadline calls; messages are pulled, within the stream's flow control
(max_outstanding_messages), as soon as a publish in this process is committed, or at the next
poll for those published elsewhere (another worker) and for leases that expired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import empty_pb2, json_format
from google.pubsub_v1.types import pubsub
from google.pubsub_v1.types import schema as schema_types
from starlette.types import ASGIApp

from keyless.api.grpc_transcoding import (
    FORWARDED_METADATA,
    PeerResolver,
    Rule,
    TranscodingService,
    abort_with_answer,
    call_asgi,
)
from keyless.api.pubsub.rest import STREAM_PROPERTIES
from keyless.pubsub import notify

logger = logging.getLogger("keyless.grpc")

PUBLISHER = "google.pubsub.v1.Publisher"
SUBSCRIBER = "google.pubsub.v1.Subscriber"
SCHEMA_SERVICE = "google.pubsub.v1.SchemaService"
IAM_POLICY = "google.iam.v1.IAMPolicy"
PREFIX = "/pubsub"  # where keyless.app mounts the REST API
POLL_SECONDS = 0.25  # how often a stream looks for what no publish here announced
MAX_BATCH = 100  # messages per StreamingPullResponse at most
DEFAULT_OUTSTANDING = 1000  # when the client sets no max_outstanding_messages (or <= 0)
MIN_STREAM_DEADLINE, MAX_STREAM_DEADLINE = 10, 600

_TOPIC = "projects/*/topics/*"
_SUB = "projects/*/subscriptions/*"
_SNAP = "projects/*/snapshots/*"
_SCHEMA = "projects/*/schemas/*"

# google/pubsub/v1/pubsub.proto
PUBLISHER_RULES = [
    Rule("CreateTopic", "put", "/v1/{name=" + _TOPIC + "}", pubsub.Topic.pb(), pubsub.Topic.pb(), body="*"),
    Rule("UpdateTopic", "patch", "/v1/{topic.name=" + _TOPIC + "}", pubsub.UpdateTopicRequest.pb(),
         pubsub.Topic.pb(), body="*"),
    Rule("Publish", "post", "/v1/{topic=" + _TOPIC + "}:publish", pubsub.PublishRequest.pb(),
         pubsub.PublishResponse.pb(), body="*"),
    Rule("GetTopic", "get", "/v1/{topic=" + _TOPIC + "}", pubsub.GetTopicRequest.pb(), pubsub.Topic.pb()),
    Rule("ListTopics", "get", "/v1/{project=projects/*}/topics", pubsub.ListTopicsRequest.pb(),
         pubsub.ListTopicsResponse.pb()),
    Rule("ListTopicSubscriptions", "get", "/v1/{topic=" + _TOPIC + "}/subscriptions",
         pubsub.ListTopicSubscriptionsRequest.pb(), pubsub.ListTopicSubscriptionsResponse.pb()),
    Rule("ListTopicSnapshots", "get", "/v1/{topic=" + _TOPIC + "}/snapshots",
         pubsub.ListTopicSnapshotsRequest.pb(), pubsub.ListTopicSnapshotsResponse.pb()),
    Rule("DeleteTopic", "delete", "/v1/{topic=" + _TOPIC + "}", pubsub.DeleteTopicRequest.pb(), empty_pb2.Empty),
    Rule("DetachSubscription", "post", "/v1/{subscription=" + _SUB + "}:detach",
         pubsub.DetachSubscriptionRequest.pb(), pubsub.DetachSubscriptionResponse.pb()),
]
SUBSCRIBER_RULES = [
    Rule("CreateSubscription", "put", "/v1/{name=" + _SUB + "}", pubsub.Subscription.pb(), pubsub.Subscription.pb(),
         body="*"),
    Rule("GetSubscription", "get", "/v1/{subscription=" + _SUB + "}", pubsub.GetSubscriptionRequest.pb(),
         pubsub.Subscription.pb()),
    Rule("UpdateSubscription", "patch", "/v1/{subscription.name=" + _SUB + "}",
         pubsub.UpdateSubscriptionRequest.pb(), pubsub.Subscription.pb(), body="*"),
    Rule("ListSubscriptions", "get", "/v1/{project=projects/*}/subscriptions", pubsub.ListSubscriptionsRequest.pb(),
         pubsub.ListSubscriptionsResponse.pb()),
    Rule("DeleteSubscription", "delete", "/v1/{subscription=" + _SUB + "}", pubsub.DeleteSubscriptionRequest.pb(),
         empty_pb2.Empty),
    Rule("ModifyAckDeadline", "post", "/v1/{subscription=" + _SUB + "}:modifyAckDeadline",
         pubsub.ModifyAckDeadlineRequest.pb(), empty_pb2.Empty, body="*"),
    Rule("Acknowledge", "post", "/v1/{subscription=" + _SUB + "}:acknowledge", pubsub.AcknowledgeRequest.pb(),
         empty_pb2.Empty, body="*"),
    Rule("Pull", "post", "/v1/{subscription=" + _SUB + "}:pull", pubsub.PullRequest.pb(), pubsub.PullResponse.pb(),
         body="*"),
    Rule("ModifyPushConfig", "post", "/v1/{subscription=" + _SUB + "}:modifyPushConfig",
         pubsub.ModifyPushConfigRequest.pb(), empty_pb2.Empty, body="*"),
    Rule("GetSnapshot", "get", "/v1/{snapshot=" + _SNAP + "}", pubsub.GetSnapshotRequest.pb(), pubsub.Snapshot.pb()),
    Rule("ListSnapshots", "get", "/v1/{project=projects/*}/snapshots", pubsub.ListSnapshotsRequest.pb(),
         pubsub.ListSnapshotsResponse.pb()),
    Rule("CreateSnapshot", "put", "/v1/{name=" + _SNAP + "}", pubsub.CreateSnapshotRequest.pb(),
         pubsub.Snapshot.pb(), body="*"),
    Rule("UpdateSnapshot", "patch", "/v1/{snapshot.name=" + _SNAP + "}", pubsub.UpdateSnapshotRequest.pb(),
         pubsub.Snapshot.pb(), body="*"),
    Rule("DeleteSnapshot", "delete", "/v1/{snapshot=" + _SNAP + "}", pubsub.DeleteSnapshotRequest.pb(),
         empty_pb2.Empty),
    Rule("Seek", "post", "/v1/{subscription=" + _SUB + "}:seek", pubsub.SeekRequest.pb(), pubsub.SeekResponse.pb(),
         body="*"),
]
_IAM_OF = (_SUB, _SNAP, _SCHEMA)  # the IAMPolicy mixin's additional bindings on Pub/Sub's host
IAM_RULES = [
    Rule("SetIamPolicy", "post", "/v1/{resource=" + _TOPIC + "}:setIamPolicy", iam_policy_pb2.SetIamPolicyRequest,
         policy_pb2.Policy, body="*", additional=tuple("/v1/{resource=" + p + "}:setIamPolicy" for p in _IAM_OF)),
    Rule("GetIamPolicy", "get", "/v1/{resource=" + _TOPIC + "}:getIamPolicy", iam_policy_pb2.GetIamPolicyRequest,
         policy_pb2.Policy, additional=tuple("/v1/{resource=" + p + "}:getIamPolicy" for p in _IAM_OF)),
    Rule("TestIamPermissions", "post", "/v1/{resource=" + _TOPIC + "}:testIamPermissions",
         iam_policy_pb2.TestIamPermissionsRequest, iam_policy_pb2.TestIamPermissionsResponse, body="*",
         additional=tuple("/v1/{resource=" + p + "}:testIamPermissions" for p in _IAM_OF)),
]
# google/pubsub/v1/schema.proto
SCHEMA_RULES = [
    Rule("CreateSchema", "post", "/v1/{parent=projects/*}/schemas", schema_types.CreateSchemaRequest.pb(),
         schema_types.Schema.pb(), body="schema"),
    Rule("GetSchema", "get", "/v1/{name=" + _SCHEMA + "}", schema_types.GetSchemaRequest.pb(),
         schema_types.Schema.pb()),
    Rule("ListSchemas", "get", "/v1/{parent=projects/*}/schemas", schema_types.ListSchemasRequest.pb(),
         schema_types.ListSchemasResponse.pb()),
    Rule("ListSchemaRevisions", "get", "/v1/{name=" + _SCHEMA + "}:listRevisions",
         schema_types.ListSchemaRevisionsRequest.pb(), schema_types.ListSchemaRevisionsResponse.pb()),
    Rule("CommitSchema", "post", "/v1/{name=" + _SCHEMA + "}:commit", schema_types.CommitSchemaRequest.pb(),
         schema_types.Schema.pb(), body="*"),
    Rule("RollbackSchema", "post", "/v1/{name=" + _SCHEMA + "}:rollback", schema_types.RollbackSchemaRequest.pb(),
         schema_types.Schema.pb(), body="*"),
    Rule("DeleteSchemaRevision", "delete", "/v1/{name=" + _SCHEMA + "}:deleteRevision",
         schema_types.DeleteSchemaRevisionRequest.pb(), schema_types.Schema.pb()),
    Rule("DeleteSchema", "delete", "/v1/{name=" + _SCHEMA + "}", schema_types.DeleteSchemaRequest.pb(),
         empty_pb2.Empty),
    Rule("ValidateSchema", "post", "/v1/{parent=projects/*}/schemas:validate",
         schema_types.ValidateSchemaRequest.pb(), schema_types.ValidateSchemaResponse.pb(), body="*"),
    Rule("ValidateMessage", "post", "/v1/{parent=projects/*}/schemas:validateMessage",
         schema_types.ValidateMessageRequest.pb(), schema_types.ValidateMessageResponse.pb(), body="*"),
]


class StreamingPull(grpc.GenericRpcHandler):
    """`google.pubsub.v1.Subscriber/StreamingPull`, answered through the REST methods of `app`."""

    METHOD = f"/{SUBSCRIBER}/StreamingPull"

    def __init__(self, app: ASGIApp, peer: PeerResolver | None = None) -> None:
        self._app, self._peer = app, peer or (lambda _: None)
        self._handler = grpc.stream_stream_rpc_method_handler(
            self._run, request_deserializer=pubsub.StreamingPullRequest.pb().FromString,
            response_serializer=lambda m: m.SerializeToString())

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handler if handler_call_details.method == self.METHOD else None

    async def _run(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        headers = [(k.encode(), metadata[k].encode("latin-1", "replace")) for k in FORWARDED_METADATA if k in metadata]
        headers.append((b"content-type", b"application/json"))
        client = self._peer(context.peer())
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            return
        stream = _Stream(first, lambda verb, body, query=(): self._call(first.subscription, verb, body, list(query),
                                                                        headers, client))
        if not stream.valid():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"Invalid [subscriptions] name: (name={first.subscription[:600]})")
        if not MIN_STREAM_DEADLINE <= stream.deadline <= MAX_STREAM_DEADLINE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"Invalid stream_ack_deadline_seconds: {stream.deadline}. It must be between "
                                f"{MIN_STREAM_DEADLINE} and {MAX_STREAM_DEADLINE}.")
        wake = asyncio.Event()
        entry = notify.register(wake, stream.acks_changed)
        reader = asyncio.create_task(stream.read(first, requests, wake))
        try:
            while not reader.done():
                if stream.full():  # flow control: wait for acks or nacks
                    stream.room.clear()
                    await _first_of(stream.room, reader, POLL_SECONDS)
                    continue
                status, answer = await stream.pull()
                if status != 200:
                    await abort_with_answer(context, status, answer)
                pulled = json.loads(answer) if answer.strip() else {}
                received = pulled.get("receivedMessages", [])
                if received:
                    stream.leased(received)
                    # Google sends the subscription's properties with every response: the client
                    # turns exactly-once handling (ack futures, receipt modacks) on or off by them
                    yield json_format.ParseDict(
                        {"receivedMessages": received,
                         "subscriptionProperties": pulled.get("subscriptionProperties", {})},
                        pubsub.StreamingPullResponse.pb()(), ignore_unknown_fields=True)
                    await stream.extend(received)  # after sending: delivery does not wait for it
                    continue
                wake.clear()
                await _first_of(wake, reader, POLL_SECONDS)
        finally:
            notify.unregister(entry)
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        status, answer = reader.result()  # the client closed its side, or an ack was refused
        if status != 200:
            await abort_with_answer(context, status, answer)

    async def _call(self, subscription: str, verb: str, body: dict[str, Any], query: list[tuple[str, str]],
                    headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None) -> tuple[int, bytes]:
        return await call_asgi(self._app, "POST", f"{PREFIX}/v1/{subscription}:{verb}", query,
                               json.dumps(body).encode(), headers, client)


Call = Callable[..., Any]  # (verb, body, query=()) -> (status, answer)


class _Stream:
    """One StreamingPull's state: its deadline, its flow control and the ack ids it has out."""

    def __init__(self, first: Any, call: Call) -> None:
        self.subscription = first.subscription
        self.deadline = first.stream_ack_deadline_seconds or 10
        self.limit = first.max_outstanding_messages if first.max_outstanding_messages > 0 else DEFAULT_OUTSTANDING
        self.outstanding: dict[str, float] = {}  # ack id -> when its lease ends (loop time)
        self.room = asyncio.Event()
        self.room.set()
        self._call = call

    def valid(self) -> bool:
        parts = self.subscription.split("/")
        return len(parts) == 4 and parts[0] == "projects" and parts[2] == "subscriptions" and all(parts)

    def full(self) -> bool:
        """Whether max_outstanding_messages are leased; leases that ended (acked or expired in
        another worker) no longer count."""
        if len(self.outstanding) >= self.limit:
            now = asyncio.get_running_loop().time()
            self.outstanding = {k: v for k, v in self.outstanding.items() if v > now}
        return len(self.outstanding) >= self.limit

    def acks_changed(self, ack_ids: list[str], deadline: int | None) -> None:
        """Acks, nacks and lease extensions made by unary calls in this process (keyless.pubsub.notify)."""
        if deadline is None:
            self.settled(ack_ids)
            return
        ends = asyncio.get_running_loop().time() + deadline
        for ack_id in ack_ids:
            if ack_id in self.outstanding:
                self.outstanding[ack_id] = ends

    async def pull(self) -> tuple[int, bytes]:
        wanted = min(MAX_BATCH, self.limit - len(self.outstanding))
        return await self._call("pull", {"maxMessages": wanted}, [(STREAM_PROPERTIES, "true")])

    def leased(self, received: list[dict[str, Any]]) -> None:
        ends = asyncio.get_running_loop().time() + self.deadline
        self.outstanding.update((r["ackId"], ends) for r in received)

    async def extend(self, received: list[dict[str, Any]]) -> None:
        """The stream's own ack deadline for what it just leased (the subscription's applied at pull)."""
        await self._call("modifyAckDeadline", {"ackIds": [r["ackId"] for r in received],
                                               "ackDeadlineSeconds": self.deadline})

    def settled(self, ack_ids: list[str]) -> None:
        for ack_id in ack_ids:
            self.outstanding.pop(ack_id, None)
        if len(self.outstanding) < self.limit:
            self.room.set()

    async def read(self, first: Any, requests: AsyncIterator[Any], wake: asyncio.Event) -> tuple[int, bytes]:
        """Apply the client's requests until it closes its side; the first refused call's answer ends it."""
        request = first
        while True:
            if MIN_STREAM_DEADLINE <= request.stream_ack_deadline_seconds <= MAX_STREAM_DEADLINE:
                self.deadline = request.stream_ack_deadline_seconds
            if request.ack_ids:
                status, answer = await self._call("acknowledge", {"ackIds": list(request.ack_ids)})
                if status != 200 and not _ack_id_failure(answer):
                    return status, answer
                self.settled(list(request.ack_ids))
            by_deadline: dict[int, list[str]] = {}
            for ack_id, seconds in zip(request.modify_deadline_ack_ids, request.modify_deadline_seconds, strict=False):
                by_deadline.setdefault(seconds, []).append(ack_id)
            for seconds, ack_ids in by_deadline.items():
                status, answer = await self._call("modifyAckDeadline", {"ackIds": ack_ids, "ackDeadlineSeconds": seconds})
                if status != 200 and not _ack_id_failure(answer):
                    return status, answer
                if seconds == 0:  # a nack: the message leaves this stream's count
                    self.settled(ack_ids)
                    wake.set()
            try:
                request = await requests.__anext__()
            except StopAsyncIteration:
                return 200, b""


def _ack_id_failure(answer: bytes) -> bool:
    """An exactly-once answer naming invalid ack ids: on the stream, as on Google's, those acks
    are dropped (the client learns of them through its unary acks) and the stream goes on."""
    try:
        details = json.loads(answer)["error"].get("details", [])
    except (ValueError, KeyError, AttributeError):
        return False
    return any(isinstance(d, dict) and d.get("reason") == "EXACTLY_ONCE_ACKID_FAILURE" for d in details)


async def _first_of(event: asyncio.Event, task: asyncio.Task[Any], timeout: float | None) -> None:
    """Wait until `event` is set, `task` ends, or `timeout` passes."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def services(app: ASGIApp, peer: PeerResolver | None = None) -> list[grpc.GenericRpcHandler]:
    """The gRPC services, answered by `app` (Keyless's ASGI app)."""
    return [StreamingPull(app, peer), TranscodingService(PUBLISHER, PUBLISHER_RULES, app, PREFIX, peer),
            TranscodingService(SUBSCRIBER, SUBSCRIBER_RULES, app, PREFIX, peer),
            TranscodingService(SCHEMA_SERVICE, SCHEMA_RULES, app, PREFIX, peer),
            TranscodingService(IAM_POLICY, IAM_RULES, app, PREFIX, peer)]
