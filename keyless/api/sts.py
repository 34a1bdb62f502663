"""Security Token Service (sts.googleapis.com v1): `POST /v1/token`, RFC 8693 token exchange
as Google implements it (https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token).

A hot path: no JSON framework, one form parse, the exchange itself, and the audit entry handed
to the batched sink. Answers are OAuth-shaped (`error`, `error_description`).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from keyless.api.errors import JSON_TYPE, UNAVAILABLE, json_response
from keyless.api.forms import NOT_A_FORM, FormError, parse_form
from keyless.api.http import read_body
from keyless.audit.token_entries import token_exchanged
from keyless.errors import InvalidArgument
from keyless.federation.diagnosis import diagnose
from keyless.federation.exchange import ACCESS_TOKEN_TYPE, AUDIENCE, OAuthError, ProviderRuntime
from keyless.federation.providers.oidc import NeedsNetwork
from keyless.iam.principal import Principal
from keyless.state import ServerState
from keyless.store.db import is_unavailable

MAX_FORM_BYTES = 64 * 1024
TOO_LARGE = {"error": "invalid_request", "error_description": "The request is too large."}


async def _read_form(request: Request) -> bytes | None:
    """The form body, or None when it is over MAX_FORM_BYTES (refused before it is read whole)."""
    try:
        return await read_body(request, MAX_FORM_BYTES)
    except InvalidArgument:
        return None


def _audit(state: ServerState, form: dict[str, str], provider: ProviderRuntime | None, principal: Principal | None,
           ip: str, agent: str, error: OAuthError | None = None) -> None:
    """Refusals before a provider is known belong to no project and are not logged, as on Google."""
    if provider is None or not provider.project_id:
        return

    def diagnosis() -> dict[str, str] | None:
        # Only for refusals by the provider's own checks, and only computed when the entry is written.
        if error is None or not error.stage or provider is None:
            return None
        found = diagnose(error.stage, error.__cause__, provider.name, provider.oidc,
                         provider.compiled.attribute_condition, form.get("subject_token", ""),
                         state.settings.base_url)
        return found.as_json() if found else None

    token_exchanged(state, form, project_id=provider.project_id, pool=provider.name.rsplit("/providers/", 1)[0],
                    principal=principal, caller_ip=ip, user_agent=agent, error=error,
                    diagnosis=diagnosis if error is not None else None)  # nothing to diagnose on success


async def answer(state: ServerState, raw: bytes, ip: str, agent: str) -> tuple[int, dict[str, Any]]:
    """The exchange for one request body: (HTTP status, JSON body)."""
    if len(raw) > MAX_FORM_BYTES:
        return 400, TOO_LARGE
    try:
        form = parse_form(raw, max_fields=32)
    except FormError:
        return 400, {"error": "invalid_request",
                     "error_description": NOT_A_FORM}
    try:
        try:
            try:
                # Pure CPU while the issuer's keys are cached (~0.2 ms): no thread hop.
                result: Any = state.exchanger.exchange(form, allow_network=False)
            except NeedsNetwork:
                result = await run_in_threadpool(state.exchanger.exchange, form)
        except Exception as exc:
            if not isinstance(exc, OAuthError) and is_unavailable(exc):
                # The store is away (RFC 6749 section 4.1.2.1's code, with 503: clients retry it).
                return 503, {"error": "temporarily_unavailable", "error_description": UNAVAILABLE}
            raise
    except OAuthError as error:
        m = AUDIENCE.match(form.get("audience", ""))
        _audit(state, form, state.exchanger.providers.get(m.group(1)) if m else None, None, ip, agent, error)
        return error.http_status, {"error": error.oauth_error, "error_description": error.message}
    _audit(state, form, result.provider, result.token.principal, ip, agent)
    return 200, {"access_token": result.token.token, "issued_token_type": ACCESS_TOKEN_TYPE,
                 "token_type": "Bearer", "expires_in": result.token.expires_in}


def fast_path(state: ServerState) -> ASGIApp:
    """`POST /sts/v1/token` as a bare ASGI app, served ahead of the router (keyless.app): the
    framework's per-request cost is a third of an exchange (research/perf-floor.md)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        client = scope.get("client")
        raw = await _read_form(Request(scope, receive))
        status, body_json = (400, TOO_LARGE) if raw is None else \
            await answer(state, raw, client[0] if client else "", headers.get(b"user-agent", b"").decode("latin-1"))
        payload = json.dumps(body_json, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return app


def routes(state: ServerState) -> list[Route]:
    async def token(request: Request) -> Response:
        raw = await _read_form(request)
        status, body = (400, TOO_LARGE) if raw is None else \
            await answer(state, raw, request.client.host if request.client else "", request.headers.get("user-agent", ""))
        return json_response(body, status)

    return [Route("/v1/token", token, methods=["POST"])]
