"""Secret and version ids and resource names, with Secret Manager's own error messages.

Ids follow https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/create
(`[a-zA-Z0-9_-]{1,255}`); names are answered with the project NUMBER, as Google does. A regional
secret (https://cloud.google.com/secret-manager/regional-secrets/regional-secrets-overview) is
named `projects/P/locations/L/secrets/S`; `location` is '' for a global secret.
"""

from __future__ import annotations

import re

from keyless.errors import InvalidArgument
from keyless.projects import project_chain

SECRET_ID = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
VERSION_ID = re.compile(r"^(latest|[1-9][0-9]{0,9})$")
SERVICE = "secretmanager.googleapis.com"
SECRET_TYPE = "secretmanager.googleapis.com/Secret"
VERSION_TYPE = "secretmanager.googleapis.com/SecretVersion"
# Where regional secrets can live (https://cloud.google.com/secret-manager/regional-secrets/locations).
REGIONS = frozenset({
    "africa-south1", "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast2", "asia-northeast3",
    "asia-south1", "asia-south2", "asia-southeast1", "asia-southeast2", "australia-southeast1",
    "australia-southeast2", "europe-central2", "europe-north1", "europe-southwest1", "europe-west1", "europe-west2",
    "europe-west3", "europe-west4", "europe-west6", "europe-west8", "europe-west9", "europe-west10",
    "europe-west12", "me-central1", "me-central2", "me-west1", "northamerica-northeast1",
    "northamerica-northeast2", "southamerica-east1", "southamerica-west1", "us-central1", "us-east1", "us-east4",
    "us-east5", "us-south1", "us-west1", "us-west2", "us-west3", "us-west4"})


def secret_name(project: str, secret_id: str, location: str = "") -> str:
    """`projects/P/secrets/S`, or a regional secret's `projects/P/locations/L/secrets/S`."""
    where = f"projects/{project}/locations/{location}" if location else f"projects/{project}"
    return f"{where}/secrets/{secret_id}"


def version_name(project: str, secret_id: str, version: str | int, location: str = "") -> str:
    return f"{secret_name(project, secret_id, location)}/versions/{version}"


def policy_resource(project_number: str, secret_id: str, location: str = "") -> str:
    """Where a secret's IAM policy is stored (deleted with the secret)."""
    return f"//{SERVICE}/{secret_name(project_number, secret_id, location)}"


def secret_chain(project_number: str, project_id: str, secret_id: str, location: str = "") -> list[str]:
    """The policies a secret (and its versions) inherits from: its own, the project's, the root's."""
    return [policy_resource(project_number, secret_id, location), *project_chain(project_id)]


def check_location(project: str, location: str) -> str:
    """A regional secret's location: one of Secret Manager's regions (REGIONS)."""
    if location not in REGIONS:
        raise InvalidArgument(f"Location [{location[:64]}] is not a supported location for regional secrets "
                              f"in project [{project[:30]}].")
    return location


def check_secret_id(project: str, secret_id: str, location: str = "") -> str:
    if not SECRET_ID.match(secret_id):
        form = "projects/*/locations/*/secrets/*" if location else "projects/*/secrets/*"
        raise InvalidArgument(f"The provided Secret ID [{secret_name(project, secret_id, location)[:600]}] does not "
                              f"match the expected format [{form}]")
    return secret_id


def check_version_id(project: str, secret_id: str, version: str, location: str = "") -> str:
    check_secret_id(project, secret_id, location)
    if not VERSION_ID.match(version) or int(version if version != "latest" else 1) > 2**31 - 1:
        form = "projects/*/locations/*/secrets/*/versions/*" if location else "projects/*/secrets/*/versions/*"
        raise InvalidArgument(f"The provided Secret Version ID "
                              f"[{version_name(project, secret_id, version, location)[:600]}] "
                              f"does not match the expected format [{form}]")
    return version
