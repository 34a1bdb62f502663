"""Each GKE cluster's Kubernetes API server, the subset kubectl needs for the seeds, in Kubernetes'
own wire format (https://kubernetes.io/docs/reference/using-api/api-concepts/): discovery
(keyless.api.kubernetes.discovery), namespaces, serviceaccounts with their `token`
subresource (TokenRequest), pods (with `exec` and `attach`, keyless.api.kubernetes.exec) and
deployments; list, watch, Table output, `kind: Status` errors.

The cluster's endpoint is a path prefix on Keyless's ports (keyless.gke.clusters.kubernetes_endpoint):
`/kubernetes/projects/P/locations/L/clusters/C/api/v1/...`. Callers authenticate with their
Keyless access token, as with gke-gcloud-auth-plugin on GKE, and are authorised by IAM with
GKE's `container.*` permissions (https://cloud.google.com/kubernetes-engine/docs/how-to/iam), so
roles/container.developer, roles/container.admin and roles/owner work as on GKE; RBAC objects
are not modelled. The objects are keyless.gke.kubernetes's, the same rows `keyless k8s`, pods
and the doctor read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from keyless import projects
from keyless.api.http import has_nul, read_body, read_json
from keyless.api.kubernetes import protobuf
from keyless.api.kubernetes.discovery import (
    BY_PATH,
    SUBRESOURCES,
    Resource,
    discovery,
    openapi_v2_document,
    openapi_v3,
    table,
)
from keyless.errors import Aborted, AlreadyExists, InvalidArgument, KeylessError, NotFound, Unauthenticated
from keyless.gke import clusters, issuer, kubernetes
from keyless.iam.principal import Principal
from keyless.state import ServerState
from keyless.store.models import GkeCluster

SERVICE = "container.googleapis.com"
PREFIX = "/projects/{project}/locations/{location}/clusters/{cluster}"
JSON = "application/json"
WATCH_SECONDS = 300  # the longest a watch is held open (kubectl re-watches)
WATCH_POLL = 0.2


class UnsupportedMediaType(InvalidArgument):
    """415: kubectl then sends JSON (client-go retries a protobuf body as JSON)."""

    http_status = 415


PATCH_TYPES = {"application/merge-patch+json": "merge", "application/strategic-merge-patch+json": "strategic",
               "application/json-patch+json": "json"}


# -- Status objects --------------------------------------------------------------------------------

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
           409: "Conflict", 415: "UnsupportedMediaType", 422: "Invalid", 500: "InternalError"}


def status(code: int, message: str, reason: str | None = None, details: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason or REASONS.get(code, "Unknown"), "code": code}
    if details:
        body["details"] = details
    return _json(body, code)


def _json(body: Any, code: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")).encode(), status_code=code, media_type=JSON)


def error_status(error: KeylessError, resource: Resource | None = None, name: str = "") -> Response:
    """A Keyless error as Kubernetes' Status (reason, code and details as the API server sets them)."""
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if resource is not None:
        if resource.group:
            details["group"] = resource.group
        details["kind"] = resource.name
    if isinstance(error, kubernetes.Invalid):
        details = {"name": error.name, **({"group": resource.group} if resource and resource.group else {}),
                   "kind": error.kind, "causes": error.causes}
        return status(422, error.message, "Invalid", details)
    if isinstance(error, AlreadyExists):
        return status(409, error.message, "AlreadyExists", details)
    if isinstance(error, Aborted):
        return status(409, error.message, "Conflict", details)
    if isinstance(error, NotFound):
        return status(404, error.message, "NotFound", details)
    if isinstance(error, Unauthenticated):
        return status(401, "Unauthorized", "Unauthorized")
    if isinstance(error, UnsupportedMediaType):
        return status(415, error.message, "UnsupportedMediaType")
    if isinstance(error, InvalidArgument):
        return status(400, error.message, "BadRequest")
    return status(error.http_status, error.message)


def not_found_path() -> Response:
    return status(404, "the server could not find the requested resource", "NotFound", {})


# -- requests --------------------------------------------------------------------------------------

@dataclass
class Target:
    """What a resource URL names."""

    resource: Resource
    namespace: str | None  # None: all namespaces (lists) or cluster-scoped
    name: str | None
    subresource: str | None


def parse_path(parts: list[str]) -> Target | None:
    """`api/v1/namespaces/NS/serviceaccounts/NAME/token` and the like; None if no resource."""
    if parts[:1] == ["api"] and len(parts) >= 3:
        gv, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and (gv, rest[2]) in BY_PATH:
        namespace, rest = rest[1], rest[2:]
    resource = BY_PATH.get((gv, rest[0]))
    if resource is None or len(rest) > 3 or (namespace is not None and not resource.namespaced):
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and (resource.name, sub) not in SUBRESOURCES:
        return None
    return Target(resource, namespace, name, sub)


