"""Service account credentials (IAM Credentials API): impersonation with delegation chains.

https://cloud.google.com/iam/docs/create-short-lived-credentials-direct and -delegated: the
caller needs the permission on the first account of the chain (`delegates`, then the target),
and every account in the chain needs it on the next one. Disabled or deleted accounts are
refused. Access tokens live at most an hour, or twelve for the service accounts that the
target project's list constraint constraints/iam.allowServiceAccountCredentialLifetimeExtension
allows (https://cloud.google.com/iam/docs/create-short-lived-credentials-direct#sa-credentials-oauth).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyless.clock import parse_duration
from keyless.errors import FailedPrecondition, InvalidArgument, NotFound
from keyless.iam.directory import AccountInfo, ServiceAccountDirectory
from keyless.iam.evaluate import Authorizer, Decision, permission_denied
from keyless.iam.principal import Principal, service_account_principal
from keyless.iam.service_account_keys import current_system_key, system_key
from keyless.iam.service_accounts import sa_chain
from keyless.projects import find_project, get_org_policy
from keyless.store.db import Database
from keyless.store.models import ServiceAccount
from keyless.tokens.access import AccessToken, AccessTokens
from keyless.tokens.keys import ID, KeyRing, b64url

GET_ACCESS_TOKEN = "iam.serviceAccounts.getAccessToken"
DELEGATE = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)$")
MAX_LIFETIME = 3600
EXTENDED_MAX_LIFETIME = 12 * 3600
LIFETIME_EXTENSION_CONSTRAINT = "constraints/iam.allowServiceAccountCredentialLifetimeExtension"
MAX_DELEGATES = 10
GOOGLE_ISSUER = "https://accounts.google.com"  # what Google's ID tokens say; JWKS at /oauth2/v3/certs


class Services(Protocol):
    """What the credentials need of the server (keyless.state.ServerState has them): they take
    this rather than the server's state, which builds on them (issue #20)."""

    @property
    def db(self) -> Database: ...
    @property
    def directory(self) -> ServiceAccountDirectory: ...  # accounts by email or uniqueId, cached
    @property
    def authz(self) -> Authorizer: ...  # each hop's permission check
    @property
    def tokens(self) -> AccessTokens: ...  # mints the access tokens
    @property
    def keys(self) -> KeyRing: ...  # signs the ID tokens


@dataclass(frozen=True)
class Chain:
    target: AccountInfo
    hops: tuple[AccountInfo, ...]  # the delegates, in order
    delegation: tuple[str, ...]  # principals the final token acts for, first = the caller


def _account(services: Services, name: str) -> AccountInfo:
    m = DELEGATE.match(name)
    if m is None:
        raise InvalidArgument(f"Invalid form of account ID {name}. Should be [Gaia ID |Email |Unique ID |] "
                              "of the account")
    account = services.directory.find(m.group(2))
    if account is None:
        raise NotFound(f"Not found; Gaia id not found for email {m.group(2)}")
    if account.disabled:
        raise FailedPrecondition(f"Service account {account.email} is disabled.")
    return account


def may_act_as(authz: Authorizer, actor: Principal, account: AccountInfo, permission: str) -> Decision:
    """One hop of a chain: does `actor` hold `permission` (getAccessToken, ...) on `account`?
    For a federated or GKE principal that is roles/iam.workloadIdentityUser (or
    serviceAccountTokenCreator) on the account or its project."""
    return authz.check(actor, permission, sa_chain(account))


def resolve_chain(services: Services, caller: Principal, target_name: str, delegates: Any,
                  permission: str) -> Chain:
    """Check the whole chain caller -> delegates... -> target for `permission` (no store access
    while caches are warm: accounts come from the directory, policies from the authorizer)."""
    if delegates is None:
        delegates = []
    if not isinstance(delegates, list) or not all(isinstance(d, str) for d in delegates) \
            or len(delegates) > MAX_DELEGATES:
        raise InvalidArgument(f"delegates must be a list of at most {MAX_DELEGATES} service account names.")
    hops = tuple(_account(services, d) for d in delegates)
    target = _account(services, target_name)
    actor = caller
    for account in (*hops, target):
        if not may_act_as(services.authz, actor, account, permission).granted:
            raise permission_denied(permission, f"projects/-/serviceAccounts/{account.unique_id}")
        actor = service_account_principal(account)
    delegation = (caller.subject or caller.member,) + tuple(f"serviceAccount:{h.email}" for h in hops)
    return Chain(target, hops, delegation)


