"""IAM Service Account Credentials API (iamcredentials.googleapis.com v1), mounted at
/iamcredentials: the REST wire is keyless.api.iamcredentials.rest; signBlob and signJwt, shared with
IAM's deprecated v1 twins, are keyless.api.iamcredentials.signing."""

from keyless.api.iamcredentials.rest import routes

__all__ = ["routes"]
