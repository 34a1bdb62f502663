"""Service accounts' public certificates, where Google publishes them
(www.googleapis.com/robot/v1/metadata/x509/EMAIL: `{key id: PEM certificate}`), so anyone can
verify what a service account signed (signBlob, signJwt, self-signed JWTs of key files)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keyless.api.errors import google_error, json_response
from keyless.errors import NotFound
from keyless.iam.service_account_keys import certificates
from keyless.iam.service_accounts import find_by_email
from keyless.state import ServerState


def routes(state: ServerState) -> list[Route]:
    def lookup(email: str) -> dict[str, str] | None:
        with state.db.read() as s:
            account = find_by_email(s, email)
            return certificates(s, account) if account is not None and not account.disabled else None

    async def x509(request: Request) -> Response:
        certs = await run_in_threadpool(lookup, request.path_params["email"])
        if certs is None:
            return google_error(NotFound("Not found"))
        return json_response(certs, headers={"Cache-Control": "public, max-age=300"})

    return [Route("/v1/metadata/x509/{email}", x509, methods=["GET"])]
