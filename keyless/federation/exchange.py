"""Token exchange (RFC 8693) as Google's Security Token Service performs it.

https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token: an external credential
(an OIDC ID token, or a serialized AWS GetCallerIdentity request) is verified by its provider's
plugin, the provider's attribute condition and mapping (CEL) run on its claims, and a federated
access token is issued to `principal://iam.googleapis.com/projects/N/locations/global/
workloadIdentityPools/POOL/subject/SUBJECT`, member of the pool's principal sets of its groups
and attributes. Providers are compiled once per store revision, not per request.

Errors carry the OAuth `error` code Google's STS answers with (RFC 6749 section 5.2, RFC 8693
section 2.2.2); the HTTP layer renders them.

An access token as the subject token asks for a downscoped token: the same principal, scopes and
expiry, bounded by the Credential Access Boundary in `options` (keyless.tokens.boundary).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from keyless.errors import InvalidArgument, KeylessError, PermissionDenied
from keyless.federation.mapping import CompiledMapping, compile_mapping
from keyless.federation.mapping_worker import MappingWorker
from keyless.federation.providers.kubernetes import KubernetesVerifier
from keyless.federation.providers.oidc import NeedsNetwork, OidcVerifier
from keyless.iam.members import member_keys_for_federated
from keyless.iam.principal import Principal
from keyless.store.db import Database, RevisionCache
from keyless.store.models import Project, WorkloadIdentityPool, WorkloadIdentityPoolProvider
from keyless.tokens.access import MAX_TOKEN_LENGTH, AccessToken, AccessTokens
from keyless.tokens.access import PREFIX as ACCESS_PREFIX
from keyless.tokens.boundary import BoundaryError, parse_options

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")
AWS_TYPE = "urn:ietf:params:aws:token-type:aws4_request"
AUDIENCE = re.compile(r"^//iam\.googleapis\.com/(projects/([0-9]{1,20})/locations/global/workloadIdentityPools/"
                      r"([a-z0-9-]{4,32}|[A-Za-z0-9._:-]{1,128}\.svc\.id\.goog)/providers/([a-z0-9-]{4,32}))$")
DEFAULT_LIFETIME = 3600
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"

INVALID_AUDIENCE = ('Invalid value for "audience". This value should be the full resource name of the Identity '
                    "Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token for the "
                    "list of possible formats.")
INVALID_SUBJECT_ACCESS_TOKEN = "The subject token is invalid or expired."
INVALID_TARGET = ('The target service indicated by the "audience" parameters is invalid. This might either be '
                  "because the pool or provider is disabled or deleted or because it doesn't exist.")


# google.rpc codes of the HTTP statuses STS answers (https://github.com/googleapis/googleapis/blob/master/google/rpc/code.proto)
RPC_STATUS_OF_HTTP = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                      429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


class OAuthError(KeylessError):
    """An STS refusal: `oauth_error` is the RFC 6749 error code, `message` its description."""

    def __init__(self, oauth_error: str, description: str, status: int = 400, *, stage: str = "") -> None:
        super().__init__(description)
        self.oauth_error = oauth_error
        self.http_status = status
        self.status = RPC_STATUS_OF_HTTP.get(status, "UNKNOWN")  # the audit entry's status.code
        self.stage = stage  # "token", "condition" or "mapping" where a provider's check refused (diagnosis)


@dataclass(frozen=True)
class ProviderRuntime:
    """What an exchange needs of one provider, prepared once per store revision."""

    name: str
    project_number: str
    pool_id: str
    usable: bool  # pool and provider active and enabled
    oidc: dict[str, Any] | None
    aws: dict[str, Any] | None
    compiled: CompiledMapping
    lifetime: int
    project_id: str = ""  # the pool's project, where its exchanges are audited


@dataclass(frozen=True)
class Exchange:
    """The outcome of one successful exchange."""

    token: AccessToken
    provider: ProviderRuntime | None  # None for a GKE cluster's identitynamespace exchange
    assertion: dict[str, Any]


class Providers:
    """Provider runtimes by full name, rebuilt lazily after any write to the store."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: RevisionCache[dict[str, ProviderRuntime | None]] = RevisionCache(db, dict)

    def get(self, name: str) -> ProviderRuntime | None:
        cache = self._cache.get()
        if name in cache:
            return cache[name]
        runtime = self._load(name)
        if len(cache) < 100_000:  # bounded: audiences are caller-supplied
            cache[name] = runtime
        return runtime

    def _load(self, name: str) -> ProviderRuntime | None:
        # One query, one round trip on a cold cache (store.db.Database.read_each).
        with self._db.read_each() as s:
            found = s.execute(
                select(WorkloadIdentityPoolProvider, WorkloadIdentityPool, Project.project_id, Project.lifecycle_state)
                .join(WorkloadIdentityPool, WorkloadIdentityPool.name == WorkloadIdentityPoolProvider.pool_name)
                .outerjoin(Project, Project.project_number == WorkloadIdentityPool.project_number)
                .where(WorkloadIdentityPoolProvider.name == name)).first()
        if found is None:
            return None
        row, pool, project_id, lifecycle = found
        kind = "aws" if row.aws else "oidc"
        try:
            compiled = compile_mapping(row.attribute_mapping, row.attribute_condition, provider_type=kind)
        except KeylessError:
            return None  # stored before a rule tightened: unusable rather than a 500
        # a project pending deletion takes its pools out of service (issue #20)
        usable = (row.state == "ACTIVE" and not row.disabled and pool.state == "ACTIVE" and not pool.disabled
                  and lifecycle in (None, "ACTIVE"))
        lifetime = DEFAULT_LIFETIME
        if pool.session_duration and pool.session_duration.endswith("s"):
            try:
                lifetime = max(900, min(43200, int(float(pool.session_duration[:-1]))))
            except ValueError:
                pass
        return ProviderRuntime(name=row.name, project_number=pool.project_number, pool_id=pool.pool_id,
                               usable=usable, oidc=row.oidc, aws=row.aws, compiled=compiled, lifetime=lifetime,
                               project_id=project_id or "")


