"""Assembles the HTTP app: one mount per Google API, each under a path prefix named after its
service, so gcloud's `api_endpoint_overrides/<api>` can point at `http://HOST:PORT/<api>/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from keyless.api.errors import google_error, json_response
from keyless.api.hosts import SENT_PATH, HostRouter, signed_url
from keyless.config import Settings
from keyless.errors import InvalidArgument, NotFound
from keyless.state import ServerState

logger = logging.getLogger("keyless")


def _api(module: str, name: str = "routes") -> Callable[[ServerState], Sequence[BaseRoute]]:
    """`keyless.api.MODULE.NAME`, imported when first called: a server answers its first request
    without importing every API (issue #19: `keyless serve` answers in under a second)."""

    def routes(state: ServerState) -> Sequence[BaseRoute]:
        built: Sequence[BaseRoute] = getattr(importlib.import_module(f"keyless.api.{module}"), name)(state)
        return built

    return routes


# The API prefixes (documented in the README); every one is a mount below.
PREFIXES: dict[str, Callable[[ServerState], Sequence[BaseRoute]]] = {
    "iam": _api("iam"),
    "cloudresourcemanager": _api("resourcemanager"),
    "serviceusage": _api("serviceusage"),
    "sts": _api("sts"),
    "iamcredentials": _api("iamcredentials"),
    "oauth2": _api("oauth2"),
    "robot": _api("robot"),  # Google's public service-account certificates
    "idp": _api("idp"),  # Keyless's own test issuers (not a Google API)
    "storage": _api("storage"),
    "upload": _api("storage", "upload_routes"),  # Cloud Storage media uploads: /upload/storage/v1/...
    "download": _api("storage", "download_routes"),  # Cloud Storage media downloads: /download/storage/v1/...
    "resumable": _api("storage", "resumable_routes"),  # gcloud's resumable uploads: /resumable/upload/storage/v1/...
    "secretmanager": _api("secretmanager"),
    "pubsub": _api("pubsub.rest"),
    "logging": _api("logging"),
    "container": _api("container"),
    "cloudasset": _api("cloudasset"),
    "kubernetes": _api("kubernetes"),  # each GKE cluster's Kubernetes API (its endpoint; keyless.api.kubernetes)
    "doctor": _api("doctor"),  # Keyless's doctor (not a Google API): /doctor/v1/access
    "keyless": _api("emulator"),  # Keyless's emulator controls (not a Google API): /keyless/v1/state:reset
}
OWNER_TOKEN_REFRESH_SECONDS = 3600
AUDIT_PRUNE_SECONDS = 3600
LOG_ROUTING_DELAY_SECONDS = 5


NUL_IN_PATH = google_error(InvalidArgument("Invalid request: the URL contains a NUL character (%00)."))


async def not_found(request: Request, exc: Exception | None = None) -> Response:
    return google_error(NotFound(f"The requested URL {request.url.path} was not found on this server."))


def _router(routes: Sequence[BaseRoute], *, redirect_slashes: bool = False) -> Router:
    """Google's API frontends answer a path with a stray trailing slash 404, never a redirect (and
    Starlette's redirect would be an absolute URL built from the request's Host header, issue #23)."""
    return Router(routes=routes, default=_not_found_app, redirect_slashes=redirect_slashes)


def _router_of(prefix: str, routes: Callable[[ServerState], Sequence[BaseRoute]],
               state: ServerState) -> Callable[[], ASGIApp]:
    def build() -> ASGIApp:
        built = routes(state)
        from keyless.api import scopes

        scopes.bind(prefix, built)  # each Google API method's OAuth scopes (keyless.api.scopes)
        # the Kubernetes API (not a Google frontend) keeps the redirects it was built and tested with
        return _router(built, redirect_slashes=prefix == "kubernetes")

    return build


class _LazyMount(Mount):
    """A mount whose app is built by its first request (importing its API then). The built app
    then replaces the loader as the mount's app, so later requests go straight to it."""

    def __init__(self, path: str, build: Callable[[], ASGIApp]) -> None:
        super().__init__(path, app=self._first)
        self._build = build

    async def _first(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app == self._first:  # requests are handled on one event loop: no other builds it meanwhile
            self._base_app = self.app = self._build()
        await self.app(scope, receive, send)


async def _not_found_app(scope: Scope, receive: Receive, send: Send) -> None:
    response = await not_found(Request(scope, receive))
    await response(scope, receive, send)


def build_app(state: ServerState, *, refresh_owner_token: bool = True) -> ASGIApp:
    """The ASGI app for `state`; its lifespan keeps the owner token file fresh."""

    async def health(_: Request) -> Response:
        return json_response({"status": "SERVING"})

    def console() -> ASGIApp:  # the web console (not a Google API): /console/
        from keyless.console.app import build

        return build(state)

    async def console_root(request: Request) -> Response:  # GET /console: to /console/, relatively
        from keyless.console.app import root

        return await root(request)

    mounts: list[Route | Mount] = [Route("/healthz", health), Route("/console", console_root),
                                   _LazyMount("/console", console)]
    mounts += [_LazyMount(f"/{prefix}", _router_of(prefix, routes, state)) for prefix, routes in PREFIXES.items()]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Data Access entries a killed server had journaled but not written (keyless.audit.journal).
        await asyncio.to_thread(state.audit.recover)
        tasks = [asyncio.create_task(_prune_audit_log(state)), asyncio.create_task(_route_logs(state)),
                 asyncio.create_task(_push_messages(state)), asyncio.create_task(_rotate_secrets(state))]
        if refresh_owner_token:
            tasks.append(asyncio.create_task(_refresh_owner_token(state)))
        tls = None
        if state.settings.tls_port:  # HTTPS and gRPC, in every worker (keyless.tls.frontend)
            from keyless.tls.frontend import TlsFrontend

            tls = TlsFrontend(keyless, state.settings)
            await tls.start()
        yield
        if tls is not None:
            await tls.stop()
        for task in tasks:
            task.cancel()
        await asyncio.to_thread(state.audit.close)

    app = Starlette(routes=mounts, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found})
    app.state.keyless = state
    hosts = HostRouter(state.settings.universe_domain)
    token_exchange: ASGIApp

    async def first_exchange(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal token_exchange
        from keyless.api import sts

        token_exchange = sts.fast_path(state)
        await token_exchange(scope, receive, send)

    token_exchange = first_exchange  # replaced by the STS fast path at the first exchange

    async def keyless(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and signed_url(scope.get("query_string", b"")):
            # a Cloud Storage V4 signed URL, on any host and path (/BUCKET/OBJECT): the XML API,
            # which checks the signature against the path the client sent (keyless.api.storage.xml_api)
            raw = scope.get("raw_path") or scope["path"].encode()
            scope = {**scope, "path": "/storage" + scope["path"], "raw_path": b"/storage" + raw,
                     SENT_PATH: raw}
        elif scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"host":
                    prefix = hosts.prefix_for(value)
                    if prefix is not None:  # sts.googleapis.com/v1/token is /sts/v1/token
                        scope = {**scope, "path": f"/{prefix}{scope['path']}",
                                 "raw_path": b"/" + prefix.encode() + scope.get("raw_path", b"")}
                    break
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            # %00: no resource name or store takes a NUL (PostgreSQL refuses it; issue #23 item 8)
            if scope["type"] == "http":
                await NUL_IN_PATH(scope, receive, send)
            elif scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        # The hottest endpoint skips the router (same answers as its mounted route).
        if scope["type"] == "http" and scope["path"] == "/sts/v1/token" and scope["method"] == "POST":
            await token_exchange(scope, receive, send)
        else:
            await app(scope, receive, send)

    return keyless


async def _refresh_owner_token(state: ServerState) -> None:
    while True:
        await asyncio.sleep(OWNER_TOKEN_REFRESH_SECONDS)
        try:
            await asyncio.to_thread(state.write_owner_token)
        except Exception:
            logger.exception("could not refresh the owner token")


async def _prune_audit_log(state: ServerState) -> None:
    """Apply the audit log's retention at start and hourly (each worker may; deletes are idempotent)."""
    from keyless.audit.retention import Retention, prune

    while True:
        try:
            await asyncio.to_thread(prune, state.db, datetime.now(UTC), Retention.from_settings(state.settings))
        except Exception:
            logger.exception("could not prune the audit log")
        await asyncio.sleep(AUDIT_PRUNE_SECONDS)


async def _route_logs(state: ServerState) -> None:
    """Start routing to log sinks (keyless.cloudlogging.export) a moment after start, so sinks made
    before a restart route again without waiting for a Logging call (which also starts it)."""
    await asyncio.sleep(LOG_ROUTING_DELAY_SECONDS)
    from keyless.api.logging import router_of

    router = await asyncio.to_thread(router_of, state)
    try:
        await asyncio.Event().wait()
    finally:
        router.stop()


async def _rotate_secrets(state: ServerState) -> None:
    """Start checking Secret Manager rotation schedules (keyless.secretmanager.rotation, issue #20)
    a moment after start, so schedules set before a restart fire without a Secret Manager call."""
    from keyless.api.secretmanager.rest import rotator_of, stop_rotator

    try:
        await asyncio.sleep(LOG_ROUTING_DELAY_SECONDS)
        await asyncio.to_thread(rotator_of, state)
        await asyncio.Event().wait()
    finally:
        stop_rotator(state)  # also one a request started


async def _push_messages(state: ServerState) -> None:
    """Resume Pub/Sub push delivery (keyless.pubsub.push) a moment after start if push
    subscriptions exist; otherwise the first push config set starts it."""
    from keyless.api.pubsub.push import push_subscriptions_exist, pusher_of, stop_pusher

    try:
        await asyncio.sleep(LOG_ROUTING_DELAY_SECONDS)
        if await asyncio.to_thread(push_subscriptions_exist, state):
            await asyncio.to_thread(pusher_of, state)
        await asyncio.Event().wait()
    finally:
        stop_pusher(state)  # also one a request started


def create_app(settings: Settings | None = None) -> ASGIApp:
    """App factory for `uvicorn --factory keyless.app:create_app` (settings from the environment)."""
    state = ServerState(settings or Settings.from_env())
    state.bootstrap()
    app = build_app(state)
    tune_gc()
    return app


def tune_gc() -> None:
    """Start-up objects never need collecting: keep them out of every GC pass (gc.freeze). And
    collect young objects less often: a request allocates a few hundred short-lived containers, so
    the default threshold (700) ran a collection every couple of requests. Measured with
    bench/exchange.py: about 7% less CPU per exchange (docs/performance.md)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
