"""Bucket and object naming rules (https://cloud.google.com/storage/docs/buckets#naming,
https://cloud.google.com/storage/docs/objects#naming). Names are only ever keys in the store:
object bytes are filed under generated ids, so no name can reach the filesystem."""

from __future__ import annotations

import ipaddress
import re

from keyless.errors import InvalidArgument

MAX_OBJECT_NAME_BYTES = 1024
_BUCKET_CHARS = re.compile(r"^[a-z0-9][a-z0-9._-]*[a-z0-9]$")
_COMPONENT = re.compile(r"^[a-z0-9_-]{1,63}$|^[a-z0-9][a-z0-9_-]{0,61}[a-z0-9]$")


def validate_bucket_name(name: object) -> str:
    """3-63 characters (222 with dots, 63 per dot-separated part), lowercase letters, digits,
    `-`, `_` and `.`, starting and ending with a letter or digit; no `goog` prefix, no
    `google`, no IP address."""
    if not isinstance(name, str) or not _valid_bucket(name):
        raise InvalidArgument(f"Invalid bucket name: '{str(name)[:256]}'")
    return name


def _valid_bucket(name: str) -> bool:
    limit = 222 if "." in name else 63
    if not 3 <= len(name) <= limit or not _BUCKET_CHARS.match(name):
        return False
    if name.startswith("goog") or "google" in name or ".." in name:
        return False
    if any(not _COMPONENT.match(part) for part in name.split(".")):
        return False
    try:
        ipaddress.ip_address(name)
        return False
    except ValueError:
        return True


def validate_object_name(name: object) -> str:
    """1-1024 bytes of UTF-8; not `.` or `..`; no carriage return or line feed (Google's rules)
    and no NUL (which no database text column can hold)."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("Object name is required.")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from a bad percent-encoding
        raise InvalidArgument("The object name is not valid UTF-8.") from exc
    if len(encoded) > MAX_OBJECT_NAME_BYTES:
        raise InvalidArgument(f"The maximum object length is {MAX_OBJECT_NAME_BYTES} characters, but got a name "
                              f"with {len(encoded)} characters: ''{name[:64]}...''")
    if name in (".", ".."):
        raise InvalidArgument("Object name cannot be '.' or '..'.")
    if any(c in name for c in "\r\n\x00"):
        raise InvalidArgument("Object name contains invalid characters (carriage return, line feed or NUL).")
    if name.startswith(".well-known/acme-challenge/"):
        raise InvalidArgument("Object name cannot begin with '.well-known/acme-challenge/'.")
    return name
