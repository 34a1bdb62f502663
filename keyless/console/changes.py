"""The console's "what changed" view (issue #21): how the identity graph changed between two points
of the project's Admin Activity audit log, read from the entries themselves as Google writes them
(https://cloud.google.com/logging/docs/audit/understanding-audit-logs):

- bindings added and removed, with their conditions: a setIamPolicy entry's
  `serviceData.policyDelta.bindingDeltas` (google.iam.v1.logging.AuditData; keyless.iam.policy.audit_data);
- workload identity providers created, deleted, undeleted, and the attributeCondition and
  attributeMapping an update wrote: the entry's `request` (UpdateWorkloadIdentityPoolProviderRequest's
  provider and updateMask);
- service accounts created, deleted, undeleted, disabled, enabled (the entry's resource labels name
  the account's email), and keys created.

Changes are net over the span: a binding added then removed, an account created then deleted, is
no change of the graph between the two points and is left out. Each change names the entry that
made it (the last one, where several did), for the timeline's entry view. Failed calls changed
nothing and are skipped. setIamPolicy entries written before policyDelta was (2026-12-07) name no
binding changes. Kubernetes writes (KSA annotations) are not audited by Keyless, so they
are not among the changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

IAM_ADMIN = "google.iam.admin.v1."
WIF = "google.iam.v1.WorkloadIdentityPools."
PROVIDER_FIELDS = ("attributeCondition", "attributeMapping")
# method (without its service prefix) -> (kind of change, action): existence or enablement of a thing
LIFECYCLE = {
    "CreateServiceAccount": ("serviceAccount", "created"), "DeleteServiceAccount": ("serviceAccount", "deleted"),
    "UndeleteServiceAccount": ("serviceAccount", "undeleted"),
    "DisableServiceAccount": ("serviceAccount", "disabled"), "EnableServiceAccount": ("serviceAccount", "enabled"),
    "CreateServiceAccountKey": ("key", "created"), "DeleteServiceAccountKey": ("key", "deleted"),
    "CreateWorkloadIdentityPoolProvider": ("provider", "created"),
    "DeleteWorkloadIdentityPoolProvider": ("provider", "deleted"),
    "UndeleteWorkloadIdentityPoolProvider": ("provider", "undeleted"),
}
# actions that undo each other: a first and a last of these in the span is no net change
UNDONE = {("created", "deleted"), ("deleted", "undeleted"), ("deleted", "created"), ("disabled", "enabled"),
          ("enabled", "disabled"), ("ADD", "REMOVE"), ("REMOVE", "ADD")}


def _short(method: str) -> str:
    return method.rsplit(".", 1)[-1]


def _source(entry: dict[str, Any]) -> dict[str, Any]:
    p = entry.get("protoPayload") or {}
    auth = p.get("authenticationInfo") or {}
    return {"insertId": entry.get("insertId", ""), "timestamp": entry.get("timestamp", ""),
            "method": p.get("methodName", ""), "by": auth.get("principalEmail") or auth.get("principalSubject") or ""}


def _account(entry: dict[str, Any]) -> str:
    labels = (entry.get("resource") or {}).get("labels") or {}
    p = entry.get("protoPayload") or {}
    return str(labels.get("email_id") or p.get("resourceName", ""))


def resource_of(entry: dict[str, Any]) -> str:
    """The entry's resourceName, a service account's named by its email (the entry's resource
    labels), as the timeline shows it, not by its unique id."""
    resource = str((entry.get("protoPayload") or {}).get("resourceName", ""))
    email = ((entry.get("resource") or {}).get("labels") or {}).get("email_id")
    if email and "/serviceAccounts/" in resource:
        head, _, tail = resource.partition("/serviceAccounts/")
        return f"{head}/serviceAccounts/{email}" + ("/" + tail.split("/", 1)[1] if "/" in tail else "")
    return resource


def _events(entry: dict[str, Any]) -> Iterable[tuple[tuple[str, ...], str, dict[str, Any]]]:
    """(key, action, change) for each change one successful entry made; the key says which changes
    of the span are of the same thing (their net effect is the last one's, or none)."""
    p = entry.get("protoPayload") or {}
    if (p.get("status") or {}).get("code"):
        return
    method, resource = _short(p.get("methodName", "")), resource_of(entry)
    if method.lower().endswith("setiampolicy"):
        deltas = (((p.get("serviceData") or {}).get("policyDelta") or {}).get("bindingDeltas") or [])
        for d in deltas:
            condition = d.get("condition") or None
            key = ("binding", resource, d.get("role", ""), d.get("member", ""), json.dumps(condition, sort_keys=True))
            yield key, d.get("action", ""), {
                "kind": "binding", "action": "added" if d.get("action") == "ADD" else "removed",
                "resource": resource, "role": d.get("role", ""), "member": d.get("member", ""),
                **({"condition": condition} if condition else {})}
        return
    if method in LIFECYCLE:
        kind, action = LIFECYCLE[method]
        if kind == "serviceAccount":
            name = _account(entry)
        elif kind == "key":
            name = str((p.get("response") or {}).get("name") or resource)
        else:
            name = resource
        phase = "enablement" if action in ("disabled", "enabled") else "existence"
        change: dict[str, Any] = {"kind": kind, "action": action, "resource": name}
        if kind == "key":
            change["serviceAccount"] = _account(entry)
        if method == "CreateWorkloadIdentityPoolProvider":  # created with its condition and mapping
            provider = (p.get("request") or {}).get("workloadIdentityPoolProvider") or {}
            change.update({f: provider[f] for f in PROVIDER_FIELDS if f in provider})
        yield (kind, phase, name), action, change
    elif method == "UpdateWorkloadIdentityPoolProvider":
        request = p.get("request") or {}
        provider = request.get("workloadIdentityPoolProvider") or {}
        mask = str(request.get("updateMask") or "").split(",")
        for field in PROVIDER_FIELDS:
            if field in mask:  # in the mask and absent from the provider: cleared
                yield ("provider", field, resource), "edited", {
                    "kind": "provider", "action": "edited", "resource": resource, "field": field,
                    "value": provider.get(field, "" if field == "attributeCondition" else {})}


def diff(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The net changes `entries` (Admin Activity, oldest first) made, in the order of the entry that
    made each last (`entry`); a provider field edited several times shows the value the span ends with."""
    first: dict[tuple[str, ...], str] = {}
    last: dict[tuple[str, ...], tuple[str, dict[str, Any], dict[str, Any]]] = {}
    for entry in entries:
        source = _source(entry)
        for key, action, change in _events(entry):
            first.setdefault(key, action)
            last.pop(key, None)  # re-inserted: the order is that of the last change
            last[key] = (action, change, source)
    return [{**change, "entry": source} for key, (action, change, source) in last.items()
            if (first[key], action) not in UNDONE]
