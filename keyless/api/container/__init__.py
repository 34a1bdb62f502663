"""Kubernetes Engine API (container.googleapis.com v1), mounted at /container: the REST wire is
keyless.api.container.rest; the clusters are keyless.gke's."""

from keyless.api.container.rest import routes

__all__ = ["routes"]
