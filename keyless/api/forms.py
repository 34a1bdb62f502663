"""`application/x-www-form-urlencoded` bodies and query strings (WHATWG URL standard, section 5.1,
as `urllib.parse.parse_qsl(..., keep_blank_values=True)` reads them): the one parser of the
token endpoints (STS, OAuth 2.0) and the metadata server.

Its results are parse_qsl's, field for field (tests/api/test_forms.py compares them on
arbitrary input). It is faster on the hot paths because the short values a client sends on every
request (`grant_type`, `audience`, `scope`, token types: percent-encoded, so parse_qsl decodes
each byte by byte every time) are decoded once and remembered, in a bounded map.
"""

from __future__ import annotations

from urllib.parse import unquote

_SHORT = 256
"""Values up to this many characters are remembered once decoded; tokens are longer and rarely repeat."""
_REMEMBERED = 4096
"""At most this many decoded values are kept; the map is emptied when full (hostile input only churns it)."""
_decoded: dict[str, str] = {}


NOT_A_FORM = "The request body must be application/x-www-form-urlencoded."
"""The OAuth `error_description` (with `invalid_request`) of a body parse_form refuses."""


class FormError(ValueError):
    """The body is not a form: not UTF-8, or more fields than allowed."""


def _decode(part: str) -> str:
    if "%" not in part and "+" not in part:
        return part
    if len(part) > _SHORT:
        return unquote(part.replace("+", " "))
    value = _decoded.get(part)
    if value is None:
        if len(_decoded) >= _REMEMBERED:
            _decoded.clear()
        value = _decoded[part] = unquote(part.replace("+", " "))
    return value


def parse_form(raw: bytes | str, *, max_fields: int) -> dict[str, str]:
    """The fields of a form body or query string; for a repeated name, the last value wins.

    Raises FormError for a body that is not UTF-8 or has more than `max_fields` fields (counted as
    parse_qsl counts them: one more than the number of `&`)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8") from None
    if text.count("&") + 1 > max_fields:
        raise FormError("too many fields")
    form: dict[str, str] = {}
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        form[_decode(name)] = _decode(value)
    return form


__all__ = ["NOT_A_FORM", "FormError", "parse_form"]
