"""Service accounts (IAM admin v1 projects.serviceAccounts).

Rules from https://cloud.google.com/iam/docs/service-accounts-create and the REST reference:
account ids are 6-30 characters `[a-z]([-a-z0-9]*[a-z0-9])`; the email is
ACCOUNT@PROJECT.iam.gserviceaccount.com; the uniqueId is a 21-digit number; deletion is soft
for 30 days and undeletable by uniqueId while no new account took the email; a disabled
account cannot authenticate. The IAM policy of an account is stored under its uniqueId, so a
re-created account with the same email does not inherit the old grants.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyless.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from keyless.etag import etags_match, new_etag
from keyless.iam.policy import rename_member
from keyless.projects import ROOT, project_resource
from keyless.store.models import ServiceAccount

ACCOUNT_ID = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])$")
EMAIL_DOMAIN = ".iam.gserviceaccount.com"
UNDELETE_WINDOW = timedelta(days=30)
NAME = re.compile(r"^projects/([^/]+)/serviceAccounts/([^/]+)$")


def email_for(account_id: str, project_id: str) -> str:
    return f"{account_id}@{project_id}{EMAIL_DOMAIN}"


class AccountRef(Protocol):
    """What names an account's place in the hierarchy (a row, or any snapshot of one)."""

    @property
    def project_id(self) -> str: ...

    @property
    def unique_id(self) -> str: ...


def sa_resource(row: AccountRef) -> str:
    """Where the account's IAM policy is stored (by uniqueId)."""
    return f"projects/{row.project_id}/serviceAccounts/{row.unique_id}"


def sa_chain(row: AccountRef) -> list[str]:
    return [sa_resource(row), project_resource(row.project_id), ROOT]


def sa_name(row: ServiceAccount) -> str:
    return f"projects/{row.project_id}/serviceAccounts/{row.email}"


def parse_name(name: str) -> tuple[str, str]:
    """`projects/{project}/serviceAccounts/{email or uniqueId}` -> (project, account)."""
    m = NAME.match(name)
    if m is None:
        raise InvalidArgument(f"Invalid service account name: {name}. It must be of the form "
                              "projects/{PROJECT_ID}/serviceAccounts/{EMAIL_OR_UNIQUE_ID}.")
    return m.group(1), m.group(2)


def _new_unique_id(s: Session) -> str:
    while True:
        uid = "1" + "".join(str(secrets.randbelow(10)) for _ in range(20))
        if s.get(ServiceAccount, uid) is None:
            return uid


def validate_account_id(account_id: Any) -> str:
    if not isinstance(account_id, str) or not (6 <= len(account_id) <= 30) or not ACCOUNT_ID.match(account_id):
        raise InvalidArgument(
            f"Invalid value for accountId: \"{account_id}\". Service account IDs must be between 6 and 30 "
            "characters, start with a lower case letter, and contain only lower case letters, digits and "
            "hyphens (no trailing hyphen)."
        )
    return account_id


def create(s: Session, project_id: str, account_id: str, display_name: str = "",
           description: str = "") -> ServiceAccount:
    validate_account_id(account_id)
    if len(display_name) > 100:
        raise InvalidArgument("displayName must be at most 100 characters.")
    if len(description) > 256:
        raise InvalidArgument("description must be at most 256 characters.")
    email = email_for(account_id, project_id)
    if find_by_email(s, email) is not None:
        raise AlreadyExists(f"Service account {account_id} already exists within project projects/{project_id}.")
    uid = _new_unique_id(s)
    row = ServiceAccount(unique_id=uid, project_id=project_id, account_id=account_id, email=email,
                         display_name=display_name, description=description, oauth2_client_id=uid,
                         disabled=False, deleted=False, etag=new_etag())
    s.add(row)
    return row


def find_by_email(s: Session, email: str) -> ServiceAccount | None:
    """The live (not deleted) account with this email."""
    return s.scalar(select(ServiceAccount).where(ServiceAccount.email == email.lower(),
                                                 ServiceAccount.deleted.is_(False)))