def allowed_locations_of(services: Services, caller: Principal, name: str) -> AccountInfo:
    """The account whose trust boundary `caller` may read: the account itself, or a holder of
    iam.serviceAccounts.get on it (getAllowedLocations; disabled accounts answer too)."""
    m = DELEGATE.match(name)
    account = services.directory.find(m.group(2)) if m is not None else None
    if m is None:
        raise InvalidArgument(f"Invalid form of account ID {name}. Should be [Gaia ID |Email |Unique ID |] "
                              "of the account")
    if account is None:
        raise NotFound(f"Not found; Gaia id not found for email {m.group(2)}")
    if caller.service_account_id != account.unique_id \
            and not may_act_as(services.authz, caller, account, "iam.serviceAccounts.get").granted:
        raise permission_denied("iam.serviceAccounts.get", f"projects/-/serviceAccounts/{account.unique_id}")
    return account


def generate_access_token(services: Services, caller: Principal, name: str,
                          body: dict[str, Any]) -> tuple[AccessToken, AccountInfo]:
    scopes = body.get("scope")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(x, str) and x for x in scopes):
        raise InvalidArgument("Scope required.")
    lifetime = MAX_LIFETIME
    if body.get("lifetime") is not None:
        lifetime = int(parse_duration(body["lifetime"], "lifetime"))
        if not 1 <= lifetime <= EXTENDED_MAX_LIFETIME:
            raise InvalidArgument(f"The lifetime must be between 1 and {EXTENDED_MAX_LIFETIME} seconds.")
    chain = resolve_chain(services, caller, name, body.get("delegates"), GET_ACCESS_TOKEN)
    if lifetime > MAX_LIFETIME and not _lifetime_extension_allowed(services, chain.target):
        raise InvalidArgument(
            f"The lifetime {lifetime}s is longer than the maximum {MAX_LIFETIME}s: service account "
            f"{chain.target.email} is not allowed a longer lifetime by {LIFETIME_EXTENSION_CONSTRAINT}.")
    base = service_account_principal(chain.target)
    principal = Principal(member=base.member, member_keys=base.member_keys, email=base.email, subject=base.subject,
                          service_account_id=base.service_account_id, delegation=chain.delegation)
    return services.tokens.mint(principal, scopes, lifetime), chain.target


def _lifetime_extension_allowed(services: Services, target: AccountInfo) -> bool:
    """Whether the target project's list policy for the constraint allows this account's email
    (`allowedValues`, or `allValues: ALLOW`; `deniedValues` wins)."""
    with services.db.read() as s:
        project = find_project(s, target.project_id, include_deleted=False)
        if project is None:
            return False
        policy = get_org_policy(project, LIFETIME_EXTENSION_CONSTRAINT).get("listPolicy") or {}
    if not isinstance(policy, dict):
        return False
    email = target.email.lower()
    values = {str(v).lower().removeprefix("is:") for v in policy.get("allowedValues") or []}
    denied = {str(v).lower().removeprefix("is:") for v in policy.get("deniedValues") or []}
    if email in denied or policy.get("allValues") == "DENY":
        return False
    return policy.get("allValues") == "ALLOW" or email in values


MAX_AUDIENCE_LENGTH = 2048
MAX_BLOB_BASE64 = 4 * (1024 * 1024 + 2) // 3  # a 1 MiB blob, base64: bounded before it is decoded


def generate_id_token(services: Services, caller: Principal, name: str,
                      body: dict[str, Any]) -> tuple[str, AccountInfo]:
    audience = body.get("audience")
    if not isinstance(audience, str) or not audience:
        raise InvalidArgument("Audience required.")
    if len(audience) > MAX_AUDIENCE_LENGTH:
        raise InvalidArgument(f"The audience is too long: at most {MAX_AUDIENCE_LENGTH} characters.")
    include_email = body.get("includeEmail", False)
    if not isinstance(include_email, bool):
        raise InvalidArgument("includeEmail must be a boolean.")
    chain = resolve_chain(services, caller, name, body.get("delegates"), "iam.serviceAccounts.getOpenIdToken")
    return id_token_for(services.keys, chain.target, audience, include_email), chain.target


