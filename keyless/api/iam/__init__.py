"""IAM API (iam.googleapis.com v1), mounted at /iam: the REST wire is keyless.api.iam.rest and,
for pools' Managed Workload Identity, keyless.api.iam.managed_identities; the domain is
keyless.iam and keyless.federation."""

from typing import Any

from keyless.api.iam import managed_identities, rest
from keyless.state import ServerState


def routes(state: ServerState) -> list[Any]:
    return [*managed_identities.routes(state), *rest.routes(state)]


__all__ = ["routes"]
