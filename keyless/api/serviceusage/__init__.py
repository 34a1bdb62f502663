"""Service Usage API (serviceusage.googleapis.com v1), mounted at /serviceusage: the REST wire
is keyless.api.serviceusage.rest."""

from keyless.api.serviceusage.rest import routes

__all__ = ["routes"]
