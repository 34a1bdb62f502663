"""google.longrunning.Operation records, so clients can poll what a mutation did.

Keyless completes every mutation before answering, so operations are born `done`; they are
still stored because gcloud polls them by name before it trusts the result.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from keyless.errors import NotFound
from keyless.store.models import Operation


def record_done(s: Session, name: str, response: dict[str, Any] | None, *, response_type: str,
                metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "done": True}
    if metadata is not None:
        body["metadata"] = metadata
    body["response"] = {"@type": response_type, **(response or {})}
    s.add(Operation(name=name, body=body, create_time=datetime.now(UTC)))
    return body


def new_id() -> str:
    return secrets.token_hex(16)


def get(s: Session, name: str) -> dict[str, Any]:
    row = s.get(Operation, name)
    if row is None:
        raise NotFound(f"Operation {name} not found.")
    return dict(row.body)
