"""The server's state: the store and the services built on it, shared by every request.

It also holds the two caches the request path needs besides policies: which service accounts
are disabled or deleted (their tokens stop working at once), refreshed when the store's
revision moves.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from keyless.audit.sink import AuditSink
from keyless.config import Settings
from keyless.errors import InvalidArgument, Unauthenticated
from keyless.iam import service_agents
from keyless.iam.directory import ServiceAccountDirectory
from keyless.iam.evaluate import Authorizer
from keyless.iam.members import (
    ALL_AUTHENTICATED_USERS,
    ALL_USERS,
    CONVENIENCE_KINDS,
    PROJECT_MEMBER_FORM,
    PROJECT_MEMBER_FORM_DETAIL,
    UNKNOWN_TYPE,
)
from keyless.iam.policy import add_binding, get_policy_row
from keyless.iam.principal import Principal
from keyless.iam.principal import service_account_principal as service_account_principal  # re-exported
from keyless.iam.principal import user_principal as user_principal  # re-exported
from keyless.iam.roles import RoleCatalogue
from keyless.iam.service_accounts import EMAIL_DOMAIN, find_by_email
from keyless.projects import ROOT, create_project, project_resource
from keyless.store.db import Database, RevisionCache, open_database
from keyless.store.models import Project, ServiceAccount
from keyless.tokens.access import CLOUD_PLATFORM, INVALID_CREDENTIALS, AccessToken, AccessTokens
from keyless.tokens.access import PREFIX as ACCESS_PREFIX
from keyless.tokens.keys import KeyRing

if TYPE_CHECKING:
    from keyless.federation.exchange import TokenExchanger
    from keyless.iam.self_signed import SelfSignedJwts

MISSING_CREDENTIALS = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
OWNER_TOKEN_LIFETIME = timedelta(hours=24)
BOOTSTRAP_ROLES = ("roles/owner", "roles/resourcemanager.projectCreator", "roles/orgpolicy.policyAdmin",
                   "roles/cloudasset.viewer")


class ServerState:
    """Everything a request handler needs, built once per process."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or open_database(settings.database_url, settings.data_dir)
        self.keys = KeyRing(self.db)
        self.tokens = AccessTokens(self.keys)
        self.roles = RoleCatalogue(self.db)
        self.authz = Authorizer(self.db, self.roles)
        self.audit = AuditSink(self.db, journal=settings.data_dir / "audit-journal")
        self.directory = ServiceAccountDirectory(self.db)
        self._inactive = RevisionCache(self.db, self._load_inactive)
        self._jwts: SelfSignedJwts | None = None

    @functools.cached_property
    def exchanger(self) -> TokenExchanger:
        """The STS token exchange, made (and the federation code imported) at the first exchange:
        a server answers its first request sooner (issue #19). Cached in the instance, so later
        exchanges read a plain attribute."""
        from keyless.federation.exchange import TokenExchanger
        from keyless.federation.providers.aws import AwsVerifier
        from keyless.federation.providers.oidc import OidcVerifier

        return TokenExchanger(
            self.db, self.tokens, OidcVerifier(allow_insecure_loopback=self.settings.allow_insecure_issuers),
            AwsVerifier(sts_endpoint=self.settings.aws_sts_endpoint), universe_domain=self.settings.universe_domain,
            verify_access_token=lambda token: self.authenticate(f"Bearer {token}", downscoped=True))

    # -- bootstrap -------------------------------------------------------------------------

    @property
    def owner(self) -> Principal:
        return user_principal(self.settings.owner)

    def bootstrap(self) -> None:
        """Grant the bootstrap owner, on the root node, what an organization admin holds:
        roles/owner (inherited by every project), roles/resourcemanager.projectCreator,
        roles/orgpolicy.policyAdmin (roles/owner includes neither resourcemanager.projects.create
        nor orgpolicy.policy.set, as on Google) and roles/cloudasset.viewer (Policy Analyzer over
        the organization, issue #20; the catalogue's basic roles hold no Cloud Asset permission)."""
        member = self.owner.member
        for role in BOOTSTRAP_ROLES:
            with self.db.read() as s:
                row = get_policy_row(s, ROOT)
                present = row is not None and any(b["role"] == role and member in b["members"] for b in row.bindings)
            if not present:
                with self.db.write() as s:
                    add_binding(s, ROOT, role, member, self.role_exists(s), self.member_check(s))

    def bootstrap_in(self, s: Session) -> None:
        """The bootstrap owner's grants, inside a write transaction that just emptied the store
        (keyless.store.snapshots.clear): a reset never leaves a moment without an owner."""
        for role in BOOTSTRAP_ROLES:
            add_binding(s, ROOT, role, self.owner.member, self.role_exists(s), self.member_check(s))

    def create_owned_project(self, project_id: str, *, name: str | None = None, number: str | None = None) -> Project:
        """A project made by the bootstrap owner with a chosen number (no Google API sets one), who
        then holds roles/owner on it, as `gcloud projects create` makes its caller owner."""
        with self.db.write() as s:
            row = create_project(s, project_id, name=name, number=number)
            s.flush()
            add_binding(s, project_resource(row.project_id), "roles/owner", self.owner.member,
                        self.role_exists(s), lambda m: None)
            s.expunge(row)
        return row

    def write_owner_token(self) -> AccessToken:
        """Mint the owner's token into the data directory (mode 0600) for configure-gcloud."""
        token = self.tokens.mint(self.owner, [CLOUD_PLATFORM], int(OWNER_TOKEN_LIFETIME.total_seconds()))
        path = self.settings.owner_token_file
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token.token)
        os.replace(tmp, path)
        return token

    # -- authentication ----------------------------------------------------------------------

    def authenticate(self, authorization: str | None, service: str = "", *, downscoped: bool = False) -> AccessToken:
        """Verify a `Bearer` access token, or a self-signed JWT of a service account key meant for
        `service` (keyless.iam.self_signed); refuse tokens of disabled or deleted accounts, and
        downscoped tokens (keyless.tokens.boundary) unless the caller enforces their boundary
        (`downscoped`: Cloud Storage alone does)."""
        if not authorization:
            raise Unauthenticated(MISSING_CREDENTIALS)
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise Unauthenticated(INVALID_CREDENTIALS)
        credential = credential.strip()
        if not credential.startswith(ACCESS_PREFIX) and credential.count(".") == 2:
            token = self._self_signed().authenticate(credential, service)
        else:
            token = self.tokens.verify(credential)
        sa = token.principal.service_account_id
        if sa is not None and sa in self.inactive_service_accounts():
            raise Unauthenticated(INVALID_CREDENTIALS)
        if token.boundary is not None and not downscoped:
            raise Unauthenticated(INVALID_CREDENTIALS)
        return token

    def _self_signed(self) -> SelfSignedJwts:
        if self._jwts is None:
            from keyless.iam.self_signed import SelfSignedJwts  # made at the first self-signed JWT

            self._jwts = SelfSignedJwts(self.db)
        return self._jwts

    def inactive_service_accounts(self) -> frozenset[str]:
        """uniqueIds of disabled or deleted service accounts, as of the store's revision."""
        return self._inactive.get()

    def _load_inactive(self) -> frozenset[str]:
        with self.db.read_each() as s:
            return frozenset(s.scalars(select(ServiceAccount.unique_id).where(
                or_(ServiceAccount.disabled.is_(True), ServiceAccount.deleted.is_(True)))).all())

    # -- policy validation hooks -------------------------------------------------------------

    def role_exists(self, s: Session) -> Callable[[str], bool]:
        return lambda role: self.roles.exists(s, role)

    @staticmethod
    def member_check(s: Session, resource_kind: str = "") -> Callable[[str], None]:
        """Per-member rules of a policy write on a `resource_kind` ("project", "bucket", ...):
        Google refuses grants to service accounts that do not exist (other kinds are opaque
        strings it cannot check); a project refuses public members; the storage-only
        `projectOwner:`-style members belong on buckets."""

        def check(member: str) -> None:
            if member.startswith("serviceAccount:") and member.endswith(EMAIL_DOMAIN):
                email = member.split(":", 1)[1]
                if find_by_email(s, email) is None and not service_agents.exists(s, email):
                    raise InvalidArgument(f"Service account {email} does not exist.")
            elif resource_kind == "project" and member in (ALL_USERS, ALL_AUTHENTICATED_USERS):
                raise InvalidArgument(PROJECT_MEMBER_FORM, details=[{
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "policy.bindings.member", "description": PROJECT_MEMBER_FORM_DETAIL}],
                }])
            elif resource_kind != "bucket" and member.split(":", 1)[0] in CONVENIENCE_KINDS:
                raise InvalidArgument(UNKNOWN_TYPE.format(member=member))

        return check
