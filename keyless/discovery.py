"""Where the running `keyless serve` is: the record it writes at start (`server.json`, mode 0600)
and how every other command finds it, so no flag given to `serve` is typed again.

`keyless serve` writes the record in its data dir and, when that is not the default data dir
(`$KEYLESS_DATA_DIR`, else ~/.keyless), a copy in the default one, so a command run with no flags
finds the server started last. A record whose process is gone is ignored; a server that stops
cleanly removes its records. Every command resolves the same way (`resolve`): flags first
(`--server`, `--data-dir`, `--database`), then `$KEYLESS_SERVER` / `$KEYLESS_DATA_DIR` /
`$KEYLESS_DATABASE_URL`, then the record.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from keyless.config import Settings, default_data_dir
from keyless.errors import KeylessError

RECORD = "server.json"


class ServerNotFound(KeylessError):
    """No running server could be found for a command that needs one."""


@dataclass(frozen=True)
class ServerRecord:
    url: str  # how clients reach it (its public URL)
    host: str
    port: int
    tls_port: int | None
    universe_domain: str | None
    data_dir: str
    database_url: str | None  # None: SQLite in data_dir
    allow_insecure_issuers: bool
    pid: int
    started: str

    @classmethod
    def of(cls, settings: Settings, pid: int) -> ServerRecord:
        return cls(url=settings.base_url, host=settings.host, port=settings.port, tls_port=settings.tls_port,
                   universe_domain=settings.universe_domain, data_dir=str(settings.data_dir.resolve()),
                   database_url=settings.database_url, allow_insecure_issuers=settings.allow_insecure_issuers,
                   pid=pid, started=datetime.now(UTC).isoformat(timespec="seconds"))


def _places(data_dir: Path) -> list[Path]:
    places = [data_dir / RECORD]
    default = default_data_dir()
    if default.resolve() != data_dir.resolve():
        places.append(default / RECORD)
    return places


def publish(settings: Settings, pid: int | None = None) -> list[Path]:
    """Record where this server listens (at start, after the data dir exists); return the files
    written, for `withdraw` (computed once: `serve --workers` changes $KEYLESS_DATA_DIR later)."""
    record = ServerRecord.of(settings, os.getpid() if pid is None else pid)
    text = json.dumps(asdict(record), indent=2) + "\n"
    places = _places(settings.data_dir)
    for path in places:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{RECORD}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may name a database URL
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    return places


def withdraw(places: list[Path], pid: int | None = None) -> None:
    """Remove this server's records (at a clean stop); a newer server's record is left alone."""
    pid = os.getpid() if pid is None else pid
    for path in places:
        record = read(path)
        if record is not None and record.pid == pid:
            path.unlink(missing_ok=True)


def read(path: Path) -> ServerRecord | None:
    """The record at `path`, or None if there is none or it is not one (never raises)."""
    try:
        data = json.loads(path.read_text())
        return ServerRecord(**{k: data[k] for k in ServerRecord.__dataclass_fields__})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _alive(pid: int) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def running(data_dir: Path) -> ServerRecord | None:
    """The record in `data_dir` if its server process is still running."""
    record = read(data_dir / RECORD)
    return record if record is not None and _alive(record.pid) else None


def resolve(settings: Settings, *, server: str | None, data_dir_given: bool, database_given: bool) -> ServerRecord | None:
    """Fill `settings` (a client command's) from the running server's record; return the record used.

    `server` is the URL named by --server or $KEYLESS_SERVER, if any. A record is used only if it is
    of the data dir named (or, with none named, the default data dir's) and, when a URL is named,
    of that URL."""
    record = running(settings.data_dir)
    if record is not None and server and record.url.rstrip("/") != server.rstrip("/"):
        record = None
    if record is not None:
        if not data_dir_given:
            settings.data_dir = Path(record.data_dir)
        if not database_given and not os.environ.get("KEYLESS_DATABASE_URL"):
            settings.database_url = record.database_url
        if settings.tls_port is None:
            settings.tls_port = record.tls_port
        if settings.universe_domain is None:
            settings.universe_domain = record.universe_domain
        settings.allow_insecure_issuers = settings.allow_insecure_issuers or record.allow_insecure_issuers
    settings.public_url = (server or (record.url if record else None) or settings.public_url)
    return record


def not_found_message(settings: Settings) -> str:
    return (f"no running Keyless server found (no live {settings.data_dir / RECORD}): start one with "
            f"`keyless serve --allow-insecure-issuers &`, or name it with --server URL or $KEYLESS_SERVER")


def wait_for_record(settings: Settings, seconds: float = 3.0) -> ServerRecord:
    """The running server's record, waiting `seconds` for one to appear (a server started in the
    background just now, as in `keyless serve & keyless quickstart`); none is one clear error."""
    deadline = time.monotonic() + seconds
    while (record := running(settings.data_dir)) is None:
        if time.monotonic() > deadline:
            raise ServerNotFound(not_found_message(settings))
        time.sleep(0.1)
    return record


def wait_until_answering(record: ServerRecord, seconds: float = 60.0) -> None:
    """Wait for the recorded server to answer /healthz (it may still be migrating its database)."""
    import httpx  # here: `keyless serve` publishes its record through this module and needs no HTTP client

    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{record.url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if not _alive(record.pid):
            raise ServerNotFound(f"the Keyless server at {record.url} (pid {record.pid}) exited before it "
                                 f"answered; see its output")
        if time.monotonic() > deadline:
            raise ServerNotFound(f"the Keyless server at {record.url} (pid {record.pid}) does not answer")
        time.sleep(0.1)
