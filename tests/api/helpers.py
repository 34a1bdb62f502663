"""Test helpers that act on a running server's store directly (as a second worker would)."""

from __future__ import annotations

from keyless.config import Settings
from keyless.iam.service_accounts import find_by_email
from keyless.state import ServerState, service_account_principal, user_principal
from keyless.tokens.access import CLOUD_PLATFORM
from tests.conftest import KeylessServer


def server_state(srv: KeylessServer) -> ServerState:
    """One state per server for the whole test session (a second worker on the same store)."""
    state = getattr(srv, "_state", None)
    if state is None:
        state = ServerState(Settings(data_dir=srv.data_dir, database_url=srv.database_url))
        srv._state = state  # type: ignore[attr-defined]
    return state


def token_for_service_account(srv: KeylessServer, email: str, lifetime: int = 3600) -> str:
    st = server_state(srv)
    with st.db.read() as s:
        row = find_by_email(s, email)
    assert row is not None, email
    return st.tokens.mint(service_account_principal(row), [CLOUD_PLATFORM], lifetime).token


def token_for_user(srv: KeylessServer, email: str) -> str:
    return server_state(srv).tokens.mint(user_principal(email), [CLOUD_PLATFORM], 3600).token


def audit_data_access(srv: KeylessServer, project: str, configs: dict[str, list[str]]) -> None:
    """Set the project's auditConfigs ({service: [log types]}) through setIamPolicy, as a user does
    with `gcloud projects set-iam-policy` (bindings untouched)."""
    path = f"/cloudresourcemanager/v1/projects/{project}"
    policy = srv.call("POST", path + ":getIamPolicy", body={"options": {"requestedPolicyVersion": 3}}).json()
    policy["auditConfigs"] = [{"service": service, "auditLogConfigs": [{"logType": t} for t in types]}
                              for service, types in configs.items()]
    r = srv.call("POST", path + ":setIamPolicy", body={"policy": policy, "updateMask": "bindings,etag,auditConfigs"})
    assert r.status_code == 200, r.text
