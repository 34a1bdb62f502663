"""HTTP face of the built-in test issuers (keyless.tokens.idp): OIDC discovery and JWKS,
public as an issuer's must be; and, for the bootstrap owner only, `POST /idp/github/jobs`, which
mints what a GitHub Actions job holds, so a client with no access to the server's data dir (the
pytest plugin against a running server, a container's host) can act as a workflow."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyless.api.errors import google_error, json_response
from keyless.api.http import Call, route, string_field
from keyless.errors import InvalidArgument, KeylessError, PermissionDenied
from keyless.state import ServerState
from keyless.tokens import idp
from keyless.tokens.keys import IDP

JOB_FIELDS = ("repository", "ref", "audience", "actor", "workflow", "event_name", "environment", "sha")


def mint_github_job(call: Call) -> dict[str, Any]:
    """`{"repository": "OWNER/NAME", "audience": ..., "ref": ..., "lifetime": SECONDS, ...}` ->
    the job's OIDC token (`value`, as GitHub's token endpoint names it) and the runner's
    ACTIONS_ID_TOKEN_REQUEST_URL / _TOKEN pair (`requestUrl`, `requestToken`). Test tokens are
    the owner's to mint: anyone else could then pass any provider trusting this issuer."""
    if call.principal.member != call.state.owner.member:
        raise PermissionDenied("Only the bootstrap owner may mint tokens of Keyless's test issuers.")
    body = call.body
    for name in body:
        if name not in (*JOB_FIELDS, "lifetime"):
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
    job = {name: string_field(body, name, "job") for name in JOB_FIELDS if body.get(name) is not None}
    if not job.get("repository"):
        raise InvalidArgument("repository is required (OWNER/NAME).")
    lifetime = body.get("lifetime", 3600)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool):
        raise InvalidArgument("lifetime must be an integer number of seconds.")
    audience = job.pop("audience", None)
    value = idp.github_token(call.state.keys, call.state.settings.base_url, audience=audience,
                             lifetime=lifetime, **job)
    request_token = idp.actions_request_token(call.state.keys, job, lifetime)
    return {"value": value, "requestUrl": f"{call.state.settings.base_url}/idp/github/actions-token?",
            "requestToken": request_token}


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
        route(state, "POST", "/github/jobs", mint_github_job, audited=False),
        Route("/{issuer}/.well-known/openid-configuration", configuration, methods=["GET"]),
        Route("/{issuer}/jwks", jwks, methods=["GET"]),
    ]
