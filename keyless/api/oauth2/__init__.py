"""Google's OAuth 2.0 endpoints (oauth2.googleapis.com), mounted at /oauth2: keyless.api.oauth2.rest."""

from keyless.api.oauth2.rest import routes

__all__ = ["routes"]
