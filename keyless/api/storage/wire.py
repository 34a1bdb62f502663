"""How Cloud Storage's JSON API differs on the wire from Google's other JSON APIs: its error
body (`{"error": {"code", "message", "errors": [{"message", "domain", "reason"}]}}`, no
`status`), its denial messages ("EMAIL does not have P access to the Google Cloud Storage
object."), anonymous callers (401, or allowed by `allUsers`), and raw media bodies.

Follows https://cloud.google.com/storage/docs/json_api/v1/status-codes and the bodies that
google-cloud-storage and gcloud parse (reason `forbidden`, `notFound`, `conditionNotMet`...).
"""

from __future__ import annotations

import inspect
import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from keyless.api import scopes, system_parameters
from keyless.api.http import Call, read_json, unexpected_failure
from keyless.api.system_parameters import SystemParameters
from keyless.audit import log as audit
from keyless.audit.data_access import ADMIN_READ, DATA_READ, DATA_WRITE, data_access_enabled
from keyless.audit.log import DATA_ACCESS, AuditRecord
from keyless.errors import InvalidArgument, KeylessError, PermissionDenied, Unauthenticated
from keyless.iam.evaluate import ResourceContext
from keyless.iam.principal import ANONYMOUS, Principal
from keyless.state import ServerState
from keyless.storage import buckets, managed_folders, objects, relocation
from keyless.storage.blobs import BlobStore
from keyless.storage.buckets import bucket_context
from keyless.storage.names import validate_bucket_name
from keyless.storage.objects import object_context
from keyless.storage.uploads import UploadSessions
from keyless.store.models import StorageBucket

logger = logging.getLogger("keyless.api.storage")

SERVICE = "storage.googleapis.com"
# The largest object Keyless accepts (Google: 5 TiB); KEYLESS_STORAGE_MAX_OBJECT_BYTES overrides.
MAX_OBJECT_BYTES = int(os.environ.get("KEYLESS_STORAGE_MAX_OBJECT_BYTES", str(5 * 1024**3)))
REASONS = {400: "invalid", 401: "required", 403: "forbidden", 404: "notFound", 409: "conflict",
           412: "conditionNotMet", 413: "uploadTooLarge", 416: "requestedRangeNotSatisfiable",
           429: "rateLimitExceeded", 500: "backendError", 501: "notImplemented", 503: "backendError"}
METHOD_LOG = {"storage.managedFolders.get": ADMIN_READ, "storage.managedFolders.list": ADMIN_READ,
              "storage.managedFolders.getIamPolicy": ADMIN_READ,
              "storage.objects.get": DATA_READ, "storage.objects.list": DATA_READ,
              "storage.objects.create": DATA_WRITE, "storage.objects.delete": DATA_WRITE,
              "storage.objects.update": DATA_WRITE, "storage.objects.bulkRestore": DATA_WRITE,
              "storage.objects.viewFullContext": DATA_READ,
              "storage.buckets.operations.get": ADMIN_READ, "storage.buckets.operations.list": ADMIN_READ,
              "storage.getIamPermissions": ADMIN_READ, "storage.buckets.get": ADMIN_READ,
              "storage.buckets.list": ADMIN_READ, "storage.buckets.getStorageLayout": ADMIN_READ}
# What a relocation's write downtime refuses (keyless.storage.relocation).
OBJECT_WRITES = {"storage.objects.create", "storage.objects.delete", "storage.objects.update"}
# Cloud Storage's answer to a token without any of the method's scopes (its own words, not the
# ACCESS_TOKEN_SCOPE_INSUFFICIENT ErrorInfo of Google's other APIs; keyless.api.scopes).
SCOPES_NOT_AUTHORIZED = "Provided scope(s) are not authorized"
WHAT = {"object": "the Google Cloud Storage object", "bucket": "the Google Cloud Storage bucket",
        "managedFolder": "the Google Cloud Storage managed folder",
        "project": "the Google Cloud project"}


@dataclass
class Storage:
    """Per-server storage state beside the store: the blob directory and upload sessions."""

    blobs: BlobStore
    uploads: UploadSessions
    rewrites: UploadSessions


_STORAGE: weakref.WeakKeyDictionary[ServerState, Storage] = weakref.WeakKeyDictionary()


def storage_of(state: ServerState) -> Storage:
    found = _STORAGE.get(state)
    if found is None:
        blobs = BlobStore(state.settings.data_dir, root=state.settings.blob_dir)
        found = _STORAGE.setdefault(state, Storage(blobs, UploadSessions(blobs), UploadSessions(blobs, "rewrites")))
    return found


