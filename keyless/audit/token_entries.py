"""The Data Access entries of the token paths, written the same way wherever a token is issued
(STS, IAM Credentials, the GKE metadata server): ExchangeToken is ADMIN_READ of
sts.googleapis.com (https://cloud.google.com/iam/docs/audit-logging/audit-logging-sts); the IAM
Credentials methods are ADMIN_READ of iamcredentials.googleapis.com, which Google logs where Data
Access logs are enabled for iam.googleapis.com (any of its read types: they cannot be enabled for
iamcredentials on its own, https://cloud.google.com/iam/docs/audit-logging#available-logs).
Refusals are written too, with the refusal's google.rpc code (issue #19). `state` is a
keyless.state.ServerState (not imported here: it builds on this package)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keyless.audit.data_access import ADMIN_READ, credentials_logged, data_access_enabled
from keyless.audit.log import DATA_ACCESS, AuditRecord
from keyless.errors import KeylessError, PermissionDenied
from keyless.iam.directory import AccountInfo
from keyless.iam.principal import Principal
from keyless.iam.service_accounts import sa_chain
from keyless.projects import project_chain

STS_SERVICE = "sts.googleapis.com"
EXCHANGE_METHOD = "google.identity.sts.v1.SecurityTokenService.ExchangeToken"
CREDENTIALS_SERVICE = "iamcredentials.googleapis.com"  # the entries' serviceName
PERMISSIONS = {"GenerateAccessToken": "iam.serviceAccounts.getAccessToken",
               "GenerateIdToken": "iam.serviceAccounts.getOpenIdToken",
               "SignBlob": "iam.serviceAccounts.signBlob", "SignJwt": "iam.serviceAccounts.signJwt"}


def token_exchanged(state: Any, form: dict[str, str], *, project_id: str, pool: str,
                    principal: Principal | None, caller_ip: str, user_agent: str,
                    error: KeylessError | None = None,
                    diagnosis: Callable[[], dict[str, str] | None] | None = None) -> None:
    """An ExchangeToken entry in the pool's project: the caller named by its IdP subject, the
    federated principal in `metadata.mapped_principal`; a refusal's cause and fix, where known, in
    `metadata.diagnosis` (keyless.federation.diagnosis: not in Google's entries, which say no more
    than the error the client got)."""
    keys = principal.member_keys if principal is not None else frozenset()
    if not data_access_enabled(state.authz.audit_configs(project_chain(project_id)),
                               STS_SERVICE, ADMIN_READ, keys):
        return
    record = AuditRecord(service=STS_SERVICE, method=EXCHANGE_METHOD, log=DATA_ACCESS, project_id=project_id,
                         resource_name=pool, resource_type="audited_resource",
                         resource_labels={"service": STS_SERVICE, "method": EXCHANGE_METHOD})
    record.request = {"@type": "type.googleapis.com/google.identity.sts.v1.ExchangeTokenRequest",
                      "audience": form.get("audience", ""), "grantType": form.get("grant_type", ""),
                      "requestedTokenType": form.get("requested_token_type", ""),
                      "subjectTokenType": form.get("subject_token_type", ""), "scope": form.get("scope", "")}
    caller = None
    found = diagnosis() if diagnosis is not None else None
    if found:
        record.metadata = {"diagnosis": found}
    if principal is not None:
        record.metadata = {"mapped_principal": principal.member}
        # the IdP's subject; a GKE identity keeps its serviceAccount:PROJECT.svc.id.goog[NS/KSA] form
        subject = principal.subject if principal.subject != principal.member else \
            principal.member.rsplit("/subject/", 1)[-1]
        caller = Principal(member=principal.member, member_keys=frozenset(), subject=subject)
    state.audit.submit(record, caller, caller_ip=caller_ip, user_agent=user_agent,
                       error=error)


def credentials_issued(state: Any, method: str, target: AccountInfo, principal: Principal, *,
                       caller_ip: str, user_agent: str, error: KeylessError | None = None,
                       service: str = CREDENTIALS_SERVICE) -> None:
    """A GenerateAccessToken/GenerateIdToken/SignBlob/SignJwt entry on the target account; with
    `error`, the refusal (authorizationInfo granted false when IAM refused). `service`: IAM's
    deprecated v1 signBlob/signJwt are entries of iam.googleapis.com, methods
    google.iam.admin.v1.SignBlob/SignJwt, logged under the same configuration."""
    chain = sa_chain(target)
    if not credentials_logged(state.authz.audit_configs(chain[1:]), principal.member_keys):
        return
    resource = f"projects/-/serviceAccounts/{target.unique_id}"
    record = AuditRecord(service=service, method=method, log=DATA_ACCESS, project_id=target.project_id,
                         resource_name=resource, resource_type="service_account",
                         resource_labels={"email_id": target.email, "project_id": target.project_id,
                                          "unique_id": target.unique_id})
    if error is None or isinstance(error, PermissionDenied):
        record.authorize(resource, PERMISSIONS[method.rsplit(".", 1)[-1]], error is None)
        record.authorization[-1]["permissionType"] = ADMIN_READ
    state.audit.submit(record, principal, caller_ip=caller_ip, user_agent=user_agent, error=error)
