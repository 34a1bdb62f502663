"""Secret Manager API (secretmanager.googleapis.com v1, REST): secrets, versions and secret IAM
(https://cloud.google.com/secret-manager/docs/reference/rest), mounted at /secretmanager.

Every call is authorised on [secret, project, root] with Secret Manager's permissions and its
own denial wording ("denied for resource"). Audit entries follow
https://cloud.google.com/secret-manager/docs/audit-logging: ADMIN_WRITE methods (create,
update, delete, addVersion, enable/disable/destroy, setIamPolicy) always write Admin Activity;
ADMIN_READ (get, list, getIamPolicy) and DATA_READ (access) write Data Access entries only where
the project's auditConfigs enable them, on `audited_resource`.

Each change to a secret with `topics` publishes its event notification in the change's own
transaction (keyless.secretmanager.notifications, issue #20); this process's streaming pulls are
told once it committed. Rotation schedules are checked by a thread of the serving process
(keyless.secretmanager.rotation), started with the app (keyless.app) or by the first secret call.
"""

from __future__ import annotations

import base64
import binascii
import json
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.routing import Route

from keyless import projects
from keyless.api import iam_methods
from keyless.api.http import Call, allowed_fields, data_access_method, object_field, route, update_mask
from keyless.audit.data_access import ADMIN_READ, DATA_READ
from keyless.errors import InvalidArgument, NotFound, PermissionDenied
from keyless.iam.evaluate import ResourceContext, permission_denied
from keyless.pubsub import notify as pubsub_notify
from keyless.secretmanager import names, notifications
from keyless.secretmanager import secrets as secrets_domain
from keyless.secretmanager import versions as versions_domain
from keyless.secretmanager.names import SERVICE
from keyless.secretmanager.rotation import Rotator
from keyless.state import ServerState
from keyless.store.models import Project, SmSecret, SmSecretVersion

