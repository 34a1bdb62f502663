"""The one error hierarchy of Keyless, named after google.rpc.Code.

Domain code raises these; `keyless.api.errors` renders them in Google's JSON shape
(https://cloud.google.com/apis/design/errors) and the OAuth endpoints render them as
RFC 6749 section 5.2 errors. Each class carries its canonical HTTP status.
"""

from __future__ import annotations

from typing import Any


class KeylessError(Exception):
    """An error with a google.rpc canonical status."""

    http_status: int = 500
    status: str = "INTERNAL"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidArgument(KeylessError):
    http_status, status = 400, "INVALID_ARGUMENT"


class FailedPrecondition(KeylessError):
    http_status, status = 400, "FAILED_PRECONDITION"


class OutOfRange(KeylessError):
    http_status, status = 400, "OUT_OF_RANGE"


class Unauthenticated(KeylessError):
    http_status, status = 401, "UNAUTHENTICATED"


class PermissionDenied(KeylessError):
    http_status, status = 403, "PERMISSION_DENIED"


class NotFound(KeylessError):
    http_status, status = 404, "NOT_FOUND"


class Aborted(KeylessError):
    http_status, status = 409, "ABORTED"


class AlreadyExists(KeylessError):
    http_status, status = 409, "ALREADY_EXISTS"


class ResourceExhausted(KeylessError):
    http_status, status = 429, "RESOURCE_EXHAUSTED"


class DeadlineExceeded(KeylessError):
    http_status, status = 504, "DEADLINE_EXCEEDED"


class Unimplemented(KeylessError):
    http_status, status = 501, "UNIMPLEMENTED"


class Unavailable(KeylessError):
    http_status, status = 503, "UNAVAILABLE"


class Internal(KeylessError):
    http_status, status = 500, "INTERNAL"
