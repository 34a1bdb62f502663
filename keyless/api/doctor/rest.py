"""The doctor over HTTP, for the console to come: `GET /doctor/v1/access` answers `keyless doctor
access` as JSON (keyless.doctor.access). Not a Google API; errors are in Google's shape.

The analysis reads every IAM policy, so the caller must be able to read every project's policy:
`resourcemanager.projects.getIamPolicy` on the root (owners, viewers and security reviewers
there), which reveals nothing they could not read already.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from keyless.api.http import Call, route
from keyless.doctor import access
from keyless.errors import InvalidArgument
from keyless.projects import ROOT
from keyless.state import ServerState

PERMISSION = "resourcemanager.projects.getIamPolicy"
QUERY = {"identity", "pod", "cluster", "resource", "permission", "attribute", "group"}


def get_access(call: Call) -> dict[str, Any]:
    call.state.authz.require(call.principal, PERMISSION, [ROOT], "the root")
    unknown = set(call.query) - QUERY
    if unknown:
        raise InvalidArgument(f"Unknown query parameter {sorted(unknown)[0][:64]!r}.")
    attributes = {}
    for item in call.args("attribute"):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidArgument(f"attribute takes NAME=VALUE, not {item[:200]!r}.")
        attributes[name] = value
    setup, analysis = access.analyze(
        call.state, identity=call.arg("identity"), pod=call.arg("pod"), cluster=call.arg("cluster"),
        resource=call.arg("resource"), permission=call.arg("permission"), attributes=attributes,
        groups=tuple(call.args("group")))
    return analysis.as_json(setup)


def routes(state: ServerState) -> list[Route]:
    return [route(state, "GET", "/v1/access", get_access, audited=False)]
