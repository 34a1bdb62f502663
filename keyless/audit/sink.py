"""Batched audit writing for the data plane, in a writer process of its own.

Token exchanges and impersonations happen thousands of times a second; one database
transaction each would cap them at the store's commit rate, and even batched, rendering a
LogEntry and inserting it costs about as much CPU as a fifth of an exchange. Done by a thread
it also holds the serving process's GIL in bursts, which is what the exchange's p99 latency
was made of (docs/performance.md). So the request path only appends a small tuple; a thread
sends them in batches to a child process (`keyless.audit.writer`) that renders
the entries and inserts them with one `executemany` per batch on another core.

`flush()` drains synchronously and waits until the writer has committed (tests, shutdown).
Entries still queued when the process is killed are lost; Admin Activity entries are not
written here but inside the mutation's own transaction. If the writer dies it is started
again and the batch it was sent is retried.
"""

from __future__ import annotations

import logging
import marshal
import multiprocessing
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from keyless.audit import log as audit
from keyless.errors import KeylessError
from keyless.iam.principal import Principal
from keyless.store.db import Database

logger = logging.getLogger("keyless.audit")

# What one queued entry is: AuditRecord's fields, then caller email, subject, IP, user agent,
# error (status, message) or None, and the epoch time of the call; queued marshalled (below).
Pending = tuple[Any, ...]


class AuditSink:
    def __init__(self, db: Database, *, interval: float = 0.05, batch: int = 2000) -> None:
        self._url = db.url
        self._pending: deque[bytes] = deque()
        self._interval = interval
        self._batch = batch
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one sender at a time (the thread or flush())
        self._thread: threading.Thread | None = None  # started by the first submit
        self._writer: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def submit(self, record: audit.AuditRecord, principal: Principal | None, *, caller_ip: str = "",
               user_agent: str = "", error: KeylessError | None = None) -> None:
        email, subject = audit.caller_of(principal)
        # deque.append is atomic: no lock on the request path.
        # vars() in field order, not dataclasses.astuple: that deep-copies every nested dict.
        # Serialised here, a few µs per entry, not by the thread in one GIL-holding call per batch:
        # that call stalled the event loop for milliseconds and was the exchange's p99
        # (docs/performance.md). marshal: the entries are plain data, the pipe is private, and
        # both ends are the same interpreter.
        self._pending.append(marshal.dumps((*vars(record).values(), email, subject, caller_ip, user_agent,
                                            audit.error_of(error), time.time())))
        if self._thread is None:
            self._start_thread()
        elif len(self._pending) >= self._batch:
            self._wake.set()

    def flush(self, timeout: float = 30.0) -> int:
        """Send everything queued now and wait until it is committed; return how many entries."""
        with self._lock:
            return self._send(wait=True, timeout=timeout)

    # -- sending -----------------------------------------------------------------------------

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="keyless-audit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            if not self._pending:
                continue
            try:
                with self._lock:
                    self._send(wait=False)
            except Exception:
                logger.exception("could not send audit entries to the writer")
                time.sleep(1.0)

    def _send(self, *, wait: bool, timeout: float = 30.0) -> int:
        batch: list[bytes] = []
        take = self._pending.popleft  # atomic per item, so entries submitted meanwhile are never lost
        while True:
            try:
                batch.append(take())
            except IndexError:
                break
        if not batch and self._writer is None:
            return 0  # nothing was ever queued: no writer to wait for
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.send_bytes(marshal.dumps(("write", wait, batch)))  # a join of the entries' bytes
                if wait:
                    if not conn.poll(timeout):
                        raise TimeoutError("the audit writer did not answer")
                    answer = conn.recv()
                    if answer[0] != "ok":
                        raise RuntimeError(f"the audit writer failed: {answer[1]}")
                return len(batch)
            except (OSError, EOFError, BrokenPipeError):
                self._stop_writer()
                if attempt == 2:
                    self._pending.extendleft(reversed(batch))  # keep them for the next round
                    raise
        return 0  # pragma: no cover - the loop returns or raises

    def _connection(self) -> Connection:
        if self._conn is None or self._writer is None or not self._writer.is_alive():
            self._stop_writer()
            # spawn, not fork: the serving process has threads and open database connections.
            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            from keyless.audit import writer

            process = ctx.Process(target=writer.main, args=(child, self._url), name="keyless-audit-writer",
                                  daemon=True)
            process.start()
            child.close()
            self._writer, self._conn = process, parent
        return self._conn

    def _stop_writer(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._writer is not None and self._writer.is_alive():
            self._writer.terminate()
        self._writer = self._conn = None

    def close(self) -> None:
        """Flush and stop the writer (the process's end)."""
        if self._thread is not None:
            self.flush()
        with self._lock:
            self._stop_writer()