@dataclass
class StorageCall(Call):
    """A Call that may be anonymous and keeps the HTTP request (headers, media bodies)."""

    request: Request | None = None
    base_url: str = ""

    @property
    def principal(self) -> Principal:
        return self.token.principal if self.token is not None else ANONYMOUS

    @property
    def storage(self) -> Storage:
        return storage_of(self.state)

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name) if self.request is not None else None

    def int_arg(self, name: str) -> int | None:
        raw = self.arg(name)
        if raw is None or raw == "":
            return None
        try:
            value = int(raw) if len(raw) <= 32 else 2**63
        except ValueError as exc:
            raise InvalidArgument(f"Invalid value for {name}: {raw[:64]}") from exc
        if not -2**63 <= value < 2**63:  # every integer parameter is an int64: the store's columns too
            raise InvalidArgument(f"Invalid value for {name}: {raw[:64]}")
        return value

    def authorize(self, permission: str, chain: list[str], context: ResourceContext, kind: str,
                  project_id: str = "") -> None:
        """Check `permission` (403/401 in storage's words), noting it in the audit record.
        The convenience members `projectOwner:P` & co. match holders of P's basic roles."""
        granted = self.allowed(permission, chain, context, project_id)
        if self.record is not None:
            self.record.authorize(context.name, permission, granted)
        if not granted:
            raise denied(self.principal, permission, kind)

    def allowed(self, permission: str, chain: list[str], context: ResourceContext, project_id: str = "") -> bool:
        """IAM's decision for the caller, and, for a downscoped token, its access boundary's."""
        principal = buckets.with_convenience_members(self.state.authz, self.principal, project_id)
        return self.state.authz.check(principal, permission, chain, context).granted \
            and self._within_boundary(permission, context)

    def _within_boundary(self, permission: str, context: ResourceContext) -> bool:
        boundary = self.token.boundary if self.token is not None else None
        if boundary is None:
            return True
        parts = context.name.split("/", 4)  # projects/_/buckets/B[/objects/NAME]
        if len(parts) < 4 or parts[:3] != ["projects", "_", "buckets"]:
            return False  # project-level calls (list or create buckets) name no bucket of a rule
        prefix = (self.arg("prefix") or "") if permission == "storage.objects.list" else ""
        return boundary.allows(permission, parts[3], context.name, context.type, prefix)


# -- what every storage handler does ------------------------------------------------------------

def load_bucket(call: StorageCall) -> StorageBucket:
    """The bucket, its relocation moved on first if a step of it has ended (keyless.storage.relocation)."""
    name = validate_bucket_name(call.params["bucket"])
    with call.read() as s:
        row = buckets.get_bucket(s, name)
    now = datetime.now(UTC)
    if relocation.due(row, now):
        with call.write() as s:
            relocation.settle(s, name, now)
        with call.read() as s:
            row = buckets.get_bucket(s, name)
    return row


def bucket_labels(row: StorageBucket) -> dict[str, str]:
    return {"bucket_name": row.name, "location": row.location.lower(), "project_id": row.project_id}


def touch_bucket(call: StorageCall, row: StorageBucket, resource_name: str = "") -> None:
    call.touch(project_id=row.project_id, name=resource_name or buckets.bucket_resource(row.name),
               type="gcs_bucket", labels=bucket_labels(row))


def authorize_bucket(call: StorageCall, row: StorageBucket, permission: str) -> None:
    call.authorize(permission, buckets.bucket_chain(row), bucket_context(row.name), "bucket", row.project_id)
    if permission in OBJECT_WRITES:  # objects.bulkRestore
        relocation.check_writable(row, datetime.now(UTC))


def authorize_object(call: StorageCall, row: StorageBucket, name: str, permission: str) -> None:
    """On the object, inheriting from the managed folders that hold it, then the bucket's chain."""
    with call.read() as s:
        chain = managed_folders.object_chain(s, row, name)
    call.authorize(permission, chain, object_context(row.name, name), "object", row.project_id)
    if permission in OBJECT_WRITES:  # refused during a relocation's write downtime, once authorized
        relocation.check_writable(row, datetime.now(UTC))


def data_access(call: StorageCall, method: str, row: StorageBucket, resource_name: str, permission: str) -> None:
    """Queue a Data Access entry when the project's auditConfigs enable its log type."""
    log_type = METHOD_LOG[method]
    principal = call.principal
    configs = call.state.authz.audit_configs(buckets.bucket_chain(row)[1:])
    if not data_access_enabled(configs, SERVICE, log_type, principal.member_keys):
        return
    record = AuditRecord(service=SERVICE, method=method, log=DATA_ACCESS, project_id=row.project_id,
                         resource_name=resource_name, resource_type="gcs_bucket", resource_labels=bucket_labels(row))
    record.authorize(resource_name, permission, True)
    call.state.audit.submit(record, principal if call.token is not None else None,
                            caller_ip=call.caller_ip, user_agent=call.user_agent)


