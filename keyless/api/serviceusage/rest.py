"""Service Usage API (serviceusage.googleapis.com v1), as far as gcloud needs it:
`gcloud projects create` enables cloudapis.googleapis.com on the new project and waits on
the operation (https://cloud.google.com/service-usage/docs/reference/rest/v1/services/enable).
Keyless serves every API on every project, so enabling records the fact and succeeds.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route

from keyless import operations, projects
from keyless.api.http import Call, route
from keyless.errors import InvalidArgument, NotFound
from keyless.state import ServerState

SERVICE = "serviceusage.googleapis.com"
SERVICE_NAME = re.compile(r"^[a-z0-9.-]{1,100}\.googleapis\.com$")
RESPONSE_TYPE = "type.googleapis.com/google.api.serviceusage.v1.EnableServiceResponse"


def enable_service(call: Call) -> dict[str, Any]:
    service = call.params["service"]
    if not SERVICE_NAME.match(service):
        raise InvalidArgument(f"Invalid service name {service}.")
    with call.write() as s:
        row = projects.find_project(s, call.params["project"])
        pid = row.project_id if row else call.params["project"]
        call.touch(project_id=pid, name=f"projects/{pid}/services/{service}", type="audited_resource",
                   labels={"service": SERVICE, "method": "google.api.serviceusage.v1.ServiceUsage.EnableService"})
        call.require("serviceusage.services.enable",
                     projects.project_chain(pid) if row else [projects.ROOT], f"projects/{pid}")
        if row is None:
            raise NotFound(f"Project '{pid}' not found.")
        enabled = sorted(set((row.settings or {}).get("enabledServices", [])) | {service})
        row.settings = {**(row.settings or {}), "enabledServices": enabled}
        response = {"service": {"name": f"projects/{row.project_number}/services/{service}", "state": "ENABLED"}}
        return operations.record_done(s, f"operations/acf.p2-{row.project_number}-{operations.new_id()}",
                                      response, response_type=RESPONSE_TYPE)


def get_operation(call: Call) -> dict[str, Any]:
    with call.read() as s:
        return operations.get(s, f"operations/{call.params['operation']}")


def routes(state: ServerState) -> list[Route]:
    return [
        route(state, "POST", "/v1/projects/{project}/services/{service}:enable", enable_service, service=SERVICE,
              method="google.api.serviceusage.v1.ServiceUsage.EnableService"),
        route(state, "GET", "/v1/operations/{operation}", get_operation),
    ]
