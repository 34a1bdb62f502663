"""Shared fixtures: a real `keyless serve` on loopback (SQLite, or PostgreSQL when the suite
runs its PostgreSQL leg), its owner token, and the real gcloud pointed at it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.config import Settings
from keyless.state import ServerState


def pytest_configure(config: pytest.Config) -> None:
    """Keep the suite out of the user's ~/.keyless: every server records itself in the default data
    dir too (keyless.discovery), and commands run without flags read it. Tests that exercise the
    default name their own KEYLESS_DATA_DIR."""
    import tempfile

    for name in ("KEYLESS_SERVER", "KEYLESS_DATABASE_URL", "KEYLESS_TLS_PORT", "KEYLESS_PUBLIC_URL"):
        os.environ.pop(name, None)
    os.environ["KEYLESS_DATA_DIR"] = tempfile.mkdtemp(prefix="keyless-test-home-")


# The test files that take longest (each is one xdist work unit: --dist loadfile), longest first:
# scripts/test passes --no-loadscope-reorder, so files start in collection order and these go
# first; otherwise xdist starts the files with the most tests first and these few-test, long files
# (gcloud, a container build, pods, browsers) ran last, one worker busy long after the others
# had finished (2026-12-07: the SQLite leg's last 3 minutes). A prefix names a file or a folder.
SLOWEST_FIRST = (
    "tests/container/", "tests/e2e/test_gcloud_service_accounts.py", "tests/e2e/test_gcloud_workload_identity_pools.py",
    "tests/e2e/test_kubectl.py", "tests/e2e/test_gcloud_projects_iam.py", "tests/e2e/test_ci_recipe.py",
    "tests/e2e/test_secret_manager.py", "tests/e2e/test_gcloud_container.py", "tests/e2e/test_github_action.py",
    "tests/test_world.py", "tests/e2e/test_storage.py", "tests/e2e/test_client_floors.py", "tests/plugin/",
    "tests/console/", "tests/e2e/test_gke", "tests/e2e/", "tests/doctor/", "tests/gke/", "tests/hostile/",
    "tests/pubsub/", "tests/tls/", "tests/store/",
)


def _slowness(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return next((i for i, prefix in enumerate(SLOWEST_FIRST) if path.startswith(prefix)), len(SLOWEST_FIRST))


# Store-independent files that run once on the PostgreSQL leg instead, when both legs run at once
# (scripts/test says so in KEYLESS_TEST_LEGS): the gcloud and client matrices all fell on the
# SQLite leg, which ended minutes after the other; this one evens the two legs' wall time.
ON_POSTGRES_LEG = ("tests/e2e/test_gcloud_workload_identity_pools.py", "tests/e2e/test_gcloud_container.py",
                   "tests/e2e/test_github_action.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest files first (SLOWEST_FIRST; a stable sort keeps each file's tests together and in
    order). Tests marked `store_independent` (pure functions with no store, and client matrices such
    as kubectl versions, Node.js clients and the browser, whose server side is the same code on both
    stores and is run on PostgreSQL by the rest of the suite) run once: on the SQLite leg, or, for
    the files in ON_POSTGRES_LEG when both legs run at once, on the PostgreSQL leg. The other leg
    deselects (does not skip) them, which keeps CI within its time (README)."""
    items.sort(key=_slowness)
    both = {"sqlite", "postgres"} <= set(os.environ.get("KEYLESS_TEST_LEGS", "").split())
    on_postgres = os.environ.get("KEYLESS_TEST_DATABASE") == "postgres"

    def runs_here(item: pytest.Item) -> bool:
        if item.get_closest_marker("store_independent") is None:
            return True
        moved = both and item.nodeid.split("::", 1)[0] in ON_POSTGRES_LEG
        return moved == on_postgres

    keep = [i for i in items if runs_here(i)]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if not runs_here(i)])
        items[:] = keep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database_url() -> str | None:
    """None for SQLite (the server's default); a new empty PostgreSQL database otherwise."""
    if os.environ.get("KEYLESS_TEST_DATABASE") != "postgres":
        return None
    base = os.environ["KEYLESS_TEST_POSTGRES_URL"]
    import psycopg

    name = "keyless_" + uuid.uuid4().hex[:12]
    conninfo = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


