"""Assembles the HTTP app: one mount per Google API, each under a path prefix named after its
service, so gcloud's `api_endpoint_overrides/<api>` can point at `http://HOST:PORT/<api>/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from keyless.api import (
    container,
    doctor,
    emulator,
    iam,
    iamcredentials,
    idp,
    kubernetes,
    oauth2,
    resourcemanager,
    robot,
    scopes,
    secretmanager,
    serviceusage,
    storage,
    sts,
)
from keyless.api import logging as logging_api
from keyless.api.errors import google_error, json_response
from keyless.api.hosts import HostRouter
from keyless.config import Settings
from keyless.errors import InvalidArgument, NotFound
from keyless.state import ServerState

logger = logging.getLogger("keyless")

# The API prefixes (documented in the README); every one is a mount below.
PREFIXES: dict[str, Callable[[ServerState], Sequence[BaseRoute]]] = {
    "iam": iam.routes,
    "cloudresourcemanager": resourcemanager.routes,
    "serviceusage": serviceusage.routes,
    "sts": sts.routes,
    "iamcredentials": iamcredentials.routes,
    "oauth2": oauth2.routes,
    "robot": robot.routes,  # Google's public service-account certificates
    "idp": idp.routes,  # Keyless's own test issuers (not a Google API)
    "storage": storage.routes,
    "upload": storage.upload_routes,  # Cloud Storage media uploads: /upload/storage/v1/...
    "download": storage.download_routes,  # Cloud Storage media downloads: /download/storage/v1/...
    "resumable": storage.resumable_routes,  # gcloud's resumable uploads: /resumable/upload/storage/v1/...
    "secretmanager": secretmanager.routes,
    "logging": logging_api.routes,
    "container": container.routes,
    "kubernetes": kubernetes.routes,  # each GKE cluster's Kubernetes API (its endpoint; keyless.api.kubernetes)
    "doctor": doctor.routes,  # Keyless's doctor (not a Google API): /doctor/v1/access
    "keyless": emulator.routes,  # Keyless's emulator controls (not a Google API): /keyless/v1/state:reset
}
OWNER_TOKEN_REFRESH_SECONDS = 3600
AUDIT_PRUNE_SECONDS = 3600


NUL_IN_PATH = google_error(InvalidArgument("Invalid request: the URL contains a NUL character (%00)."))


async def not_found(request: Request, exc: Exception | None = None) -> Response:
    return google_error(NotFound(f"The requested URL {request.url.path} was not found on this server."))


def _router(routes: Sequence[BaseRoute]) -> Router:
    return Router(routes=routes, default=_not_found_app)


async def _not_found_app(scope: Scope, receive: Receive, send: Send) -> None:
    response = await not_found(Request(scope, receive))
    await response(scope, receive, send)


def build_app(state: ServerState, *, refresh_owner_token: bool = True) -> ASGIApp:
    """The ASGI app for `state`; its lifespan keeps the owner token file fresh."""

    async def health(_: Request) -> Response:
        return json_response({"status": "SERVING"})

    mounts: list[Route | Mount] = [Route("/healthz", health)]
    from keyless.console.app import build as console  # the web console (not a Google API): /console/
    from keyless.console.app import root as console_root

    mounts += [Route("/console", console_root), Mount("/console", app=console(state))]
    for prefix, routes in PREFIXES.items():
        built = routes(state)
        scopes.bind(prefix, built)  # each Google API method's OAuth scopes (keyless.api.scopes)
        mounts.append(Mount(f"/{prefix}", app=_router(built)))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # Data Access entries a killed server had journaled but not written (keyless.audit.journal).
        await asyncio.to_thread(state.audit.recover)
        tasks = [asyncio.create_task(_prune_audit_log(state))]
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
    token_exchange = sts.fast_path(state)
    hosts = HostRouter(state.settings.universe_domain)

    async def keyless(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
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
