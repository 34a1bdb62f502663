"""Who is calling: the authenticated principal and the IAM member strings that match it.

A policy check is then a set lookup of `member_keys` against a policy's members, never a
scan (see keyless.iam.members for how each kind of identity expands into its keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from keyless.iam.members import member_keys_for_service_account, member_keys_for_user

if TYPE_CHECKING:
    from keyless.iam.directory import AccountInfo
    from keyless.store.models import ServiceAccount


@dataclass(frozen=True)
class Principal:
    """An authenticated identity as IAM sees it."""

    member: str  # canonical member: "user:a@b.c", "serviceAccount:x@p.iam...", "principal://..."
    member_keys: frozenset[str]
    email: str = ""  # authenticationInfo.principalEmail
    subject: str = ""  # authenticationInfo.principalSubject
    service_account_id: str | None = None  # uniqueId when the principal is a service account
    delegation: tuple[str, ...] = field(default=())  # principals this one acts for (first = origin)

    @property
    def is_service_account(self) -> bool:
        return self.service_account_id is not None


ALL_USERS = "allUsers"
ALL_AUTHENTICATED_USERS = "allAuthenticatedUsers"

ANONYMOUS = Principal(member=ALL_USERS, member_keys=frozenset({ALL_USERS}))


def user_principal(email: str) -> Principal:
    email = email.lower()
    return Principal(member=f"user:{email}", member_keys=member_keys_for_user(email), email=email,
                     subject=f"user:{email}")


def service_account_principal(row: ServiceAccount | AccountInfo) -> Principal:
    return Principal(member=f"serviceAccount:{row.email}", member_keys=member_keys_for_service_account(row.email),
                     email=row.email, subject=f"serviceAccount:{row.email}", service_account_id=row.unique_id)
