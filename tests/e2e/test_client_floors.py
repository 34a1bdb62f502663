"""The oldest Google auth libraries that take Keyless's `token_url` (issue #19, README "Supported
clients"), each installed from its registry into a throwaway folder and run unmodified with the
credentials file `keyless quickstart` writes (a GitHub Actions job's token, exchanged at Keyless's
STS, then deploy-sa impersonated at its IAM Credentials):

- google-auth (Python) 2.17.0: 2.7.0-2.16.0 refuse any token URL that is not Google's
  (`external_account.Credentials.validate_token_url`, removed in 2.16.1 and for good in 2.17.0;
  ../shared/research/google-auth-clients.md).
- google-auth-library (Node.js) 8.8.0: 7.7.0-8.7.0 refuse it (`BaseExternalAccountClient.
  validateGoogleAPIsUrl`: `"URL" is not a valid token url.`), 8.8.0 removed the check; 7.0.0-7.6.x,
  before it was added, take it too.
A client matrix: the server's side is the same on both stores, so it runs on the SQLite leg only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KeylessServer, fresh_database_url
from tests.e2e import nodejs
from tests.e2e.test_token_exchange import DEPLOY_SA

pytestmark = pytest.mark.store_independent

# Application Default Credentials as a workflow step after google-github-actions/auth has them:
# GOOGLE_APPLICATION_CREDENTIALS and GOOGLE_CLOUD_PROJECT set. Scopes are added after default():
# before 2.23.0, default(scopes=...) asks https://cloudresourcemanager.googleapis.com for the
# project of an external account even when GOOGLE_CLOUD_PROJECT is set (offline: TransportError;
# online: the federated token goes to Google, which refuses it), research section 0.2.
PYTHON_CLIENT = r'''
import json
import google.auth, google.auth.transport.requests
creds, project = google.auth.default()
creds = creds.with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
creds.refresh(google.auth.transport.requests.Request())
print(json.dumps({"version": google.auth.__version__, "class": type(creds).__module__, "project": project,
                  "token": creds.token}))
'''


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    server = KeylessServer(tmp_path_factory.mktemp("floors") / "data", fresh_database_url(), "--allow-insecure-issuers")
    server.credentials = server.data_dir.parent / "credentials.json"  # type: ignore[attr-defined]
    made = server.keyless("quickstart", "--output-file", str(server.credentials))  # type: ignore[attr-defined]
    assert made.returncode == 0, made.stderr
    yield server
    server.stop()


def email_of(srv: KeylessServer, token: str) -> str:
    r = httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": token})
    assert r.status_code == 200, r.text
    return str(r.json().get("email", ""))


def test_google_auth_2_17_0(srv: KeylessServer, tmp_path: Path) -> None:
    folder = tmp_path / "venv"
    venv.create(folder, with_pip=True)
    python = str(folder / "bin" / "python")
    # from PyPI through pip's cache; requests is google-auth's transport
    installed = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                "google-auth==2.17.0", "requests"], capture_output=True, text=True, timeout=300)
    if installed.returncode != 0:
        pytest.skip(f"pip could not install google-auth 2.17.0: {installed.stderr[-500:]}")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "PYTHON"))},
           "GOOGLE_APPLICATION_CREDENTIALS": str(srv.credentials), "GOOGLE_CLOUD_PROJECT": "my-project"}  # type: ignore[attr-defined]
    run = subprocess.run([python, "-c", PYTHON_CLIENT], capture_output=True, text=True, timeout=120, env=env,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)
    assert out["version"] == "2.17.0" and out["class"] == "google.auth.identity_pool"
    assert out["project"] == "my-project"
    assert email_of(srv, out["token"]) == DEPLOY_SA
    assert sys.executable != python  # the suite's own google-auth was not the one run


def node_client(tmp_path: Path, version: str) -> Path:
    """google-auth-library@VERSION installed by npm into its own folder, with google_auth.mjs beside it."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("node and npm are not installed: the Node.js floor needs Node.js >= 18 and npm on PATH")
    folder = tmp_path / f"google-auth-library-{version}"
    folder.mkdir()
    (folder / "package.json").write_text(json.dumps({"private": True, "type": "module"}))
    installed = subprocess.run([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline",
                                "--loglevel=error", f"google-auth-library@{version}"], cwd=folder,
                               capture_output=True, text=True, timeout=300)
    if installed.returncode != 0:
        pytest.skip(f"npm could not install google-auth-library {version}: {installed.stderr[-500:]}")
    shutil.copy(nodejs.NODE_DIR / "google_auth.mjs", folder / "google_auth.mjs")
    return folder


def run_node(folder: Path, payload: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCLOUD_", "NODE_"))}
    result = subprocess.run([node, str(folder / "google_auth.mjs"), json.dumps(payload)], env={**base, **(env or {})},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("version", ["7.0.0", "8.8.0"])
def test_google_auth_library_takes_the_token_url(srv: KeylessServer, tmp_path: Path, version: str) -> None:
    folder = node_client(tmp_path, version)
    installed = json.loads((folder / "node_modules" / "google-auth-library" / "package.json").read_text())
    assert installed["version"] == version
    out = run_node(folder, {"keyFilename": str(srv.credentials)})  # type: ignore[attr-defined]
    assert out.get("client") == "IdentityPoolClient", out
    assert email_of(srv, out["token"]) == DEPLOY_SA


def test_google_auth_library_8_7_0_refuses_it(srv: KeylessServer, tmp_path: Path) -> None:
    """The last version with the check: the floor of the 8.x line is 8.8.0. (Through ADC: given as
    `keyFilename`, 8.7.0 swallows the refusal and retries the file as a PEM key.)"""
    path = str(srv.credentials)  # type: ignore[attr-defined]
    out = run_node(node_client(tmp_path, "8.7.0"), {}, env={"GOOGLE_APPLICATION_CREDENTIALS": path})
    token_url = json.loads(Path(path).read_text())["token_url"]
    assert f'"{token_url}" is not a valid token url.' in out["error"]["message"], out
