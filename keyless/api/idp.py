"""HTTP face of the built-in test issuers (keyless.tokens.idp): OIDC discovery and JWKS,
public as an issuer's must be."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyless.api.errors import google_error, json_response
from keyless.errors import KeylessError
from keyless.state import ServerState
from keyless.tokens import idp
from keyless.tokens.keys import IDP


def routes(state: ServerState) -> list[Route]:
    async def configuration(request: Request) -> Response:
        try:
            return json_response(idp.discovery(state.settings.base_url, request.path_params["issuer"]))
        except KeylessError as error:
            return google_error(error)

    async def jwks(request: Request) -> Response:
        try:
            idp.issuer_url(state.settings.base_url, request.path_params["issuer"])
        except KeylessError as error:
            return google_error(error)
        return json_response(await run_in_threadpool(state.keys.jwks, IDP),
                             headers={"Cache-Control": "public, max-age=300"})

    async def actions_token(request: Request) -> Response:
        """GitHub Actions' OIDC token request endpoint (what ACTIONS_ID_TOKEN_REQUEST_URL names)."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential:
            return json_response({"message": "Unauthorized"}, 401)
        try:
            job = await run_in_threadpool(idp.redeem_actions_request, state.keys, credential.strip())
            audience = request.query_params.get("audience") or None
            value = await run_in_threadpool(lambda: idp.github_token(state.keys, state.settings.base_url,
                                                                     audience=audience, **job))
        except KeylessError:
            return json_response({"message": "Unauthorized"}, 401)
        return json_response({"count": len(value), "value": value})

    return [
        Route("/github/actions-token", actions_token, methods=["GET"]),
        Route("/{issuer}/.well-known/openid-configuration", configuration, methods=["GET"]),
        Route("/{issuer}/jwks", jwks, methods=["GET"]),
    ]
