"""Log entries written with entries.write
(https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/write): each entry is checked
against the LogEntry schema and Google's limits (https://cloud.google.com/logging/quotas: 256 KB
per entry, 64 labels, label keys of 512 bytes and values of 64 KB; the request's 10 MB is the
server's body limit), completed with the request's logName, resource and labels, and stored
beside the audit entries, where entries.list and sinks find it.

An entry whose project, timestamp and insertId repeat a stored one's is a duplicate and is not
stored again, as Google removes such duplicates. Entries matching one of the project's enabled
exclusions are not stored (Google drops them from its _Default log bucket)."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from keyless.audit import filter as lq
from keyless.audit.writer import fit
from keyless.clock import rfc3339
from keyless.cloudlogging.names import LogName, camel, parse_log_name
from keyless.errors import InvalidArgument
from keyless.store.models import AuditEntry

MAX_ENTRY_BYTES = 256 * 1024
MAX_LABELS = 64
MAX_LABEL_KEY_BYTES = 512
MAX_LABEL_VALUE_BYTES = 64 * 1024
MAX_ENTRIES = 25_000  # a request's entries (its 10 MB bounds them too; this bounds the work per request)
SEVERITY_NUMBERS = {rank: name for name, rank in lq.SEVERITIES.items()}
PAYLOADS = ("textPayload", "jsonPayload", "protoPayload")
OUTPUT_ONLY = {"receiveTimestamp", "metadata", "errorGroups", "apphub", "apphubDestination", "apphubSource"}
OBJECT_FIELDS = ("httpRequest", "operation", "sourceLocation", "split", "otel")
STRING_FIELDS = ("trace", "spanId", "insertId")
FIELDS = {"logName", "resource", "timestamp", "severity", "labels", "trace", "spanId", "traceSampled", "insertId",
          *PAYLOADS, *OUTPUT_ONLY, *OBJECT_FIELDS}


@dataclass
class Written:
    """One checked entry, ready to store: the LogEntry and the project its logName names."""

    log: LogName
    entry: dict[str, Any]


def check_labels(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise InvalidArgument(f"Invalid value at '{where}': expected a map of strings.")
    if len(raw) > MAX_LABELS:
        raise InvalidArgument(f"Too many labels in {where}: at most {MAX_LABELS}.")
    for key, value in raw.items():
        if len(key.encode()) > MAX_LABEL_KEY_BYTES or len(value.encode()) > MAX_LABEL_VALUE_BYTES:
            raise InvalidArgument(f"Label in {where} too long: keys up to {MAX_LABEL_KEY_BYTES} bytes, values up "
                                  f"to {MAX_LABEL_VALUE_BYTES} bytes.")
    return dict(raw)


def check_resource(raw: Any, where: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"type", "labels"}:
        raise InvalidArgument(f"Invalid value at '{where}': a MonitoredResource has a type and labels.")
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind or len(kind) > 64:
        raise InvalidArgument(f"Invalid value at '{where}.type': a monitored resource type is required.")
    out: dict[str, Any] = {"type": kind}
    labels = check_labels(raw.get("labels"), f"{where}.labels")
    if labels:
        out["labels"] = labels
    return out


def _severity(raw: Any, where: str) -> str:
    if raw is None:
        return "DEFAULT"
    if isinstance(raw, int) and not isinstance(raw, bool) and raw in SEVERITY_NUMBERS:
        return SEVERITY_NUMBERS[raw]
    if isinstance(raw, str) and raw in lq.SEVERITIES:
        return raw
    raise InvalidArgument(f"Invalid value at '{where}' (type.googleapis.com/google.logging.type.LogSeverity), "
                          f"{json.dumps(raw)[:100]}")


def check_entry(raw: Any, index: int, *, log_name: Any, resource: dict[str, Any] | None,
                labels: dict[str, str], now: datetime) -> Written:
    """One entry of a request, completed with the request's defaults; InvalidArgument if bad."""
    where = f"entries[{index}]"
    if not isinstance(raw, dict):
        raise InvalidArgument(f"Invalid value at '{where}': expected a LogEntry object.")
    raw = camel(raw)
    size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_ENTRY_BYTES:
        raise InvalidArgument(f"Log entry with size {size / 1024:.1f}K exceeds maximum size of "
                              f"{MAX_ENTRY_BYTES / 1024:.1f}K")
    for name in raw:
        if name not in FIELDS:
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{name[:100]}\" at '{where}': "
                                  "Cannot find field.")
    payloads = [p for p in PAYLOADS if raw.get(p) is not None]
    if len(payloads) > 1:
        raise InvalidArgument(f"Invalid JSON payload received. Oneof field 'payload' is already set at '{where}': "
                              f"{payloads[0]} and {payloads[1]} both given.")
    log = parse_log_name(raw.get("logName") or log_name, f"{where}.logName")
    entry_resource = check_resource(raw.get("resource"), f"{where}.resource") or resource
    if entry_resource is None:
        raise InvalidArgument(f"{where}: a monitored resource is required (in the entry or in the request).")
    entry: dict[str, Any] = {}
    if payloads:
        name = payloads[0]
        value = raw[name]
        if name == "textPayload" and not isinstance(value, str):
            raise InvalidArgument(f"Invalid value at '{where}.textPayload' (TYPE_STRING), {json.dumps(value)[:100]}")
        if name != "textPayload" and not isinstance(value, dict):
            raise InvalidArgument(f"Invalid value at '{where}.{name}': expected an object.")
        if name == "protoPayload" and not isinstance(value.get("@type"), str):
            raise InvalidArgument(f"Invalid value at '{where}.protoPayload': an Any needs its \"@type\".")
        entry[name] = value
    stamp = raw.get("timestamp")
    if stamp is None:
        when = now
    else:
        parsed = lq.parse_timestamp(stamp) if isinstance(stamp, str) else None
        if parsed is None or "T" not in stamp:
            raise InvalidArgument(f"Invalid value at '{where}.timestamp' (type.googleapis.com/google.protobuf."
                                  f"Timestamp), {json.dumps(stamp)[:100]}")
        when = parsed
    for name in STRING_FIELDS:
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise InvalidArgument(f"Invalid value at '{where}.{name}' (TYPE_STRING), {json.dumps(raw[name])[:100]}")
    for name in OBJECT_FIELDS:
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            raise InvalidArgument(f"Invalid value at '{where}.{name}': expected an object.")
    if raw.get("traceSampled") is not None and not isinstance(raw["traceSampled"], bool):
        raise InvalidArgument(f"Invalid value at '{where}.traceSampled' (TYPE_BOOL)")
    merged = {**labels, **check_labels(raw.get("labels"), f"{where}.labels")}
    if len(merged) > MAX_LABELS:
        raise InvalidArgument(f"Too many labels in {where}: at most {MAX_LABELS}.")
    entry.update({"insertId": raw.get("insertId") or "", "resource": entry_resource, "timestamp": rfc3339(when),
                  "severity": _severity(raw.get("severity"), f"{where}.severity"), "logName": "",
                  "receiveTimestamp": rfc3339(now)})
    if merged:
        entry["labels"] = merged
    for name in (*OBJECT_FIELDS, "trace", "spanId", "traceSampled"):
        if raw.get(name) not in (None, "", {}):
            entry[name] = raw[name]
    return Written(log, entry)


