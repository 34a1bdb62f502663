"""Google's error shapes, rendered in one place.

JSON APIs answer `{"error": {"code", "message", "status", "details"}}`
(https://cloud.google.com/apis/design/errors#http_mapping); OAuth token endpoints answer
RFC 6749 section 5.2 `{"error", "error_description"}`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from keyless.errors import Internal, InvalidArgument, KeylessError, Unavailable
from keyless.store.db import is_nul_refused, is_unavailable

UNAVAILABLE = "The service is currently unavailable."

JSON_TYPE = "application/json; charset=UTF-8"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
                    status_code=status, media_type=JSON_TYPE, headers=headers)


def error_body(error: KeylessError) -> dict[str, Any]:
    """`{"error": {"code", "message", "status", "details"}}`."""
    body: dict[str, Any] = {"code": error.http_status, "message": error.message, "status": error.status}
    if error.details:
        body["details"] = error.details
    return {"error": body}


def error_headers(error: KeylessError) -> dict[str, str] | None:
    return {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'} if error.http_status == 401 else None


def google_error(error: KeylessError) -> Response:
    return json_response(error_body(error), error.http_status, error_headers(error))


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def unexpected(exc: BaseException) -> KeylessError:
    """What to answer for an exception that is not a KeylessError: 503 UNAVAILABLE (Google's
    answer while a backend is away; clients retry it) when the database cannot be reached,
    500 INTERNAL for a bug."""
    if is_unavailable(exc):
        return Unavailable(UNAVAILABLE)
    if is_nul_refused(exc):
        return InvalidArgument("Invalid value: a string contains a NUL character.")
    return Internal("Internal error encountered.")