def find(s: Session, account: str) -> ServiceAccount | None:
    """Resolve the `{email or uniqueId}` part of a name. The name's project part is not
    consulted: Google infers it from the account (docs/gcloud-wire.md §3)."""
    if account.isdigit():
        row = s.get(ServiceAccount, account)
        if row is not None and row.deleted:
            return None
    else:
        row = find_by_email(s, account)
    return row


def get(s: Session, name: str) -> ServiceAccount:
    _, account = parse_name(name)
    row = find(s, account)
    if row is None:
        raise NotFound(f"Unknown service account: {account}")
    return row


def list_accounts(s: Session, project_id: str) -> list[ServiceAccount]:
    q = select(ServiceAccount).where(ServiceAccount.project_id == project_id,
                                     ServiceAccount.deleted.is_(False)).order_by(ServiceAccount.email)
    return list(s.scalars(q).all())


def patch(row: ServiceAccount, body: dict[str, Any], update_mask: str | None) -> ServiceAccount:
    fields = [f.strip() for f in (update_mask or "").split(",") if f.strip()] or \
        [f for f in ("displayName", "description") if f in body]
    for f in fields:
        if f not in ("displayName", "description", "display_name"):
            raise InvalidArgument(f"Invalid update mask path: {f}. Only displayName and description "
                                  "can be updated.")
    if body.get("etag") and not etags_match(body["etag"], row.etag):
        raise Aborted("The etag in the request does not match the service account's current etag.")
    for f in fields:
        value = body.get("displayName" if f in ("displayName", "display_name") else f, "")
        if not isinstance(value, str):
            raise InvalidArgument(f"Invalid value at 'service_account.{f}' (TYPE_STRING)")
        if f == "description":
            if len(value) > 256:
                raise InvalidArgument("description must be at most 256 characters.")
            row.description = value
        else:
            if len(value) > 100:
                raise InvalidArgument("displayName must be at most 100 characters.")
            row.display_name = value
    row.etag = new_etag()
    return row


def set_disabled(row: ServiceAccount, disabled: bool) -> ServiceAccount:
    row.disabled = disabled
    row.etag = new_etag()
    return row


def deleted_member(row: ServiceAccount) -> str:
    """How Google shows a deleted account in policies that still name it."""
    return f"deleted:serviceAccount:{row.email}?uid={row.unique_id}"


def delete(s: Session, row: ServiceAccount) -> ServiceAccount:
    row.deleted = True
    row.delete_time = datetime.now(UTC)
    row.etag = new_etag()
    rename_member(s, f"serviceAccount:{row.email}", deleted_member(row))
    return row


def undelete(s: Session, unique_id: str) -> ServiceAccount:
    row = s.get(ServiceAccount, unique_id)
    if row is None or not row.deleted:
        raise NotFound(f"Unknown service account: {unique_id}" if row is None else
                       f"Service account {unique_id} is not deleted.")
    deleted_at = row.delete_time if row.delete_time and row.delete_time.tzinfo else \
        (row.delete_time or datetime.now(UTC)).replace(tzinfo=UTC)
    if datetime.now(UTC) - deleted_at > UNDELETE_WINDOW:
        raise FailedPrecondition("The service account was deleted more than 30 days ago and cannot be restored.")
    if find_by_email(s, row.email) is not None:
        raise FailedPrecondition(f"Cannot undelete: a service account with email {row.email} already exists.")
    row.deleted = False
    row.delete_time = None
    row.etag = new_etag()
    rename_member(s, deleted_member(row), f"serviceAccount:{row.email}")
    return row


def sa_json(row: ServiceAccount) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": sa_name(row),
        "projectId": row.project_id,
        "uniqueId": row.unique_id,
        "email": row.email,
        "displayName": row.display_name,
        "etag": row.etag,
        "description": row.description,
        "oauth2ClientId": row.oauth2_client_id,
    }
    if row.disabled:
        body["disabled"] = True
    return {k: v for k, v in body.items() if v != ""}
