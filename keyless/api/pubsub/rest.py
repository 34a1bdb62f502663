"""Pub/Sub v1 over REST (https://cloud.google.com/pubsub/docs/reference/rest): topics,
subscriptions, snapshots, messages and the IAM policies of each, mounted at /pubsub.

Every call is authorised on [resource, project, root] with Pub/Sub's permissions and its denial
message ("User not authorized to perform this action."); a caller without the permission learns
nothing about whether the resource exists. Audit entries follow
https://cloud.google.com/pubsub/docs/audit-logging: ADMIN_WRITE methods (create, update,
delete, detach, modifyPushConfig, setIamPolicy) always write Admin Activity; ADMIN_READ methods
(getIamPolicy, snapshot get/list, seek) write Data Access entries where the project's auditConfigs
ask. Google writes no Data Access entries for message operations (publish, pull, acknowledge,
modifyAckDeadline; "Pub/Sub does not currently write Data Access audit logs for message
operations"), and neither does Keyless; topic and subscription get/list are not audited either.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.routing import Route

from keyless import projects
from keyless.api import iam_methods
from keyless.api.http import Call, allowed_fields, data_access_method, object_field, route, update_mask
from keyless.api.pubsub.push import pusher_of, require_act_as
from keyless.audit.data_access import ADMIN_READ
from keyless.errors import InvalidArgument, NotFound, PermissionDenied
from keyless.iam.evaluate import ResourceContext
from keyless.pubsub import messages as messages_domain
from keyless.pubsub import names, notify
from keyless.pubsub import schemas as schemas_domain
from keyless.pubsub import snapshots as snapshots_domain
from keyless.pubsub import subscriptions as subscriptions_domain
from keyless.pubsub import topics as topics_domain
from keyless.pubsub.names import SERVICE
from keyless.state import ServerState
from keyless.store.models import PsSchema, PsSnapshot, PsSubscription, PsTopic

PUBLISHER = "google.pubsub.v1.Publisher."
SUBSCRIBER = "google.pubsub.v1.Subscriber."
IAM_POLICY = "google.iam.v1.IAMPolicy."
MAX_PULL = messages_domain.MAX_PULL
STREAM_PROPERTIES = "keylessSubscriptionProperties"  # a query parameter only the StreamingPull bridge sends
# collection -> (resource type for IAM conditions, audit resource type, its id label)
KINDS = {"topics": (names.TOPIC_TYPE, "pubsub_topic", "topic_id"),
         "subscriptions": (names.SUBSCRIPTION_TYPE, "pubsub_subscription", "subscription_id"),
         "snapshots": (names.SNAPSHOT_TYPE, "pubsub_snapshot", "snapshot_id"),
         "schemas": (names.SCHEMA_TYPE, "pubsub_schema", "schema_id")}


# -- authorisation and resolution ---------------------------------------------------------------


def _require(call: Call, permission: str, chain: list[str], context: ResourceContext) -> None:
    decision = call.state.authz.check(call.principal, permission, chain, context)
    if call.record is not None:
        call.record.authorize(context.name, permission, decision.granted)
    if not decision.granted:
        raise PermissionDenied(names.DENIED)


def _project_id(call: Call, s: Session, permission: str, name: str) -> str:
    """The project of the path, once `permission` is granted on `name`'s chain; Pub/Sub's
    NOT_FOUND for a project the caller may see but that does not exist."""
    given = call.params["project"]
    row = projects.find_project(s, given, include_deleted=False)
    if row is None:
        _require(call, permission, [projects.project_resource(given), projects.ROOT], ResourceContext(name))
        raise NotFound(f"Requested project not found or user does not have access to it (project={given[:100]}). "
                       "Make sure to specify the unique project identifier and not the Google Cloud Console "
                       "display name.")
    return row.project_id


def _project(call: Call, s: Session, permission: str) -> str:
    """For project-level methods (list, and create's project permission)."""
    given = call.params["project"]
    name = f"projects/{given}"
    project_id = _project_id(call, s, permission, name)
    call.touch(project_id=project_id, name=f"projects/{project_id}", type="project",
               labels={"project_id": project_id})
    _require(call, permission, projects.project_chain(project_id),
             ResourceContext(f"projects/{project_id}", "cloudresourcemanager.googleapis.com/Project",
                             "cloudresourcemanager.googleapis.com"))
    return project_id


def _target(call: Call, s: Session, collection: str, permission: str, resource_id: str | None = None) -> str:
    """Authorise `permission` on the topic/subscription/snapshot of the path; its project id."""
    resource_id = resource_id if resource_id is not None else call.params["id"]
    names.check_id(call.params["project"], collection, resource_id)
    project_id = _project_id(call, s, permission, names.name(call.params["project"], collection, resource_id))
    name = names.name(project_id, collection, resource_id)
    iam_type, audit_type, label = KINDS[collection]
    call.touch(project_id=project_id, name=name, type=audit_type, labels={"project_id": project_id, label: resource_id})
    _require(call, permission, names.chain(project_id, collection, resource_id), ResourceContext(name, iam_type, SERVICE))
    return project_id


def _topic(call: Call, s: Session, permission: str) -> PsTopic:
    project_id = _target(call, s, "topics", permission)
    return topics_domain.get_topic(s, project_id, call.params["id"])


def _subscription(call: Call, s: Session, permission: str, *, for_update: bool = False) -> PsSubscription:
    project_id = _target(call, s, "subscriptions", permission)
    row = subscriptions_domain.find_subscription(s, project_id, call.params["id"], for_update=for_update)
    if row is None:
        raise names.not_found(call.params["id"])
    return row


def _snapshot(call: Call, s: Session, permission: str) -> PsSnapshot:
    project_id = _target(call, s, "snapshots", permission)
    return snapshots_domain.get_snapshot(s, project_id, call.params["id"])


def _other(call: Call, s: Session, full_name: Any, collection: str, permission: str) -> tuple[str, str]:
    """Authorise `permission` on another resource named in the body (a subscription's topic)."""
    project, resource_id = names.parse(full_name, collection)
    row = projects.find_project(s, project, include_deleted=False)
    name = names.name(project, collection, resource_id)
    iam_type = KINDS[collection][0]
    if row is None:
        _require(call, permission, [projects.project_resource(project), projects.ROOT], ResourceContext(name))
        raise names.not_found(resource_id)
    _require(call, permission, names.chain(row.project_id, collection, resource_id),
             ResourceContext(names.name(row.project_id, collection, resource_id), iam_type, SERVICE))
    return row.project_id, resource_id


def _page(call: Call, key: str, everything: list[Any]) -> dict[str, Any]:
    items, token = call.page(everything)
    if not items:
        return {}
    return {key: items, **({"nextPageToken": token} if token else {})}


# -- Data Access entries (ADMIN_READ) ------------------------------------------------------------


def _data_access(method: str, handler: Callable[[Call], Any]) -> Callable[[Call], Any]:
    """Run an ADMIN_READ method with its own audit record, written (batched) only if auditConfigs ask."""
    return data_access_method(SERVICE, method, handler, ADMIN_READ)




# -- topics -------------------------------------------------------------------------------------


def named_schema(call: Call, s: Session, full_name: Any, permission: str) -> tuple[PsSchema, str | None]:
    """The schema a request body names (`projects/P/schemas/S[@revision]`, any project), once
    `permission` is granted on it: a caller without it cannot tell whether it exists."""
    given_project, resource_id = schemas_domain.parse_schema_name(full_name, "name")
    schema_id, revision_id = schemas_domain.split_revision(resource_id)
    project = projects.find_project(s, given_project, include_deleted=False)
    if project is None:
        _require(call, permission, [projects.project_resource(given_project), projects.ROOT],
                 ResourceContext(schemas_domain.schema_name(given_project, schema_id)))
        raise names.not_found(schema_id)
    _require(call, permission, names.chain(project.project_id, "schemas", schema_id),
             ResourceContext(schemas_domain.schema_name(project.project_id, schema_id), names.SCHEMA_TYPE, SERVICE))
    return schemas_domain.get_schema(s, project.project_id, schema_id), revision_id


def _schema_settings(call: Call, s: Session, body: dict[str, Any]) -> dict[str, Any]:
    """`body` with its schemaSettings checked: the caller may attach the schema (pubsub.schemas.attach),
    which exists, as do the revisions named."""
    settings = body.get("schemaSettings")
    if not settings:
        return body
    if not isinstance(settings, dict):
        raise InvalidArgument("Invalid value at 'topic.schema_settings': expected an object.")
    row, revision_id = named_schema(call, s, settings.get("schema"), "pubsub.schemas.attach")
    if revision_id is not None:
        raise InvalidArgument("The schema of a topic is named without a revision; use firstRevisionId and "
                              "lastRevisionId.")
    return {**body, "schemaSettings": schemas_domain.check_settings(s, settings, row.project_id, row.schema_id)}


def create_topic(call: Call) -> dict[str, Any]:
    with call.write() as s:
        project_id = _target(call, s, "topics", "pubsub.topics.create")
        body = _schema_settings(call, s, call.body)
        row = topics_domain.create_topic(s, project_id, call.params["id"], body)
        return topics_domain.topic_json(row)


def get_topic(call: Call) -> dict[str, Any]:
    with call.read() as s:
        return topics_domain.topic_json(_topic(call, s, "pubsub.topics.get"))


def list_topics(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project_id = _project(call, s, "pubsub.topics.list")
        everything = [topics_domain.topic_json(r) for r in topics_domain.list_topics(s, project_id)]
    return _page(call, "topics", everything)


def _update_body(call: Call, field: str) -> tuple[dict[str, Any], list[str] | None]:
    """UpdateTopicRequest / UpdateSubscriptionRequest / UpdateSnapshotRequest: {FIELD, updateMask}."""
    allowed_fields(call.body, {field, "updateMask"}, "")
    return object_field(call.body, field, ""), update_mask(call, call.body.get("updateMask"))


def patch_topic(call: Call) -> dict[str, Any]:
    body, mask = _update_body(call, "topic")
    with call.write() as s:
        row = _topic(call, s, "pubsub.topics.update")
        if mask and any(p in ("schemaSettings", "schema_settings") for p in mask):
            body = _schema_settings(call, s, body)
        return topics_domain.topic_json(topics_domain.update_topic(row, body, mask))


def delete_topic(call: Call) -> dict[str, Any]:
    with call.write() as s:
        topics_domain.delete_topic(s, _topic(call, s, "pubsub.topics.delete"))
    return {}


def publish(call: Call) -> dict[str, Any]:
    outgoing = messages_domain.parse_messages(call.body)
    with call.write() as s:
        topic = _topic(call, s, "pubsub.topics.publish")
        settings = (topic.body or {}).get("schemaSettings")
        if settings:  # each message must match a revision in range; it then carries Google's attributes
            outgoing = schemas_domain.conform(s, settings, outgoing)
        ids = messages_domain.publish(s, topic, outgoing)
    notify.published()  # committed: this process's streaming pulls look at once
    return {"messageIds": ids}


def list_topic_subscriptions(call: Call) -> dict[str, Any]:
    with call.read() as s:
        topic = _topic(call, s, "pubsub.topics.get")
        everything = [names.name(r.project_id, "subscriptions", r.subscription_id)
                      for r in subscriptions_domain.topic_subscriptions(s, topic)]
    return _page(call, "subscriptions", everything)


def list_topic_snapshots(call: Call) -> dict[str, Any]:
    with call.read() as s:
        topic = _topic(call, s, "pubsub.topics.get")
        everything = [names.name(r.project_id, "snapshots", r.snapshot_id)
                      for r in snapshots_domain.topic_snapshots(s, topic.uid)]
    return _page(call, "snapshots", everything)


# -- subscriptions ------------------------------------------------------------------------------


def create_subscription(call: Call) -> dict[str, Any]:
    body = call.body
    given = body.get("name")
    with call.write() as s:
        project_id = _target(call, s, "subscriptions", "pubsub.subscriptions.create")
        if given is not None and given != names.name(call.params["project"], "subscriptions", call.params["id"]) \
                and given != names.name(project_id, "subscriptions", call.params["id"]):
            raise InvalidArgument("Subscription name in the body does not match the name in the URL.")
        if body.get("topic") in (None, ""):
            raise InvalidArgument("The topic of a subscription must be specified.")
        topic_project, topic_id = _other(call, s, body["topic"], "topics", "pubsub.topics.attachSubscription")
        topic = topics_domain.get_topic(s, topic_project, topic_id)
        row = subscriptions_domain.create_subscription(s, project_id, call.params["id"], topic,
                                                       {k: v for k, v in body.items() if k != "name"})
        _pushing(call, row)
        return subscriptions_domain.subscription_json(row)


def get_subscription(call: Call) -> dict[str, Any]:
    with call.read() as s:
        return subscriptions_domain.subscription_json(_subscription(call, s, "pubsub.subscriptions.get"))


def list_subscriptions(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project_id = _project(call, s, "pubsub.subscriptions.list")
        everything = [subscriptions_domain.subscription_json(r)
                      for r in subscriptions_domain.list_subscriptions(s, project_id)]
    return _page(call, "subscriptions", everything)


def patch_subscription(call: Call) -> dict[str, Any]:
    body, mask = _update_body(call, "subscription")
    with call.write() as s:
        row = _subscription(call, s, "pubsub.subscriptions.update", for_update=True)
        row = subscriptions_domain.update_subscription(s, row, body, mask)
        if mask and any(p in ("pushConfig", "push_config") or p.startswith(("pushConfig.", "push_config."))
                        for p in mask):
            _pushing(call, row)
        return subscriptions_domain.subscription_json(row)


def _pushing(call: Call, row: PsSubscription) -> None:
    """A push config was set on `row`: its creator must hold actAs on the token's account, and this
    process's push thread runs (it is woken at once when the transaction has committed, by the
    next publish, or within its second)."""
    push = (row.body or {}).get("pushConfig")
    if push:
        require_act_as(call, push)
        pusher_of(call.state)


def delete_subscription(call: Call) -> dict[str, Any]:
    with call.write() as s:
        subscriptions_domain.delete_subscription(s, _subscription(call, s, "pubsub.subscriptions.delete"))
    return {}


def detach_subscription(call: Call) -> dict[str, Any]:
    """Detach: the subscription stops receiving and its backlog is dropped (pubsub.topics.detachSubscription)."""
    with call.write() as s:
        row = _subscription(call, s, "pubsub.subscriptions.get")
        if row.topic_uid is not None:
            topic = s.get(PsTopic, row.topic_uid)
            if topic is not None:
                _require(call, "pubsub.topics.detachSubscription",
                         names.chain(topic.project_id, "topics", topic.topic_id),
                         ResourceContext(names.name(topic.project_id, "topics", topic.topic_id), names.TOPIC_TYPE,
                                         SERVICE))
        row.body = {**(row.body or {}), "detached": True}
        messages_domain.redeliver_from(s, row, set(), None)
    return {}


def modify_push_config(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"pushConfig"}, "")
    push = object_field(call.body, "pushConfig", "")
    with call.write() as s:
        row = _subscription(call, s, "pubsub.subscriptions.update")
        subscriptions_domain.update_subscription(s, row, {"pushConfig": push}, ["pushConfig"])
        _pushing(call, row)
    if push:
        pusher_of(call.state).wake()
    return {}


def pull(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"maxMessages", "returnImmediately"}, "")
    raw = call.body.get("maxMessages")
    try:
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise ValueError
        wanted = int(raw)
    except ValueError:
        raise InvalidArgument(f"Invalid value at 'max_messages' (TYPE_INT32), {str(raw)[:100]}") from None
    if wanted <= 0:
        raise InvalidArgument(f"Invalid max_messages value: {wanted}. It must be greater than 0.")
    with call.write() as s:
        sub = _subscription(call, s, "pubsub.subscriptions.consume")
        received = messages_domain.pull(s, sub, min(wanted, MAX_PULL),
                                        lambda name: messages_domain.topic_of(s, name))
        answer: dict[str, Any] = {"receivedMessages": received} if received else {}
        if call.flag(STREAM_PROPERTIES):  # StreamingPullResponse.subscription_properties, for keyless.api.pubsub.grpc
            answer["subscriptionProperties"] = {
                "exactlyOnceDeliveryEnabled": messages_domain.exactly_once(sub),
                "messageOrderingEnabled": bool((sub.body or {}).get("enableMessageOrdering"))}
    return answer


def acknowledge(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"ackIds"}, "")
    failures: dict[str, str] = {}
    with call.write() as s:
        sub = _subscription(call, s, "pubsub.subscriptions.consume")
        messages_domain.acknowledge(s, sub, call.body.get("ackIds"),
                                    failures if messages_domain.exactly_once(sub) else None)
    notify.acks_changed(call.body["ackIds"], None)  # frees room in this process's streams
    if failures:  # the valid ones are acked (committed above); each invalid one is named
        raise messages_domain.ack_id_failures(failures)
    return {}


