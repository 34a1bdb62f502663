"""Reset, snapshot and restore of the whole store (`/keyless/v1/state:*`, issue #22), on the
running server through real HTTP, with Google's clients reading what was restored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.cloud import storage
from google.oauth2.credentials import Credentials

from keyless.pytest_plugin import Keyless, KeylessApiError
from tests.api.helpers import token_for_user
from tests.conftest import KeylessServer, fresh_database_url


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KeylessServer]:
    srv = KeylessServer(tmp_path / "data", fresh_database_url(), "--allow-insecure-issuers")
    yield srv
    srv.stop()


@pytest.fixture
def kl(server: KeylessServer, tmp_path: Path) -> Keyless:
    return Keyless(server.base_url, lambda: server.owner_token, tmp_path)


def _storage(kl: Keyless, project: str) -> storage.Client:
    return storage.Client(project=project, credentials=Credentials(kl.owner_token),
                          client_options=kl.client_options("storage"))


def test_restore_brings_back_rows_and_object_bytes(kl: Keyless, server: KeylessServer) -> None:
    project = kl.project("snap-project")
    sa = kl.service_account(project, "kept-sa")
    bucket = kl.bucket(project, "snap-bucket")
    kl.grant(sa, "roles/storage.objectViewer", f"gs://{bucket}")
    _storage(kl, project.project_id).bucket(bucket).blob("data.txt").upload_from_string(b"before")
    kl.secret(project, "db", b"s3cret")
    name = kl.snapshot("before-change")
    assert name == "snapshots/before-change"

    # change everything after the snapshot: delete the object (its bytes), the secret, add an account
    _storage(kl, project.project_id).bucket(bucket).blob("data.txt").delete()
    kl.call("DELETE", "/secretmanager/v1/projects/snap-project/secrets/db")
    kl.service_account(project, "added-later")

    kl.restore(name)
    client = _storage(kl, project.project_id)
    assert client.bucket(bucket).blob("data.txt").download_as_bytes() == b"before"
    emails = sorted(a["email"] for a in kl.call("GET", "/iam/v1/projects/snap-project/serviceAccounts")["accounts"])
    assert emails == ["kept-sa@snap-project.iam.gserviceaccount.com"]
    access = kl.call("GET", "/secretmanager/v1/projects/snap-project/secrets/db/versions/latest:access")
    assert access["payload"]["data"] == "czNjcmV0"
    policy = client.bucket(bucket).get_iam_policy(requested_policy_version=3)
    assert any(b["role"] == "roles/storage.objectViewer" and sa.member in b["members"] for b in policy.bindings)
    listed = kl.call("GET", "/keyless/v1/snapshots")["snapshots"]
    assert [s["name"] for s in listed] == ["snapshots/before-change"]
    # a snapshot id is taken once; an unknown one is NOT_FOUND; the snapshot can be restored again
    with pytest.raises(KeylessApiError, match="already exists"):
        kl.snapshot("before-change")
    with pytest.raises(KeylessApiError, match="NOT_FOUND"):
        kl.restore("snapshots/nothing")
    kl.call("DELETE", "/keyless/v1/snapshots/before-change")
    assert kl.call("GET", "/keyless/v1/snapshots") == {}


def test_reset_empties_the_world_and_every_cache(kl: Keyless, server: KeylessServer) -> None:
    project = kl.project("reset-project")
    pool = kl.pool(project, "the-pool")
    provider = kl.oidc_provider(pool, "github")
    token = kl.github_token("my-org/my-repo", provider=provider)
    assert kl.exchange(provider, token).status_code == 200  # the provider is now in the exchange's cache
    owner_before = kl.owner_token

    kl.reset()
    # the provider is gone on the hot path too (its cache was dropped with the write)
    refused = kl.exchange(provider, token)
    assert refused.status_code in (400, 404) and refused.json()["error"] == "invalid_target", refused.text
    assert kl.call("GET", "/cloudresourcemanager/v1/projects").get("projects", []) == []
    # keys survive: the owner's token minted before still works, and the owner may start again
    assert kl.owner_token == owner_before
    again = kl.project("reset-project")
    assert again.project_id == "reset-project"
    entries = kl.audit.entries("", project="reset-project")
    assert all("CreateProject" in e["protoPayload"]["methodName"] or "Project" in e["protoPayload"]["methodName"]
               for e in entries), [e["protoPayload"]["methodName"] for e in entries]


def test_only_the_bootstrap_owner(kl: Keyless, server: KeylessServer) -> None:
    project = kl.project("guarded")
    kl.grant("user:admin@example.com", "roles/owner", project)
    admin = token_for_user(server, "admin@example.com")
    for path, body in (("/keyless/v1/state:reset", {}), ("/keyless/v1/state:snapshot", {}),
                       ("/keyless/v1/state:restore", {"snapshot": "snapshots/x"})):
        r = server.call("POST", path, body=body, token=admin)
        assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED", r.text
    assert server.call("POST", "/keyless/v1/state:reset", body={}, token="").status_code == 401
    assert kl.call("GET", "/cloudresourcemanager/v1/projects/guarded")["projectId"] == "guarded"  # nothing reset
    bad = server.call("POST", "/keyless/v1/state:snapshot", body={"snapshotId": "../../etc"})
    assert bad.status_code == 400, bad.text


def test_cli_reset_snapshot_restore(kl: Keyless, server: KeylessServer) -> None:
    kl.project("cli-project")
    made = server.keyless("snapshot", "cli-snap")
    assert made.returncode == 0 and '"snapshots/cli-snap"' in made.stdout, made.stderr
    reset = server.keyless("reset")
    assert reset.returncode == 0, reset.stderr
    assert kl.call("GET", "/cloudresourcemanager/v1/projects").get("projects", []) == []
    restored = server.keyless("restore", "cli-snap")
    assert restored.returncode == 0, restored.stderr
    assert kl.call("GET", "/cloudresourcemanager/v1/projects/cli-project")["projectId"] == "cli-project"


def test_restore_revives_no_console_session_or_spent_link(kl: Keyless, server: KeylessServer) -> None:
    """A snapshot taken while a session was live and a link unspent: after sign-out and the link's
    use, restoring the snapshot must not make either work again."""
    from tests.console.conftest import names, sign_in_link
    from tests.console.test_security import _replay, _session_id, _sign_in_with

    client = httpx.Client(base_url=server.base_url, timeout=30)
    assert _sign_in_with(client, server, token=kl.owner_token).status_code == 303
    session = _session_id(client, server)
    code = sign_in_link(server).split("code=")[1]
    name = kl.snapshot("with-session")
    assert client.post("/console/signout", data={"csrf": client.cookies[names(server).csrf]}).status_code == 303
    used = httpx.Client(base_url=server.base_url, timeout=30)
    assert _sign_in_with(used, server, code=code).status_code == 303

    kl.restore(name)
    assert _replay(server, session).get("/console/api/whoami").status_code == 401
    again = httpx.Client(base_url=server.base_url, timeout=30)
    assert _sign_in_with(again, server, code=code).status_code != 303
