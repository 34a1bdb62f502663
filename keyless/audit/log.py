"""Cloud Audit Logs entries, written to the store in Google's `LogEntry` shape.

Shapes follow https://cloud.google.com/logging/docs/audit/understanding-audit-logs and
https://cloud.google.com/logging/docs/reference/audit/auditlog/rest/Shared.Types/AuditLog:
`protoPayload` is an AuditLog with methodName, serviceName, resourceName,
authenticationInfo, authorizationInfo, requestMetadata, request, response and status.
Admin Activity entries are always written; Data Access entries only where the policy's
`auditConfigs` enable the log type for the service and the caller is not exempted.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.errors import KeylessError
from keyless.iam.principal import Principal
from keyless.store.models import AuditEntry

ACTIVITY = "cloudaudit.googleapis.com/activity"
DATA_ACCESS = "cloudaudit.googleapis.com/data_access"
SYSTEM_EVENT = "cloudaudit.googleapis.com/system_event"

# google.rpc.Code numbers, for AuditLog.status
RPC_CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "UNAUTHENTICATED": 16,
}


@dataclass
class AuditRecord:
    """What one API call contributes to its audit entry; handlers fill in the resource."""

    service: str
    method: str
    log: str = ACTIVITY
    project_id: str = ""
    resource_name: str = ""
    resource_type: str = "audited_resource"
    resource_labels: dict[str, str] = field(default_factory=dict)
    authorization: list[dict[str, Any]] = field(default_factory=list)
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    delegation: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None  # AuditLog.metadata (e.g. STS's mapped_principal)
    service_data: dict[str, Any] | None = None  # AuditLog.serviceData (setIamPolicy's policyDelta)

    def authorize(self, resource: str, permission: str, granted: bool) -> None:
        self.authorization.append({"resource": resource, "permission": permission, "granted": granted})


def write(s: Session, record: AuditRecord, principal: Principal | None, *, caller_ip: str = "",
          user_agent: str = "", error: KeylessError | None = None, at: datetime | None = None) -> AuditEntry:
    """Append one entry for `record` (inside the caller's transaction); `at` is when the call happened."""
    row = AuditEntry(**entry_row(record, *caller_of(principal), caller_ip=caller_ip, user_agent=user_agent,
                                 error=error_of(error), at=at))
    s.add(row)
    return row


def caller_of(principal: Principal | None) -> tuple[str, str] | tuple[None, None]:
    """(principalEmail, principalSubject) of an entry; (None, None) when the caller is unknown."""
    if principal is None:
        return None, None
    return principal.email or "", principal.subject or ""


def error_of(error: KeylessError | None) -> tuple[str, str] | None:
    """(status, message) of a failed call, the part of the error an entry keeps."""
    return None if error is None else (error.status, error.message)


def entry_row(record: AuditRecord, email: str | None, subject: str | None, *, caller_ip: str = "",
              user_agent: str = "", error: tuple[str, str] | None = None,
              at: datetime | None = None, insert_id: str | None = None) -> dict[str, Any]:
    """The column values of one audit entry (the LogEntry JSON and its indexed fields).
    `email`/`subject` are None when the caller is unknown; `error` is (status, message)."""
    now = at or datetime.now(UTC)
    status: dict[str, Any] = {}
    if error is not None:
        status = {"code": RPC_CODES.get(error[0], 2), "message": error[1]}
    auth_info: dict[str, Any] = {}
    if email is not None:
        if email:
            auth_info["principalEmail"] = email
        if subject:
            auth_info["principalSubject"] = subject
        if record.delegation:
            auth_info["serviceAccountDelegationInfo"] = record.delegation
    payload: dict[str, Any] = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "status": status,
        "authenticationInfo": auth_info,
        "requestMetadata": {"callerIp": caller_ip, "callerSuppliedUserAgent": user_agent},
        "serviceName": record.service,
        "methodName": record.method,
        "authorizationInfo": record.authorization,
        "resourceName": record.resource_name,
    }
    if record.request is not None:
        payload["request"] = record.request
    if record.response is not None:
        payload["response"] = record.response
    if record.metadata is not None:
        payload["metadata"] = record.metadata
    if record.service_data is not None:
        payload["serviceData"] = record.service_data
    insert_id = insert_id or secrets.token_hex(8)
    project = record.project_id or "keyless"
    labels = {"project_id": project, **record.resource_labels}
    entry = {
        "protoPayload": payload,
        "insertId": insert_id,
        "resource": {"type": record.resource_type, "labels": labels},
        "timestamp": rfc3339(now),
        "severity": "ERROR" if error is not None else ("NOTICE" if record.log == ACTIVITY else "INFO"),
        "logName": f"projects/{project}/logs/{quote(record.log, safe='')}",
        "receiveTimestamp": rfc3339(now),
    }
    return dict(insert_id=insert_id, timestamp=now, project_id=project, log_name=entry["logName"],
                method_name=record.method, service_name=record.service, resource_type=record.resource_type,
                resource_name=record.resource_name, principal_email=auth_info.get("principalEmail", ""),
                principal_subject=auth_info.get("principalSubject", ""), severity=entry["severity"],
                status_code=status.get("code", 0), entry=entry)


def entry_of(row: AuditEntry) -> dict[str, Any]:
    """The LogEntry JSON of a stored row: the one way readers get an entry (its storage may change)."""
    return row.entry
