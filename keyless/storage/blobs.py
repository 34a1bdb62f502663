"""Object bytes on disk, under the server's data directory (`storage/blobs/<id[:2]>/<id>`), or
under `--storage-dir`, which servers sharing one database share (keyless.config.Settings).

A blob is written to `storage/tmp/` and made visible only by fsync + rename once complete,
so a crash mid-upload leaves at most an unreferenced temporary file (swept at start-up),
never a half object. Files are named by generated ids, never by object names.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path
from typing import BinaryIO

from keyless.checksums import Hasher
from keyless.storage.errors import PayloadTooLarge

_BLOB_ID = re.compile(r"^[0-9a-f]{32}$")
STALE_TMP_SECONDS = 24 * 3600


class BlobWriter:
    """One blob being written: feed chunks, then `commit()` (or `abort()`)."""

    def __init__(self, store: BlobStore, max_bytes: int) -> None:
        self._store = store
        self.blob_id = secrets.token_hex(16)
        self.max_bytes = max_bytes
        self.hasher = Hasher()
        self._tmp = store.root / "tmp" / f"{self.blob_id}.part"
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    @property
    def size(self) -> int:
        return self.hasher.size

    def write(self, chunk: bytes) -> None:
        if self.hasher.size + len(chunk) > self.max_bytes:
            raise PayloadTooLarge(f"Upload exceeds the maximum object size of {self.max_bytes} bytes.")
        assert self._file is not None
        self._file.write(chunk)
        self.hasher.update(chunk)

    def commit(self) -> str:
        """Make the blob durable and visible under its id; return the id."""
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        final = self._store.path(self.blob_id)
        final.parent.mkdir(exist_ok=True)
        os.replace(self._tmp, final)
        fsync_dir(final.parent)
        return self.blob_id

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._tmp.unlink(missing_ok=True)


class BlobStore:
    """The directory of object bytes."""

    def __init__(self, data_dir: Path, *, root: Path | None = None) -> None:
        self.root = root or data_dir / "storage"
        for sub in ("blobs", "tmp", "uploads"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self._sweep()

    def _sweep(self) -> None:
        """Remove temporary files a crash left behind (old enough that no writer owns them)."""
        cutoff = time.time() - STALE_TMP_SECONDS
        for p in (self.root / "tmp").iterdir():
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except OSError:
                pass

    def path(self, blob_id: str) -> Path:
        if not _BLOB_ID.match(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / "blobs" / blob_id[:2] / blob_id

    def writer(self, max_bytes: int) -> BlobWriter:
        return BlobWriter(self, max_bytes)

    def put(self, data: bytes, max_bytes: int) -> BlobWriter:
        """Write a whole blob from memory (committed); the writer carries its checksums."""
        w = self.writer(max_bytes)
        try:
            w.write(data)
            w.commit()
        except BaseException:
            w.abort()
            raise
        return w

    def open(self, blob_id: str) -> BinaryIO:
        return self.path(blob_id).open("rb")

    def delete(self, blob_id: str) -> None:
        try:
            self.path(blob_id).unlink()
        except (FileNotFoundError, ValueError):
            pass


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
