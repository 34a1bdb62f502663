"""IAM Service Account Credentials API (iamcredentials.googleapis.com v1): generateAccessToken,
generateIdToken, signBlob and signJwt (https://cloud.google.com/iam/docs/reference/credentials/rest).

Each call, granted or refused, is a Data Access entry of serviceName iamcredentials.googleapis.com
on the target account, written where iam.googleapis.com's Data Access logs are on for the caller
(keyless.audit.token_entries), as on Google.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.routing import Route

from keyless.api.http import Call, allowed_fields, route
from keyless.audit.token_entries import credentials_issued
from keyless.clock import rfc3339
from keyless.errors import KeylessError
from keyless.iam import credentials
from keyless.iam.directory import AccountInfo
from keyless.state import ServerState

T = TypeVar("T")


def _audited(call: Call, method: str, issue: Callable[[str], tuple[T, AccountInfo]]) -> T:
    """Run `issue` on the target's name and write the entry of its outcome: a refusal is recorded
    on the target account with its code (7 for a missing binding) when the account exists."""
    name = f"projects/{call.params['project']}/serviceAccounts/{call.params['account']}"
    try:
        result, target = issue(name)
    except KeylessError as error:
        known = call.state.directory.find(call.params["account"])
        if known is not None:
            credentials_issued(call.state, method, known, call.principal, caller_ip=call.caller_ip,
                               user_agent=call.user_agent, error=error)
        raise
    credentials_issued(call.state, method, target, call.principal, caller_ip=call.caller_ip,
                       user_agent=call.user_agent)
    return result


def generate_access_token(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "scope", "lifetime"}, "")
    token = _audited(call, "GenerateAccessToken",
                     lambda name: credentials.generate_access_token(call.state, call.principal, name, call.body))
    return {"accessToken": token.token, "expireTime": rfc3339(_utc(token.expires_at)).split(".")[0] + "Z"}


def generate_id_token(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "audience", "includeEmail", "organizationNumberIncluded"}, "")
    token = _audited(call, "GenerateIdToken",
                     lambda name: credentials.generate_id_token(call.state, call.principal, name, call.body))
    return {"token": token}


def sign_blob(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "payload"}, "")

    def issue(name: str) -> tuple[tuple[str, bytes], AccountInfo]:
        key_id, signature, target = credentials.sign_blob(call.state, call.principal, name, call.body)
        return (key_id, signature), target

    key_id, signature = _audited(call, "SignBlob", issue)
    return {"keyId": key_id, "signedBlob": base64.b64encode(signature).decode()}


def sign_jwt(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "payload"}, "")

    def issue(name: str) -> tuple[tuple[str, str], AccountInfo]:
        key_id, jwt, target = credentials.sign_jwt(call.state, call.principal, name, call.body)
        return (key_id, jwt), target

    key_id, jwt = _audited(call, "SignJwt", issue)
    return {"keyId": key_id, "signedJwt": jwt}


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def routes(state: ServerState) -> list[Route]:
    sa = "/v1/projects/{project}/serviceAccounts/{account}"
    return [
        route(state, "POST", sa + ":generateAccessToken", generate_access_token, audited=False, inline=True),
        route(state, "POST", sa + ":generateIdToken", generate_id_token, audited=False),
        route(state, "POST", sa + ":signBlob", sign_blob, audited=False),
        route(state, "POST", sa + ":signJwt", sign_jwt, audited=False),
    ]