def modify_ack_deadline(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"ackIds", "ackDeadlineSeconds"}, "")
    failures: dict[str, str] = {}
    with call.write() as s:
        sub = _subscription(call, s, "pubsub.subscriptions.consume")
        messages_domain.modify_ack_deadline(s, sub, call.body.get("ackIds"), call.body.get("ackDeadlineSeconds"),
                                            failures=failures if messages_domain.exactly_once(sub) else None)
    notify.acks_changed(call.body["ackIds"], call.body["ackDeadlineSeconds"])  # a nack: deliverable again
    if failures:
        raise messages_domain.ack_id_failures(failures)
    return {}


def seek(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"time", "snapshot"}, "")
    target_time, snapshot = call.body.get("time"), call.body.get("snapshot")
    if target_time is None and snapshot is None:  # Google's wording (its Pub/Sub emulator)
        raise InvalidArgument("No target was specified in the SeekRequest. Must specify either a time or a snapshot")
    if target_time is not None and snapshot is not None:  # a oneof: JSON cannot set both
        raise InvalidArgument("Invalid JSON payload received. Only one of time and snapshot may be set (oneof target).")
    with call.state.db.write() as s:  # its Data Access entry is decided by _data_access, not written here
        sub = _subscription(call, s, "pubsub.subscriptions.consume", for_update=True)
        if snapshot is not None:
            project_id, snapshot_id = _other(call, s, snapshot, "snapshots", "pubsub.snapshots.seek")
            snapshots_domain.seek_to_snapshot(s, sub, snapshots_domain.get_snapshot(s, project_id, snapshot_id))
        else:
            snapshots_domain.seek_to_time(s, sub, _timestamp(target_time))
    notify.published()
    return {}


