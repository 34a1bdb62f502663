"""Time in Google's wire formats: RFC 3339 timestamps and protobuf Duration strings."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from keyless.errors import InvalidArgument

DURATION = re.compile(r"^(\d{1,12})(?:\.(\d{1,9}))?s$")


def now() -> datetime:
    return datetime.now(UTC)


def rfc3339(dt: datetime) -> str:
    """A timestamp as Google renders it: UTC, microseconds, trailing Z."""
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_duration(text: object, field: str) -> float:
    """A google.protobuf.Duration in JSON form ("3600s", "1.5s")."""
    m = DURATION.match(text) if isinstance(text, str) else None
    if m is None:
        raise InvalidArgument(f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration), {text!r}")
    return int(m.group(1)) + (int(m.group(2).ljust(9, "0")) / 1e9 if m.group(2) else 0.0)
