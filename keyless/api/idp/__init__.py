"""Keyless's built-in test issuers over HTTP (not a Google API), mounted at /idp:
keyless.api.idp.rest; the issuers are keyless.tokens.idp."""

from keyless.api.idp.rest import routes

__all__ = ["routes"]
