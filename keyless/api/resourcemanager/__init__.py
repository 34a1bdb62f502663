"""Cloud Resource Manager API (cloudresourcemanager.googleapis.com v1 and v3), mounted at
/cloudresourcemanager: the REST wire is keyless.api.resourcemanager.rest."""

from keyless.api.resourcemanager.rest import routes

__all__ = ["routes"]
