"""CRC32C (Castagnoli) and MD5, the checksums Google's APIs carry: Cloud Storage reports each as
the base64 of its big-endian digest (https://cloud.google.com/storage/docs/hashes-etags), Secret
Manager's SecretPayload.data_crc32c is the CRC32C as a decimal int64
(https://cloud.google.com/secret-manager/docs/data-integrity)."""

from __future__ import annotations

import base64
import hashlib
import struct
from types import ModuleType

_fast: ModuleType | None
try:  # the C implementation google-cloud-storage installs; a table-driven fallback otherwise
    import google_crc32c as _fast
except ImportError:  # pragma: no cover - depends on the environment
    _fast = None


def _table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        out.append(c)
    return out


_TABLE = _table()


def _crc32c_py(crc: int, data: bytes) -> int:
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class Hasher:
    """Running size, MD5 and CRC32C of an upload."""

    def __init__(self) -> None:
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._crc = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._md5.update(chunk)
        self._crc = _fast.extend(self._crc, chunk) if _fast is not None else _crc32c_py(self._crc, chunk)

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(self._md5.digest()).decode()

    @property
    def crc32c_b64(self) -> str:
        return base64.b64encode(struct.pack(">I", self._crc)).decode()


def crc32c_b64(data: bytes) -> str:
    h = Hasher()
    h.update(data)
    return h.crc32c_b64


def crc32c(data: bytes) -> int:
    """The CRC32C of `data` as an unsigned integer."""
    return int(_fast.value(data)) if _fast is not None else _crc32c_py(0, data)
