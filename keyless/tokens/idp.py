"""Keyless's built-in OIDC issuers, so the seeds' flows run without GitHub or a cluster.

`github` mints tokens shaped like GitHub Actions' OIDC tokens
(https://docs.github.com/en/actions/security-for-github-actions/security-hardening-your-deployments/about-security-hardening-with-openid-connect#understanding-the-oidc-token);
`kubernetes` mints projected service-account tokens
(https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-token-volume).
Each issuer is `BASE/idp/NAME`, with OIDC discovery and a JWKS of its own RS256 keys (key
purpose `idp`, separate from the keys of Keyless's own ID tokens).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

from keyless.errors import InvalidArgument
from keyless.tokens.keys import IDP, KeyRing

ISSUERS = ("github", "kubernetes")
MAX_LIFETIME = 24 * 3600


def issuer_url(base_url: str, name: str) -> str:
    if name not in ISSUERS:
        raise InvalidArgument(f"Unknown issuer {name!r}: Keyless serves {', '.join(ISSUERS)}.")
    return f"{base_url.rstrip('/')}/idp/{name}"


def discovery(base_url: str, name: str) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 section 3 metadata for one issuer."""
    iss = issuer_url(base_url, name)
    return {
        "issuer": iss,
        "jwks_uri": f"{iss}/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf"],
    }


def _stable_id(text: str, digits: int) -> str:
    """A numeric id derived from `text` (GitHub's ids are numbers; ours stay stable across runs)."""
    return str(int(hashlib.sha256(text.encode()).hexdigest(), 16) % 10**digits)


def _times(lifetime: int) -> tuple[int, int]:
    if not 60 <= lifetime <= MAX_LIFETIME:
        raise InvalidArgument(f"lifetime must be between 60 and {MAX_LIFETIME} seconds")
    now = int(time.time())
    return now, now + lifetime


def github_token(keys: KeyRing, base_url: str, *, repository: str, ref: str = "refs/heads/main",
                 audience: str | None = None, actor: str = "octocat", workflow: str = "Deploy",
                 event_name: str = "push", environment: str | None = None, sha: str | None = None,
                 run_id: str | None = None, lifetime: int = 300) -> str:
    """A token with the claims GitHub Actions puts in its OIDC tokens."""
    if repository.count("/") != 1 or not all(repository.split("/")):
        raise InvalidArgument("repository must be OWNER/NAME")
    owner, name = repository.split("/")
    iat, exp = _times(lifetime)
    run = run_id or str(secrets.randbelow(10**10))
    sub = f"repo:{repository}:environment:{environment}" if environment else f"repo:{repository}:ref:{ref}"
    claims: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "sub": sub,
        "aud": audience or f"https://github.com/{owner}",
        "ref": ref,
        "sha": sha or secrets.token_hex(20),
        "repository": repository,
        "repository_owner": owner,
        "repository_owner_id": _stable_id(owner, 8),
        "repository_id": _stable_id(repository, 9),
        "repository_visibility": "private",
        "run_id": run,
        "run_number": "1",
        "run_attempt": "1",
        "actor": actor,
        "actor_id": _stable_id(actor, 8),
        "workflow": workflow,
        "workflow_ref": f"{repository}/.github/workflows/{workflow.lower()}.yml@{ref}",
        "head_ref": "",
        "base_ref": "",
        "event_name": event_name,
        "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
        "ref_protected": "true" if ref == "refs/heads/main" else "false",
        "job_workflow_ref": f"{repository}/.github/workflows/{workflow.lower()}.yml@{ref}",
        "runner_environment": "github-hosted",
        "iss": issuer_url(base_url, "github"),
        "nbf": iat,
        "iat": iat,
        "exp": exp,
    }
    if environment:
        claims["environment"] = environment
    return keys.sign_rs256(IDP, {"typ": "JWT"}, claims)


def kubernetes_token(keys: KeyRing, base_url: str, *, cluster: str, namespace: str, service_account: str,
                     audience: str, pod: str | None = None, lifetime: int = 3600) -> str:
    """A projected service-account token, as the kubelet mounts it."""
    iat, exp = _times(lifetime)
    claims: dict[str, Any] = {
        "aud": [audience],
        "exp": exp,
        "iat": iat,
        "nbf": iat,
        "iss": issuer_url(base_url, "kubernetes"),
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                                            f"{cluster}/{namespace}/{service_account}"))},
            **({"pod": {"name": pod, "uid": str(uuid.uuid4())}} if pod else {}),
        },
        "cluster": cluster,
    }
    return keys.sign_rs256(IDP, {"typ": "JWT"}, claims)


# -- GitHub Actions' token request (ACTIONS_ID_TOKEN_REQUEST_URL / _TOKEN) ---------------------
# A job asks `GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD` with
# `Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN` and gets `{"value": JWT}`. Keyless's
# request token is the job's claims, HMAC-tagged with the current access-token key under a
# separate label, so it can only be redeemed here and only for that job's claims.
REQUEST_LABEL = b"keyless-actions-request."


def actions_request_token(keys: KeyRing, job: dict[str, Any], lifetime: int = 3600) -> str:
    import hmac
    import json
    from hashlib import sha256

    from keyless.tokens.keys import ACCESS, b64url

    key = keys.signing_key(ACCESS)
    payload = b64url(json.dumps({**job, "exp": int(time.time()) + lifetime}, separators=(",", ":")).encode())
    tag = b64url(hmac.digest(key.secret, REQUEST_LABEL + f"{key.kid}.{payload}".encode(), sha256))
    return f"{key.kid}.{payload}.{tag}"


def redeem_actions_request(keys: KeyRing, token: str) -> dict[str, Any]:
    """The job claims of a request token, or InvalidArgument."""
    import hmac
    import json
    from hashlib import sha256

    from keyless.tokens.jws import b64url_decode
    from keyless.tokens.keys import ACCESS

    parts = token.split(".")
    if len(parts) != 3 or len(token) > 8192:
        raise InvalidArgument("Invalid request token.")
    key = keys.get(parts[0])
    if key is None or key.purpose != ACCESS:
        raise InvalidArgument("Invalid request token.")
    expected = hmac.digest(key.secret, REQUEST_LABEL + f"{parts[0]}.{parts[1]}".encode(), sha256)
    try:
        ok = hmac.compare_digest(expected, b64url_decode(parts[2]))
        job = json.loads(b64url_decode(parts[1]))
    except (ValueError, TypeError) as exc:
        raise InvalidArgument("Invalid request token.") from exc
    if not ok or not isinstance(job, dict) or int(job.get("exp", 0)) <= time.time():
        raise InvalidArgument("Invalid request token.")
    job.pop("exp")
    return job