class KeylessServer:
    """`keyless serve` in a subprocess, as a user would run it."""

    def __init__(self, data_dir: Path, database_url: str | None, *extra: str) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        cmd = [sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), *self.extra]
        if self.database_url:
            cmd += ["--database", self.database_url]
        self.log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        # Generous: under xdist both CI legs' workers start servers at once on two CPUs.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keyless serve exited: {self.logs()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"keyless serve did not start: {self.logs()}")

    def stop(self) -> None:
        state = getattr(self, "_state", None)
        if state is not None:  # the tests' own view of this store (tests/api/helpers.server_state)
            state.db.dispose()
            self._state = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def logs(self) -> str:
        return (self.data_dir.parent / f"server-{self.port}.log").read_text(errors="replace")[-4000:]

    @property
    def owner_token(self) -> str:
        return (self.data_dir / "owner.token").read_text().strip()

    def call(self, method: str, path: str, *, token: str | None = None, body: Any = None,
             raw: bytes | None = None, headers: dict[str, str] | None = None, params: Any = None) -> httpx.Response:
        """One HTTP request; authenticated as the owner unless `token=""`."""
        h = dict(headers or {})
        tok = self.owner_token if token is None else token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        content = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if content is not None:
            h.setdefault("Content-Type", "application/json")
        return httpx.request(method, self.base_url + path, content=content, headers=h, params=params, timeout=30)

    def keyless(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the `keyless` CLI against this server's store."""
        cmd = [sys.executable, "-m", "keyless.cli.main", *args, "--data-dir", str(self.data_dir)]
        if self.database_url:
            cmd += ["--database", self.database_url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KeylessServer]:
    srv = KeylessServer(tmp_path / "data", fresh_database_url())
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    srv = KeylessServer(tmp_path_factory.mktemp("keyless") / "data", fresh_database_url())
    yield srv
    srv.stop()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ServerState]:
    """The domain without HTTP, on the same kind of database as the server fixtures."""
    st = ServerState(Settings(data_dir=tmp_path / "data", database_url=fresh_database_url()))
    st.bootstrap()
    yield st
    st.db.dispose()


GCLOUD = shutil.which("gcloud")


class Gcloud:
    """The real gcloud CLI, with its own config dir and the `keyless` named configuration."""

    def __init__(self, server: KeylessServer, config_dir: Path, project: str = "my-project") -> None:
        self.server = server
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("CLOUDSDK_", "GOOGLE_APPLICATION_CREDENTIALS"))}
        self.env["CLOUDSDK_CONFIG"] = str(config_dir)
        result = subprocess.run(
            [sys.executable, "-m", "keyless.cli.main", "configure-gcloud", "--server", server.base_url,
             "--project", project, "--data-dir", str(server.data_dir), "--disable-prompts"],
            capture_output=True, text=True, env=self.env, timeout=60)
        assert result.returncode == 0, result.stderr

    def run(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        assert GCLOUD is not None
        result = subprocess.run([GCLOUD, "--configuration", "keyless", *args], capture_output=True, text=True,
                                env=self.env, input=stdin, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"gcloud {' '.join(args)} failed ({result.returncode}):\n{result.stderr}\n"
                                 f"server log:\n{self.server.logs()}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--format=json").stdout or "null")


def _need_gcloud() -> None:
    if GCLOUD is None:
        pytest.skip("gcloud is not installed: the gcloud end-to-end tests need the Google Cloud CLI on PATH")


@pytest.fixture
def gcloud(server: KeylessServer, tmp_path: Path) -> Gcloud:
    _need_gcloud()
    return Gcloud(server, tmp_path / "gcloud")


@pytest.fixture(scope="module")
def module_gcloud(module_server: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> Gcloud:
    _need_gcloud()
    return Gcloud(module_server, tmp_path_factory.mktemp("gcloud"))
