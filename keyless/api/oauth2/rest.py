"""OAuth 2.0 endpoints of Google's (oauth2.googleapis.com / www.googleapis.com/oauth2): the token
endpoint (JWT-bearer grants of key files, keyless.iam.key_grant),
the JWKS that verifies Keyless-signed ID tokens, and tokeninfo, which tells a resource
server what an access token is (https://developers.google.com/identity/protocols/oauth2).
Errors here use OAuth's `error` / `error_description` shape (RFC 6749 section 5.2).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyless.api.errors import json_response, oauth_error
from keyless.api.forms import NOT_A_FORM, FormError, parse_form
from keyless.api.http import read_body
from keyless.errors import InvalidArgument, KeylessError
from keyless.iam.key_grant import GrantRefused, redeem
from keyless.state import ServerState

MAX_FORM_BYTES = 64 * 1024
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


async def _read_form(request: Request) -> bytes | None:
    """The form body, or None when it is over MAX_FORM_BYTES (refused before it is read whole)."""
    try:
        return await read_body(request, MAX_FORM_BYTES)
    except InvalidArgument:
        return None


def routes(state: ServerState) -> list[Route]:
    async def certs(_: Request) -> Response:
        jwks = await run_in_threadpool(state.keys.jwks)
        return json_response(jwks, headers={"Cache-Control": "public, max-age=300"})

    async def tokeninfo(request: Request) -> Response:
        token = request.query_params.get("access_token")
        if token is None and request.method == "POST":
            raw = await _read_form(request)
            if raw is None:
                return oauth_error("invalid_request", "Request too large")
            try:
                token = parse_form(raw, max_fields=16).get("access_token")
            except FormError:
                return oauth_error("invalid_request", NOT_A_FORM)
        if not token:
            return oauth_error("invalid_request", "Missing access_token parameter")
        try:
            verified = await run_in_threadpool(lambda: state.authenticate(f"Bearer {token}", downscoped=True))
        except KeylessError:
            return oauth_error("invalid_token", "Invalid Value")
        p = verified.principal
        body = {
            # the member, not principalSubject: a GKE KSA's subject is its serviceAccount:…[NS/KSA] form
            "azp": p.service_account_id or p.member,
            "aud": p.service_account_id or p.member,
            "sub": p.service_account_id or p.member,
            "scope": " ".join(verified.scopes),
            "exp": str(verified.expires_at),
            "expires_in": str(verified.expires_in),
            "access_type": "online",
        }
        if p.email:
            body["email"] = p.email
            body["email_verified"] = "true"
        return json_response(body)

    async def token(request: Request) -> Response:
        """The token endpoint: JWT-bearer grants of service account key files."""
        raw = await _read_form(request)
        if raw is None:
            return oauth_error("invalid_request", "Request too large")
        try:
            form = parse_form(raw, max_fields=16)
        except FormError:
            return oauth_error("invalid_request", NOT_A_FORM)
        if form.get("grant_type") != JWT_BEARER:
            return oauth_error("unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", ""))
        try:
            granted = await run_in_threadpool(redeem, state, form.get("assertion", ""),
                                              f"{state.settings.base_url}/oauth2/token")
        except GrantRefused as refused:
            return oauth_error(refused.error, refused.description)
        if granted.id_token is not None:
            return json_response({"id_token": granted.id_token})
        return json_response({"access_token": granted.access_token, "expires_in": granted.expires_in,
                              "token_type": "Bearer"})

    async def discovery(_: Request) -> Response:
        """OIDC discovery for the ID tokens Keyless signs (issuer as Google's: accounts.google.com)."""
        base = state.settings.base_url
        return json_response({
            "issuer": "https://accounts.google.com",
            "jwks_uri": f"{base}/oauth2/v3/certs",
            "token_endpoint": f"{base}/oauth2/token",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["aud", "azp", "email", "email_verified", "exp", "iat", "iss", "sub"],
        })

    return [
        Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
        Route("/token", token, methods=["POST"]),
        Route("/v4/token", token, methods=["POST"]),
        Route("/v3/certs", certs, methods=["GET"]),
        Route("/v1/certs", certs, methods=["GET"]),
        Route("/v3/tokeninfo", tokeninfo, methods=["GET", "POST"]),
        Route("/tokeninfo", tokeninfo, methods=["GET", "POST"]),
    ]
