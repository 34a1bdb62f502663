"""Google-managed service agents Keyless creates: the identities Google services act as in a
customer's project (https://cloud.google.com/iam/docs/service-agents). Keyless has one, the Cloud
Logging service agent `service-PROJECT_NUMBER@gcp-sa-logging.iam.gserviceaccount.com`, the writer
identity of a project's sinks (issue #20). It exists for every project, so a policy may grant it
roles (e.g. roles/storage.objectCreator on a sink's bucket) as on Google; it has no row in the
project's service accounts and no keys, and no one can act as it but the sink routing."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.store.models import Project

LOGGING = re.compile(r"^service-([0-9]{1,20})@gcp-sa-logging\.iam\.gserviceaccount\.com$")


def exists(s: Session, email: str) -> bool:
    """Whether `email` is a service agent of a project this store holds."""
    m = LOGGING.match(email.lower())
    if m is None:
        return False
    return s.scalar(select(Project.project_id).where(Project.project_number == m.group(1))) is not None
