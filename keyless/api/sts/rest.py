"""Security Token Service (sts.googleapis.com v1): `POST /v1/token`, RFC 8693 token exchange
as Google implements it (https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token),
and `POST /v1/introspect`, RFC 7662 token introspection of the tokens it issued (gcloud asks it
for the account of a direct-federation credentials file).

Both read a form (RFC 6749 section 4.1.3's encoding, what google-auth and gcloud send) or JSON
(the discovery document's `GoogleIdentityStsV1ExchangeTokenRequest`, what
google-github-actions/auth and googleapiclient send), as the Content-Type says; a JSON body is
decoded into the form's field names, so the exchange sees one request shape (issue #19).

The token endpoint is a hot path: no JSON framework, one form parse, the exchange itself, and
the audit entry handed to the batched sink. Answers are OAuth-shaped (`error`, `error_description`).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from keyless.api.errors import JSON_TYPE, UNAVAILABLE, json_response, oauth_error
from keyless.api.forms import NOT_A_FORM, FormError, parse_form
from keyless.api.http import _json_problem, read_body
from keyless.audit.token_entries import token_exchanged
from keyless.errors import InvalidArgument, KeylessError
from keyless.federation.diagnosis import diagnose
from keyless.federation.exchange import ACCESS_TOKEN_TYPE, OAuthError, ProviderRuntime
from keyless.federation.providers.oidc import NeedsNetwork
from keyless.iam.principal import Principal
from keyless.state import ServerState
from keyless.store.db import is_unavailable
from keyless.tokens.access import PREFIX as ACCESS_TOKEN_PREFIX

MAX_FORM_BYTES = 64 * 1024
TOO_LARGE = {"error": "invalid_request", "error_description": "The request is too large."}


async def _read_form(request: Request) -> bytes | None:
    """The form body, or None when it is over MAX_FORM_BYTES (refused before it is read whole)."""
    try:
        return await read_body(request, MAX_FORM_BYTES)
    except InvalidArgument:
        return None

# The JSON names of each request message's fields (the discovery document's lowerCamel names,
# and the proto names, which Google's JSON parser accepts too) -> the form's names.
TOKEN_FIELDS = {json_name: form_name for form_name, json_name in (
    ("grant_type", "grantType"), ("audience", "audience"), ("scope", "scope"),
    ("requested_token_type", "requestedTokenType"), ("subject_token", "subjectToken"),
    ("subject_token_type", "subjectTokenType"), ("actor_token", "actorToken"),
    ("actor_token_type", "actorTokenType"), ("options", "options"))
    for json_name in {json_name, form_name}}
INTROSPECT_FIELDS = {"token": "token", "tokenTypeHint": "token_type_hint", "token_type_hint": "token_type_hint"}
ISSUER = "https://sts.googleapis.com"


class RequestError(ValueError):
    """A body that decodes to no request: its OAuth `error_description` (with `invalid_request`)."""


def decode_request(raw: bytes, content_type: bytes, fields: dict[str, str]) -> dict[str, str]:
    """The request's fields by their form names: a JSON object when the Content-Type says JSON (its
    fields those of `fields`, strings or null, as the request message's schema defines them), else
    a form, as Google's frontend reads them. Raises RequestError."""
    if content_type and content_type[:16].lower() == b"application/json":
        return _json_fields(raw, fields)
    try:
        return parse_form(raw, max_fields=32)
    except FormError:
        raise RequestError(NOT_A_FORM) from None


def _json_fields(raw: bytes, fields: dict[str, str]) -> dict[str, str]:
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"Invalid JSON payload received. {_json_problem(exc)}") from None
    if not isinstance(body, dict):
        raise RequestError("Invalid JSON payload received. Root element must be a message.")
    decoded: dict[str, str] = {}
    for name, value in body.items():
        field = fields.get(name)
        if field is None:
            raise RequestError(f'Invalid JSON payload received. Unknown name "{name[:256]}": Cannot find field.')
        if value is None:  # proto3 JSON: null is the field's default
            continue
        if not isinstance(value, str):
            raise RequestError(f"Invalid value at '{field}' (TYPE_STRING), {json.dumps(value)[:256]}")
        decoded[field] = value
    return decoded


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


async def answer(state: ServerState, raw: bytes, ip: str, agent: str,
                 content_type: bytes = b"") -> tuple[int, dict[str, Any]]:
    """The exchange for one request body: (HTTP status, JSON body)."""
    if len(raw) > MAX_FORM_BYTES:
        return 400, TOO_LARGE
    try:
        form = decode_request(raw, content_type, TOKEN_FIELDS)
    except RequestError as refused:
        return 400, {"error": "invalid_request", "error_description": str(refused)}
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
        name = state.exchanger.provider_name(form.get("audience", ""))
        _audit(state, form, state.exchanger.providers.get(name) if name else None, None, ip, agent, error)
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
            await answer(state, raw, client[0] if client else "", headers.get(b"user-agent", b"").decode("latin-1"),
                         headers.get(b"content-type", b""))
        payload = json.dumps(body_json, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    return app


def routes(state: ServerState) -> list[Route]:
    async def token(request: Request) -> Response:
        raw = await _read_form(request)
        status, body = (400, TOO_LARGE) if raw is None else \
            await answer(state, raw, request.client.host if request.client else "", request.headers.get("user-agent", ""),
                         request.headers.get("content-type", "").encode("latin-1"))
        return json_response(body, status)

    async def introspect(request: Request) -> Response:
        """RFC 7662 as Google's STS answers it; gcloud authenticates as its OAuth client (HTTP
        Basic), which nothing here needs: the answer only describes the token it is given."""
        raw = await _read_form(request)
        if raw is None:
            return oauth_error(TOO_LARGE["error"], TOO_LARGE["error_description"])
        try:
            fields = decode_request(raw, request.headers.get("content-type", "").encode("latin-1"),
                                    INTROSPECT_FIELDS)
        except RequestError as refused:
            return oauth_error("invalid_request", str(refused))
        token = fields.get("token", "")
        if not token:
            return oauth_error("invalid_request", 'Missing required parameter: "token".')
        return json_response(await run_in_threadpool(introspection, state, token))

    return [Route("/v1/token", token, methods=["POST"]), Route("/v1/introspect", introspect, methods=["POST"])]


def introspection(state: ServerState, token: str) -> dict[str, Any]:
    """What `/v1/introspect` says of `token` (the discovery document's
    GoogleIdentityStsV1IntrospectTokenResponse): active only for a valid, unexpired access token
    STS issued, i.e. one of a federated principal (a service account's or a user's is not STS's);
    `username` is that principal, which gcloud shows as the account; times are int64 strings."""
    if not token.startswith(ACCESS_TOKEN_PREFIX):
        return {"active": False}
    try:
        verified = state.authenticate(f"Bearer {token}")
    except KeylessError:
        return {"active": False}
    principal = verified.principal
    if principal.service_account_id is not None or principal.email:
        return {"active": False}
    return {"active": True, "iss": ISSUER, "sub": principal.subject or principal.member,
            "username": principal.member, "scope": " ".join(verified.scopes),
            "iat": str(verified.issued_at), "exp": str(verified.expires_at)}
