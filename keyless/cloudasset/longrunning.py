"""AnalyzeIamPolicyLongrunning (https://cloud.google.com/asset-inventory/docs/reference/rest/v1/TopLevel/analyzeIamPolicyLongrunning,
https://cloud.google.com/policy-intelligence/docs/policy-analyzer-write-to-gcs): the analysis of
analyzeIamPolicy, written to a Cloud Storage object as the JSON of its AnalyzeIamPolicyResponse,
and a google.longrunning.Operation for it. Keyless finishes the analysis before answering, so the
operation is born `done`; it is kept (keyless.operations) for `operations.get`.

Google names the operation `projects/NUMBER/operations/AnalyzeIamPolicyLongrunning/ID` (or
`organizations/ORG/...`); the caller writes the object (Google documents storage.objects.create
for the caller, roles/storage.objectCreator), and an existing object is overwritten.
BigQuery destinations are not served (INVALID_ARGUMENT: Keyless has no BigQuery).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from keyless import operations
from keyless.clock import now, rfc3339
from keyless.cloudasset.assets import Scope
from keyless.errors import InvalidArgument
from keyless.storage import objects
from keyless.storage.blobs import BlobStore
from keyless.storage.names import validate_bucket_name, validate_object_name

KIND = "AnalyzeIamPolicyLongrunning"
METADATA_TYPE = "type.googleapis.com/google.cloud.asset.v1.AnalyzeIamPolicyLongrunningMetadata"
RESPONSE_TYPE = "type.googleapis.com/google.cloud.asset.v1.AnalyzeIamPolicyLongrunningResponse"
MAX_OUTPUT_BYTES = 64 * 1024 * 1024  # one analysis as JSON; Keyless's analyses are far smaller


def parse_gcs_uri(uri: Any) -> tuple[str, str]:
    """`gs://BUCKET/OBJECT` as (bucket, object), both under Cloud Storage's naming rules."""
    where = "outputConfig.gcsDestination.uri"
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"{where} is required.")
    if not uri.startswith("gs://") or "/" not in uri[5:]:
        raise InvalidArgument(f"Invalid {where} {uri[:200]!r}: expected gs://BUCKET_NAME/OBJECT_NAME.")
    bucket, name = uri[5:].split("/", 1)
    return validate_bucket_name(bucket), validate_object_name(name)


def operation_parent(scope: Scope) -> str:
    """Google files the operation under the scope's number: projects/NUMBER or organizations/ORG."""
    if scope.project_number:
        return f"projects/{scope.project_number}"
    return scope.name


def write_result(s: Session, blobs: BlobStore, bucket: str, name: str,
                 response: dict[str, Any]) -> tuple[str | None, str]:
    """Make the response's JSON the live generation of gs://bucket/name (inside the caller's
    transaction); return the blob it replaced (to delete after commit) and the new blob's id
    (to delete if the transaction fails)."""
    writer = blobs.put(json.dumps(response, ensure_ascii=False).encode(), MAX_OUTPUT_BYTES)
    blob = objects.StoredBlob(writer.blob_id, writer.size, writer.hasher.md5_b64, writer.hasher.crc32c_b64)
    _, replaced = objects.put_object(s, bucket, name, blob, {"contentType": "application/json"},
                                     objects.Preconditions())
    return replaced, writer.blob_id


def record_operation(s: Session, scope: Scope) -> dict[str, Any]:
    """The done Operation, stored for operations.get."""
    name = f"{operation_parent(scope)}/operations/{KIND}/{operations.new_id()}"
    metadata = {"@type": METADATA_TYPE, "createTime": rfc3339(now())}
    return operations.record_done(s, name, {}, response_type=RESPONSE_TYPE, metadata=metadata)
