"""What the Cloud Logging API's methods share: the project of a path, authorised with Logging's
permissions; Data Access entries for the read methods; the routing thread of a server."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from keyless import projects
from keyless.api.http import Call, data_access_method
from keyless.audit.data_access import ADMIN_READ
from keyless.cloudlogging.export import Router
from keyless.cloudlogging.names import SERVICE
from keyless.iam.evaluate import permission_denied
from keyless.state import ServerState
from keyless.storage.blobs import BlobStore
from keyless.store.models import Project

CONFIG = "google.logging.v2.ConfigServiceV2."
LOGGING = "google.logging.v2.LoggingServiceV2."

_ROUTERS: weakref.WeakKeyDictionary[ServerState, Router] = weakref.WeakKeyDictionary()


def router_of(state: ServerState) -> Router:
    """The server's routing thread (started on first use)."""
    router = _ROUTERS.get(state)
    if router is None:
        blobs = BlobStore(state.settings.data_dir, root=state.settings.blob_dir)
        router = _ROUTERS.setdefault(state, Router(state.db, state.authz, blobs, before=state.audit.flush))
        router.start()
    return router


def project_of(call: Call, s: Any, permission: str, *, resource: str = "", kind: str = "audited_resource",
               labels: dict[str, str] | None = None) -> Project:
    """The project of the path (an id or a number) once `permission` is granted on it; the call's
    audit entry names `resource` (by default the project). A missing project is a denial, as on
    Google, which never confirms that a project does not exist."""
    given = call.params["project"]
    row = projects.find_project(s, given, include_deleted=False)
    project_id = row.project_id if row is not None else given
    name = resource.replace("{project}", project_id) if resource else f"projects/{project_id}"
    # audited_resource names the service and method; a typed resource (logging_sink) its own labels
    base = {"service": SERVICE, "method": call.record.method if call.record else ""} \
        if kind == "audited_resource" else {}
    call.touch(project_id=project_id, name=name, type=kind,
               labels={**base, **({"project_id": project_id} if row is not None else {}), **(labels or {})})
    chain = projects.project_chain(row.project_id) if row else [projects.project_resource(given), projects.ROOT]
    call.require(permission, chain, f"projects/{given}")
    if row is None:
        raise permission_denied(permission, f"projects/{given}")
    return row


def data_access(method: str, handler: Callable[[Call], Any], log_type: str = ADMIN_READ) -> Callable[[Call], Any]:
    """Run a read method with its own audit record, written (batched) only where the project's
    auditConfigs enable `log_type` for logging.googleapis.com."""
    return data_access_method(SERVICE, method, handler, log_type)


