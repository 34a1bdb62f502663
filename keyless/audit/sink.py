"""Batched audit writing for the data plane, in a writer process of its own.

Token exchanges and impersonations happen thousands of times a second; one database
transaction each would cap them at the store's commit rate, and even batched, rendering a
LogEntry and inserting it costs about as much CPU as a fifth of an exchange. Done by a thread
it also holds the serving process's GIL in bursts, which is what the exchange's p99 latency
was made of (docs/performance.md). So the request path only appends a small tuple; a thread
sends them in batches to a child process (`keyless.audit.writer`) that renders
the entries and inserts them with one `executemany` per batch on another core.

`flush()` drains synchronously and waits until the writer has committed (tests, shutdown).
With a `journal` (keyless.audit.journal; the server's data dir has one), each entry is also
appended to a file before `submit` returns, and the file is deleted once the writer has
committed the batch, so entries queued when the process is killed are replayed by the next
server (`recover`); without one they are lost. Admin Activity entries are not written here but
inside the mutation's own transaction. If the writer dies it is started again and the batch it
was sent is retried.
"""

from __future__ import annotations

import logging
import marshal
import multiprocessing
import secrets
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from keyless.audit import log as audit
from keyless.audit.journal import Journal
from keyless.errors import KeylessError
from keyless.iam.principal import Principal
from keyless.store.db import Database

logger = logging.getLogger("keyless.audit")

# What one queued entry is: AuditRecord's fields, then caller email, subject, IP, user agent,
# error (status, message) or None, the epoch time of the call, and the entry's insertId (made
# here, so an entry replayed from the journal is recognised if it was already committed);
# queued marshalled (below).
Pending = tuple[Any, ...]


class AuditSink:
    def __init__(self, db: Database, *, interval: float = 0.05, batch: int = 2000,
                 journal: Path | None = None) -> None:
        self._url = db.url
        self._journal = Journal(journal) if journal is not None else None
        self._journal_lock = threading.Lock()  # an entry's journal record and its queue place, together
        self._sealed: list[Path] = []  # journal segments whose entries are not committed yet
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
        entry = marshal.dumps((*vars(record).values(), email, subject, caller_ip, user_agent,
                               audit.error_of(error), time.time(), secrets.token_hex(8)))
        if self._journal is None:
            self._pending.append(entry)
        else:
            with self._journal_lock:
                self._journal.append(entry)
                self._pending.append(entry)
        if self._thread is None:
            self._start_thread()
        elif len(self._pending) >= self._batch:
            self._wake.set()

    def recover(self) -> int:
        """Queue what the journals of stopped servers hold (at start); return how many entries."""
        if self._journal is None:
            return 0
        with self._journal_lock:
            entries = self._journal.recover()
            self._pending.extend(entries)
        if entries and self._thread is None:
            self._start_thread()
        return len(entries)

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
                    # With a journal, a segment is deleted only once its entries are committed.
                    self._send(wait=self._journal is not None)
            except Exception:
                logger.exception("could not send audit entries to the writer")
                time.sleep(1.0)

    def _send(self, *, wait: bool, timeout: float = 30.0) -> int:
        batch: list[bytes] = []
        take = self._pending.popleft  # atomic per item, so entries submitted meanwhile are never lost
        if self._journal is None:
            while True:
                try:
                    batch.append(take())
                except IndexError:
                    break
        else:
            self._journal.sync()  # only this thread (under self._lock) syncs and rotates
            with self._journal_lock:  # the segment sealed holds exactly this batch's new entries
                batch.extend(self._pending)
                self._pending.clear()
                self._sealed.extend(self._journal.rotate())
        if not batch and self._writer is None:
            return 0  # nothing was ever queued: no writer to wait for
        try:
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
                    break
                except (OSError, EOFError, BrokenPipeError):
                    self._stop_writer()
                    if attempt == 2:
                        raise
        except BaseException as exc:
            if self._journal is not None or isinstance(exc, (OSError, EOFError)):
                self._pending.extendleft(reversed(batch))  # keep them for the next round
            raise
        if self._journal is not None and wait:
            self._journal.release(self._sealed)
            self._sealed = []
        return len(batch)

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
        flushed = False
        try:
            if self._thread is not None or self._pending:
                self.flush()
            flushed = True
        finally:
            with self._lock:
                self._stop_writer()
                if self._journal is not None:
                    self._journal.close(remove=flushed and not self._sealed and not self._pending)
