"""Cloud Asset API (cloudasset.googleapis.com v1), mounted at /cloudasset (issue #20): the REST
wire is keyless.api.cloudasset.rest, gRPC (on the TLS port) keyless.api.cloudasset.grpc; the analysis
and search are keyless.cloudasset's."""

from keyless.api.cloudasset.rest import routes

__all__ = ["routes"]
