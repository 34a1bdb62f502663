"""The push side of Pub/Sub for this server (keyless.pubsub.push delivers): the process's push
thread, whose ID tokens come from the same signer as iamcredentials generateIdToken, and the
`iam.serviceAccounts.actAs` check Google makes on whoever sets a push config with an oidcToken
(https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions).

Google also wants, for projects created before 8 April 2021, the Pub/Sub service agent to hold
roles/iam.serviceAccountTokenCreator on the account; Keyless signs as Google's later projects do,
with no service agent in between, so only the caller's actAs is checked.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import select

from keyless.api.http import Call
from keyless.errors import PermissionDenied
from keyless.iam.credentials import id_token_for, may_act_as
from keyless.pubsub import names
from keyless.pubsub.push import Pusher
from keyless.pubsub.push_config import service_account_of
from keyless.state import ServerState
from keyless.store.models import PsSubscription

ACT_AS = "iam.serviceAccounts.actAs"
_PUSHERS: weakref.WeakKeyDictionary[ServerState, Pusher] = weakref.WeakKeyDictionary()


def pusher_of(state: ServerState) -> Pusher:
    """The server's push thread (started on first use)."""
    pusher = _PUSHERS.get(state)
    if pusher is None:
        def sign(email: str, audience: str) -> str | None:
            account = state.directory.find(email)
            if account is None or account.disabled:
                return None
            return id_token_for(state.keys, account, audience, include_email=True)

        pusher = _PUSHERS.setdefault(state, Pusher(state.db, sign))
        pusher.start()
    return pusher


def stop_pusher(state: ServerState) -> None:
    pusher = _PUSHERS.pop(state, None)
    if pusher is not None:
        pusher.stop()


def push_subscriptions_exist(state: ServerState) -> bool:
    with state.db.read() as s:
        return any((body or {}).get("pushConfig") for body in s.scalars(select(PsSubscription.body)))


def require_act_as(call: Call, push: dict[str, Any] | None) -> None:
    """The caller may attach `push`'s service account: it holds actAs on it (a missing account is
    refused alike, so the answer says nothing of which accounts exist)."""
    email = service_account_of(push or {})
    if email is None:
        return
    account = call.state.directory.find(email)
    granted = account is not None and may_act_as(call.state.authz, call.principal, account, ACT_AS).granted
    if call.record is not None:
        call.record.authorize(f"projects/-/serviceAccounts/{email}", ACT_AS, granted)
    if not granted:
        raise PermissionDenied(names.DENIED)
