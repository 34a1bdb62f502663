"""The errors only Cloud Storage answers with, beside the shared hierarchy (keyless.errors):
412 for failed preconditions, 413 for oversized uploads, 416 for unsatisfiable ranges
(https://cloud.google.com/storage/docs/json_api/v1/status-codes)."""

from __future__ import annotations

from keyless.errors import KeylessError

PRECONDITION_FAILED = "At least one of the pre-conditions you specified did not hold."


class PreconditionFailed(KeylessError):
    http_status, status = 412, "FAILED_PRECONDITION"


class PayloadTooLarge(KeylessError):
    http_status, status = 413, "OUT_OF_RANGE"


class RangeNotSatisfiable(KeylessError):
    http_status, status = 416, "OUT_OF_RANGE"


class RetentionPolicyNotMet(KeylessError):
    """403 `retentionPolicyNotMet`: the object is younger than its bucket's retention period
    (https://cloud.google.com/storage/docs/bucket-lock)."""

    http_status, status = 403, "PERMISSION_DENIED"
    reason = "retentionPolicyNotMet"