def federated_principal(project_number: str, pool_id: str, subject: str, groups: tuple[str, ...],
                        attributes: dict[str, Any]) -> Principal:
    member = (f"principal://iam.googleapis.com/projects/{project_number}/locations/global/"
              f"workloadIdentityPools/{pool_id}/subject/{subject}")
    keys = member_keys_for_federated(project_number, pool_id, subject, groups, attributes)
    return Principal(member=member, member_keys=keys, subject=member)


class TokenExchanger:
    """Verifies subject tokens with the provider plugins and mints federated tokens."""

    def __init__(self, db: Database, tokens: AccessTokens, oidc: OidcVerifier, aws: Any = None,
                 verify_access_token: Callable[[str], AccessToken] | None = None,
                 universe_domain: str | None = None) -> None:
        self.providers = Providers(db)
        # `//iam.UNIVERSE/...` names the same provider as `//iam.googleapis.com/...` (issue #19):
        # google-github-actions/auth builds its STS audience from its `universe` input.
        self._universe_iam = f"//iam.{universe_domain}" if universe_domain else None
        # ... and asks for `https://www.UNIVERSE/auth/cloud-platform`: kept as Google's scope names.
        self._universe_www = f"https://www.{universe_domain}" if universe_domain else None
        self._kubernetes = KubernetesVerifier(db)
        self._tokens = tokens
        # How a subject access token is verified (the server's: also refuses disabled accounts' tokens).
        self._verify_access_token = verify_access_token or tokens.verify
        self._oidc = oidc
        self._aws = aws
        self.mapper = MappingWorker()  # conditions and mappings off the event loop, within a budget

    def provider_name(self, audience: str) -> str | None:
        """The provider an STS `audience` names (`projects/N/locations/global/workloadIdentityPools/
        P/providers/ID`), or None when it names none. Besides Google's `//iam.googleapis.com/NAME`,
        a server with a universe domain D accepts `//iam.D/NAME` and `//iam.D:PORT/NAME` (clients
        reach a universe on Keyless's TLS port, and the action's audience is its iam URL's host)."""
        if self._universe_iam is not None:
            path = _after_host(audience, self._universe_iam)
            if path is not None:
                audience = "//iam.googleapis.com" + path
        m = AUDIENCE.match(audience)
        return m.group(1) if m else None

    def _scopes(self, form: dict[str, str]) -> tuple[str, ...]:
        """The requested scopes (space-separated; cloud-platform when none), a universe's
        `https://www.D[:PORT]/auth/X` named as Google's `https://www.googleapis.com/auth/X`."""
        scopes = tuple(form.get("scope", CLOUD_PLATFORM).split()) or (CLOUD_PLATFORM,)
        www = self._universe_www
        if www is None or not any(scope.startswith(www) for scope in scopes):
            return scopes
        named = []
        for scope in scopes:
            path = _after_host(scope, www)
            named.append(f"https://www.googleapis.com{path}" if path and path.startswith("/auth/") else scope)
        return tuple(named)

    def exchange(self, form: dict[str, str], *, allow_network: bool = True) -> Exchange:
        """Perform one exchange from the request's form fields; raise OAuthError otherwise.

        With `allow_network=False` it raises NeedsNetwork instead of contacting an issuer or AWS,
        so an event loop can run it inline and hand only cold cases to a worker thread."""
        if form.get("grant_type") != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", f"Unsupported grant_type: {form.get('grant_type', '')!r}. "
                             f"Expected {GRANT_TYPE}.")
        requested = form.get("requested_token_type", ACCESS_TOKEN_TYPE)
        if requested != ACCESS_TOKEN_TYPE:
            raise OAuthError("invalid_request", f'Invalid value for "requested_token_type": {requested}.')
        subject_token = form.get("subject_token", "")
        subject_token_type = form.get("subject_token_type", "")
        if not subject_token:
            raise OAuthError("invalid_request", 'Missing required parameter: "subject_token".')
        if subject_token_type == ACCESS_TOKEN_TYPE:
            return self._downscope(form, subject_token)
        if form.get("audience", "").startswith("identitynamespace:"):
            return self._exchange_ksa_token(form, subject_token, subject_token_type)
        name = self.provider_name(form.get("audience", ""))
        if name is None:
            raise OAuthError("invalid_request", INVALID_AUDIENCE)
        provider = self.providers.get(name)
        if provider is None or not provider.usable:
            raise OAuthError("invalid_target", INVALID_TARGET)
        scopes = self._scopes(form)
        assertion = self.verify_credential(provider, subject_token, subject_token_type, form["audience"], allow_network)
        try:
            identity = self.mapper.apply(provider.compiled, assertion, size=len(subject_token),
                                         inline=not allow_network)
        except PermissionDenied as exc:
            raise OAuthError("unauthorized_client", exc.message, stage="condition") from exc
        except InvalidArgument as exc:
            raise OAuthError("invalid_grant", exc.message, stage="mapping") from exc
        principal = federated_principal(provider.project_number, provider.pool_id, identity.subject,
                                        tuple(identity.groups), dict(identity.attributes))
        token = self._tokens.mint(principal, scopes, provider.lifetime)
        return Exchange(token, provider, assertion)

    def _downscope(self, form: dict[str, Any], subject_token: str) -> Exchange:
        """A Credential Access Boundary exchange: the subject token's principal, scopes and expiry,
        bounded by the rules in `options`. A token already downscoped is not downscoped again."""
        if form.get("options") in (None, ""):
            raise OAuthError("invalid_request", 'Missing required parameter: "options". An access token is '
                             "exchanged only for a downscoped token, with a Credential Access Boundary in options.")
        try:
            boundary = parse_options(form["options"])
        except BoundaryError as exc:
            raise OAuthError("invalid_request", str(exc)) from exc
        try:
            if not subject_token.startswith(ACCESS_PREFIX):
                raise OAuthError("invalid_grant", INVALID_SUBJECT_ACCESS_TOKEN)
            source = self._verify_access_token(subject_token)
        except KeylessError as exc:
            raise OAuthError("invalid_grant", INVALID_SUBJECT_ACCESS_TOKEN) from exc
        if source.boundary is not None:
            raise OAuthError("invalid_grant", "The subject token is already downscoped.")
        now = int(time.time())
        token = self._tokens.mint(source.principal, source.scopes, source.expires_at - now, now=now, boundary=boundary)
        if len(token.token) > MAX_TOKEN_LENGTH:  # it could not be verified: refuse it now
            raise OAuthError("invalid_request", "The access boundary is too large.")
        return Exchange(token, None, {})

    def _exchange_ksa_token(self, form: dict[str, str], subject_token: str, subject_token_type: str) -> Exchange:
        """What the GKE metadata server asks: a pod's KSA token for the project pool's identity."""
        if subject_token_type not in JWT_TYPES:
            raise OAuthError("invalid_request", f'Invalid value for "subject_token_type": {subject_token_type}.')
        try:
            identity = self._kubernetes.verify(form["audience"], subject_token)
        except KeylessError as exc:
            raise OAuthError(getattr(exc, "oauth_error", "invalid_grant"), exc.message) from exc
        scopes = tuple(form.get("scope", CLOUD_PLATFORM).split()) or (CLOUD_PLATFORM,)
        return Exchange(self._tokens.mint(identity.principal, scopes, DEFAULT_LIFETIME), None, identity.assertion)

    def verify_credential(self, provider: ProviderRuntime, subject_token: str, subject_token_type: str,
                          audience: str, allow_network: bool = True) -> dict[str, Any]:
        """The provider plugin's verdict on an external credential: its claims (the `assertion`
        the condition and mapping read), or OAuthError (also what `keyless doctor explain` shows)."""
        if provider.oidc is not None:
            if subject_token_type not in JWT_TYPES:
                raise OAuthError("invalid_request", f'Invalid value for "subject_token_type": {subject_token_type}. '
                                 "An OIDC provider expects urn:ietf:params:oauth:token-type:jwt or id_token.")
            try:
                return self._oidc.verify(subject_token, issuer_uri=provider.oidc["issuerUri"],
                                         allowed_audiences=list(provider.oidc.get("allowedAudiences", [])),
                                         provider_resource_name=provider.name,
                                         jwks_json=provider.oidc.get("jwksJson"), allow_network=allow_network)
            except KeylessError as exc:
                raise OAuthError(getattr(exc, "oauth_error", "invalid_grant"), exc.message, stage="token") from exc
        if subject_token_type != AWS_TYPE:
            raise OAuthError("invalid_request", f'Invalid value for "subject_token_type": {subject_token_type}. '
                             f"An AWS provider expects {AWS_TYPE}.")
        if self._aws is None:
            raise OAuthError("invalid_request", "AWS providers are not available on this server.")
        if not allow_network:
            raise NeedsNetwork("AWS STS")  # every AWS exchange asks AWS
        try:
            result: dict[str, Any] = self._aws.verify(subject_token, account_id=provider.aws["accountId"],  # type: ignore[index]
                                                      audience=audience)
            return result
        except KeylessError as exc:
            raise OAuthError(getattr(exc, "oauth_error", "invalid_grant"), exc.message, stage="token") from exc


def _after_host(url: str, host: str) -> str | None:
    """The path of `url` after `host` (a `:PORT` after it skipped: clients reach a universe on
    Keyless's TLS port), or None when `url` is not on that host."""
    if not url.startswith(host):
        return None
    rest = url[len(host):]
    if rest.startswith(":"):
        port, slash, path = rest[1:].partition("/")
        if not (slash and port.isascii() and port.isdigit() and len(port) <= 5):
            return None
        rest = "/" + path
    return rest if rest.startswith("/") else None


__all__ = ["Exchange", "OAuthError", "Providers", "TokenExchanger", "federated_principal"]