def read_preconditions(call: StorageCall) -> objects.Preconditions:
    return objects.Preconditions(call.int_arg("ifGenerationMatch"), call.int_arg("ifGenerationNotMatch"),
                                 call.int_arg("ifMetagenerationMatch"), call.int_arg("ifMetagenerationNotMatch"))


def denied(principal: Principal, permission: str, kind: str) -> KeylessError:
    who = principal.email or principal.member
    if principal is ANONYMOUS:
        return Unauthenticated(f"Anonymous caller does not have {permission} access to {WHAT[kind]}. "
                               f"Permission '{permission}' denied on resource (or it may not exist).")
    return PermissionDenied(f"{who} does not have {permission} access to {WHAT[kind]}. "
                            f"Permission '{permission}' denied on resource (or it may not exist).")


def storage_error(error: KeylessError, params: SystemParameters = system_parameters.DEFAULT) -> Response:
    """Cloud Storage's error body (indented by one, as Cloud Storage pretty-prints)."""
    item: dict[str, Any] = {"message": error.message, "domain": "global",
                            "reason": getattr(error, "reason", "") or REASONS.get(error.http_status, "backendError")}
    headers = None
    if error.http_status == 401:
        item.update(locationType="header", location="Authorization")
        headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
    body = {"error": {"code": error.http_status, "message": error.message, "errors": [item]}}
    return params.render(body, error.http_status, headers, indent=1)


StorageHandler = Callable[[StorageCall], Any] | Callable[[StorageCall], Awaitable[Any]]


def storage_endpoint(state: ServerState, handler: StorageHandler, *, method: str = "",
                     json_body: bool = True, media: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """Like keyless.api.http.endpoint, for storage: optional authentication, the request kept
    for media handlers (which are async and stream), storage's error shape. `media`: the method
    answers `alt=media`. Handlers see the whole query (`alt`, `uploadType`, `userProject` are
    theirs too)."""
    is_async = inspect.iscoroutinefunction(handler)

    async def run(request: Request) -> Response:
        call: StorageCall | None = None
        params = system_parameters.DEFAULT
        try:
            params = system_parameters.read(request.query_params, request.headers, SERVICE, media=media)
            authorization = params.authorization(request.headers.get("authorization"))
            token = state.authenticate(authorization, SERVICE, downscoped=True) if authorization else None
            needed: scopes.MethodScopes | None = request.scope.get(scopes.SCOPE_KEY)
            if token is not None and needed is not None and not needed.allows(token):
                raise PermissionDenied(SCOPES_NOT_AUTHORIZED)
            body = await read_json(request, state.settings.max_body_bytes) \
                if json_body and request.method in ("POST", "PUT", "PATCH") else {}
            query: dict[str, list[str]] = {}
            for k, v in request.query_params.multi_items():
                query.setdefault(k, []).append(v)
            record = audit.AuditRecord(service=SERVICE, method=method) if method else None
            call = StorageCall(state=state, token=token, params=dict(request.path_params), query=query, body=body,
                               record=record, caller_ip=request.client.host if request.client else "",
                               user_agent=request.headers.get("user-agent", ""), request=request,
                               base_url=f"{request.url.scheme}://{request.url.netloc}")
            if params.user_project is not None:
                await run_in_threadpool(system_parameters.check_user_project, state, call.principal,
                                        params.user_project, SERVICE)
            if is_async:
                result = await handler(call)
            else:
                result = await run_in_threadpool(handler, call)
        except KeylessError as error:
            if call is not None and call.record is not None and call.token is not None and not call.audited:
                await run_in_threadpool(_audit_failure, state, call, error)
            return storage_error(error, params)
        except Exception as exc:  # a bug, or the database away: Google's shape, the traceback in our log
            failure = unexpected_failure(request, exc, logger)
            return storage_error(failure, params)
        if isinstance(result, Response):
            return result
        if result is None:  # deletes: 204 and no body, as Cloud Storage answers them (issue #19)
            return Response(status_code=204)
        return params.render(result, indent=1)

    return run


def _audit_failure(state: ServerState, call: StorageCall, error: KeylessError) -> None:
    assert call.record is not None
    if not call.record.resource_name:
        return
    try:
        with state.db.write(bump=False) as s:
            audit.write(s, call.record, call.principal, caller_ip=call.caller_ip, user_agent=call.user_agent,
                        error=error)
    except Exception:
        logger.exception("could not write the audit entry of a failed call")
