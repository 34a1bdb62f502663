"""Resumable upload sessions (https://cloud.google.com/storage/docs/performing-resumable-uploads).

A session is two files under `storage/uploads/`: `<id>.json` (what to create once the bytes
are in: bucket, name, metadata, preconditions, who asked) and `<id>.part` (the bytes so far).
The object appears only when the last chunk arrives and the blob is renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from keyless.checksums import Hasher
from keyless.errors import InvalidArgument, NotFound
from keyless.storage.blobs import BlobStore, fsync_dir
from keyless.storage.errors import PayloadTooLarge
from keyless.storage.objects import StoredBlob

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")
NO_SUCH_UPLOAD = "No such upload session."


@dataclass
class UploadSession:
    bucket: str
    name: str
    metadata: dict[str, Any]
    preconditions: dict[str, int | None]
    member: str  # who opened the session (the session URI itself authorises later chunks)
    declared_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class UploadSessions:
    """The resumable sessions of one blob store."""

    def __init__(self, blobs: BlobStore, kind: str = "uploads") -> None:
        """`kind` names the directory: "uploads", or "rewrites" for objects.rewrite's partial copies
        (a rewrite token is never an upload id)."""
        self._blobs = blobs
        self._dir = blobs.root / kind
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _paths(self, session_id: str) -> tuple[Path, Path]:
        if not _SESSION_ID.match(session_id):
            raise NotFound(NO_SUCH_UPLOAD)
        return self._dir / f"{session_id}.json", self._dir / f"{session_id}.part"

    def lock(self, session_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(session_id, threading.Lock())

    def open(self, session: UploadSession) -> str:
        session_id = secrets.token_urlsafe(32)
        meta, part = self._paths(session_id)
        part.touch(mode=0o600)
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(session)))
        os.replace(tmp, meta)
        return session_id

    def get(self, session_id: str) -> UploadSession:
        meta, _ = self._paths(session_id)
        try:
            return UploadSession(**json.loads(meta.read_text()))
        except FileNotFoundError as exc:
            raise NotFound(NO_SUCH_UPLOAD) from exc

    def received(self, session_id: str) -> int:
        _, part = self._paths(session_id)
        try:
            return part.stat().st_size
        except FileNotFoundError as exc:
            raise NotFound(NO_SUCH_UPLOAD) from exc

    def append(self, session_id: str, start: int, chunk: bytes, max_bytes: int) -> int:
        """Write `chunk` at offset `start` (bytes already held are skipped); return the new size."""
        _, part = self._paths(session_id)
        have = self.received(session_id)
        if start > have:
            raise InvalidArgument(f"Invalid request. The chunk starts at byte {start} but only {have} bytes "
                                  "were received.")
        chunk = chunk[have - start:]
        if have + len(chunk) > max_bytes:
            raise PayloadTooLarge(f"Upload exceeds the maximum object size of {max_bytes} bytes.")
        with part.open("ab") as f:
            f.write(chunk)
        return have + len(chunk)

    def finish(self, session_id: str) -> StoredBlob:
        """Hash the received bytes and move them into the blob store (durably)."""
        _, part = self._paths(session_id)
        hasher = Hasher()
        with part.open("rb") as f:
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
            os.fsync(f.fileno())
        blob_id = secrets.token_hex(16)
        final = self._blobs.path(blob_id)
        final.parent.mkdir(exist_ok=True)
        os.replace(part, final)
        fsync_dir(final.parent)
        return StoredBlob(blob_id, hasher.size, hasher.md5_b64, hasher.crc32c_b64)

    def close(self, session_id: str) -> None:
        meta, part = self._paths(session_id)
        meta.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        with self._guard:
            self._locks.pop(session_id, None)
