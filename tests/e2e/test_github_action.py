"""google-github-actions/auth v3, unmodified, run as a GitHub runner runs it (issue #19): `node
dist/main/index.js` with its inputs as INPUT_* variables, the runner's files, and the job's
ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN from Keyless's GitHub Actions token endpoint; then the steps a
workflow runs after it (gcloud with CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE, google-cloud-storage in
Python and Node with GOOGLE_APPLICATION_CREDENTIALS) and the action's post step.

The action reaches Keyless either through its endpoint overrides (GHA_ENDPOINT_OVERRIDE_sts and
_iamcredentials; `iam` stays Google's, since the STS audience is built from its host) or, unchanged,
as Google's hosts of the keyless.test universe over TLS (its `universe` input, Keyless's CA in
NODE_EXTRA_CA_CERTS, the hosts `keyless env` writes, in a private mount namespace as
test_node_clients.py). The action is in ../shared/clients, beside the repository (as CI clones it)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.api.helpers import audit_data_access
from tests.conftest import Gcloud, KeylessServer, _need_gcloud, free_port, fresh_database_url
from tests.e2e import nodejs
from tests.e2e.test_audit_logs import wait_for
from tests.e2e.test_token_exchange import AUDIENCE, DEPLOY_SA, NUMBER, POOL, PROVIDER, REPO_SET

ACTION = next((p for p in (Path(__file__).resolve().parents[3] / "shared" / "clients" / "google-github-actions-auth",
                           Path("/work/shared/clients/google-github-actions-auth")) if (p / "action.yml").exists()),
              None)
NODE = shutil.which("node")
pytestmark = [pytest.mark.skipif(ACTION is None or NODE is None, reason=(
    "needs node on PATH and google-github-actions/auth in ../shared/clients/google-github-actions-auth "
    "beside the repository")),
    pytest.mark.store_independent]  # a client's side of the wire (tests/api/test_sts_wire.py runs on both stores)
needs_namespaces = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                      reason="needs root and unshare(1) to give node its own /etc/hosts")

UNIVERSE = "keyless.test"
REPOSITORY = "my-org/my-repo"
EXCHANGE = "google.identity.sts.v1.SecurityTokenService.ExchangeToken"
ID_AUDIENCE = "https://my-service.example.com"


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    """Seed 001 (`keyless quickstart`); deploy-sa may read the project, and mint ID tokens for the
    repository's principal set; my-bucket/data.txt readable by both; Data Access logs on."""
    tls_port = free_port()
    server = KeylessServer(tmp_path_factory.mktemp("action") / "data", fresh_database_url(), "--allow-insecure-issuers",
                           "--tls-port", str(tls_port), "--universe-domain", UNIVERSE)
    server.tls_port = tls_port  # type: ignore[attr-defined]
    made = server.keyless("quickstart", "--output-file", str(server.data_dir.parent / "quickstart.json"))
    assert made.returncode == 0, made.stderr
    policy = ok(server.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy", body={}))
    policy["bindings"].append({"role": "roles/viewer", "members": [f"serviceAccount:{DEPLOY_SA}"]})
    ok(server.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy", body={"policy": policy}))
    sa_policy = ok(server.call("POST", f"/iam/v1/projects/-/serviceAccounts/{DEPLOY_SA}:getIamPolicy", body={}))
    sa_policy.setdefault("bindings", []).append({"role": "roles/iam.serviceAccountOpenIdTokenCreator",
                                                 "members": [REPO_SET]})
    ok(server.call("POST", f"/iam/v1/projects/-/serviceAccounts/{DEPLOY_SA}:setIamPolicy", body={"policy": sa_policy}))
    audit_data_access(server, "my-project", {"sts.googleapis.com": ["ADMIN_READ"], "iam.googleapis.com": ["DATA_READ"],
                                             "storage.googleapis.com": ["DATA_READ"]})
    ok(server.call("POST", "/storage/v1/b", params={"project": "my-project"}, body={"name": "my-bucket"}))
    ok(server.call("POST", "/upload/storage/v1/b/my-bucket/o", params={"uploadType": "media", "name": "data.txt"},
                   raw=b"hello from my-bucket", headers={"Content-Type": "text/plain"}))
    bucket_policy = ok(server.call("GET", "/storage/v1/b/my-bucket/iam"))
    bucket_policy["bindings"].append({"role": "roles/storage.objectViewer",
                                      "members": [REPO_SET, f"serviceAccount:{DEPLOY_SA}"]})
    ok(server.call("PUT", "/storage/v1/b/my-bucket/iam", body=bucket_policy))
    yield server
    server.stop()


@dataclass
class Job:
    """One job's runner: its workspace and files, and the environment later steps see."""

    folder: Path
    env: dict[str, str]  # the job's environment (the runner's variables and the id-token request)

    def file(self, name: str) -> Path:
        return self.folder / name

    def read(self, name: str) -> dict[str, str]:
        """A runner file command's `NAME<<DELIMITER ... DELIMITER` entries (actions/core)."""
        found = re.findall(r"^(.+?)<<(ghadelimiter_[0-9a-f-]+)\n(.*?)\n\2$", self.file(name).read_text(), re.M | re.S)
        return {name: value for name, _, value in found}

    def step_env(self) -> dict[str, str]:
        """What a later step of the job sees: the job's variables and what GITHUB_ENV exported."""
        return {**self.env, **self.read("env")}


def new_job(srv: KeylessServer, tmp_path: Path, ref: str) -> Job:
    folder = tmp_path / "runner"
    (folder / "workspace").mkdir(parents=True)
    (folder / "workspace" / "README.md").write_text("checked out\n")  # as after actions/checkout
    (folder / "temp").mkdir()
    for name in ("output", "env", "state", "path", "summary"):
        (folder / name).write_text("")
    printed = srv.keyless("token", "github-actions-env", "--repository", REPOSITORY, "--ref", ref,
                          "--server", srv.base_url)
    assert printed.returncode == 0, printed.stderr
    request = dict(line.split("=", 1) for line in printed.stdout.splitlines())
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("GOOGLE_", "GCLOUD_", "CLOUDSDK_", "GRPC_", "NODE_", "INPUT_", "STATE_", "GITHUB_"))}
    env = {**base, **request, "GITHUB_ACTIONS": "true", "CI": "true", "RUNNER_TEMP": str(folder / "temp"),
           "GITHUB_WORKSPACE": str(folder / "workspace"), "GITHUB_OUTPUT": str(folder / "output"),
           "GITHUB_ENV": str(folder / "env"), "GITHUB_STATE": str(folder / "state"),
           "GITHUB_PATH": str(folder / "path"), "GITHUB_STEP_SUMMARY": str(folder / "summary"),
           "GITHUB_REPOSITORY": REPOSITORY, "GITHUB_REF": ref, "GITHUB_ACTION_REPOSITORY": "google-github-actions/auth",
           "GITHUB_ACTION_REF": "v3"}
    return Job(folder, env)


