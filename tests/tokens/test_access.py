"""Access tokens: verified without the store, tamper-evident, expiring, rotated keys still verify."""

from __future__ import annotations

import time

import pytest

from keyless.errors import Unauthenticated
from keyless.state import ServerState, user_principal
from keyless.tokens.keys import ACCESS, ID


def test_round_trip_carries_principal_and_scopes(state: ServerState) -> None:
    p = user_principal("alice@example.com")
    tok = state.tokens.mint(p, ["https://www.googleapis.com/auth/cloud-platform"], 3600)
    assert tok.token.startswith("ya29.")
    got = state.tokens.verify(tok.token)
    assert got.principal.member == "user:alice@example.com"
    assert "user:alice@example.com" in got.principal.member_keys
    assert got.scopes == ("https://www.googleapis.com/auth/cloud-platform",)
    assert 3590 <= got.expires_in <= 3600


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # tag
    lambda t: t.replace(".", ".x", 2),  # payload
    lambda t: "ya29." + "0" * 40 + t[5 + 40:],  # unknown kid
    lambda t: t[5:],  # no prefix
    lambda t: "ya29." + "a" * 20000,  # oversize
    lambda t: "ya29.a.b",  # wrong shape
])
def test_tampered_tokens_are_refused(state: ServerState, mutate) -> None:
    tok = state.tokens.mint(user_principal("alice@example.com"), [], 3600).token
    with pytest.raises(Unauthenticated):
        state.tokens.verify(mutate(tok))


def test_expired_token_is_refused(state: ServerState) -> None:
    tok = state.tokens.mint(user_principal("alice@example.com"), [], 60, now=int(time.time()) - 120)
    with pytest.raises(Unauthenticated):
        state.tokens.verify(tok.token)


def test_rotation_keeps_old_tokens_valid_and_signs_with_the_new_key(state: ServerState) -> None:
    old = state.tokens.mint(user_principal("alice@example.com"), [], 3600).token
    new_kid = state.keys.rotate(ACCESS)
    new = state.tokens.mint(user_principal("alice@example.com"), [], 3600).token
    assert new.split(".")[1] == new_kid != old.split(".")[1]
    assert state.tokens.verify(old).principal.email == "alice@example.com"
    assert state.tokens.verify(new).principal.email == "alice@example.com"


def test_keys_persist_across_processes(state: ServerState) -> None:
    """A second ServerState on the same store (another worker) verifies tokens the first minted."""
    tok = state.tokens.mint(user_principal("alice@example.com"), [], 3600).token
    other = ServerState(state.settings, db=None)
    try:
        assert other.tokens.verify(tok).principal.email == "alice@example.com"
    finally:
        other.db.dispose()


def test_jwks_publishes_only_public_rsa_keys(state: ServerState) -> None:
    jwks = state.keys.jwks()
    assert jwks["keys"] and all(k["kty"] == "RSA" and "d" not in k and k["alg"] == "RS256" for k in jwks["keys"])
    assert all(state.keys.get(k["kid"]).purpose == ID for k in jwks["keys"])


def test_tokeninfo_and_jwks_over_http(server) -> None:
    import httpx
    info = httpx.get(f"{server.base_url}/oauth2/v3/tokeninfo", params={"access_token": server.owner_token}).json()
    assert info["email"] == "owner@keyless.dev" and "cloud-platform" in info["scope"]
    assert 0 < int(info["expires_in"]) <= 24 * 3600
    bad = httpx.get(f"{server.base_url}/oauth2/v3/tokeninfo", params={"access_token": "ya29.nope"})
    assert bad.status_code == 400 and bad.json() == {"error": "invalid_token", "error_description": "Invalid Value"}
    jwks = httpx.get(f"{server.base_url}/oauth2/v3/certs").json()
    assert jwks["keys"] and all("n" in k and "d" not in k for k in jwks["keys"])


def test_made_up_key_ids_do_not_each_query_the_store(state: ServerState, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of forged tokens with random kids must not turn into one store query each."""
    state.tokens.mint(user_principal("alice@example.com"), [], 3600)  # keys loaded
    loads: list[int] = []
    original = state.keys._load_reusing
    monkeypatch.setattr(state.keys, "_load_reusing", lambda old: (loads.append(1), original(old))[1])
    for i in range(200):
        with pytest.raises(Unauthenticated):
            state.tokens.verify(f"ya29.{i:040x}.e30.AAAA")
    assert len(loads) <= 1
    # a key rotated in by another process is still found (through the revision refresh)
    other = ServerState(state.settings, db=None)
    try:
        token = other.tokens.mint(user_principal("bob@example.com"), [], 3600).token
        new_kid = other.keys.rotate("access")
        token = other.tokens.mint(user_principal("bob@example.com"), [], 3600).token
        assert token.split(".")[1] == new_kid
        import time as _time
        _time.sleep(0.06)  # past the revision check window
        assert state.tokens.verify(token).principal.email == "bob@example.com"
    finally:
        other.db.dispose()
