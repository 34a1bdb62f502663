"""The database: engine setup (SQLite in WAL mode by default, or PostgreSQL), migrations,
sessions, and the revision counter that tells every process when its caches are stale.

Writes go through `Database.write()`, which serialises writers (BEGIN IMMEDIATE on SQLite,
a row lock on the revision row on PostgreSQL) and bumps the revision in the same transaction,
so a read-modify-write such as setIamPolicy's etag check can never interleave with another.

How a process learns that the revision moved: on PostgreSQL, from the change feed
(keyless.store.listener: LISTEN/NOTIFY on one connection per process), so asking costs no
query and a change made by any server reaches every server within a round trip; while the
feed is down (PostgreSQL restarting) every ask reads the revision row, which fails while the
database is away, so nothing is answered from caches that may have missed a change. On
SQLite (one machine) a process re-reads the row at most every 50 ms.
"""

from __future__ import annotations

import functools
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import create_engine, event, inspect, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from keyless.store.listener import CHANNEL, RevisionListener
from keyless.store.models import Revision

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")
MIGRATION_LOCK = 0x6B65796C657373  # pg_advisory_xact_lock key of migrate() ("keyless")
EPOCH = 1 << 40  # revision() = epoch * EPOCH + the revision row's value (see _feed_connected)
# One statement, one round trip: bump the revision and announce it to every listening process
# (PostgreSQL delivers the notification only if the transaction commits).
BUMP_AND_NOTIFY = text(f"WITH r AS (UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value) "
                       f"SELECT value, pg_notify('{CHANNEL}', value::text)::text FROM r")


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
            # No pool_pre_ping: it would add a round trip to every session. Connections left dead
            # by a PostgreSQL restart are dropped when the change feed notices it (the pool is
            # disposed) or, at the latest, by SQLAlchemy on their first disconnect error.
            kwargs.update(pool_size=10, max_overflow=20)
            # A database host that vanished (not one that refuses) must not hold requests for the
            # operating system's TCP timeout: fail in seconds, answered 503 UNAVAILABLE.
            kwargs["connect_args"] = {"connect_timeout": 5}
        self.engine: Engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            self._configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Cache fills: each statement its own transaction, so no BEGIN/ROLLBACK round trips.
        self._autocommit = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._local_write_lock = threading.Lock()
        self._writing = threading.local()
        self._revision_seen = -1
        self._revision_checked_at = 0.0
        self._revision_lock = threading.Lock()
        self._revision_conn: Connection | None = None
        # The change feed (PostgreSQL): started by the first revision() of each process.
        self._epoch = 0
        self._value = -1
        self._listener: RevisionListener | None = None
        self._listener_pid = 0
        self._feed_live = False

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
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                # Servers starting together on one database migrate one at a time: the others
                # wait here, then find the schema current and the revision row made.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            if not _at_head(conn):
                from alembic import command
                from alembic.config import Config

                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            if not self.is_sqlite:
                conn.execute(text("INSERT INTO revision (id, value) VALUES (1, 0) ON CONFLICT DO NOTHING"))
        if self.is_sqlite:
            with self.write() as s:
                if s.get(Revision, 1) is None:
                    s.add(Revision(id=1, value=0))

    def dispose(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
            self._feed_live = False
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
    def read_each(self) -> Iterator[Session]:
        """A read-only session in which every statement is a transaction of its own: on
        PostgreSQL one round trip per query (no BEGIN, no ROLLBACK). For cache fills that read
        with one query, or need no snapshot common to their queries."""
        if self.is_sqlite:
            with self.read() as session:
                yield session
            return
        with self._autocommit.connect() as conn, Session(bind=conn, expire_on_commit=False) as session:
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
                new_value = -1
                if bump and self.is_sqlite:
                    session.execute(update(Revision).where(Revision.id == 1).values(value=Revision.value + 1))
                elif bump:
                    new_value = int(session.execute(BUMP_AND_NOTIFY).scalar_one())
                session.commit()
            except BaseException:
                session.rollback()
                raise
        if bump:
            # Our own write: this process's next request must see it, before our notification
            # comes back through the feed.
            if self._feed_live and new_value >= 0:
                self._feed_revision(new_value)
            self._revision_checked_at = 0.0

    @contextmanager
    def append(self) -> Iterator[Session]:
        """A transaction for append-only rows no read-modify-write depends on (audit entries):
        it takes no write lock, so appends from many processes and servers never queue behind
        each other or behind IAM writes, and bumps no revision."""
        if self.is_sqlite:  # SQLite has one writer anyway: the usual serialised write
            with self.write(bump=False) as session:
                yield session
            return
        with self._sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def revision(self, max_age: float = 0.05) -> int:
        """The store's revision: any change to it means a cache built before may be stale.

        Every cache asks this on every request, so it must cost nothing. On PostgreSQL it is
        what the change feed last heard (no query). Otherwise, and while the feed is down, it
        is re-read at most every `max_age` seconds: one thread re-reads (on a connection it
        keeps) while the others use the value they have; nobody waits unless no value was
        ever read (or the last read failed)."""
        if self._feed_live:
            return self._revision_seen
        if not self.is_sqlite:
            self._ensure_listener()
        now = time.monotonic()
        if now - self._revision_checked_at < max_age and self._revision_seen >= 0:
            return self._revision_seen
        if not self._revision_lock.acquire(blocking=self._revision_seen < 0):
            return self._revision_seen
        try:
            if time.monotonic() - self._revision_checked_at >= max_age or self._revision_seen < 0:
                checked_at = time.monotonic()
                try:
                    value = self._read_revision()
                except BaseException:
                    self._revision_seen = -1  # the next ask tries again rather than trust the caches
                    raise
                self._revision_seen = self._epoch * EPOCH + value
                self._revision_checked_at = checked_at
        finally:
            self._revision_lock.release()
        return self._revision_seen

    # -- the change feed (PostgreSQL) ------------------------------------------------------

    def _ensure_listener(self) -> None:
        pid = os.getpid()
        if self._listener is not None and self._listener_pid == pid:
            return
        with self._revision_lock:
            if self._listener is not None and self._listener_pid == pid:
                return
            me = weakref.ref(self)  # the thread must not keep a disposed Database alive

            def call(method: str, *args: int) -> None:
                db = me()
                if db is not None:
                    getattr(db, method)(*args)

            self._listener = RevisionListener(
                self.url, lambda value: call("_feed_connected", value), lambda value: call("_feed_revision", value),
                lambda: call("_feed_lost"))
            self._listener_pid = pid
            self._feed_live = False
            self._listener.start()
        # The first ask waits briefly for the feed, so a new process starts on it.
        self._listener.connected.wait(2.0)

    def _feed_connected(self, value: int) -> None:
        """A (re)connected feed: a new epoch, so every cache is rebuilt once: notifications
        sent while the feed was down are lost, and the caches may have missed them."""
        with self._revision_lock:
            self._epoch += 1
            self._value = value
            self._revision_seen = self._epoch * EPOCH + value
            self._feed_live = True

    def _feed_revision(self, value: int) -> None:
        with self._revision_lock:
            if value > self._value:  # our own writes arrive twice; commits arrive in order
                self._value = value
                self._revision_seen = self._epoch * EPOCH + value

    def _feed_lost(self) -> None:
        """The feed is down: stop answering from caches until the revision row is read again,
        and drop pooled connections (PostgreSQL probably restarted: they are dead)."""
        with self._revision_lock:
            was_live = self._feed_live
            self._feed_live = False
            self._epoch += 1
            self._revision_seen = -1
            self._revision_checked_at = 0.0
            if self._revision_conn is not None:
                try:
                    self._revision_conn.invalidate()
                except Exception:
                    pass
                self._revision_conn = None
        if was_live:
            self.engine.dispose(close=False)

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


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached (down, restarting, connection cut),
    which callers answer as 503 UNAVAILABLE rather than as a bug."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:  # refused, reset, timed out: libpq and SQLite say so without a SQLSTATE
        return isinstance(exc, OperationalError)
    # Class 08 (connection exception), 57P01-57P03 (shutting down, crash recovery, starting up).
    return sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")


def is_nul_refused(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL refusing a string with a NUL character (SQLite stores it): bad
    input that got past validation, answered 400 rather than as a bug (issue #23 item 8)."""
    return isinstance(exc, DBAPIError) and "NUL (0x00)" in str(exc.orig)


@functools.cache
def head_revision() -> str | None:
    """The newest migration's revision id, read from the migration files (each names its
    `revision` and `down_revision`); None unless exactly one is nobody's parent."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text()
        rev = re.search(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", source, re.M)
        down = re.search(r"^down_revision\s*=\s*['\"]([^'\"]+)['\"]", source, re.M)
        if rev is None:
            return None
        revisions.add(rev.group(1))
        if down is not None:
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(conn: Connection) -> bool:
    """Whether the schema is at the newest migration already: the usual start, which then costs
    one query instead of loading Alembic (a tenth of a second of `keyless serve`'s start and of
    every command that opens the store; issue #19). Alembic decides everything else."""
    if not inspect(conn).has_table("alembic_version"):
        return False
    versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return len(versions) == 1 and versions[0] == head_revision()


def open_database(url: str | None, data_dir: Path) -> Database:
    """Open (creating and migrating if needed) the database at `url`, or SQLite in `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    db = Database(url or sqlite_url(data_dir))
    db.migrate()
    return db
