"""Credential configuration files (`"type": "external_account"`), as `gcloud iam
workload-identity-pools create-cred-config` writes them
(https://cloud.google.com/iam/docs/workload-download-cred-and-grant-access), but with Keyless's
own token and impersonation URLs, which gcloud never writes (it always names Google's hosts).

`universe_domain` is set because google-auth >= 2.55 otherwise sends the token to
iamcredentials.googleapis.com for its regional access boundary lookup
(research/google-auth-clients.md section 0.3).
"""

from __future__ import annotations

from typing import Any

SUBJECT_TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"


def external_account(server: str, provider: str, credential_source: dict[str, Any], *,
                     service_account: str | None = None, subject_token_type: str = SUBJECT_TOKEN_TYPE_JWT,
                     universe_domain: str = "localhost") -> dict[str, Any]:
    """An external_account file for `provider` (projects/N/locations/global/workloadIdentityPools/P/
    providers/X), exchanging at `server`, impersonating `service_account` when one is given."""
    base = server.rstrip("/")
    config: dict[str, Any] = {
        "universe_domain": universe_domain,
        "type": "external_account",
        "audience": f"//iam.googleapis.com/{provider}",
        "subject_token_type": subject_token_type,
        "token_url": f"{base}/sts/v1/token",
        "credential_source": credential_source,
    }
    if service_account:
        config["service_account_impersonation_url"] = (
            f"{base}/iamcredentials/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken")
    return config


def url_source(url: str, headers: dict[str, str] | None = None, field: str | None = None) -> dict[str, Any]:
    """A `url` credential source; with `field`, the token is that field of a JSON answer (as GitHub
    Actions' token endpoint answers `{"value": JWT}`)."""
    source: dict[str, Any] = {"url": url}
    if headers:
        source["headers"] = headers
    source["format"] = {"type": "json", "subject_token_field_name": field} if field else {"type": "text"}
    return source


def file_source(path: str) -> dict[str, Any]:
    return {"file": path, "format": {"type": "text"}}
