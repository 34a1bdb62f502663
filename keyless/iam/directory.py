"""An in-memory directory of service accounts, rebuilt when the store's revision moves.

The hot paths (impersonation, metadata tokens, resource checks) look accounts up by email or
uniqueId on every request; an ORM session per lookup costs ~250 µs, a dict lookup nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select

from keyless.store.db import Database, RevisionCache
from keyless.store.models import Project, ServiceAccount


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
        self._accounts = RevisionCache(db, self._load)

    def _load(self) -> tuple[dict[str, AccountInfo], dict[str, AccountInfo]]:
        with self._db.read_each() as s:
            # a project pending deletion takes its accounts out of service (issue #20), as on Google
            rows = s.execute(select(ServiceAccount.unique_id, ServiceAccount.email, ServiceAccount.project_id,
                                    ServiceAccount.disabled)
                             .outerjoin(Project, Project.project_id == ServiceAccount.project_id)
                             .where(ServiceAccount.deleted.is_(False),
                                    or_(Project.lifecycle_state.is_(None), Project.lifecycle_state == "ACTIVE"))).all()
        infos = [AccountInfo(*row) for row in rows]
        return {i.email: i for i in infos}, {i.unique_id: i for i in infos}

    def find(self, account: str) -> AccountInfo | None:
        """A live (not deleted) account by email or uniqueId."""
        by_email, by_id = self._accounts.get()
        return by_id.get(account) if account.isdigit() else by_email.get(account.lower())
