"""The database: engine setup (SQLite in WAL mode by default, or PostgreSQL), migrations,
sessions, and the revision counter that tells every process when its caches are stale.

Writes go through `Database.write()`, which serialises writers (BEGIN IMMEDIATE on SQLite,
a row lock on the revision row on PostgreSQL) and bumps the revision in the same transaction,
so a read-modify-write such as setIamPolicy's etag check can never interleave with another.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import create_engine, event, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from keyless.store.models import Revision

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'keyless.db'}"


class Database:
    """One engine and its session factory; safe to share between threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            # A pool as large as the worker threads, so no connection is opened per request.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs.update(pool_size=20, max_overflow=40)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            self._configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._local_write_lock = threading.Lock()
        self._writing = threading.local()
        self._revision_seen = -1
        self._revision_checked_at = 0.0
        self._revision_lock = threading.Lock()
        self._revision_conn: Connection | None = None

    def _configure_sqlite(self, engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy issue BEGIN itself (pysqlite's implicit transactions defer the
            # write lock, which would let two etag checks interleave).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # A writer takes SQLite's write lock up front, so its reads are part of the
            # serialised transaction (no lost update between two processes either).
            conn.exec_driver_sql("BEGIN IMMEDIATE" if getattr(self._writing, "on", False) else "BEGIN")

    # -- lifecycle -------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        cfg.attributes["connection"] = None
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        with self.write() as s:
            if s.get(Revision, 1) is None:
                s.add(Revision(id=1, value=0))

    def dispose(self) -> None:
        with self._revision_lock:
            if self._revision_conn is not None:
                self._revision_conn.close()
                self._revision_conn = None
        self.engine.dispose()

    # -- sessions --------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session. Closing it returns the connection (rolled back) without expiring
        the objects read, so callers may use them after the block."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write(self, *, bump: bool = True) -> Iterator[Session]:
        """A serialised read-write transaction that bumps the revision on commit.

        `bump=False` is for append-only data no cache depends on (audit entries): bumping
        would make every process drop its policy, provider and key caches for nothing."""
        with self._local_write_lock, self._sessions() as session:
            try:
                if self.is_sqlite:
                    # Only this session's BEGIN takes the write lock: reads made while it is
                    # open (on other pooled connections) must not queue behind it.
                    self._writing.on = True
                    try:
                        session.connection()
                    finally:
                        self._writing.on = False
                else:
                    session.execute(select(Revision).where(Revision.id == 1).with_for_update())
                yield session
                if bump:
                    session.execute(update(Revision).where(Revision.id == 1).values(value=Revision.value + 1))
                session.commit()
            except BaseException:
                session.rollback()
                raise
        if bump:
            self._revision_checked_at = 0.0  # our own write: look again at once

    def revision(self, max_age: float = 0.05) -> int:
        """The store's revision, re-read at most every `max_age` seconds.

        Every cache asks this on every request, so it must cost nothing: one thread re-reads
        (on a connection it keeps) while the others use the value they have; nobody waits
        unless no value was ever read."""
        now = time.monotonic()
        if now - self._revision_checked_at < max_age and self._revision_seen >= 0:
            return self._revision_seen
        if not self._revision_lock.acquire(blocking=self._revision_seen < 0):
            return self._revision_seen
        try:
            if time.monotonic() - self._revision_checked_at >= max_age or self._revision_seen < 0:
                checked_at = time.monotonic()
                self._revision_seen = self._read_revision()
                self._revision_checked_at = checked_at
        finally:
            self._revision_lock.release()
        return self._revision_seen

    def _read_revision(self) -> int:
        for attempt in (1, 2):
            try:
                if self._revision_conn is None:
                    self._revision_conn = self.engine.connect()
                value = self._revision_conn.execute(text("SELECT value FROM revision WHERE id = 1")).scalar()
                self._revision_conn.rollback()  # end the read transaction: the next read sees new commits
                return int(value or 0)
            except Exception:
                if self._revision_conn is not None:
                    self._revision_conn.close()
                self._revision_conn = None
                if attempt == 2:
                    raise
        return 0


class RevisionCache(Generic[T]):
    """A value derived from the store, rebuilt (by `build`) when the store's revision moves.

    The one way Keyless keeps hot-path state in memory: policies, providers, roles, accounts.
    With `build=dict` it is a lazily filled map that is emptied on every change."""

    def __init__(self, db: Database, build: Callable[[], T]) -> None:
        self._db = db
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None
        self._revision = -1

    def get(self) -> T:
        revision = self._db.revision()
        value = self._value
        if revision != self._revision or value is None:
            with self._lock:
                if revision != self._revision or self._value is None:
                    self._value = self._build()
                    self._revision = revision
                value = self._value
        return value


def open_database(url: str | None, data_dir: Path) -> Database:
    """Open (creating and migrating if needed) the database at `url`, or SQLite in `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    db = Database(url or sqlite_url(data_dir))
    db.migrate()
    return db
