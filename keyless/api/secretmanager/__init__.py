"""Secret Manager API (secretmanager.googleapis.com v1), mounted at /secretmanager: the REST
wire is keyless.api.secretmanager.rest, gRPC (on the TLS port) keyless.api.secretmanager.grpc; the
domain is keyless.secretmanager."""

from keyless.api.secretmanager.rest import routes

__all__ = ["routes"]
