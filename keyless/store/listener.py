"""The store's change feed on PostgreSQL: one LISTEN connection per process.

Every revision-bumping write (keyless.store.db.Database.write) sends
`NOTIFY keyless_revision, '<new revision>'` in its own transaction, which PostgreSQL delivers
to every listening session when, and only if, that transaction commits
(https://www.postgresql.org/docs/current/sql-notify.html). A thread here holds one
autocommit psycopg connection in `LISTEN keyless_revision` and hands each revision it hears
to the Database, so a server's caches learn of a change made by any server within a network
round trip, while an idle server sends nothing at all (TCP keep-alives, not queries, notice a
dead connection).

On connecting it LISTENs first and then reads the revision, so no commit can fall between the
two unseen. When the connection is lost it says so at once (the Database then stops trusting
its caches) and reconnects with a short back-off; notifications sent meanwhile are gone, which
is why a reconnect counts as a change of everything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("keyless.store")

CHANNEL = "keyless_revision"
# Notice a peer that vanished without closing (host down, network cut) within ~10 s, with no query.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 1, "keepalives_count": 5,
              "tcp_user_timeout": 10_000}
RETRY_SECONDS = (0.05, 0.1, 0.2, 0.5)  # back-off between reconnect attempts (the last repeats)
POLL_SECONDS = 1.0  # how often the thread looks up from its socket to see whether it should stop


def libpq_conninfo(sqlalchemy_url: str) -> str:
    """The libpq URL of a SQLAlchemy `postgresql+psycopg://` URL."""
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class RevisionListener:
    """A daemon thread listening for revision notifications.

    `on_connected(revision)` runs once per (re)connection with the revision read after LISTEN;
    `on_revision(revision)` for every notification; `on_lost()` when the connection drops."""

    def __init__(self, sqlalchemy_url: str, on_connected: Callable[[int], None],
                 on_revision: Callable[[int], None], on_lost: Callable[[], None]) -> None:
        self._conninfo = libpq_conninfo(sqlalchemy_url)
        self._on_connected = on_connected
        self._on_revision = on_revision
        self._on_lost = on_lost
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keyless-revision-listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        failures = 0
        while not self._stop.is_set():
            try:
                conninfo = psycopg.conninfo.make_conninfo(self._conninfo, connect_timeout=5,
                                                          application_name="keyless-listener", **KEEPALIVES)
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    row = conn.execute("SELECT value FROM revision WHERE id = 1").fetchone()
                    failures = 0
                    self._on_connected(int(row[0]) if row else 0)
                    self.connected.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=POLL_SECONDS):
                            try:
                                self._on_revision(int(note.payload))
                            except ValueError:
                                logger.warning("ignored a %s notification with payload %r", CHANNEL, note.payload)
            except Exception as exc:  # psycopg.OperationalError above all: the server went away
                if self.connected.is_set():
                    logger.warning("lost the store's change feed (%s); reconnecting", exc)
                self.connected.clear()
                self._on_lost()
                if self._stop.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]):
                    return
                failures += 1
        self.connected.clear()


__all__ = ["CHANNEL", "RevisionListener", "libpq_conninfo"]
