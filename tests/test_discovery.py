"""Commands find their server (keyless.discovery): a `keyless serve` on a non-default port, data
dir and TLS port is used by every other command run with no flags; --server / $KEYLESS_SERVER
override it alike; a stopped or killed server is not used, and the error says how to start one."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import KeylessServer, free_port, fresh_database_url

# How the CLI finds a running server (server.json, --server, KEYLESS_SERVER): no store involved.
pytestmark = pytest.mark.store_independent


def keyless(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyless.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def claims(jwt: str) -> dict[str, object]:
    payload = jwt.strip().split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default data dir of this test (what ~/.keyless is to a user)."""
    default = tmp_path / "home-keyless"
    monkeypatch.setenv("KEYLESS_DATA_DIR", str(default))
    return default


@pytest.fixture
def running(tmp_path: Path, home: Path) -> Iterator[KeylessServer]:
    srv = KeylessServer(tmp_path / "elsewhere", fresh_database_url(), "--tls-port", str(free_port()),
                        "--allow-insecure-issuers")
    yield srv
    srv.stop()


def test_every_command_finds_the_running_server(running: KeylessServer, home: Path, tmp_path: Path) -> None:
    record = json.loads((home / "server.json").read_text())
    assert record["url"] == running.base_url and record["data_dir"] == str(running.data_dir.resolve())
    assert (home / "server.json").stat().st_mode & 0o777 == 0o600  # it may name a database URL
    assert json.loads((running.data_dir / "server.json").read_text()) == record

    token = keyless("token", "github", "--repository", "my-org/my-repo")
    assert token.returncode == 0, token.stderr
    assert claims(token.stdout)["iss"] == f"{running.base_url}/idp/github"  # not the default port's

    owner = keyless("token", "owner")  # the server's store (its data dir, or its PostgreSQL database)
    assert owner.returncode == 0, owner.stderr
    info = httpx.get(f"{running.base_url}/oauth2/v3/tokeninfo", params={"access_token": owner.stdout.strip()})
    assert info.status_code == 200 and info.json()["email"] == "owner@keyless.dev"

    env = keyless("env")
    assert f"SSL_CERT_FILE={running.data_dir.resolve()}/tls/bundle.pem" in env.stdout, env.stdout + env.stderr

    gcloud_dir = tmp_path / "gcloud"
    configured = keyless("configure-gcloud", env={"CLOUDSDK_CONFIG": str(gcloud_dir)})
    assert configured.returncode == 0, configured.stderr
    config = (gcloud_dir / "configurations" / "config_keyless").read_text()
    assert f"iam = {running.base_url}/iam/" in config
    assert f"access_token_file = {running.data_dir.resolve()}/owner.token" in config

    audit = keyless("audit", "read", "--project", "no-such-project")  # reached the server, which answers
    assert audit.returncode == 1 and "Project 'no-such-project' not found" in audit.stderr, audit.stderr


def test_server_flag_and_environment_override_alike(running: KeylessServer) -> None:
    other = f"http://127.0.0.1:{free_port()}"
    by_env = keyless("token", "github", "--repository", "o/r", "--data-dir", str(running.data_dir),
                     *(["--database", running.database_url] if running.database_url else []),
                     env={"KEYLESS_SERVER": other})
    by_flag = keyless("token", "github", "--repository", "o/r", "--server", other, "--data-dir", str(running.data_dir),
                      *(["--database", running.database_url] if running.database_url else []))
    for result in (by_env, by_flag):
        assert result.returncode == 0, result.stderr
        assert claims(result.stdout)["iss"] == f"{other}/idp/github"


def test_no_server_is_one_line_naming_the_command_to_start_one(running: KeylessServer, home: Path) -> None:
    assert running.proc is not None
    running.proc.send_signal(signal.SIGTERM)
    running.proc.wait(15)
    assert not (home / "server.json").exists() and not (running.data_dir / "server.json").exists()
    started = time.monotonic()
    result = keyless("token", "github", "--repository", "my-org/my-repo")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "no running Keyless server found" in result.stderr and "keyless serve" in result.stderr
    assert time.monotonic() - started < 30


def test_a_killed_servers_record_is_ignored(running: KeylessServer, home: Path) -> None:
    assert running.proc is not None
    running.proc.send_signal(signal.SIGKILL)
    running.proc.wait(15)
    assert (home / "server.json").exists()  # nobody removed it
    result = keyless("quickstart")
    assert result.returncode == 1 and "no running Keyless server found" in result.stderr, result.stderr


def test_a_record_that_is_not_one_is_ignored(home: Path) -> None:
    home.mkdir(parents=True)
    for text in ("{not json", json.dumps({"url": "http://127.0.0.1:1", "pid": "1"})):
        (home / "server.json").write_text(text)
        result = keyless("whoami")
        assert result.returncode == 1 and "no running Keyless server found" in result.stderr, result.stderr