def _verb(method: str, target: Target, watch: bool) -> str:
    if target.name is None:
        return {"GET": "watch" if watch else "list", "POST": "create"}.get(method, "")
    if method == "POST" and target.subresource is None:
        return ""  # objects are created on their collection, as on Kubernetes (405 here)
    return {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "POST": "create"}.get(method, "")


def permission(target: Target, verb: str) -> str:
    if target.subresource:
        return f"container.{target.resource.permission}.{SUBRESOURCES[(target.resource.name, target.subresource)][2]}"
    iam_verb = {"watch": "list", "patch": "update"}.get(verb, verb)
    return f"container.{target.resource.permission}.{iam_verb}"


def forbidden(principal: Principal, target: Target, verb: str, perm: str) -> Response:
    """GKE's answer when IAM (and RBAC) refuse: the API server's Forbidden Status."""
    r = target.resource
    what = f"{r.name}/{target.subresource}" if target.subresource else r.name
    subject = f'{r.name} "{target.name}"' if target.name else r.name
    scope = f'in the namespace "{target.namespace}"' if target.namespace else "at the cluster scope"
    user = principal.email or principal.member
    message = (f'{subject} is forbidden: User "{user}" cannot {verb} resource "{what}" in API group "{r.group}" '
               f'{scope}: requires one of ["{perm}"] permission(s).')
    details: dict[str, Any] = {"kind": r.name}
    if target.name:
        details["name"] = target.name
    if r.group:
        details["group"] = r.group
    return status(403, message, "Forbidden", details)


