"""Etags as Google's APIs carry them: protobuf `bytes` fields, so base64 on the wire.

Clients may re-encode what they read (gcloud decodes an etag and sends it back in URL-safe
base64, normalising trailing bits), so two etags are equal when their decoded bytes are.
"""

from __future__ import annotations

import base64
import binascii
import secrets


def new_etag() -> str:
    """A fresh etag in Google's shape: base64 of 8 bytes starting 0x07 ("BwX...=")."""
    return base64.b64encode(b"\x07" + secrets.token_bytes(7)).decode()


def _decode(etag: str) -> bytes | None:
    text = etag.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def etags_match(given: object, current: str) -> bool:
    """Whether a client's etag names the same version as `current`."""
    if not isinstance(given, str):
        return False
    a, b = _decode(given), _decode(current)
    return a is not None and a == b
