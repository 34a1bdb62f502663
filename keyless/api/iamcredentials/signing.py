"""signBlob and signJwt of a service account, written once for the two APIs that define them:
IAM Service Account Credentials (iamcredentials.googleapis.com v1, with `delegates`) and IAM's
deprecated v1 methods (iam.googleapis.com `projects.serviceAccounts.signBlob`/`signJwt`,
https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/signBlob), which Google
still serves with their own field names (`bytesToSign`, `signature`). Both sign with the account's
Google-managed key (keyless.iam.credentials) and need the same permissions
(iam.serviceAccounts.signBlob / signJwt); each call, granted or refused, is a Data Access entry of
the API's own serviceName on the target account (keyless.audit.token_entries).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from keyless.api.http import Call
from keyless.audit.token_entries import CREDENTIALS_SERVICE, credentials_issued
from keyless.errors import KeylessError
from keyless.iam import credentials
from keyless.iam.directory import AccountInfo

T = TypeVar("T")


def audited(call: Call, method: str, issue: Callable[[str], tuple[T, AccountInfo]], *,
            service: str = CREDENTIALS_SERVICE) -> T:
    """Run `issue` on the target's name and write the entry of its outcome: a refusal is recorded
    on the target account with its code (7 for a missing binding) when the account exists."""
    name = f"projects/{call.params['project']}/serviceAccounts/{call.params['account']}"
    try:
        result, target = issue(name)
    except KeylessError as error:
        known = call.state.directory.find(call.params["account"])
        if known is not None:
            credentials_issued(call.state, method, known, call.principal, caller_ip=call.caller_ip,
                               user_agent=call.user_agent, error=error, service=service)
        raise
    credentials_issued(call.state, method, target, call.principal, caller_ip=call.caller_ip,
                       user_agent=call.user_agent, service=service)
    return result


def sign_blob(call: Call, payload_field: str, *, method: str = "SignBlob",
              service: str = CREDENTIALS_SERVICE) -> tuple[str, bytes]:
    """(keyId, signature) of the body's base64 `payload_field`, signed as the target account."""

    def issue(name: str) -> tuple[tuple[str, bytes], AccountInfo]:
        key_id, signature, target = credentials.sign_blob(call.state, call.principal, name,
                                                          call.body.get(payload_field), call.body.get("delegates"),
                                                          field=payload_field)
        return (key_id, signature), target

    return audited(call, method, issue, service=service)


def sign_jwt(call: Call, *, method: str = "SignJwt", service: str = CREDENTIALS_SERVICE,
             default_lifetime: int | None = None) -> tuple[str, str]:
    """(keyId, signedJwt) of the body's `payload` claims, signed as the target account;
    `default_lifetime` is the `exp` added to claims without one (IAM v1's signJwt: an hour)."""

    def issue(name: str) -> tuple[tuple[str, str], AccountInfo]:
        key_id, jwt, target = credentials.sign_jwt(call.state, call.principal, name, call.body.get("payload"),
                                                   call.body.get("delegates"), default_lifetime=default_lifetime)
        return (key_id, jwt), target

    return audited(call, method, issue, service=service)
