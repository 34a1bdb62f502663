"""Audit entries grouped into flows, as the console's timeline shows them: a token exchange by a
federated subject, its impersonation of a service account (generateAccessToken, whose caller is
that subject) and the service account's calls (whose serviceAccountDelegationInfo names the
subject) are one story: federated subject -> GSA -> resource call.

Pure functions of LogEntry dicts (https://cloud.google.com/logging/docs/reference/audit/auditlog/rest/Shared.Types/AuditLog).
"""

from __future__ import annotations

from typing import Any

EXCHANGE_SERVICE = "sts.googleapis.com"
IMPERSONATION_METHODS = ("GenerateAccessToken", "GenerateIdToken", "SignBlob", "SignJwt")


def _payload(entry: dict[str, Any]) -> dict[str, Any]:
    payload = entry.get("protoPayload")
    return payload if isinstance(payload, dict) else {}


def _auth(entry: dict[str, Any]) -> dict[str, Any]:
    auth = _payload(entry).get("authenticationInfo")
    return auth if isinstance(auth, dict) else {}


def step_of(entry: dict[str, Any]) -> str:
    payload = _payload(entry)
    method = str(payload.get("methodName") or "")
    if payload.get("serviceName") == EXCHANGE_SERVICE:
        return "exchange"
    if method.rsplit(".", 1)[-1] in IMPERSONATION_METHODS:
        return "impersonation"
    return "call"


def exchanged_subject(entry: dict[str, Any]) -> str | None:
    """The principal an exchange made: the pool's `principal://…/subject/SUBJECT` (the entry keeps
    the bare google.subject, and the pool as its resource)."""
    pool = str(_payload(entry).get("resourceName") or "")
    subject = _auth(entry).get("principalSubject")
    if "/workloadIdentityPools/" not in pool or not isinstance(subject, str) or not subject:
        return None
    if subject.startswith("principal://"):
        return subject
    return f"principal://iam.googleapis.com/{pool}/subject/{subject}"


def _delegator(entry: dict[str, Any]) -> str | None:
    for d in _auth(entry).get("serviceAccountDelegationInfo") or []:
        if isinstance(d, dict):
            first = d.get("principalSubject") or (d.get("firstPartyPrincipal") or {}).get("principalEmail")
            if first:
                return str(first)
    return None


def resource_shown(entry: dict[str, Any]) -> str:
    """The entry's resource as a person names it: a service account by its email (the entry's
    resourceName has its numeric id, projects/-/serviceAccounts/ID; resource.labels.email_id has the email)."""
    name = str(_payload(entry).get("resourceName") or "")
    labels = (entry.get("resource") or {}).get("labels") or {}
    email = labels.get("email_id") if isinstance(labels, dict) else None
    if "/serviceAccounts/" in name and isinstance(email, str) and email:
        return name.rsplit("/serviceAccounts/", 1)[0] + "/serviceAccounts/" + email
    return name


def _step(entry: dict[str, Any]) -> dict[str, Any]:
    payload, auth = _payload(entry), _auth(entry)
    status = payload.get("status") or {}
    return {"insertId": entry.get("insertId"), "step": step_of(entry), "timestamp": entry.get("timestamp"),
            "principal": auth.get("principalEmail") or auth.get("principalSubject") or "",
            "method": payload.get("methodName") or "", "resource": resource_shown(entry),
            "status": int(status.get("code") or 0), **_cause(payload)}


def _cause(payload: dict[str, Any]) -> dict[str, str]:
    """A refusal's cause where the entry records one (metadata.diagnosis of a refused exchange)."""
    diagnosis = (payload.get("metadata") or {}).get("diagnosis") if isinstance(payload.get("metadata"), dict) else None
    return {"cause": str(diagnosis.get("cause"))} if isinstance(diagnosis, dict) and diagnosis.get("cause") else {}


def group(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flows, newest first: each exchange opens one for its subject; an impersonation by that subject
    joins it (and names the GSA); the GSA's later calls join the latest flow that impersonated it
    (or the flow its serviceAccountDelegationInfo names). A refused or half-finished attempt is a
    flow of one step (a refused exchange names no subject, but its `provider`), so it shows too.
    Returns [{"subject", "serviceAccount", "start", "steps": [{insertId, step, principal, method,
    resource, status, timestamp, cause?}]}]."""
    flows: list[dict[str, Any]] = []
    by_subject: dict[str, dict[str, Any]] = {}
    by_account: dict[str, dict[str, Any]] = {}
    for e in sorted(entries, key=lambda e: str(e.get("timestamp") or "")):
        kind = step_of(e)
        flow: dict[str, Any] | None = None
        if kind == "exchange":
            subject = exchanged_subject(e)
            flow = {"subject": subject or "", "serviceAccount": "", "start": e.get("timestamp"), "steps": []}
            flows.append(flow)
            if subject is None:  # refused before a principal was made: a flow of its own, naming the provider
                flow["provider"] = str((_payload(e).get("request") or {}).get("audience") or "").removeprefix(
                    "//iam.googleapis.com/")
            else:
                by_subject[subject] = flow
        elif kind == "impersonation":
            subject = str(_auth(e).get("principalSubject") or _auth(e).get("principalEmail") or "")
            flow = by_subject.get(subject)
            if flow is None:
                flow = {"subject": subject, "serviceAccount": "", "start": e.get("timestamp"), "steps": []}
                flows.append(flow)
                by_subject[subject] = flow
            email = str(((e.get("resource") or {}).get("labels") or {}).get("email_id") or "")
            if email:
                flow["serviceAccount"] = email
                by_account[email] = flow
        else:
            delegator = _delegator(e)
            flow = by_subject.get(delegator) if delegator else None
            if flow is None:
                flow = by_account.get(str(_auth(e).get("principalEmail") or ""))
        if flow is not None:
            flow["steps"].append(_step(e))
    flows.sort(key=lambda f: str(f["start"]), reverse=True)
    return flows
