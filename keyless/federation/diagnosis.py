"""What to change when the STS refuses a subject token whose provider is known: the cause with
the values involved (the token's aud and the audiences allowed, the issuer that could not be
reached, the claims a false condition read) and the command that mends it.

The client still gets Google's error body (keyless.api.sts); this text goes where a person reads
it: the refused exchange's audit entry (`protoPayload.metadata.diagnosis`) and
`keyless doctor explain --token` (keyless.doctor.explain), so both say the same thing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from keyless.federation.providers.oidc import default_audiences
from keyless.tokens.jws import b64url_decode

MAX_SHOWN = 200  # characters of any token-supplied value shown


@dataclass(frozen=True)
class Diagnosis:
    cause: str  # what is wrong, with the values involved
    fix: str  # the change that mends it (a command where one exists)

    def as_json(self) -> dict[str, str]:
        return {"cause": self.cause, "fix": self.fix}


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, unverified, for showing only ({} if it is not one)."""
    parts = token.strip().split(".")
    if len(parts) != 3 or len(parts[1]) > 16 * 1024:
        return {}
    try:
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…"


def provider_flags(provider_name: str) -> tuple[str, str]:
    """(provider id, gcloud's flags naming its pool) of projects/N/locations/global/workloadIdentityPools/P/providers/X."""
    parts = provider_name.split("/")
    number, pool, provider = parts[1], parts[5], parts[7]
    return provider, f"--workload-identity-pool={pool} --location=global --project={number}"


def diagnose(stage: str, cause: BaseException | None, provider_name: str, oidc: dict[str, Any] | None,
             condition: str | None, subject_token: str, server_url: str) -> Diagnosis | None:
    """Why a provider's `stage` ("token", "condition" or "mapping") refused, from the error behind
    the STS refusal (`cause`), and the fix; None where this module has nothing to add."""
    provider, flags = provider_flags(provider_name)
    update = f"gcloud iam workload-identity-pools providers {'update-oidc' if oidc is not None else 'update-aws'} " \
             f"{provider} {flags}"
    if stage == "condition":
        return _condition(condition or "", subject_token, update)
    if stage == "mapping":
        message = getattr(cause, "message", str(cause))
        return Diagnosis(f"the attribute mapping fails for this token: {message}",
                         f"{update} --attribute-mapping=google.subject=assertion.sub,...  (every mapped claim must "
                         f"exist in the token and google.subject must be at most 127 bytes)")
    reason = getattr(cause, "reason", "")
    detail = getattr(cause, "detail", "")
    if not reason or oidc is None:
        return None
    claims = unverified_claims(subject_token)
    issuer = str(oidc.get("issuerUri", ""))
    if reason == "audience":
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        allowed = list(oidc.get("allowedAudiences") or [])
        shown_allowed = allowed or [f"{a} (the default when none are set)" for a in default_audiences(provider_name)]
        wanted = f"https://iam.googleapis.com/{provider_name}"
        token_aud = _shown(auds[0]) if auds and auds[0] is not None else "AUDIENCE"
        return Diagnosis(
            f"the token's aud is {_shown(aud)}; the provider's allowed audiences are {shown_allowed}",
            f"request the token with audience {wanted} (what google-github-actions/auth asks GitHub for; "
            f"keyless token github --provider {provider_name}), or allow the token's: {update} "
            f"--allowed-audiences={','.join([*allowed, token_aud])}")
    if reason == "issuer":
        return Diagnosis(
            f"the token's iss is {_shown(claims.get('iss'))}; the provider trusts the issuer {issuer}",
            f"mint the token from {issuer}, or trust its issuer: {update} --issuer-uri={_shown(claims.get('iss'))}")
    if reason == "issuer_unreachable":
        return Diagnosis(f"Keyless could not fetch the keys of the provider's issuer {issuer}: {detail}",
                         _unreachable_fix(issuer, detail, update, server_url))
    if reason in ("expired", "not_yet_valid", "lifetime"):
        return Diagnosis(f"the token's times are refused: {detail}",
                         "use a fresh token (external tokens live minutes; check the clock of the machine that "
                         "minted it; exp may be at most 48 hours after iat)")
    if reason == "signature":
        return Diagnosis(
            f"the token's signature does not verify with the keys of {issuer} (kid {_shown(_kid(subject_token))})",
            f"the token was signed by another key than the issuer publishes: mint it from {issuer} itself (a token "
            f"of another Keyless server or data dir has other keys), or, if the provider has uploaded keys, "
            f"upload the current ones: {update} --jwk-json-path=JWKS_FILE")
    if reason == "malformed":
        return Diagnosis("the subject token is not a JWT (three base64url parts)",
                         "check the credential source: a source answering JSON needs format type json with "
                         "subject_token_field_name (e.g. \"value\" for GitHub's token endpoint)")
    if reason == "missing_claim":
        return Diagnosis(f"{detail}", "the token must carry iss, sub, aud, iat and exp")
    return Diagnosis(detail, f"{update} --help")


def _condition(condition: str, subject_token: str, update: str) -> Diagnosis:
    claims = unverified_claims(subject_token)
    read = sorted(set(re.findall(r"assertion\.([A-Za-z_][A-Za-z0-9_]*)", condition)))
    shown = ", ".join(f"{c}={_shown(claims[c])!r}" if c in claims else f"{c} absent" for c in read)
    return Diagnosis(f"the attribute condition {condition} is false for this token ({shown or 'no claims read'})",
                     f"run from an identity the condition admits, or change it: {update} "
                     f"--attribute-condition=\"...\"")


def _unreachable_fix(issuer: str, detail: str, update: str, server_url: str) -> str:
    parts = urlsplit(issuer)
    own = urlsplit(server_url)
    if "does not use https" in detail:
        return (f"issuers must use https, as on Google; for a local test issuer start the server with "
                f"--allow-insecure-issuers (loopback http:// issuers only), or {update} --issuer-uri=https://...")
    if parts.path.startswith("/idp/") and parts.netloc != own.netloc:
        return (f"{issuer} looks like a Keyless test issuer of another address; this server's is "
                f"{server_url}{parts.path}: {update} --issuer-uri={server_url}{parts.path} (and mint tokens with "
                f"keyless token, which finds the running server)")
    return (f"check that {issuer}/.well-known/openid-configuration and its jwks_uri answer from the server, or "
            f"upload the issuer's keys: {update} --jwk-json-path=JWKS_FILE")


def _kid(token: str) -> Any:
    try:
        header = json.loads(b64url_decode(token.strip().split(".")[0]))
        return header.get("kid") if isinstance(header, dict) else None
    except (ValueError, UnicodeDecodeError, IndexError):
        return None
