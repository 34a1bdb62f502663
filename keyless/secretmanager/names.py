"""Secret and version ids and resource names, with Secret Manager's own error messages.

Ids follow https://cloud.google.com/secret-manager/docs/reference/rest/v1/projects.secrets/create
(`[a-zA-Z0-9_-]{1,255}`); names are answered with the project NUMBER, as Google does.
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


def secret_name(project: str, secret_id: str) -> str:
    return f"projects/{project}/secrets/{secret_id}"


def version_name(project: str, secret_id: str, version: str | int) -> str:
    return f"projects/{project}/secrets/{secret_id}/versions/{version}"


def policy_resource(project_number: str, secret_id: str) -> str:
    """Where a secret's IAM policy is stored (deleted with the secret)."""
    return f"//{SERVICE}/{secret_name(project_number, secret_id)}"


def secret_chain(project_number: str, project_id: str, secret_id: str) -> list[str]:
    """The policies a secret (and its versions) inherits from: its own, the project's, the root's."""
    return [policy_resource(project_number, secret_id), *project_chain(project_id)]


def check_secret_id(project: str, secret_id: str) -> str:
    if not SECRET_ID.match(secret_id):
        raise InvalidArgument(f"The provided Secret ID [{secret_name(project, secret_id)[:600]}] does not match "
                              "the expected format [projects/*/secrets/*]")
    return secret_id


def check_version_id(project: str, secret_id: str, version: str) -> str:
    check_secret_id(project, secret_id)
    if not VERSION_ID.match(version) or int(version if version != "latest" else 1) > 2**31 - 1:
        raise InvalidArgument(f"The provided Secret Version ID [{version_name(project, secret_id, version)[:600]}] "
                              "does not match the expected format [projects/*/secrets/*/versions/*]")
    return version