PREFIX = "google.cloud.secretmanager.v1.SecretManagerService."
MAX_PAYLOAD_B64 = 4 * ((versions_domain.MAX_PAYLOAD_BYTES + 2) // 3) + 4
_ROTATORS: weakref.WeakKeyDictionary[ServerState, Rotator] = weakref.WeakKeyDictionary()


def rotator_of(state: ServerState) -> Rotator:
    """The server's rotation thread (started on first use)."""
    rotator = _ROTATORS.get(state)
    if rotator is None:
        rotator = _ROTATORS.setdefault(state, Rotator(state.db, state.authz))
        rotator.start()
    return rotator


def stop_rotator(state: ServerState) -> None:
    rotator = _ROTATORS.pop(state, None)
    if rotator is not None:
        rotator.stop()


def _notified(published: bool) -> None:
    """After a commit that published notifications: this process's streaming pulls look now."""
    if published:
        pubsub_notify.published()


# -- authorisation and resolution ---------------------------------------------------------------


def _location(call: Call) -> str:
    """The path's location ('' for a global secret), one of Secret Manager's regions."""
    location = call.params.get("location", "")
    return names.check_location(call.params["project"], location) if location else ""


def _denied(permission: str, display: str) -> PermissionDenied:
    """Secret Manager says "denied for resource" where IAM says "denied on resource"."""
    error = permission_denied(permission, display)
    return PermissionDenied(error.message.replace(" on resource ", " for resource ", 1), details=error.details)


def _require(call: Call, permission: str, chain: list[str], display: str, context: ResourceContext) -> None:
    decision = call.state.authz.check(call.principal, permission, chain, context)
    if call.record is not None:
        call.record.authorize(context.name, permission, decision.granted)
    if not decision.granted:
        raise _denied(permission, display)


def _touch(call: Call, project_id: str, name: str, *, found: bool) -> None:
    labels = {"service": SERVICE, "method": call.record.method if call.record else ""}
    if found:  # marks the project as known, for the Data Access decision
        labels["project_id"] = project_id
    call.touch(project_id=project_id, name=name, type="audited_resource", labels=labels)


def _project(call: Call, s: Any, permission: str) -> Project:
    """The project of the path, for project-level methods (create, list)."""
    given = call.params["project"]
    row = projects.find_project(s, given, include_deleted=False)
    if row is None:
        _touch(call, given, f"projects/{given}", found=False)
        chain = [projects.project_resource(given), projects.ROOT]
        _require(call, permission, chain, f"projects/{given}", ResourceContext(f"projects/{given}"))
        raise _denied(permission, f"projects/{given}")  # Google never confirms a project is missing
    name = f"projects/{row.project_number}"
    _touch(call, row.project_id, name, found=True)
    _require(call, permission, projects.project_chain(row.project_id), f"projects/{given}",
             ResourceContext(name, "cloudresourcemanager.googleapis.com/Project", "cloudresourcemanager.googleapis.com"))
    return row


def _secret_target(call: Call, s: Any, permission: str, version: str | None = None,
                   *, for_update: bool = False) -> tuple[Project, SmSecret | None]:
    """Authorise `permission` on the secret (or version) of the path; the secret if it exists."""
    given, secret_id, location = call.params["project"], call.params["secret"], _location(call)
    if version is None:
        names.check_secret_id(given, secret_id, location)
    else:
        names.check_version_id(given, secret_id, version, location)
    display = names.secret_name(given, secret_id, location) if version is None else \
        names.version_name(given, secret_id, version, location)
    row = projects.find_project(s, given, include_deleted=False)
    if row is None:
        _touch(call, given, display, found=False)
        _require(call, permission, [projects.project_resource(given), projects.ROOT], display,
                 ResourceContext(display))
        raise _denied(permission, display)
    number = row.project_number
    name = names.secret_name(number, secret_id, location) if version is None else \
        names.version_name(number, secret_id, version, location)
    _touch(call, row.project_id, name, found=True)
    chain = names.secret_chain(number, row.project_id, secret_id, location)
    context = ResourceContext(name, names.SECRET_TYPE if version is None else names.VERSION_TYPE, SERVICE)
    _require(call, permission, chain, display, context)
    return row, secrets_domain.find_secret(s, row.project_id, secret_id, location=location, for_update=for_update)


def _secret(call: Call, s: Any, permission: str, *, for_update: bool = False) -> tuple[Project, SmSecret]:
    project, secret = _secret_target(call, s, permission, for_update=for_update)
    if secret is None:
        raise NotFound(
            f"Secret [{names.secret_name(project.project_number, call.params['secret'], _location(call))}] not found.")
    return project, secret


def _version(call: Call, s: Any, permission: str) -> tuple[SmSecret, SmSecretVersion]:
    version_id = call.params["version"]
    project, secret = _secret_target(call, s, permission, version_id)
    if secret is None:
        raise versions_domain.missing(project.project_number, call.params["secret"], version_id, _location(call))
    row = versions_domain.resolve(s, secret, version_id)
    call.touch(name=names.version_name(secret.project_number, secret.secret_id, row.version, secret.location))
    return secret, row


# -- Data Access entries ------------------------------------------------------------------------


def _data_access(method: str, log_type: str, handler: Callable[[Call], Any]) -> Callable[[Call], Any]:
    """Run a read method with its own audit record, written (batched) only if auditConfigs ask."""
    return data_access_method(SERVICE, PREFIX + method, handler, log_type)




# -- secrets ------------------------------------------------------------------------------------


def create_secret(call: Call) -> dict[str, Any]:
    secret_id = call.arg("secretId") or call.arg("secret_id") or ""
    location = _location(call)
    with call.write() as s:
        project = _project(call, s, "secretmanager.secrets.create")
        names.check_secret_id(call.params["project"], secret_id, location)
        _touch(call, project.project_id, names.secret_name(project.project_number, secret_id, location), found=True)
        row = secrets_domain.create_secret(s, project, secret_id, call.body, location)
        body = secrets_domain.secret_json(row)
        published = notifications.configure_topics(s, call.state.authz, row)
        published = notifications.publish(s, call.state.authz, row, notifications.SECRET_CREATE, body) or published
    _notified(published)
    if row.body.get("rotation"):
        rotator_of(call.state)
    return body


def get_secret(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _, row = _secret(call, s, "secretmanager.secrets.get")
        return secrets_domain.secret_json(row)


def list_secrets(call: Call) -> dict[str, Any]:
    location = _location(call)
    with call.read() as s:
        project = _project(call, s, "secretmanager.secrets.list")
        rows = secrets_domain.list_secrets(s, project.project_id, call.arg("filter"), location)
        everything = [secrets_domain.secret_json(r) for r in rows]
    items, token = call.page(everything)
    if not items:
        return {}
    return {"secrets": items, **({"nextPageToken": token} if token else {}), "totalSize": len(everything)}


def patch_secret(call: Call) -> dict[str, Any]:
    mask = update_mask(call)
    with call.write() as s:
        _, row = _secret(call, s, "secretmanager.secrets.update")
        topics_before = notifications.topic_names(row)
        body = secrets_domain.secret_json(secrets_domain.update_secret(row, call.body, mask))
        # "whenever topics are updated", every topic of the secret gets TOPIC_CONFIGURED
        published = notifications.topic_names(row) != topics_before and \
            notifications.configure_topics(s, call.state.authz, row)
        published = notifications.publish(s, call.state.authz, row, notifications.SECRET_UPDATE, body) or published
    _notified(published)
    if (row.body or {}).get("rotation"):
        rotator_of(call.state)
    return body


def delete_secret(call: Call) -> dict[str, Any]:
    with call.write() as s:
        _, row = _secret(call, s, "secretmanager.secrets.delete")
        body = secrets_domain.secret_json(row)
        # published first, from the row still whole; a refused delete rolls it back with the rest
        published = notifications.publish(s, call.state.authz, row, notifications.SECRET_DELETE, body)
        secrets_domain.delete_secret(s, row, call.arg("etag"))
    _notified(published)
    return {}


# -- versions -----------------------------------------------------------------------------------


def _payload(body: dict[str, Any]) -> tuple[bytes, int | None]:
    """SecretPayload from an AddSecretVersionRequest body: base64 `data`, int64 `dataCrc32c`."""
    allowed_fields(body, {"payload"}, "")
    payload = secrets_domain.camel(object_field(body, "payload", ""))
    allowed_fields(payload, {"data", "dataCrc32c"}, "payload")
    data = payload.get("data", "")
    if not isinstance(data, str):
        raise InvalidArgument(f"Invalid value at 'payload.data' (TYPE_BYTES), {json.dumps(data)[:100]}")
    if len(data) > MAX_PAYLOAD_B64:
        raise InvalidArgument(f"Secret payload data length must be at most [{versions_domain.MAX_PAYLOAD_BYTES}] bytes.")
    text = data.strip().replace("-", "+").replace("_", "/")  # proto JSON accepts either alphabet
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidArgument(f"Invalid value at 'payload.data' (TYPE_BYTES), Base64 decoding failed for "
                              f"\"{data[:100]}\"") from exc
    checksum = payload.get("dataCrc32c")
    if checksum is None:
        return raw, None
    try:
        if isinstance(checksum, bool) or not isinstance(checksum, (int, str)):
            raise ValueError
        value = int(checksum)
    except ValueError as exc:
        raise InvalidArgument(f"Invalid value at 'payload.data_crc32c' (TYPE_INT64), "
                              f"{json.dumps(checksum)[:100]}") from exc
    if not -(2**63) <= value < 2**63:
        raise InvalidArgument(f"Invalid value at 'payload.data_crc32c' (TYPE_INT64), {json.dumps(checksum)[:100]}")
    return raw, value


def add_version(call: Call) -> dict[str, Any]:
    data, checksum = _payload(call.body)
    with call.write() as s:
        _, secret = _secret(call, s, "secretmanager.versions.add", for_update=True)
        row = versions_domain.add_version(s, secret, data, checksum)
        name = names.version_name(secret.project_number, secret.secret_id, row.version, secret.location)
        call.touch(name=name)
        body = versions_domain.version_json(secret, row)
        published = notifications.publish(s, call.state.authz, secret, notifications.SECRET_VERSION_ADD, body, name)
    _notified(published)
    return body


def get_version(call: Call) -> dict[str, Any]:
    with call.read() as s:
        secret, row = _version(call, s, "secretmanager.versions.get")
        return versions_domain.version_json(secret, row)


def list_versions(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _, secret = _secret(call, s, "secretmanager.versions.list")
        rows = versions_domain.list_versions(s, secret, call.arg("filter"))
        everything = [versions_domain.version_json(secret, r) for r in rows]
    items, token = call.page(everything)
    if not items:
        return {}
    return {"versions": items, **({"nextPageToken": token} if token else {}), "totalSize": len(everything)}


def access_version(call: Call) -> dict[str, Any]:
    with call.read() as s:
        secret, row = _version(call, s, "secretmanager.versions.access")
        data, checksum = versions_domain.access(secret, row)
        name = names.version_name(secret.project_number, secret.secret_id, row.version, secret.location)
    return {"name": name, "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(checksum)}}


def change_version(permission: str, change: Callable[..., SmSecretVersion], event: str) -> Callable[[Call], Any]:
    def handler(call: Call) -> dict[str, Any]:
        allowed_fields(call.body, {"name", "etag"}, "")
        etag = call.body.get("etag")
        if etag is not None and not isinstance(etag, str):
            raise InvalidArgument(f"Invalid value at 'etag' (TYPE_STRING), {json.dumps(etag)[:100]}")
        with call.write() as s:
            secret, row = _version(call, s, permission)
            body = versions_domain.version_json(secret, change(secret, row, etag))
            happened = notifications.SECRET_VERSION_DESTROY_SCHEDULED if event == notifications.SECRET_VERSION_DESTROY \
                and body.get("state") != versions_domain.DESTROYED else event  # a delayed destroy
            published = notifications.publish(s, call.state.authz, secret, happened, body, body["name"])
        _notified(published)
        return body

    return handler


# -- secret IAM ---------------------------------------------------------------------------------


def _policy_resource(call: Call, s: Session, permission: str) -> str:
    _, secret = _secret(call, s, permission)
    return names.policy_resource(secret.project_number, secret.secret_id, secret.location)


def get_iam_policy(call: Call) -> dict[str, Any]:
    return iam_methods.get_iam_policy(call, lambda s: _policy_resource(call, s, "secretmanager.secrets.getIamPolicy"))


def set_iam_policy(call: Call) -> dict[str, Any]:
    return iam_methods.set_iam_policy(
        call, lambda s: _policy_resource(call, s, "secretmanager.secrets.setIamPolicy"), "secret")


def test_iam_permissions(call: Call) -> dict[str, Any]:
    given, secret_id, location = call.params["project"], call.params["secret"], _location(call)
    names.check_secret_id(given, secret_id, location)

    def chain(s: Session) -> tuple[list[str], ResourceContext] | None:
        project = projects.find_project(s, given, include_deleted=False)
        if project is None or secrets_domain.find_secret(s, project.project_id, secret_id, location=location) is None:
            return None
        return (names.secret_chain(project.project_number, project.project_id, secret_id, location),
                ResourceContext(names.secret_name(project.project_number, secret_id, location), names.SECRET_TYPE,
                                SERVICE))

    return iam_methods.test_iam_permissions(call, chain)


# -- locations ----------------------------------------------------------------------------------


def _location_json(project: str, location: str) -> dict[str, Any]:
    return {"name": f"projects/{project}/locations/{location}", "locationId": location,
            "labels": {"cloud.googleapis.com/region": location}}


def get_location(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _project(call, s, "secretmanager.locations.get")
    location = call.params["location"]
    if location not in names.REGIONS:
        raise NotFound(f"Location {location[:64]} not found.")
    return _location_json(call.params["project"], location)


def list_locations(call: Call) -> dict[str, Any]:
    if call.arg("filter"):
        raise InvalidArgument("Keyless does not filter locations.")
    with call.read() as s:
        _project(call, s, "secretmanager.locations.list")
    everything = [_location_json(call.params["project"], region) for region in sorted(names.REGIONS)]
    items, token = call.page(everything)
    return {"locations": items, **({"nextPageToken": token} if token else {})}


def routes(state: ServerState) -> list[Route]:
    def admin(http_method: str, path: str, handler: Callable[[Call], Any], method: str) -> Route:
        return route(state, http_method, path, handler, service=SERVICE, method=PREFIX + method)

    def read(http_method: str, path: str, handler: Callable[[Call], Any], method: str,
             log_type: str = ADMIN_READ) -> Route:
        return route(state, http_method, path, _data_access(method, log_type, handler), audited=False)

    locations = "/v1/projects/{project}/locations"
    # Regional secrets (projects/P/locations/L/secrets/S, issue #20) take the same handlers.
    return [route(state, "GET", locations + "/{location}", get_location, audited=False),
            route(state, "GET", locations, list_locations, audited=False),
            *_secret_routes(admin, read, state, "/v1/projects/{project}/locations/{location}/secrets"),
            *_secret_routes(admin, read, state, "/v1/projects/{project}/secrets")]


def _secret_routes(admin: Callable[..., Route], read: Callable[..., Route], state: ServerState,
                   secrets: str) -> list[Route]:
    secret = secrets + "/{secret}"
    version = secret + "/versions/{version}"
    # Custom methods (`name:verb`) come before the plain resource routes they would also match.
    return [
        read("GET", version + ":access", access_version, "AccessSecretVersion", DATA_READ),
        admin("POST", version + ":enable", change_version("secretmanager.versions.enable", versions_domain.enable,
                                                      notifications.SECRET_VERSION_ENABLE), "EnableSecretVersion"),
        admin("POST", version + ":disable", change_version("secretmanager.versions.disable", versions_domain.disable,
                                                       notifications.SECRET_VERSION_DISABLE), "DisableSecretVersion"),
        admin("POST", version + ":destroy", change_version("secretmanager.versions.destroy", versions_domain.destroy,
                                                       notifications.SECRET_VERSION_DESTROY), "DestroySecretVersion"),
        read("GET", version, get_version, "GetSecretVersion"),
        read("GET", secret + "/versions", list_versions, "ListSecretVersions"),
        admin("POST", secret + ":addVersion", add_version, "AddSecretVersion"),
        read("GET", secret + ":getIamPolicy", get_iam_policy, "GetIamPolicy"),
        read("POST", secret + ":getIamPolicy", get_iam_policy, "GetIamPolicy"),
        admin("POST", secret + ":setIamPolicy", set_iam_policy, "SetIamPolicy"),
        route(state, "POST", secret + ":testIamPermissions", test_iam_permissions, audited=False),
        read("GET", secret, get_secret, "GetSecret"),
        admin("PATCH", secret, patch_secret, "UpdateSecret"),
        admin("DELETE", secret, delete_secret, "DeleteSecret"),
        read("GET", secrets, list_secrets, "ListSecrets"),
        admin("POST", secrets, create_secret, "CreateSecret"),
    ]
