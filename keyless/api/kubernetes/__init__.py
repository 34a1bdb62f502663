"""Each GKE cluster's Kubernetes API, mounted at /kubernetes (issue #20): the REST wire
(keyless.api.kubernetes.rest), discovery and OpenAPI (.discovery, .protobuf) and pods' exec and attach
over WebSocket (.exec). The clusters are keyless.gke's."""

from keyless.api.kubernetes.rest import routes

__all__ = ["routes"]