def _timestamp(text: Any) -> datetime:
    if not isinstance(text, str) or len(text) > 40:
        raise InvalidArgument("Invalid value at 'time' (type.googleapis.com/google.protobuf.Timestamp)")
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise InvalidArgument(f"Invalid value at 'time' (type.googleapis.com/google.protobuf.Timestamp), "
                              f"{text[:100]!r}") from exc


# -- snapshots ----------------------------------------------------------------------------------


def create_snapshot(call: Call) -> dict[str, Any]:
    with call.write() as s:
        project_id = _target(call, s, "snapshots", "pubsub.snapshots.create")
        sub_project, sub_id = _other(call, s, call.body.get("subscription"), "subscriptions",
                                     "pubsub.subscriptions.consume")
        sub = subscriptions_domain.get_subscription(s, sub_project, sub_id)
        row = snapshots_domain.create_snapshot(s, project_id, call.params["id"], sub, call.body)
        return snapshots_domain.snapshot_json(row)


def get_snapshot(call: Call) -> dict[str, Any]:
    with call.read() as s:
        return snapshots_domain.snapshot_json(_snapshot(call, s, "pubsub.snapshots.get"))


def list_snapshots(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project_id = _project(call, s, "pubsub.snapshots.list")
        everything = [snapshots_domain.snapshot_json(r) for r in snapshots_domain.list_snapshots(s, project_id)]
    return _page(call, "snapshots", everything)


def patch_snapshot(call: Call) -> dict[str, Any]:
    body, mask = _update_body(call, "snapshot")
    with call.write() as s:
        row = _snapshot(call, s, "pubsub.snapshots.update")
        return snapshots_domain.snapshot_json(snapshots_domain.update_snapshot(row, body, mask))


def delete_snapshot(call: Call) -> dict[str, Any]:
    with call.write() as s:
        snapshots_domain.delete_snapshot(s, _snapshot(call, s, "pubsub.snapshots.delete"))
    return {}


# -- IAM policies of topics, subscriptions and snapshots -----------------------------------------

FINDERS: dict[str, Callable[[Session, str, str], Any]] = {
    "topics": topics_domain.find_topic,
    "subscriptions": subscriptions_domain.find_subscription,
    "snapshots": snapshots_domain.find_snapshot,
}


def _policy(collection: str, permission: str) -> Callable[[Call, Session], str]:
    def locate(call: Call, s: Session) -> str:
        project_id = _target(call, s, collection, permission)
        if FINDERS[collection](s, project_id, call.params["id"]) is None:
            raise names.not_found(call.params["id"])
        return names.policy_resource(project_id, collection, call.params["id"])

    return locate


def get_iam_policy(collection: str) -> Callable[[Call], Any]:
    locate = _policy(collection, f"pubsub.{collection}.getIamPolicy")
    return lambda call: iam_methods.get_iam_policy(call, lambda s: locate(call, s))


def set_iam_policy(collection: str) -> Callable[[Call], Any]:
    locate = _policy(collection, f"pubsub.{collection}.setIamPolicy")
    return lambda call: iam_methods.set_iam_policy(call, lambda s: locate(call, s), collection[:-1])


def test_iam_permissions(collection: str) -> Callable[[Call], Any]:
    def handler(call: Call) -> dict[str, Any]:
        given, resource_id = call.params["project"], call.params["id"]
        names.check_id(given, collection, resource_id)

        def chain(s: Session) -> tuple[list[str], ResourceContext] | None:
            project = projects.find_project(s, given, include_deleted=False)
            if project is None or FINDERS[collection](s, project.project_id, resource_id) is None:
                return None
            return (names.chain(project.project_id, collection, resource_id),
                    ResourceContext(names.name(project.project_id, collection, resource_id), KINDS[collection][0],
                                    SERVICE))

        return iam_methods.test_iam_permissions(call, chain)

    return handler


def routes(state: ServerState) -> list[Route]:
    from keyless.api.pubsub import schemas  # it builds on this module's helpers

    def admin(http_method: str, path: str, handler: Callable[[Call], Any], method: str) -> Route:
        return route(state, http_method, path, handler, service=SERVICE, method=method)

    def unaudited(http_method: str, path: str, handler: Callable[[Call], Any]) -> Route:
        return route(state, http_method, path, handler, service=SERVICE, audited=False)

    def read(http_method: str, path: str, handler: Callable[[Call], Any], method: str) -> Route:
        return route(state, http_method, path, _data_access(method, handler), service=SERVICE, audited=False)

    out: list[Route] = schemas.routes(state)
    for collection in ("topics", "subscriptions", "snapshots"):
        one = f"/v1/projects/{{project}}/{collection}/{{id}}"
        out += [read("GET", one + ":getIamPolicy", get_iam_policy(collection), IAM_POLICY + "GetIamPolicy"),
                read("POST", one + ":getIamPolicy", get_iam_policy(collection), IAM_POLICY + "GetIamPolicy"),
                admin("POST", one + ":setIamPolicy", set_iam_policy(collection), IAM_POLICY + "SetIamPolicy"),
                unaudited("POST", one + ":testIamPermissions", test_iam_permissions(collection))]
    topic = "/v1/projects/{project}/topics/{id}"
    sub = "/v1/projects/{project}/subscriptions/{id}"
    snapshot = "/v1/projects/{project}/snapshots/{id}"
    # Custom methods (`name:verb`) come before the plain resource routes they would also match.
    out += [
        unaudited("POST", topic + ":publish", publish),
        unaudited("GET", topic + "/subscriptions", list_topic_subscriptions),
        unaudited("GET", topic + "/snapshots", list_topic_snapshots),
        admin("PUT", topic, create_topic, PUBLISHER + "CreateTopic"),
        unaudited("GET", topic, get_topic),
        admin("PATCH", topic, patch_topic, PUBLISHER + "UpdateTopic"),
        admin("DELETE", topic, delete_topic, PUBLISHER + "DeleteTopic"),
        unaudited("GET", "/v1/projects/{project}/topics", list_topics),
        unaudited("POST", sub + ":pull", pull),
        unaudited("POST", sub + ":acknowledge", acknowledge),
        unaudited("POST", sub + ":modifyAckDeadline", modify_ack_deadline),
        admin("POST", sub + ":modifyPushConfig", modify_push_config, SUBSCRIBER + "ModifyPushConfig"),
        admin("POST", sub + ":detach", detach_subscription, PUBLISHER + "DetachSubscription"),
        read("POST", sub + ":seek", seek, SUBSCRIBER + "Seek"),
        admin("PUT", sub, create_subscription, SUBSCRIBER + "CreateSubscription"),
        unaudited("GET", sub, get_subscription),
        admin("PATCH", sub, patch_subscription, SUBSCRIBER + "UpdateSubscription"),
        admin("DELETE", sub, delete_subscription, SUBSCRIBER + "DeleteSubscription"),
        unaudited("GET", "/v1/projects/{project}/subscriptions", list_subscriptions),
        admin("PUT", snapshot, create_snapshot, SUBSCRIBER + "CreateSnapshot"),
        read("GET", snapshot, get_snapshot, SUBSCRIBER + "GetSnapshot"),
        admin("PATCH", snapshot, patch_snapshot, SUBSCRIBER + "UpdateSnapshot"),
        admin("DELETE", snapshot, delete_snapshot, SUBSCRIBER + "DeleteSnapshot"),
        read("GET", "/v1/projects/{project}/snapshots", list_snapshots, SUBSCRIBER + "ListSnapshots"),
    ]
    return out
