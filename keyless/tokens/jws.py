"""Parsing JWS compact serialization (RFC 7515 §7.1) strictly, for every JWT Keyless verifies: STS
subject tokens (OIDC), KSA tokens, service-account key assertions and self-signed JWTs.

Tokens are hostile input: base64url must be unpadded and in the URL-safe alphabet (RFC 7515 §2),
header and claims must be JSON objects without duplicate members (RFC 7519 §4) nesting at most
MAX_DEPTH levels. Callers check the algorithm, verify the signature over `signing_input` and turn
`MalformedJws` into their own protocol's error.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 32
_URLSAFE = bytes.maketrans(b"-_+/=", b"+/!!!")  # base64url to base64; "+/=" become invalid


class MalformedJws(ValueError):
    """The token is not a well-formed compact JWS; the message says why (for logs and audit)."""


@dataclass(frozen=True)
class CompactJws:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes  # ASCII(BASE64URL(header) || "." || BASE64URL(payload))
    signature: bytes


def b64url_decode(segment: str) -> bytes:
    """Strict base64url without padding: "+", "/", "=" and anything else outside the alphabet fail."""
    try:
        data = segment.encode("ascii").translate(_URLSAFE)
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4), strict_mode=True)
    except ValueError:  # binascii.Error and UnicodeError are ValueErrors
        raise MalformedJws("a part is not base64url") from None


def split(token: str, max_bytes: int) -> tuple[str, str, str]:
    """The three base64url parts of a compact JWS of at most `max_bytes`."""
    if not isinstance(token, str) or len(token) > max_bytes:
        raise MalformedJws(f"the token is larger than {max_bytes} bytes")
    if not token.isascii() or token.count(".") != 2:
        raise MalformedJws("the token is not a compact JWS (three base64url parts)")
    header, payload, signature = token.split(".")
    return header, payload, signature


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """`raw` as a JSON object: valid UTF-8, no duplicate members, at most MAX_DEPTH levels deep."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:
        raise MalformedJws(f"the {what} is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise MalformedJws(f"the {what} is not a JSON object")
    # Nesting needs an opening bracket per level: a claims set with few of them (any real
    # token's) cannot be too deep, and counting bytes is cheaper than walking the objects.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise MalformedJws(f"the {what} nests deeper than {MAX_DEPTH} levels")
    return value


def parse(token: str, max_bytes: int) -> CompactJws:
    """Header, claims and signature of a compact JWS; nothing is verified yet."""
    header_b64, payload_b64, signature_b64 = split(token, max_bytes)
    header = json_object(b64url_decode(header_b64), "JWS header")
    claims = json_object(b64url_decode(payload_b64), "JWT claims set")
    return CompactJws(header, claims, f"{header_b64}.{payload_b64}".encode("ascii"), b64url_decode(signature_b64))


def depth(value: Any) -> int:
    """How deeply objects and arrays nest (a flat claims set is 1); walks containers only."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):  # noqa: UP038 (faster than a union)
                stack.append((child, d + 1))
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate member {k!r}")
        out[k] = v
    return out