def _row_key(project_id: str, entry: dict[str, Any]) -> str:
    """The stored row's unique key: Google's duplicate test (project, timestamp, insertId)."""
    raw = f"{project_id}\n{entry['timestamp']}\n{entry['insertId']}".encode()
    return "w" + hashlib.sha256(raw).hexdigest()[:40]


def store(s: Session, written: Sequence[tuple[Written, str]], exclusions: dict[str, list[lq.Node]]) -> int:
    """Store checked entries, each with its project's id (its logName made canonical with it);
    skip duplicates and entries an enabled exclusion of their project matches. How many stored."""
    rows: dict[str, dict[str, Any]] = {}
    for item, project_id in written:
        entry = item.entry
        entry["logName"] = item.log.canonical(project_id)
        if not entry["insertId"]:
            entry["insertId"] = secrets.token_hex(12)
        if any(lq.matches(tree, entry) for tree in exclusions.get(project_id, ())):
            continue
        key = _row_key(project_id, entry)
        if key in rows:
            continue
        resource = entry["resource"]
        rows[key] = fit(dict(
            insert_id=key, timestamp=lq.parse_timestamp(entry["timestamp"]) or datetime.now(UTC),
            project_id=project_id, log_name=entry["logName"], method_name="", service_name="",
            resource_type=resource["type"], resource_name="", principal_email="", principal_subject="",
            severity=entry["severity"], status_code=0, entry=entry))
    if not rows:
        return 0
    keys = list(rows)
    for start in range(0, len(keys), 500):
        for found in s.scalars(select(AuditEntry.insert_id).where(AuditEntry.insert_id.in_(keys[start:start + 500]))):
            rows.pop(found, None)
    if rows:
        s.execute(insert(AuditEntry), list(rows.values()))
    return len(rows)


def delete_log(s: Session, project_id: str, log_name: str) -> int:
    """logs.delete: the log's entries removed; how many there were."""
    found = s.execute(delete(AuditEntry).where(AuditEntry.project_id == project_id, AuditEntry.log_name == log_name))
    return int(found.rowcount or 0)  # type: ignore[attr-defined]
