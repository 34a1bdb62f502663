"""An in-memory directory of service accounts, rebuilt when the store's revision moves.

The hot paths (impersonation, metadata tokens, resource checks) look accounts up by email or
uniqueId on every request; an ORM session per lookup costs ~250 µs, a dict lookup nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import select

from keyless.store.db import Database
from keyless.store.models import ServiceAccount


@dataclass(frozen=True)
class AccountInfo:
    """What the request path needs of a service account (attribute names as on the model)."""

    unique_id: str
    email: str
    project_id: str
    disabled: bool


class ServiceAccountDirectory:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._by_email: dict[str, AccountInfo] = {}
        self._by_id: dict[str, AccountInfo] = {}
        self._revision = -1

    def _current(self) -> None:
        revision = self._db.revision()
        if revision == self._revision:
            return
        with self._lock:
            if revision == self._revision:
                return
            with self._db.read() as s:
                rows = s.execute(select(ServiceAccount.unique_id, ServiceAccount.email, ServiceAccount.project_id,
                                        ServiceAccount.disabled).where(ServiceAccount.deleted.is_(False))).all()
            infos = [AccountInfo(*row) for row in rows]
            self._by_email = {i.email: i for i in infos}
            self._by_id = {i.unique_id: i for i in infos}
            self._revision = revision

    def find(self, account: str) -> AccountInfo | None:
        """A live (not deleted) account by email or uniqueId."""
        self._current()
        return self._by_id.get(account) if account.isdigit() else self._by_email.get(account.lower())
