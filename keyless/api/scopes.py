"""OAuth scopes, enforced per API method as Google does (issue #19): a token may call a method
only if it carries one of the scopes the method's discovery document lists (`cloud-platform`
is among them for every Cloud API); otherwise 403 PERMISSION_DENIED with reason
ACCESS_TOKEN_SCOPE_INSUFFICIENT (Cloud Storage answers in its own shape: keyless.api.storage.wire).

The table (scopes.json, package data) is generated from the discovery documents by
scripts/scope_table.py and keyed by route (`route_key`). `bind` looks each route up once, when
the app is assembled, and puts its `MethodScopes` in the request's ASGI scope; the endpoints
check it after authentication: one frozenset test per call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from keyless.errors import PermissionDenied
from keyless.tokens.access import CLOUD_PLATFORM, AccessToken

TABLE = files("keyless.api") / "scopes.json"
SCOPE_KEY = "keyless.scopes"  # where a bound route puts its MethodScopes in the ASGI scope
INSUFFICIENT_SCOPES = "Request had insufficient authentication scopes."

# Keyless's prefixes of Google APIs -> the API's service name. Routes under these prefixes that
# the table does not list accept cloud-platform only (tests/api/test_scopes.py lists none).
PREFIX_SERVICES = {
    "iam": "iam.googleapis.com", "iamcredentials": "iamcredentials.googleapis.com",
    "cloudresourcemanager": "cloudresourcemanager.googleapis.com", "serviceusage": "serviceusage.googleapis.com",
    "secretmanager": "secretmanager.googleapis.com", "pubsub": "pubsub.googleapis.com",
    "logging": "logging.googleapis.com",
    "container": "container.googleapis.com", "storage": "storage.googleapis.com",
    "cloudasset": "cloudasset.googleapis.com", "upload": "storage.googleapis.com", "download": "storage.googleapis.com", "resumable": "storage.googleapis.com",
}
_VARIABLE = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True)
class MethodScopes:
    """What one API method accepts, and how Google names it in ErrorInfo."""

    service: str  # e.g. "secretmanager.googleapis.com"
    method: str  # the discovery method id, e.g. "secretmanager.projects.secrets.versions.access"
    accepted: frozenset[str]

    def allows(self, token: AccessToken) -> bool:
        return not self.accepted.isdisjoint(token.scopes)


def route_key(http_method: str, path: str) -> str:
    """`GET /secretmanager/v1/projects/{}/secrets/{}`: the route's method and path, variables as {}."""
    return f"{http_method.upper()} {_VARIABLE.sub('{}', path)}"


@cache
def table() -> dict[str, MethodScopes]:
    raw: dict[str, Any] = json.loads(TABLE.read_text())
    sets = [frozenset(s) for s in raw["scopeSets"]]
    return {key: MethodScopes(service, method, sets[index]) for key, (index, service, method) in raw["routes"].items()}


def for_route(prefix: str, http_method: str, path: str) -> MethodScopes | None:
    """The scopes a route under `/prefix` accepts (None: no scope check, for routes that are no
    Google API's and for methods whose document lists no scopes, which need no credential)."""
    service = PREFIX_SERVICES.get(prefix)
    if service is None:
        return None
    found = table().get(route_key(http_method, f"/{prefix}{path}"))
    if found is None:
        return MethodScopes(service, "", frozenset({CLOUD_PLATFORM}))
    return found if found.accepted else None


def bind(prefix: str, routes: Sequence[BaseRoute]) -> None:
    """Give each route under `/prefix` its methods' scopes (at assembly, not per request)."""
    for route in routes:
        if not isinstance(route, Route) or not route.methods:
            continue
        by_method = {m: for_route(prefix, m, route.path) for m in route.methods if m != "HEAD"}
        if "GET" in by_method:
            by_method["HEAD"] = by_method["GET"]
        if any(v is not None for v in by_method.values()):
            route.app = _with_scopes(route.app, by_method)


def _with_scopes(app: ASGIApp, by_method: dict[str, MethodScopes | None]) -> ASGIApp:
    async def scoped(scope: Scope, receive: Receive, send: Send) -> None:
        scope[SCOPE_KEY] = by_method.get(scope.get("method", ""))
        await app(scope, receive, send)

    return scoped


def insufficient(needed: MethodScopes) -> PermissionDenied:
    """Google's answer to a token without any of the method's scopes."""
    return PermissionDenied(INSUFFICIENT_SCOPES, details=[{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        "domain": "googleapis.com",
        "metadata": {"service": needed.service, "method": needed.method},
    }])


def require(token: AccessToken, needed: MethodScopes | None) -> None:
    if needed is not None and not needed.allows(token):
        raise insufficient(needed)