def id_token_for(keys: KeyRing, account: ServiceAccount | AccountInfo, audience: str,
                 include_email: bool) -> str:
    """A Google-shaped ID token for `account`, RS256-signed with Keyless's ID key."""
    now = int(time.time())
    claims: dict[str, Any] = {"aud": audience, "azp": account.unique_id, "exp": now + 3600, "iat": now,
                              "iss": GOOGLE_ISSUER, "sub": account.unique_id}
    if include_email:
        claims.update(email=account.email, email_verified=True)
    return keys.sign_rs256(ID, {"typ": "JWT"}, claims)


def sign_blob(services: Services, caller: Principal, name: str, payload: Any, delegates: Any = None, *,
              field: str = "payload") -> tuple[str, bytes, AccountInfo]:
    """signBlob: RSA-SHA256 over the base64 `payload` with the target's Google-managed key.
    `field` names the payload in messages (IAM v1's deprecated signBlob calls it bytesToSign)."""
    if not isinstance(payload, str):
        raise InvalidArgument(f"{field} is required (base64).")
    if len(payload) > MAX_BLOB_BASE64:
        raise InvalidArgument(f"{field} must be at most 1 MiB.")
    try:
        data = base64.b64decode(payload, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise InvalidArgument(f"{field} must be base64.") from exc
    chain = resolve_chain(services, caller, name, delegates, "iam.serviceAccounts.signBlob")
    key_id, private = _signing_key(services, chain.target)
    return key_id, private.sign(data, padding.PKCS1v15(), hashes.SHA256()), chain.target


def sign_jwt(services: Services, caller: Principal, name: str, payload: Any,
             delegates: Any = None, *, default_lifetime: int | None = None) -> tuple[str, str, AccountInfo]:
    """signJwt: the payload (a JSON claims object) as an RS256 JWT with the Google-managed key. An
    `exp` must not be past nor more than 12 hours ahead; without one, `default_lifetime` adds it
    (IAM v1's signJwt adds an hour; IAM Credentials' signs the claims as given)."""
    if not isinstance(payload, str) or len(payload) > 64 * 1024:
        raise InvalidArgument("payload is required: a JSON object of JWT claims.")
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise InvalidArgument(f"payload is not valid JSON: {exc}") from exc
    if not isinstance(claims, dict):
        raise InvalidArgument("payload must be a JSON object.")
    exp, now = claims.get("exp"), time.time()
    if exp is None and default_lifetime is not None:
        claims["exp"] = int(now) + default_lifetime
        payload = json.dumps(claims, separators=(",", ":"))
    elif exp is not None and (not isinstance(exp, int | float) or isinstance(exp, bool) or exp < now
                              or exp > now + 12 * 3600):
        raise InvalidArgument("The exp claim must be a timestamp not in the past and at most 12 hours in the future.")
    chain = resolve_chain(services, caller, name, delegates, "iam.serviceAccounts.signJwt")
    key_id, private = _signing_key(services, chain.target)
    head = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": key_id}, separators=(",", ":")).encode())
    body_b64 = b64url(payload.encode())
    signature = private.sign(f"{head}.{body_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return key_id, f"{head}.{body_b64}.{b64url(signature)}", chain.target


def _signing_key(services: Services, account: AccountInfo) -> tuple[str, rsa.RSAPrivateKey]:
    """The target's Google-managed key: read; a write transaction (which serialises writers and
    makes every process drop its caches) only the first time and at each 14-day rotation."""
    with services.db.read() as s:
        found = current_system_key(s, _row(s, account))
    if found is None:
        with services.db.write() as s:
            found = system_key(s, _row(s, account))
    return found[0].key_id, found[1]


def _row(s: Any, account: AccountInfo) -> ServiceAccount:
    row = s.get(ServiceAccount, account.unique_id)
    if row is None or row.deleted:
        raise NotFound(f"Not found; Gaia id not found for email {account.email}")
    return row
