"""Google-managed service agents Keyless creates: the identities Google services act as in a
customer's project (https://cloud.google.com/iam/docs/service-agents). Keyless has two:
- the Cloud Logging service agent `service-PROJECT_NUMBER@gcp-sa-logging.iam.gserviceaccount.com`,
  the writer identity of a project's sinks (issue #20);
- the Secret Manager service agent `service-PROJECT_NUMBER@gcp-sa-secretmanager.iam.gserviceaccount.com`,
  which publishes a secret's event notifications to its Pub/Sub topics and so needs
  pubsub.topics.publish on each (https://cloud.google.com/secret-manager/docs/event-notifications).
Each exists for every project, so a policy may grant it roles (roles/storage.objectCreator on a
sink's bucket, roles/pubsub.publisher on a topic) as on Google; it has no row in the project's
service accounts and no keys, and no one can act as it but the service it belongs to."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.iam.members import member_keys_for_service_account
from keyless.iam.principal import Principal
from keyless.store.models import Project

LOGGING = re.compile(r"^service-([0-9]{1,20})@gcp-sa-logging\.iam\.gserviceaccount\.com$")
SECRET_MANAGER = re.compile(r"^service-([0-9]{1,20})@gcp-sa-secretmanager\.iam\.gserviceaccount\.com$")
AGENTS = (LOGGING, SECRET_MANAGER)


def secret_manager(project_number: str) -> str:
    """The email of the Secret Manager service agent of a project."""
    return f"service-{project_number}@gcp-sa-secretmanager.iam.gserviceaccount.com"


def principal(email: str) -> Principal:
    """A service agent (or a sink's writer identity) as IAM sees it: a service account."""
    return Principal(member=f"serviceAccount:{email}", member_keys=member_keys_for_service_account(email),
                     email=email, subject=f"serviceAccount:{email}")


def exists(s: Session, email: str) -> bool:
    """Whether `email` is a service agent of a project this store holds."""
    for pattern in AGENTS:
        m = pattern.match(email.lower())
        if m is not None:
            return s.scalar(select(Project.project_id).where(Project.project_number == m.group(1))) is not None
    return False
