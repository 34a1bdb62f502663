"""The principal a member string names, with the member keys the server gives that identity's
tokens (keyless.iam.members), for the doctor's questions about a member (`explain --principal`,
`access --identity`)."""

from __future__ import annotations

from keyless.errors import InvalidArgument, KeylessError
from keyless.iam.members import (
    ALL_AUTHENTICATED_USERS,
    ALL_USERS,
    Member,
    member_keys_for_federated,
    member_keys_for_gke_workload,
    member_keys_for_service_account,
    parse_member,
    workload_pool_path,
)
from keyless.iam.principal import Principal
from keyless.projects import find_project
from keyless.state import ServerState, service_account_principal, user_principal


def principal_of(state: ServerState, text: str, *, attributes: dict[str, str] | None = None,
                 groups: tuple[str, ...] = (), flag: str = "--identity") -> Principal:
    """A federated subject belongs to attribute and group principal sets only as far as
    `attributes` and `groups` say: the store does not know a token's claims."""
    try:
        m = parse_member(text)
    except KeylessError as exc:
        raise InvalidArgument(f"{flag}: {exc.message}") from None
    if m.is_gke and m.namespace and m.ksa:
        with state.db.read() as s:
            project = find_project(s, m.project_id or "", include_deleted=False)
            number = project.project_number if project else (m.project_number or "")
        base = (f"principal://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/"
                f"{m.project_id}.svc.id.goog/subject/ns/{m.namespace}/sa/{m.ksa}")
        keys = member_keys_for_gke_workload(m.project_id or "", number, m.namespace, m.ksa, None)
        return Principal(member=base, member_keys=keys, subject=m.value)
    if m.kind == "serviceAccount" and m.email:
        account = state.directory.find(m.email)
        if account is not None:
            return service_account_principal(account)
        return Principal(member=m.value, member_keys=member_keys_for_service_account(m.email), email=m.email,
                         subject=m.value, service_account_id="unknown")
    if m.kind == "user" and m.email:
        return user_principal(m.email)
    if m.kind == "principal" and m.pool_type == "workload" and m.subject and m.project_number and m.pool_id:
        keys = member_keys_for_federated(m.project_number, m.pool_id, m.subject, groups, dict(attributes or {}))
        return Principal(member=m.value, member_keys=keys, subject=m.value)
    if m.kind == "principalSet" and m.pool_type == "workload" and m.project_number and m.pool_id:
        return _set_member(m)
    if m.kind in ("group", "domain"):
        return Principal(member=m.value, member_keys=frozenset({m.value}), subject=m.value)
    raise InvalidArgument(f"{flag} {text[:200]!r}: name a serviceAccount:, user:, group:, "
                          "serviceAccount:PROJECT.svc.id.goog[NS/KSA], principal://…/subject/… or "
                          "principalSet://…/attribute.NAME/VALUE member.")


def _set_member(m: Member) -> Principal:
    """Any one identity of a workload pool's principal set (an attribute, a group, the whole pool),
    of which nothing else is known: it matches the set, the pool's `*` and allAuthenticatedUsers,
    and no single subject (what "can a workflow of ORG/REPO do this" asks)."""
    base = workload_pool_path(m.project_number or "", m.pool_id or "")
    keys = {m.value, f"principalSet://{base}/*", ALL_AUTHENTICATED_USERS, ALL_USERS}
    return Principal(member=m.value, member_keys=frozenset(keys), subject=m.value)
