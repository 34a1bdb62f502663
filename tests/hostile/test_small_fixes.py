"""The smaller findings of issue #23 item 10, each as its attack or its mistake."""

from __future__ import annotations

import base64
import configparser
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth import jwt
from google.auth.transport.requests import Request

from tests.conftest import KeylessServer, fresh_database_url

SA = "jwt-sa@my-project.iam.gserviceaccount.com"
OTHER = "other-sa@my-project.iam.gserviceaccount.com"
CRM = "/cloudresourcemanager/v1/projects/my-project"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    server = KeylessServer(tmp_path_factory.mktemp("small") / "data", fresh_database_url())
    assert server.keyless("projects", "create", "my-project", "--number", "123456789").returncode == 0
    for account in ("jwt-sa", "other-sa"):
        r = server.call("POST", "/iam/v1/projects/my-project/serviceAccounts", body={"accountId": account})
        assert r.status_code == 200, r.text
    policy = server.call("POST", f"{CRM}:getIamPolicy", body={}).json()
    policy["bindings"].append({"role": "roles/viewer", "members": [f"serviceAccount:{SA}"]})
    assert server.call("POST", f"{CRM}:setIamPolicy", body={"policy": policy}).status_code == 200
    yield server
    server.stop()


def _key_file(srv: KeylessServer, tmp_path: Path) -> str:
    created = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SA}/keys", body={}).json()
    path = tmp_path / "key.json"
    path.write_bytes(base64.b64decode(created["privateKeyData"]))
    return str(path)


def _jwt(key_file: str, **options: str) -> str:
    creds = jwt.Credentials.from_service_account_file(key_file, audience="https://cloudresourcemanager.googleapis.com/",
                                                      **options)
    creds.refresh(Request())
    token = creds.token
    return token.decode() if isinstance(token, bytes) else str(token)


def test_a_self_signed_jwt_whose_sub_names_another_account_is_refused(srv: KeylessServer, tmp_path: Path) -> None:
    key_file = _key_file(srv, tmp_path)
    assert srv.call("GET", CRM, token=_jwt(key_file)).status_code == 200  # sub = iss: the account itself
    r = srv.call("GET", CRM, token=_jwt(key_file, subject=OTHER))
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED", r.text


def test_a_jwt_bearer_grant_for_another_subject_is_refused(srv: KeylessServer, tmp_path: Path) -> None:
    from google.oauth2 import service_account

    creds = service_account.Credentials.from_service_account_file(
        _key_file(srv, tmp_path), scopes=["https://www.googleapis.com/auth/cloud-platform"],
        subject=OTHER).with_token_uri(f"{srv.base_url}/oauth2/token")
    with pytest.raises(Exception, match="unauthorized_client"):
        creds.refresh(Request())


def test_generate_id_token_with_a_1_mb_audience_says_so(srv: KeylessServer) -> None:
    r = srv.call("POST", f"/iamcredentials/v1/projects/-/serviceAccounts/{SA}:generateIdToken",
                 body={"audience": "a" * (1024 * 1024)})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == "The audience is too long: at most 2048 characters."
    r = srv.call("POST", f"/iamcredentials/v1/projects/-/serviceAccounts/{SA}:generateIdToken", body={})
    assert r.status_code == 400 and r.json()["error"]["message"] == "Audience required."


@pytest.mark.parametrize("size", ["100000000000000000000000", "2147483648", "-2147483649"])
def test_a_page_size_beyond_int32_is_400(srv: KeylessServer, size: str) -> None:
    r = srv.call("GET", "/iam/v1/projects/my-project/serviceAccounts", params={"pageSize": size})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"] == f"Invalid value at 'page_size' (TYPE_INT32), \"{size}\""
    r = srv.call("GET", "/iam/v1/projects/my-project/serviceAccounts", params={"pageSize": "2147483647"})
    assert r.status_code == 200 and len(r.json()["accounts"]) == 2


def _keyless(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLESS_", "CLOUDSDK_"))}
    env.update(HOME=str(home), CLOUDSDK_CONFIG=str(home / "gcloud"))
    return subprocess.run([sys.executable, "-m", "keyless.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_token_github_with_only_a_server_url_does_not_sign_with_the_default_keys(srv: KeylessServer,
                                                                                tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    done = _keyless("token", "github", "--server", srv.base_url, "--repository", "my-org/my-repo", home=home)
    assert done.returncode == 1 and "--data-dir" in done.stderr, done.stderr
    assert not (home / ".keyless").exists()  # no database or keys made in the default data dir
    done = _keyless("token", "github", "--server", srv.base_url, "--data-dir", str(srv.data_dir),
                    "--repository", "my-org/my-repo", *(["--database", srv.database_url] if srv.database_url else []),
                    home=home)
    assert done.returncode == 0 and done.stdout.count(".") == 2, done.stderr


def test_configure_gcloud_leaves_prompts_as_gcloud_has_them(srv: KeylessServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()

    def configured(*flags: str) -> configparser.ConfigParser:
        done = _keyless("configure-gcloud", "--server", srv.base_url, "--data-dir", str(srv.data_dir), *flags,
                        home=home)
        assert done.returncode == 0, done.stderr
        cfg = configparser.ConfigParser()
        cfg.read(home / "gcloud" / "configurations" / "config_keyless")
        return cfg

    assert not configured().has_option("core", "disable_prompts")
    assert configured("--disable-prompts").get("core", "disable_prompts") == "True"


def test_a_stray_trailing_slash_is_not_found_not_redirected_to_the_callers_host(srv: KeylessServer) -> None:
    """Google's frontends answer 404; a redirect built from the request's Host header would send
    the client (or a cache in front of Keyless) to whatever host the caller named."""
    for path in ("/iam/v1/projects/my-project/serviceAccounts/", f"{CRM}/", "/storage/v1/b/",
                 "/secretmanager/v1/projects/my-project/secrets/"):
        r = srv.call("GET", path, headers={"Host": "attacker.example"})
        assert r.status_code == 404 and "location" not in r.headers, (path, r.status_code, r.headers)
        assert r.json()["error"]["status"] == "NOT_FOUND", r.text
