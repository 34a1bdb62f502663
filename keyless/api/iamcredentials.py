"""IAM Service Account Credentials API (iamcredentials.googleapis.com v1):
generateAccessToken and generateIdToken (https://cloud.google.com/iam/docs/reference/credentials/rest).

GenerateAccessToken/GenerateIdToken are Data Access (DATA_READ) audit events of
iam.googleapis.com: written only where the target's project policy enables that log type
for the service (or allServices) and the caller is not exempted, as on Google.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from starlette.routing import Route

from keyless.api.http import Call, allowed_fields, route
from keyless.audit.token_entries import credentials_issued
from keyless.clock import rfc3339
from keyless.iam import credentials
from keyless.iam.directory import AccountInfo
from keyless.iam.principal import Principal
from keyless.state import ServerState

SERVICE = "iam.googleapis.com"


def _audit(call: Call, method: str, target: AccountInfo, principal: Principal) -> None:
    credentials_issued(call.state, method, target, principal, caller_ip=call.caller_ip, user_agent=call.user_agent)


def generate_access_token(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "scope", "lifetime"}, "")
    name = f"projects/{call.params['project']}/serviceAccounts/{call.params['account']}"
    token, target = credentials.generate_access_token(call.state, call.principal, name, call.body)
    _audit(call, "GenerateAccessToken", target, call.principal)
    return {"accessToken": token.token, "expireTime": rfc3339(_utc(token.expires_at)).split(".")[0] + "Z"}


def generate_id_token(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "audience", "includeEmail", "organizationNumberIncluded"}, "")
    name = f"projects/{call.params['project']}/serviceAccounts/{call.params['account']}"
    token, target = credentials.generate_id_token(call.state, call.principal, name, call.body)
    _audit(call, "GenerateIdToken", target, call.principal)
    return {"token": token}


def sign_blob(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "payload"}, "")
    name = f"projects/{call.params['project']}/serviceAccounts/{call.params['account']}"
    key_id, signature, target = credentials.sign_blob(call.state, call.principal, name, call.body)
    _audit(call, "SignBlob", target, call.principal)
    return {"keyId": key_id, "signedBlob": base64.b64encode(signature).decode()}


def sign_jwt(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "payload"}, "")
    name = f"projects/{call.params['project']}/serviceAccounts/{call.params['account']}"
    key_id, jwt, target = credentials.sign_jwt(call.state, call.principal, name, call.body)
    _audit(call, "SignJwt", target, call.principal)
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
