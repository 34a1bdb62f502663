"""IAM API (iam.googleapis.com v1), mounted at /iam: the REST wire is keyless.api.iam.rest; the
domain is keyless.iam."""

from keyless.api.iam.rest import routes

__all__ = ["routes"]
