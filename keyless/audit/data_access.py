"""Whether a call's Data Access audit entry is written: the `auditConfigs` of the resource's
policies (and its ancestors') decide, per service and log type, with exempted members
(https://cloud.google.com/logging/docs/audit/configure-data-access#config-api)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# AuditLogConfig.LogType values that Data Access audit logs are split into.
DATA_READ = "DATA_READ"
DATA_WRITE = "DATA_WRITE"
ADMIN_READ = "ADMIN_READ"


def data_access_enabled(configs: Sequence[dict[str, Any]], service: str, log_type: str,
                        member_keys: Iterable[str]) -> bool:
    """True when a config for `service` (or `allServices`) enables `log_type` and no such config
    exempts the caller. Google unions the two: "the log_types specified in each AuditConfig are
    enabled, and the exempted_members in each AuditLogConfig are exempted"
    (https://cloud.google.com/iam/docs/reference/rest/v1/Policy#AuditConfig)."""
    keys = set(member_keys)
    enabled = False
    for cfg in configs:
        if cfg.get("service") not in (service, "allServices"):
            continue
        for log in cfg.get("auditLogConfigs", []):
            if log.get("logType") != log_type:
                continue
            if set(log.get("exemptedMembers", [])) & keys:
                return False
            enabled = True
    return enabled


IAM_SERVICE = "iam.googleapis.com"  # whose auditConfigs enable the IAM Credentials entries


def credentials_logged(configs: Sequence[dict[str, Any]], member_keys: Iterable[str]) -> bool:
    """Whether the IAM Credentials calls (ADMIN_READ of iamcredentials.googleapis.com) are logged:
    Google enables them only through iam.googleapis.com's Data Access logs, where DATA_READ (what
    seed 001 enables) or ADMIN_READ both record them (issue #19)."""
    return any(data_access_enabled(configs, IAM_SERVICE, kind, member_keys) for kind in (ADMIN_READ, DATA_READ))
