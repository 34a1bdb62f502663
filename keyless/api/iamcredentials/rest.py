"""IAM Service Account Credentials API (iamcredentials.googleapis.com v1): generateAccessToken,
generateIdToken, signBlob, signJwt and getAllowedLocations
(https://cloud.google.com/iam/docs/reference/credentials/rest).

Each call, granted or refused, is a Data Access entry of serviceName iamcredentials.googleapis.com
on the target account, written where iam.googleapis.com's Data Access logs are on for the caller
(keyless.audit.token_entries), as on Google; getAllowedLocations, a lookup of no credential, is
not among the methods Google's audit logs name.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from starlette.routing import Route

from keyless.api.http import Call, allowed_fields, route
from keyless.api.iamcredentials import signing
from keyless.api.iamcredentials.signing import audited
from keyless.clock import rfc3339
from keyless.iam import credentials
from keyless.state import ServerState

NO_TRUST_BOUNDARY = "0x0"


def generate_access_token(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "scope", "lifetime"}, "")
    token = audited(call, "GenerateAccessToken",
                    lambda name: credentials.generate_access_token(call.state, call.principal, name, call.body))
    return {"accessToken": token.token, "expireTime": rfc3339(_utc(token.expires_at)).split(".")[0] + "Z"}


def generate_id_token(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "audience", "includeEmail", "organizationNumberIncluded"}, "")
    token = audited(call, "GenerateIdToken",
                    lambda name: credentials.generate_id_token(call.state, call.principal, name, call.body))
    return {"token": token}


def sign_blob(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "payload"}, "")
    key_id, signature = signing.sign_blob(call, "payload")
    return {"keyId": key_id, "signedBlob": base64.b64encode(signature).decode()}


def sign_jwt(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"delegates", "payload"}, "")
    key_id, jwt = signing.sign_jwt(call)
    return {"keyId": key_id, "signedJwt": jwt}


def get_allowed_locations(call: Call) -> dict[str, Any]:
    """The account's trust boundary (Regional Access Boundary): Keyless restricts no account to
    locations, so every account answers the no-op boundary google-auth knows, `0x0`
    (google.auth.credentials.NO_OP_TRUST_BOUNDARY_ENCODED_LOCATIONS); the empty `locations` is
    left out, as proto3's JSON mapping leaves out empty repeated fields. Google requires
    iam.serviceAccounts.get on the account; the account itself may always ask, since google-auth
    looks its boundary up with the account's own token."""
    credentials.allowed_locations_of(call.state, call.principal,
                                     f"projects/{call.params['project']}/serviceAccounts/{call.params['account']}")
    return {"encodedLocations": NO_TRUST_BOUNDARY}


def _utc(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def routes(state: ServerState) -> list[Route]:
    sa = "/v1/projects/{project}/serviceAccounts/{account}"
    return [
        route(state, "POST", sa + ":generateAccessToken", generate_access_token, audited=False, inline=True),
        route(state, "POST", sa + ":generateIdToken", generate_id_token, audited=False),
        route(state, "POST", sa + ":signBlob", sign_blob, audited=False),
        route(state, "POST", sa + ":signJwt", sign_jwt, audited=False),
        route(state, "GET", sa + "/allowedLocations", get_allowed_locations, audited=False),
    ]
