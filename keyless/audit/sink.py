"""Batched audit writing for the data plane.

Token exchanges and impersonations happen thousands of times a second; one database
transaction each would cap them at the store's commit rate. The sink queues entries and a
background thread writes them in batches (every `interval` seconds or `batch` entries),
so the request path only pays for an enqueue. `flush()` drains synchronously (tests,
shutdown). Entries still queued when the process is killed are lost; Admin Activity entries
are not written here but inside the mutation's own transaction.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import insert

from keyless.audit import log as audit
from keyless.errors import KeylessError
from keyless.iam.principal import Principal
from keyless.store.db import Database
from keyless.store.models import AuditEntry

logger = logging.getLogger("keyless.audit")


@dataclass(frozen=True)
class Pending:
    record: audit.AuditRecord
    principal: Principal | None
    caller_ip: str
    user_agent: str
    error: KeylessError | None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class AuditSink:
    def __init__(self, db: Database, *, interval: float = 0.05, batch: int = 1000) -> None:
        self._db = db
        self._queue: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        self._interval = interval
        self._batch = batch
        self._lock = threading.Lock()  # one writer at a time (thread or flush())
        self._thread: threading.Thread | None = None  # started by the first submit

    def submit(self, record: audit.AuditRecord, principal: Principal | None, *, caller_ip: str = "",
               user_agent: str = "", error: KeylessError | None = None) -> None:
        self._queue.put(Pending(record, principal, caller_ip, user_agent, error))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="keyless-audit", daemon=True)
                    self._thread.start()

    def flush(self, first: Pending | None = None) -> int:
        """Write everything queued now; return how many entries were written."""
        with self._lock:
            items: list[Pending] = [first] if first is not None else []
            while len(items) < self._batch * 10:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if items:
                rows = [audit.entry_row(p.record, p.principal, caller_ip=p.caller_ip, user_agent=p.user_agent,
                                        error=p.error, at=p.at) for p in items]
                with self._db.write(bump=False) as s:
                    s.execute(insert(AuditEntry), rows)  # one executemany, not an ORM flush per row
            return len(items)

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get()
            except Exception:  # pragma: no cover - interpreter shutdown
                return
            threading.Event().wait(self._interval)
            try:
                self.flush(first)
            except Exception:
                logger.exception("could not write audit entries")
