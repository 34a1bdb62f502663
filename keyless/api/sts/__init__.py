"""Security Token Service (sts.googleapis.com v1), mounted at /sts: the REST wire and the token
exchange's fast path are keyless.api.sts.rest; the exchange itself is keyless.federation's."""

from keyless.api.sts.rest import fast_path, routes

__all__ = ["fast_path", "routes"]
