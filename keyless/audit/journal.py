"""The audit sink's write-ahead journal: every queued Data Access entry is appended to a file in the
data dir before its request is answered, and a journal segment is deleted only once the writer has
committed its entries, so a server killed with SIGKILL loses none (issue #23 item 5: it lost the
last ~50 ms of entries). The next server to start replays what a dead one left.

Each sink owns `DIR/OWNER.lock`, held with flock(2) while its process lives (the kernel releases it
when the process dies, however it dies), and writes `DIR/OWNER.SEQ.log` segments of
length-prefixed entries. A write(2) reaches the page cache, which outlives the process; the segment
is fsync'd by the sink's thread every interval, so a machine crash can lose at most that interval.
Replayed entries keep their insertId, so one committed just before the kill is not written twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import uuid
from pathlib import Path

logger = logging.getLogger("keyless.audit")

_LENGTH = struct.Struct("<I")


class Journal:
    """The segments of one sink (created at the first append: a CLI command that writes no entry
    leaves nothing behind)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.owner = uuid.uuid4().hex
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._seq = 0
        self._dirty = False

    def _path(self, seq: int) -> Path:
        return self.directory / f"{self.owner}.{seq}.log"

    def _open(self) -> int:
        if self._lock_fd is None:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Locked before it has its name: `recover` never finds it unlocked while its owner lives.
            pending = self.directory / f"{self.owner}.lock.new"
            fd = os.open(pending, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(pending, self.directory / f"{self.owner}.lock")
            self._lock_fd = fd
        if self._fd is None:
            self._fd = os.open(self._path(self._seq), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def append(self, entry: bytes) -> None:
        """Journal one entry (the caller serialises appends with `rotate`)."""
        os.write(self._open(), _LENGTH.pack(len(entry)) + entry)
        self._dirty = True

    def rotate(self) -> Path | None:
        """Seal the current segment (None if there is none): later appends go to a new one."""
        if self._fd is None:
            return None
        os.close(self._fd)
        self._fd, sealed = None, self._path(self._seq)
        self._seq += 1
        return sealed

    def sync(self) -> None:
        """fsync the current segment if anything was appended since the last sync."""
        fd = self._fd
        if fd is not None and self._dirty:
            self._dirty = False
            try:
                os.fsync(fd)
            except OSError:  # rotated and closed meanwhile: sealed segments are not synced again
                pass

    def release(self, segments: list[Path]) -> None:
        """Delete segments whose entries are all committed."""
        for path in segments:
            path.unlink(missing_ok=True)

    def recover(self) -> list[bytes]:
        """The entries dead sinks left (their owner's lock free), in their order; their files are
        deleted once read, so the caller must journal the entries again first (`append`)."""
        if not self.directory.is_dir():
            return []
        found: list[bytes] = []
        for lock in sorted(self.directory.glob("*.lock")):
            owner = lock.stem
            if owner == self.owner:
                continue
            try:
                fd = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                continue  # recovered by another worker meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                segments = sorted(self.directory.glob(f"{owner}.*.log"), key=lambda p: int(p.name.split(".")[1]))
                entries = [entry for path in segments for entry in _read(path)]
                for entry in entries:
                    self.append(entry)
                if entries:
                    self.sync()
                self.release(segments)
                lock.unlink(missing_ok=True)
                found += entries
                logger.info("replayed %d audit entries a stopped server had journaled", len(entries))
            finally:
                os.close(fd)
        return found

    def close(self, *, remove: bool) -> None:
        """Close the files; with `remove` (every entry committed), delete this sink's files."""
        sealed = self.rotate()
        if remove:
            self.release([sealed] if sealed else [])
        if self._lock_fd is not None:
            if remove:
                (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None


def _read(path: Path) -> list[bytes]:
    """A segment's entries; a torn last one (the process died inside write(2)) is skipped."""
    data = path.read_bytes()
    out, at = [], 0
    while at + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        if at + _LENGTH.size + size > len(data):
            break
        out.append(data[at + _LENGTH.size:at + _LENGTH.size + size])
        at += _LENGTH.size + size
    return out