class ClusterApi:
    """The Kubernetes API of every cluster in the store."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def authenticate(self, request: HTTPConnection) -> Principal:
        return self.state.authenticate(request.headers.get("authorization"), SERVICE).principal

    def cluster(self, request: HTTPConnection) -> GkeCluster | None:
        p = request.path_params
        with self.state.db.read() as s:
            return clusters.find_cluster(s, p["project"], p["cluster"], p["location"])

    def allowed(self, principal: Principal, cluster: GkeCluster, perm: str) -> bool:
        return self.state.authz.check(principal, perm, projects.project_chain(cluster.project_id)).granted

    async def handle(self, request: Request) -> Response:
        try:
            principal = await run_in_threadpool(self.authenticate, request)
        except KeylessError as error:
            return error_status(error)
        cluster = await run_in_threadpool(self.cluster, request)
        if cluster is None:
            return not_found_path()
        parts = [p for p in request.path_params["rest"].split("/") if p]
        method = request.method
        if method == "GET":
            if parts == ["openapi", "v2"]:
                return Response(openapi_v2_document(), media_type="application/octet-stream")
            found = discovery(parts) or openapi_v3(parts, request.url.path[:-len(request.path_params["rest"]) - 1])
            if found is not None:
                return _json(found)
        target = parse_path(parts)
        if target is None:
            return not_found_path()
        query = request.query_params
        watch = query.get("watch") in ("true", "1")
        verb = _verb(method, target, watch)
        if not verb or (target.subresource is not None and verb not in
                        SUBRESOURCES[(target.resource.name, target.subresource)][1]):
            return status(405, "the server does not allow this method on the requested resource", "MethodNotAllowed")
        perm = permission(target, verb)
        if not await run_in_threadpool(self.allowed, principal, cluster, perm):
            return forbidden(principal, target, verb, perm)
        if query.get("dryRun"):
            return status(400, "Keyless does not support dryRun; run the command without --dry-run=server")
        if target.subresource in ("exec", "attach"):  # WebSocket upgrades are keyless.api.kubernetes.exec's routes
            return status(400, "Upgrade request required: Keyless streams exec and attach over WebSocket "
                               "(v5.channel.k8s.io), which kubectl >= 1.30 speaks (1.29 with "
                               "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true); SPDY is not served", "BadRequest")
        body: Any = None
        try:
            if verb == "watch":
                return await self.watch(cluster, target, request)
            if method in ("POST", "PUT", "PATCH"):
                body = await self.body(request)
            return await run_in_threadpool(self.serve, cluster, target, verb, request, body)
        except KeylessError as error:
            return error_status(error, target.resource, target.name or _body_name(body if method != "GET" else None))

    async def body(self, request: Request) -> Any:
        if request.method == "PATCH":
            kind = request.headers.get("content-type", "").split(";")[0].strip()
            if kind not in PATCH_TYPES:  # application/apply-patch+yaml too: server-side apply is not served
                raise UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media "
                                           f"types include: {', '.join(PATCH_TYPES)}")
            raw = await read_body(request, self.state.settings.max_body_bytes)
            try:
                patch = json.loads(raw)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than the parser goes
                raise InvalidArgument(f"error decoding patch: {exc}") from exc
            if b"\\u0000" in raw and has_nul(patch):
                raise InvalidArgument("error decoding patch: a string contains a NUL character (\\u0000)")
            return patch
        content = request.headers.get("content-type", JSON).split(";")[0].strip()
        if content == protobuf.MEDIA_TYPE:  # kubectl >= 1.32's create and create token
            return protobuf.decode(await read_body(request, self.state.settings.max_body_bytes))
        if content not in (JSON, ""):
            raise UnsupportedMediaType(f'the body of the request was in an unknown format - accepted media types '
                                       f'include: {JSON}, {protobuf.MEDIA_TYPE}')
        try:
            return await read_json(request, self.state.settings.max_body_bytes)
        except KeylessError as error:
            raise InvalidArgument(error.message) from error

    def serve(self, cluster: GkeCluster, target: Target, verb: str, request: Request, body: Any) -> Response:
        r, ns = target.resource, target.namespace or ("" if not target.resource.namespaced else "default")
        if verb in ("create", "update") and not isinstance(body, dict):
            raise InvalidArgument("the request body must be an object")
        if target.subresource == "token":
            with self.state.db.read() as s:
                kubernetes.read(s, cluster, "ServiceAccount", ns, target.name or "")
            return _json(token_request(cluster, ns, target.name or "", body), 201)
        if target.subresource is not None and verb != "get":
            raise InvalidArgument(f"Keyless does not support changing {r.name}/{target.subresource}")
        if verb == "list":
            with self.state.db.read() as s:
                items = kubernetes.listing(s, cluster, r.kind, target.namespace if r.namespaced else None)
            items = select(items, request.query_params.get("fieldSelector"), request.query_params.get("labelSelector"))
            return self.render_list(r, items, request)
        if verb == "get":
            with self.state.db.read() as s:
                obj = kubernetes.read(s, cluster, r.kind, ns, target.name or "")
            if target.subresource == "log":
                return Response(b"", media_type="text/plain")
            return self.render_object(r, obj, request)
        if not isinstance(body, dict) and verb != "delete" and not (verb == "patch" and isinstance(body, list)):
            raise InvalidArgument("the request body must be an object")
        with self.state.db.write() as s:
            if verb == "create":
                _check_kind(r, body)
                given_ns = (body.get("metadata") or {}).get("namespace") if isinstance(body.get("metadata"), dict) \
                    else None
                if r.namespaced and given_ns and given_ns != ns:
                    raise InvalidArgument("the namespace of the provided object does not match the namespace sent "
                                          "on the request")
                return self.render_object(r, kubernetes.create(s, cluster, r.kind, ns, body), request, 201)
            if verb == "update":
                _check_kind(r, body)
                return self.render_object(r, kubernetes.replace(s, cluster, r.kind, ns, target.name or "", body),
                                          request)
            if verb == "patch":
                kind = PATCH_TYPES[request.headers.get("content-type", "").split(";")[0].strip()]
                return self.render_object(r, kubernetes.patch(s, cluster, r.kind, ns, target.name or "", kind, body),
                                          request)
            return self.render_object(r, kubernetes.remove(s, cluster, r.kind, ns, target.name or ""), request)

    def render_object(self, r: Resource, obj: dict[str, Any], request: Request, code: int = 200) -> Response:
        obj = {"apiVersion": r.group_version, "kind": r.kind, **obj}
        if _wants_table(request):
            return _json(table(r, [obj]), code)
        return _json(obj, code)

    def render_list(self, r: Resource, items: list[dict[str, Any]], request: Request) -> Response:
        version = max((str((i.get("metadata") or {}).get("resourceVersion") or "0") for i in items), default="0",
                      key=int)
        if _wants_table(request):
            return _json({**table(r, items), "metadata": {"resourceVersion": version}})
        return _json({"kind": f"{r.kind}List", "apiVersion": r.group_version, "metadata": {"resourceVersion": version},
                      "items": [{"apiVersion": r.group_version, "kind": r.kind, **i} for i in items]})

    async def watch(self, cluster: GkeCluster, target: Target, request: Request) -> Response:
        """Watch events (one JSON object a line) from the given resourceVersion on, polling the store."""
        r, q = target.resource, request.query_params
        since = int(q.get("resourceVersion") or "0") if (q.get("resourceVersion") or "0").isdigit() else 0
        try:
            seconds = min(int(q.get("timeoutSeconds") or WATCH_SECONDS), WATCH_SECONDS)
        except ValueError:
            seconds = WATCH_SECONDS

        def snapshot() -> dict[tuple[str, str], dict[str, Any]]:
            with self.state.db.read() as s:
                items = kubernetes.listing(s, cluster, r.kind, target.namespace if r.namespaced else None)
            items = select(items, q.get("fieldSelector"), q.get("labelSelector"))
            return {(i["metadata"].get("namespace", ""), i["metadata"]["name"]): i for i in items}

        async def events() -> AsyncIterator[bytes]:
            seen: dict[tuple[str, str], dict[str, Any]] = {}
            first = True
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                now = await run_in_threadpool(snapshot)
                for key, obj in now.items():
                    rv = int(obj["metadata"].get("resourceVersion") or 0)
                    old = seen.get(key)
                    if (first and rv > since) or (not first and (old is None or old != obj)):
                        kind = "ADDED" if old is None and (first is False or since == 0) else "MODIFIED"
                        yield _event(kind, r, obj)
                for key, obj in seen.items():
                    if key not in now:
                        yield _event("DELETED", r, obj)
                seen, first = now, False
                if await request.is_disconnected():
                    return
                await asyncio.sleep(WATCH_POLL)

        return StreamingResponse(events(), media_type=JSON)


def _event(kind: str, r: Resource, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": {"apiVersion": r.group_version, "kind": r.kind, **obj}},
                      separators=(",", ":")).encode() + b"\n"


def _body_name(body: Any) -> str:
    meta = body.get("metadata") if isinstance(body, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


def _check_kind(r: Resource, body: dict[str, Any]) -> None:
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind not in (None, r.kind) or api_version not in (None, r.group_version):
        raise InvalidArgument(f"the API version in the data ({api_version}) does not match the expected API version "
                              f"({r.group_version})" if kind == r.kind else
                              f"{kind} in version \"{api_version}\" cannot be handled as a {r.kind}")


def select(items: list[dict[str, Any]], fields: str | None, labels: str | None) -> list[dict[str, Any]]:
    """fieldSelector (metadata.name, metadata.namespace, =, ==, !=) and equality labelSelectors."""
    def matches(obj: dict[str, Any], selector: str | None, value_of: Callable[[dict[str, Any], str], Any]) -> bool:
        for term in filter(None, (selector or "").split(",")):
            negate = "!=" in term
            key, _, want = term.replace("!=", "=").replace("==", "=").partition("=")
            if (value_of(obj, key.strip()) == want.strip()) == negate:
                return False
        return True

    def field(obj: dict[str, Any], key: str) -> Any:
        value: Any = obj
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    def label(obj: dict[str, Any], key: str) -> Any:
        return ((obj.get("metadata") or {}).get("labels") or {}).get(key)

    return [i for i in items if matches(i, fields, field) and matches(i, labels, label)]


def token_request(cluster: GkeCluster, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """TokenRequest (authentication.k8s.io/v1): a projected token of the KSA, signed by the
    cluster's issuer, for the audiences asked (the issuer's own URL by default, as GKE's API server)."""
    spec: dict[str, Any] = body["spec"] if isinstance(body.get("spec"), dict) else {}
    audiences = spec.get("audiences") or [issuer.issuer_url(cluster)]
    if not isinstance(audiences, list) or not all(isinstance(a, str) and a for a in audiences):
        raise InvalidArgument("spec.audiences must be a list of strings")
    seconds = spec.get("expirationSeconds") or 3600
    if not isinstance(seconds, int) or seconds < 600:
        raise kubernetes.Invalid("TokenRequest", name, [{
            "reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
            "message": "Invalid value: may not specify a duration less than 10 minutes"}])
    seconds = min(seconds, issuer.MAX_LIFETIME)
    bound = spec.get("boundObjectRef") if isinstance(spec.get("boundObjectRef"), dict) else None
    token = issuer.mint_ksa_token(cluster, namespace=namespace, service_account=name, audience=audiences,
                                  lifetime=seconds,
                                  pod_name=bound.get("name") if bound and bound.get("kind") == "Pod" else None,
                                  pod_uid=bound.get("uid") if bound and bound.get("kind") == "Pod" else None)
    expires = datetime.fromtimestamp(time.time() + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": bound},
            "status": {"token": token, "expirationTimestamp": expires}}


def _wants_table(request: Request) -> bool:
    return "as=Table" in request.headers.get("accept", "")


def routes(state: ServerState) -> list[BaseRoute]:
    from keyless.api.kubernetes.exec import websocket_routes

    api = ClusterApi(state)
    return [*websocket_routes(api),
            Route(PREFIX + "/{rest:path}", api.handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]