def inputs(**given: str) -> dict[str, str]:
    """INPUT_* as the runner sets them: every input of action.yml with its default, then the step's `with:`."""
    assert ACTION is not None
    declared = yaml.safe_load((ACTION / "action.yml").read_text())["inputs"]
    values = {name: str(spec.get("default", "")) for name, spec in declared.items()}
    values.update(given)
    return {f"INPUT_{name.replace(' ', '_').upper()}": value for name, value in values.items()}


def run_step(job: Job, script: str, env: dict[str, str], namespace: dict[str, Path] | None = None) -> str:
    """`node SCRIPT` as the runner runs an action's main or post; its log (stdout)."""
    assert ACTION is not None and NODE is not None
    command = [NODE, str(ACTION / "dist" / script / "index.js")]
    if namespace is not None:  # Google's host names resolve to Keyless inside a private mount namespace
        command = ["unshare", "-m", "sh", "-c",
                   'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"',
                   str(namespace["hosts"]), str(namespace["resolv"]), *command]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                            cwd=job.env["GITHUB_WORKSPACE"])
    assert result.returncode == 0 and "::error::" not in result.stdout, (
        f"{script} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def overrides(srv: KeylessServer) -> dict[str, str]:
    return {"GHA_ENDPOINT_OVERRIDE_sts": f"{srv.base_url}/sts/v1",
            "GHA_ENDPOINT_OVERRIDE_iamcredentials": f"{srv.base_url}/iamcredentials/v1"}


def claims(jwt: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(jwt.split(".")[1] + "=="))  # type: ignore[no-any-return]


def subject(ref: str) -> str:
    return f"repo:{REPOSITORY}:ref:{ref}"


def principal(ref: str) -> str:
    return f"principal://iam.googleapis.com/{POOL}/subject/{subject(ref)}"


def exchanges(srv: KeylessServer, ref: str) -> list[dict[str, Any]]:
    return wait_for(srv, f'protoPayload.methodName="{EXCHANGE}" AND '
                         f'protoPayload.authenticationInfo.principalSubject="{subject(ref)}"', 1)


def assert_exchange_audited(srv: KeylessServer, ref: str, audience: str = AUDIENCE) -> None:
    """The action's JSON exchange is audited as a form's: the GitHub subject, its mapped principal,
    the request's fields and the action's user agent."""
    entries = exchanges(srv, ref)
    assert len(entries) == 1, entries
    payload = entries[0]["protoPayload"]
    assert payload["metadata"]["mapped_principal"] == principal(ref)
    assert payload["request"]["audience"] == audience
    assert payload["request"]["grantType"] == "urn:ietf:params:oauth:grant-type:token-exchange"
    assert payload["request"]["subjectTokenType"] == "urn:ietf:params:oauth:token-type:jwt"
    assert payload["requestMetadata"]["callerSuppliedUserAgent"].startswith("google-github-actions:auth/3.0.0")


# -- the action's modes, through its endpoint overrides ------------------------------------------

def test_access_token_through_the_service_account(srv: KeylessServer, tmp_path: Path) -> None:
    ref = "refs/heads/action-access-token"
    job = new_job(srv, tmp_path, ref)
    run_step(job, "main", {**job.env, **overrides(srv), **inputs(
        workload_identity_provider=PROVIDER, service_account=DEPLOY_SA, token_format="access_token",
        access_token_lifetime="600s")})
    out = job.read("output")
    assert set(out) == {"credentials_file_path", "project_id", "auth_token", "access_token"}, out
    assert out["project_id"] == "my-project"
    info = ok(httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": out["access_token"]}))
    assert info["email"] == DEPLOY_SA and 500 <= int(info["expires_in"]) <= 600
    federated = ok(httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": out["auth_token"]}))
    assert federated["sub"] == principal(ref)
    # the project reads with the minted token
    got = httpx.get(f"{srv.base_url}/cloudresourcemanager/v1/projects/my-project",
                    headers={"Authorization": f"Bearer {out['access_token']}"})
    assert ok(got)["projectNumber"] == NUMBER
    assert_exchange_audited(srv, ref)
    minted = wait_for(srv, f'protoPayload.methodName="GenerateAccessToken" AND '
                           f'protoPayload.authenticationInfo.principalSubject="{principal(ref)}"', 1)
    assert len(minted) == 1 and minted[0]["resource"]["labels"]["email_id"] == DEPLOY_SA, minted


@pytest.mark.parametrize("include_email", ["true", "false"])
def test_id_token(srv: KeylessServer, tmp_path: Path, include_email: str) -> None:
    ref = f"refs/heads/action-id-token-{include_email}"
    job = new_job(srv, tmp_path, ref)
    run_step(job, "main", {**job.env, **overrides(srv), **inputs(
        workload_identity_provider=PROVIDER, service_account=DEPLOY_SA, token_format="id_token",
        id_token_audience=ID_AUDIENCE, id_token_include_email=include_email)})
    out = job.read("output")
    assert "id_token" in out and "access_token" not in out, out
    got = claims(out["id_token"])
    assert got["aud"] == ID_AUDIENCE and got["iss"] == "https://accounts.google.com"
    if include_email == "true":
        assert got["email"] == DEPLOY_SA and got["email_verified"] is True
    else:
        assert "email" not in got
    # Keyless's JWKS (Google's certs URL) verifies it
    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    verified = id_token.verify_token(out["id_token"], Request(), audience=ID_AUDIENCE,
                                     certs_url=f"{srv.base_url}/oauth2/v3/certs")
    assert verified["sub"] == got["sub"]
    assert_exchange_audited(srv, ref)
    minted = wait_for(srv, f'protoPayload.methodName="GenerateIdToken" AND '
                           f'protoPayload.authenticationInfo.principalSubject="{principal(ref)}"', 1)
    assert len(minted) == 1 and minted[0]["resource"]["labels"]["email_id"] == DEPLOY_SA, minted


PYTHON_STORAGE = r'''
import json, os
from google.cloud import storage
client = storage.Client(client_options={"api_endpoint": os.environ["KEYLESS"]})
print(json.dumps({"project": client.project,
                  "data": client.bucket("my-bucket").blob("data.txt").download_as_bytes().decode()}))
'''


def later_steps(srv: KeylessServer, job: Job, tmp_path: Path, account: str) -> None:
    """The workflow's next steps with what the action exported: gcloud (credential file override),
    google-cloud-storage in Python and in Node (GOOGLE_APPLICATION_CREDENTIALS)."""
    env = job.step_env()
    path = env["GOOGLE_APPLICATION_CREDENTIALS"]
    assert env["CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE"] == env["GOOGLE_GHA_CREDS_PATH"] == path
    assert env["GOOGLE_CLOUD_PROJECT"] == env["CLOUDSDK_CORE_PROJECT"] == "my-project"
    assert Path(path).parent == Path(job.env["GITHUB_WORKSPACE"])
    gcloud = Gcloud(srv, tmp_path / "gcloud")
    gcloud.run("config", "unset", "auth/access_token_file")  # the step authenticates with the action's file
    gcloud.env.update({k: v for k, v in env.items() if k.startswith(("CLOUDSDK_", "GOOGLE_"))})
    assert gcloud.run("storage", "cat", "gs://my-bucket/data.txt").stdout == "hello from my-bucket"
    if account == DEPLOY_SA:  # gcloud caches the file's token under its service account
        assert gcloud.json("projects", "describe", "my-project")["projectNumber"] == NUMBER
        with sqlite3.connect(tmp_path / "gcloud" / "access_tokens.db") as db:
            assert [row[0] for row in db.execute("SELECT account_id FROM access_tokens")] == [account]
    else:  # the account is the `username` STS's introspection gave (googlecloudsdk.core.credentials.introspect);
        # gcloud names it on a refusal (the principal set holds no role on the project)
        denied = gcloud.run("projects", "describe", "my-project", check=False)
        assert denied.returncode == 1 and "resourcemanager.projects.get" in denied.stderr, denied.stderr
        assert (f"This command is authenticated as {account} using the credentials in {path}, specified by the "
                "[auth/credential_file_override] property") in " ".join(denied.stderr.split()), denied.stderr
    python = subprocess.run([sys.executable, "-c", PYTHON_STORAGE], env={**env, "KEYLESS": srv.base_url}, capture_output=True, text=True, timeout=120)
    assert python.returncode == 0, python.stderr[-3000:]
    assert json.loads(python.stdout) == {"project": "my-project", "data": "hello from my-bucket"}
    node_env = {k: v for k, v in env.items() if k.startswith("GOOGLE_")}
    out = nodejs.run("storage.mjs", {"objects": [["my-bucket", "data.txt"]], "options": {
        "apiEndpoint": srv.base_url, "useAuthWithCustomEndpoint": True}}, env=node_env)
    assert out["downloads"] == [{"data": "hello from my-bucket"}], out


def post_step(job: Job) -> None:
    """The action's post step removes the credentials file it wrote."""
    env = job.step_env()
    path = Path(env["GOOGLE_GHA_CREDS_PATH"])
    assert path.exists()
    state = {f"STATE_{k}": v for k, v in job.read("state").items()}
    log = run_step(job, "post", {**env, **state, **inputs()})
    assert f'Removed exported credentials at "{path}"' in log and not path.exists()


@pytest.mark.usefixtures("node_clients")
def test_credentials_file_with_the_service_account_then_later_steps(srv: KeylessServer, tmp_path: Path) -> None:
    _need_gcloud()
    ref = "refs/heads/action-file-sa"
    job = new_job(srv, tmp_path, ref)
    run_step(job, "main", {**job.env, **overrides(srv), **inputs(
        workload_identity_provider=PROVIDER, service_account=DEPLOY_SA)})
    out = job.read("output")
    written = json.loads(Path(out["credentials_file_path"]).read_text())
    assert written["type"] == "external_account" and written["audience"] == AUDIENCE
    assert written["token_url"] == f"{srv.base_url}/sts/v1/token"
    assert written["service_account_impersonation_url"] == (
        f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{DEPLOY_SA}:generateAccessToken")
    assert written["credential_source"]["url"].startswith(job.env["ACTIONS_ID_TOKEN_REQUEST_URL"])
    later_steps(srv, job, tmp_path, DEPLOY_SA)
    reads = wait_for(srv, 'protoPayload.methodName="storage.objects.get" AND '
                          f'protoPayload.authenticationInfo.principalEmail="{DEPLOY_SA}"', 2)
    assert all(e["protoPayload"]["status"].get("code", 0) == 0 for e in reads), reads
    post_step(job)


@pytest.mark.usefixtures("node_clients")
def test_direct_federation_then_later_steps(srv: KeylessServer, tmp_path: Path) -> None:
    """No service account: the later steps act as the federated principal itself; gcloud asks STS's
    introspection (auth/token_introspection_endpoint, set by configure-gcloud) for the account."""
    _need_gcloud()
    ref = "refs/heads/action-direct"
    job = new_job(srv, tmp_path, ref)
    run_step(job, "main", {**job.env, **overrides(srv), **inputs(
        workload_identity_provider=PROVIDER, project_id="my-project")})
    out = job.read("output")
    assert set(out) == {"credentials_file_path", "project_id", "auth_token"}, out
    written = json.loads(Path(out["credentials_file_path"]).read_text())
    assert "service_account_impersonation_url" not in written
    later_steps(srv, job, tmp_path, principal(ref))
    reads = wait_for(srv, 'protoPayload.methodName="storage.objects.get" AND '
                          f'protoPayload.authenticationInfo.principalSubject="{principal(ref)}"', 2)
    assert all(e["protoPayload"]["status"].get("code", 0) == 0 for e in reads), reads
    post_step(job)


# -- unchanged, as Google's hosts of a universe over TLS -----------------------------------------

@pytest.fixture(scope="module")
def universe(srv: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp_path = tmp_path_factory.mktemp("universe")
    hosts, resolv = tmp_path / "hosts", tmp_path / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n")
    assert srv.keyless("env", "--universe-domain", UNIVERSE, "--write-hosts", str(hosts)).returncode == 0
    resolv.write_text("nameserver 127.0.0.1\n")
    return {"hosts": hosts, "resolv": resolv, "ca": srv.data_dir / "tls" / "bundle.pem"}


@needs_namespaces
@pytest.mark.parametrize("token_format", ["access_token", "id_token"])
def test_through_the_universe_over_tls(srv: KeylessServer, universe: dict[str, Any], tmp_path: Path,
                                       token_format: str) -> None:
    """`universe: keyless.test:PORT`: the action calls https://sts.keyless.test:PORT/v1/token with the
    audience //iam.keyless.test:PORT/projects/..., then iamcredentials on the same universe."""
    domain = f"{UNIVERSE}:{srv.tls_port}"  # type: ignore[attr-defined]
    ref = f"refs/heads/action-universe-{token_format.replace('_', '-')}"
    job = new_job(srv, tmp_path, ref)
    run_step(job, "main", {**job.env, "NODE_EXTRA_CA_CERTS": str(universe["ca"]), **inputs(
        workload_identity_provider=PROVIDER, service_account=DEPLOY_SA, universe=domain, token_format=token_format,
        id_token_audience=ID_AUDIENCE, id_token_include_email="true")},
        namespace={"hosts": universe["hosts"], "resolv": universe["resolv"]})
    out = job.read("output")
    written = json.loads(Path(out["credentials_file_path"]).read_text())
    assert written["audience"] == f"//iam.{domain}/{PROVIDER}"
    assert written["token_url"] == f"https://sts.{domain}/v1/token"
    if token_format == "access_token":
        info = ok(httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": out["access_token"]}))
        assert info["email"] == DEPLOY_SA
    else:
        got = claims(out["id_token"])
        assert got["aud"] == ID_AUDIENCE and got["email"] == DEPLOY_SA
    assert_exchange_audited(srv, ref, audience=f"//iam.{domain}/{PROVIDER}")


def test_action_failure_is_reported_not_hidden(srv: KeylessServer, tmp_path: Path) -> None:
    """A provider that does not exist: the action fails with STS's OAuth error in its message."""
    job = new_job(srv, tmp_path, "refs/heads/action-unknown")
    env = {**job.env, **overrides(srv), **inputs(
        workload_identity_provider=PROVIDER.replace("github-provider", "nope-provider"), service_account=DEPLOY_SA,
        token_format="access_token")}
    assert ACTION is not None and NODE is not None
    result = subprocess.run([NODE, str(ACTION / "dist" / "main" / "index.js")], env=env, capture_output=True,
                            text=True, timeout=120)
    assert "::error::google-github-actions/auth failed with" in result.stdout, result.stdout
    assert "invalid_target" in result.stdout and "Unsupported grant_type" not in result.stdout



def test_gcloud_auth_login_with_the_direct_federation_file(srv: KeylessServer, tmp_path: Path) -> None:
    """`gcloud auth login --cred-file=<the action's file>`: gcloud names the account by STS's
    introspection, stores it as the active account, and later commands run as that principal."""
    _need_gcloud()
    ref = "refs/heads/action-gcloud-login"
    job = new_job(srv, tmp_path, ref)
    run_step(job, "main", {**job.env, **overrides(srv), **inputs(
        workload_identity_provider=PROVIDER, project_id="my-project", export_environment_variables="false")})
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in job.step_env()
    gcloud = Gcloud(srv, tmp_path / "gcloud")
    gcloud.run("config", "unset", "auth/access_token_file")
    gcloud.run("auth", "login", "--cred-file", job.read("output")["credentials_file_path"])
    listed = gcloud.json("auth", "list")
    assert [(a["account"], a["status"]) for a in listed] == [(principal(ref), "ACTIVE")], listed
    assert gcloud.run("storage", "cat", "gs://my-bucket/data.txt").stdout == "hello from my-bucket"
    reads = wait_for(srv, 'protoPayload.methodName="storage.objects.get" AND '
                          f'protoPayload.authenticationInfo.principalSubject="{principal(ref)}"', 1)
    assert reads[0]["protoPayload"]["status"].get("code", 0) == 0, reads
