"""Cloud Logging over gRPC (`google.logging.v2.LoggingServiceV2` on logging.googleapis.com), the
default transport of google-cloud-logging's Client and so of its CloudLoggingHandler (issue #20: a
pod's handler writes through it). Each RPC is transcoded by the `google.api.http` rule of Google's
google/logging/v2/logging.proto to the REST method of keyless.api.logging, so both transports share
authorisation, audit entries and errors. Not served: TailLogEntries (a stream with no HTTP rule)
and ListMonitoredResourceDescriptors, as over REST; entries whose protoPayload is of a type this
process does not know (only google.cloud.audit.AuditLog is) cannot be listed over gRPC.

The message types come from google-cloud-logging, whose import takes a good half second: they are
loaded at the first Logging call, so a process that serves Pub/Sub or Secret Manager alone never pays it.
"""

from __future__ import annotations

import grpc
from starlette.types import ASGIApp

from keyless.api.grpc_transcoding import LazyTranscodingService, PeerResolver, Rule

LOGGING = "google.logging.v2.LoggingServiceV2"
PREFIX = "/logging"  # where keyless.app mounts the REST API


def rules() -> list[Rule]:
    """The served RPCs and their HTTP rules (google/logging/v2/logging.proto)."""
    from google.cloud.audit import audit_log_pb2  # noqa: F401  (protoPayload's type must be known to ParseDict)
    from google.cloud.logging_v2.types import logging as messages
    from google.protobuf import empty_pb2

    return [
        Rule("WriteLogEntries", "post", "/v2/entries:write", messages.WriteLogEntriesRequest.pb(),
             messages.WriteLogEntriesResponse.pb(), body="*"),
        Rule("ListLogEntries", "post", "/v2/entries:list", messages.ListLogEntriesRequest.pb(),
             messages.ListLogEntriesResponse.pb(), body="*"),
        Rule("ListLogs", "get", "/v2/{parent=projects/*}/logs", messages.ListLogsRequest.pb(),
             messages.ListLogsResponse.pb()),
        Rule("DeleteLog", "delete", "/v2/{log_name=projects/*/logs/*}", messages.DeleteLogRequest.pb(),
             empty_pb2.Empty),
    ]


def services(app: ASGIApp, peer: PeerResolver | None = None) -> list[grpc.GenericRpcHandler]:
    """The gRPC service, answered by `app` (Keyless's ASGI app)."""
    return [LazyTranscodingService(LOGGING, rules, app, PREFIX, peer)]
