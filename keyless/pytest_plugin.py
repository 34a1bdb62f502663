"""pytest plugin (entry point `pytest11: keyless`): a Keyless server for the test session and
factories named after Google's resources, so a suite tests its own federation setup (pool,
provider, service account, bindings, a GitHub Actions job's token) against real HTTP (issue #22).

- `keyless` (session scope): `keyless serve` on a free loopback port in a temporary data dir, or
  the server named by `--keyless-server URL` (with `--keyless-owner-token-file`, or
  `$KEYLESS_OWNER_TOKEN`). Every factory goes through the server's Google APIs as the bootstrap
  owner, as gcloud would; nothing touches the store directly, so it works the same against a
  container.
- `keyless_adc` (function scope): points Application Default Credentials
  (`GOOGLE_APPLICATION_CREDENTIALS`, `GOOGLE_CLOUD_PROJECT`) at a credential configuration file of a
  provider, for the code under test, and restores them afterwards.
- `keyless.audit.assert_entry(...)`: Cloud Audit Logs through `entries:list` and Logging's filter
  language, as `gcloud logging read` finds them.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyless.cli.quickstart import refusal
from keyless.federation import cred_config

GITHUB_MAPPING = {"google.subject": "assertion.sub", "attribute.repository": "assertion.repository",
                  "attribute.repository_owner": "assertion.repository_owner", "attribute.ref": "assertion.ref"}
STATUS_CODES = {"OK": 0, "INVALID_ARGUMENT": 3, "NOT_FOUND": 5, "PERMISSION_DENIED": 7, "UNAUTHENTICATED": 16}


class KeylessApiError(AssertionError):
    """A Google API call of a factory was refused: Google's status and message."""


@dataclass(frozen=True)
class Project:
    project_id: str
    number: str

    @property
    def resource(self) -> str:
        return f"projects/{self.project_id}"


@dataclass(frozen=True)
class Pool:
    project: Project
    pool_id: str

    @property
    def name(self) -> str:
        return f"projects/{self.project.number}/locations/global/workloadIdentityPools/{self.pool_id}"

    def principal_set(self, attribute: str, value: str) -> str:
        """`principalSet://iam.googleapis.com/<pool>/attribute.<attribute>/<value>`."""
        return f"principalSet://iam.googleapis.com/{self.name}/attribute.{attribute}/{value}"

    def principal(self, subject: str) -> str:
        return f"principal://iam.googleapis.com/{self.name}/subject/{subject}"

    @property
    def all_identities(self) -> str:
        return f"principalSet://iam.googleapis.com/{self.name}/*"


@dataclass(frozen=True)
class Provider:
    pool: Pool
    provider_id: str

    @property
    def name(self) -> str:
        return f"{self.pool.name}/providers/{self.provider_id}"

    @property
    def audience(self) -> str:
        """The `aud` google-github-actions/auth requests for this provider (Google's default)."""
        return f"https://iam.googleapis.com/{self.name}"


@dataclass(frozen=True)
class ServiceAccount:
    project: Project
    email: str

    @property
    def member(self) -> str:
        return f"serviceAccount:{self.email}"

    @property
    def resource(self) -> str:
        return f"projects/{self.project.project_id}/serviceAccounts/{self.email}"


@dataclass(frozen=True)
class Cluster:
    project: Project
    location: str
    name: str

    @property
    def path(self) -> str:
        return f"projects/{self.project.project_id}/locations/{self.location}/clusters/{self.name}"

    @property
    def workload_pool(self) -> str:
        return f"{self.project.project_id}.svc.id.goog"


class AuditLog:
    """The server's Cloud Audit Logs, read through `entries:list` as the owner."""

    def __init__(self, server: Keyless) -> None:
        self._server = server

    def enable(self, project: Project | str, service: str, *log_types: str) -> None:
        """Turn on Data Access logs (`ADMIN_READ`, `DATA_READ`, `DATA_WRITE`) for `service` in the
        project's auditConfigs, which Google leaves off by default (seed 001's auditing section)."""
        project_id = project.project_id if isinstance(project, Project) else project
        path = f"/cloudresourcemanager/v1/projects/{project_id}"
        policy = self._server.call("POST", path + ":getIamPolicy", {})
        configs = policy.setdefault("auditConfigs", [])
        entry = next((c for c in configs if c.get("service") == service), None)
        if entry is None:
            entry = {"service": service, "auditLogConfigs": []}
            configs.append(entry)
        for kind in log_types or ("ADMIN_READ", "DATA_READ", "DATA_WRITE"):
            if not any(c.get("logType") == kind for c in entry.setdefault("auditLogConfigs", [])):
                entry["auditLogConfigs"].append({"logType": kind})
        self._server.call("POST", path + ":setIamPolicy", {"policy": policy, "updateMask": "bindings,etag,auditConfigs"})

    def entries(self, filter: str = "", *, project: Project | str, page_size: int = 1000) -> list[dict[str, Any]]:
        project_id = project.project_id if isinstance(project, Project) else project
        body = {"resourceNames": [f"projects/{project_id}"], "filter": filter, "orderBy": "timestamp desc",
                "pageSize": page_size}
        return list(self._server.call("POST", "/logging/v2/entries:list", body).get("entries", []))

    def assert_entry(self, *, project: Project | str, method: str | None = None, principal: str | None = None,
                     status: str | int | None = None, resource: str | None = None, filter: str = "",
                     timeout: float = 5.0) -> dict[str, Any]:
        """The newest entry matching every criterion given, waiting up to `timeout` seconds (Data
        Access entries are written in batches). `method` is a suffix of `methodName` (any case:
        Google writes `google.iam.admin.v1.SetIAMPolicy`), `principal`
        the `principalEmail` or `principalSubject`, `status` a gRPC code or its name ("OK" = 0)."""
        parts = [f"({filter})"] if filter else []
        if method:
            parts.append(f'protoPayload.methodName:"{method}"')
        if resource:
            parts.append(f'protoPayload.resourceName="{resource}"')
        query = " AND ".join(parts)
        code = STATUS_CODES[status] if isinstance(status, str) else status
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while True:
            seen = self.entries(query, project=project)
            for entry in seen:
                payload = entry.get("protoPayload", {})
                auth = payload.get("authenticationInfo", {})
                if method and not payload.get("methodName", "").lower().endswith(method.lower()):
                    continue
                if principal and principal not in (auth.get("principalEmail"), auth.get("principalSubject")):
                    continue
                if code is not None and int(payload.get("status", {}).get("code", 0)) != code:
                    continue
                return entry
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        summary = [(e.get("protoPayload", {}).get("methodName"),
                    e.get("protoPayload", {}).get("authenticationInfo", {}),
                    e.get("protoPayload", {}).get("status", {})) for e in seen[:10]]
        raise AssertionError(f"no audit entry with method={method!r} principal={principal!r} status={status!r} "
                             f"in {project!r}; newest entries matching {query!r}: {summary}")


class Keyless:
    """A running Keyless server and factories that build on it through Google's APIs."""

    def __init__(self, url: str, owner_token: Callable[[], str], workdir: Path) -> None:
        self.url = url.rstrip("/")
        self._owner_token = owner_token
        self.workdir = workdir
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.audit = AuditLog(self)
        self._ids = itertools.count(1)

    @property
    def owner_token(self) -> str:
        return self._owner_token()

    def client_options(self, api: str) -> dict[str, str]:
        """`client_options` for Google's Python clients (`storage`, `secretmanager`, ...)."""
        return {"api_endpoint": self.url if api == "storage" else f"{self.url}/{api}"}

    def call(self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None,
             token: str | None = None) -> dict[str, Any]:
        """One Google API call (as the owner unless `token`); a refusal raises KeylessApiError."""
        r = self.http.request(method, path, json=body, params=params,
                              headers={"Authorization": f"Bearer {token or self.owner_token}"})
        if r.status_code >= 400:
            raise KeylessApiError(f"{method} {path}: {refusal(r)}")
        return dict(r.json() or {}) if r.content else {}

    def _id(self, prefix: str) -> str:
        return f"{prefix}-{os.getpid() % 10000}-{next(self._ids)}"

    # -- isolation ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to a new server's store (no projects; the owner's grants; keys kept)."""
        self.call("POST", "/keyless/v1/state:reset", {})

    def snapshot(self, snapshot_id: str | None = None) -> str:
        """Snapshot the whole store; its name (`snapshots/ID`) for `restore`."""
        return str(self.call("POST", "/keyless/v1/state:snapshot",
                             {"snapshotId": snapshot_id} if snapshot_id else {})["name"])

    def restore(self, name: str) -> None:
        self.call("POST", "/keyless/v1/state:restore", {"snapshot": name})

    # -- resources, with Google's names --------------------------------------------------------

    def project(self, project_id: str | None = None) -> Project:
        """`gcloud projects create`: the owner holds roles/owner on it."""
        project_id = project_id or self._id("project")
        op = self.call("POST", "/cloudresourcemanager/v1/projects", {"projectId": project_id, "name": project_id})
        if op.get("error"):
            raise KeylessApiError(f"projects.create {project_id}: {op['error']}")
        got = self.call("GET", f"/cloudresourcemanager/v1/projects/{project_id}")
        return Project(project_id, str(got["projectNumber"]))

    def pool(self, project: Project, pool_id: str | None = None, *, display_name: str = "") -> Pool:
        pool_id = pool_id or self._id("pool")
        self.call("POST", f"/iam/v1/projects/{project.project_id}/locations/global/workloadIdentityPools",
                  {"displayName": display_name or pool_id}, params={"workloadIdentityPoolId": pool_id})
        return Pool(project, pool_id)

    def issuer(self, name: str = "github") -> str:
        """The URL of one of the server's test issuers (`github`, `kubernetes`)."""
        return f"{self.url}/idp/{name}"

    def oidc_provider(self, pool: Pool, provider_id: str | None = None, *, issuer: str = "github",
                      attribute_mapping: dict[str, str] | None = None, attribute_condition: str | None = None,
                      allowed_audiences: list[str] | None = None) -> Provider:
        """An OIDC provider; `issuer` is a test issuer's name (`github`: GitHub Actions' claims and
        seed 001's mapping by default) or an issuer URL."""
        provider_id = provider_id or self._id("provider")
        issuer_uri = issuer if "://" in issuer else self.issuer(issuer)
        oidc: dict[str, Any] = {"issuerUri": issuer_uri}
        if allowed_audiences:
            oidc["allowedAudiences"] = allowed_audiences
        body: dict[str, Any] = {"attributeMapping": attribute_mapping or GITHUB_MAPPING, "oidc": oidc}
        if attribute_condition:
            body["attributeCondition"] = attribute_condition
        self.call("POST", f"/iam/v1/projects/{pool.project.project_id}/locations/global/workloadIdentityPools/"
                          f"{pool.pool_id}/providers", body, params={"workloadIdentityPoolProviderId": provider_id})
        return Provider(pool, provider_id)

    def service_account(self, project: Project, account_id: str | None = None) -> ServiceAccount:
        account_id = account_id or self._id("sa")
        got = self.call("POST", f"/iam/v1/projects/{project.project_id}/serviceAccounts",
                        {"accountId": account_id, "serviceAccount": {"displayName": account_id}})
        return ServiceAccount(project, got["email"])

    def bucket(self, project: Project, name: str | None = None) -> str:
        """A Cloud Storage bucket (uniform bucket-level access); its name."""
        name = name or self._id("bucket")
        self.call("POST", "/storage/v1/b", {"name": name, "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": True}}}, params={"project": project.project_id})
        return name

    def secret(self, project: Project, secret_id: str | None = None, value: bytes | None = None) -> str:
        """A Secret Manager secret (with one version holding `value`, if given); its name."""
        import base64

        secret_id = secret_id or self._id("secret")
        base = f"/secretmanager/v1/projects/{project.project_id}/secrets"
        got = self.call("POST", base, {"replication": {"automatic": {}}}, params={"secretId": secret_id})
        if value is not None:
            self.call("POST", f"{base}/{secret_id}:addVersion",
                      {"payload": {"data": base64.b64encode(value).decode()}})
        return str(got["name"])

    def grant(self, member: str | ServiceAccount, role: str, resource: Project | ServiceAccount | str,
              *, condition: dict[str, str] | None = None) -> None:
        """Add `member` to `role` on `resource` by read-modify-write of its IAM policy, as
        `gcloud ... add-iam-policy-binding` does. `resource` is a Project, a ServiceAccount,
        `gs://BUCKET`, `projects/P/secrets/S`, or `projects/P`."""
        if isinstance(member, ServiceAccount):
            member = member.member
        get, set_ = self._policy_paths(resource)
        policy = self.call(*get)
        bindings = policy.setdefault("bindings", [])
        for b in bindings:
            if b.get("role") == role and b.get("condition") == condition:
                if member not in b["members"]:
                    b["members"].append(member)
                break
        else:
            binding: dict[str, Any] = {"role": role, "members": [member]}
            if condition:
                binding["condition"] = condition
            bindings.append(binding)
        if condition:
            policy["version"] = 3
        method, path = set_
        body: dict[str, Any] = policy if path.startswith("/storage/") else {"policy": policy}
        self.call(method, path, body)

    def _policy_paths(self, resource: Project | ServiceAccount | str) -> tuple[tuple[str, str], tuple[str, str]]:
        if isinstance(resource, Project):
            resource = resource.resource
        if isinstance(resource, ServiceAccount):
            path = f"/iam/v1/{resource.resource}"
            return ("POST", path + ":getIamPolicy"), ("POST", path + ":setIamPolicy")
        if resource.startswith("gs://"):
            path = f"/storage/v1/b/{resource.removeprefix('gs://').rstrip('/')}/iam"
            return ("GET", path + "?optionsRequestedPolicyVersion=3"), ("PUT", path)
        if "/secrets/" in resource:
            path = f"/secretmanager/v1/{resource}"
            return ("GET", path + ":getIamPolicy?options.requestedPolicyVersion=3"), ("POST", path + ":setIamPolicy")
        if "/serviceAccounts/" in resource:
            path = f"/iam/v1/{resource}"
            return ("POST", path + ":getIamPolicy"), ("POST", path + ":setIamPolicy")
        if resource.startswith("projects/") and resource.count("/") == 1:
            path = f"/cloudresourcemanager/v1/{resource}"
            return ("POST", path + ":getIamPolicy"), ("POST", path + ":setIamPolicy")
        raise ValueError(f"grant: no IAM policy known for {resource!r}")

    # -- workloads ------------------------------------------------------------------------------

    def github_job(self, repository: str, *, provider: Provider | None = None, ref: str = "refs/heads/main",
                   **claims: str) -> dict[str, str]:
        """What a GitHub Actions job of `repository` holds (`POST /idp/github/jobs`): its OIDC
        token for `provider` (`value`) and the runner's ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN pair."""
        body: dict[str, Any] = {"repository": repository, "ref": ref, **claims}
        if provider is not None:
            body["audience"] = provider.audience
        return {k: str(v) for k, v in self.call("POST", "/idp/github/jobs", body).items()}

    def github_token(self, repository: str, *, provider: Provider | None = None, ref: str = "refs/heads/main",
                     **claims: str) -> str:
        """A GitHub Actions OIDC token of `repository` at `ref` (audience: `provider`'s, else
        GitHub's default `https://github.com/OWNER`, which providers refuse, as on Google)."""
        return self.github_job(repository, provider=provider, ref=ref, **claims)["value"]

    def credentials_file(self, provider: Provider, *, service_account: ServiceAccount | None = None,
                         repository: str = "my-org/my-repo", ref: str = "refs/heads/main",
                         path: Path | None = None) -> Path:
        """An `external_account` file (what `gcloud iam workload-identity-pools create-cred-config`
        writes, with this server's URLs) whose subject token comes fresh from the test issuer for
        a job of `repository`, impersonating `service_account` when given."""
        job = self.github_job(repository, ref=ref)
        source = cred_config.url_source(f"{job['requestUrl']}audience={provider.audience}",
                                        {"Authorization": f"Bearer {job['requestToken']}"}, field="value")
        config = cred_config.external_account(self.url, provider.name, source,
                                              service_account=service_account.email if service_account else None)
        path = path or self.workdir / f"credentials-{next(self._ids)}.json"
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)
        return path

    def exchange(self, provider: Provider, subject_token: str,
                 scope: str = "https://www.googleapis.com/auth/cloud-platform") -> httpx.Response:
        """The STS token exchange (RFC 8693) a federated client sends; the raw answer."""
        return self.http.post("/sts/v1/token", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": f"//iam.googleapis.com/{provider.name}", "scope": scope,
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "subject_token": subject_token})

    def cluster(self, project: Project, name: str | None = None, *, location: str = "us-central1",
                workload_identity: bool = True) -> Cluster:
        """A GKE cluster (with `PROJECT.svc.id.goog` as its workload pool unless told otherwise)."""
        name = name or self._id("cluster")
        cluster: dict[str, Any] = {"name": name, "initialNodeCount": 1}
        if workload_identity:
            cluster["workloadIdentityConfig"] = {"workloadPool": f"{project.project_id}.svc.id.goog"}
        self.call("POST", f"/container/v1/projects/{project.project_id}/locations/{location}/clusters",
                  {"cluster": cluster})
        return Cluster(project, location, name)

    def ksa(self, cluster: Cluster, name: str, *, namespace: str = "default",
            gsa: ServiceAccount | None = None) -> dict[str, Any]:
        """A Kubernetes ServiceAccount, annotated `iam.gke.io/gcp-service-account: GSA` when given
        (seed 003's pairing; the GSA still needs roles/iam.workloadIdentityUser for it)."""
        base = f"/kubernetes/{cluster.path}/api/v1/namespaces"
        self._ensure_namespace(base, namespace)
        meta: dict[str, Any] = {"name": name, "namespace": namespace}
        if gsa is not None:
            meta["annotations"] = {"iam.gke.io/gcp-service-account": gsa.email}
        return self.call("POST", f"{base}/{namespace}/serviceaccounts",
                         {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})

    def ksa_member(self, cluster: Cluster, name: str, namespace: str = "default") -> str:
        """`serviceAccount:PROJECT.svc.id.goog[NAMESPACE/KSA]`, the member to bind on the GSA."""
        return f"serviceAccount:{cluster.workload_pool}[{namespace}/{name}]"

    def pod(self, cluster: Cluster, name: str, *, service_account: str = "default", namespace: str = "default",
            image: str = "python:3.11", command: list[str] | None = None) -> dict[str, Any]:
        """A Pod object (run its commands with `kubectl exec` or `keyless pod run --pod`)."""
        base = f"/kubernetes/{cluster.path}/api/v1/namespaces"
        self._ensure_namespace(base, namespace)
        container: dict[str, Any] = {"name": "main", "image": image}
        if command:
            container["command"] = command
        return self.call("POST", f"{base}/{namespace}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"serviceAccountName": service_account, "containers": [container]}})

    def _ensure_namespace(self, base: str, namespace: str) -> None:
        r = self.http.get(f"{base}/{namespace}", headers={"Authorization": f"Bearer {self.owner_token}"})
        if r.status_code == 404:
            self.call("POST", base, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})


# -- the fixtures -------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("keyless", "Keyless (Workload Identity Federation emulator)")
    group.addoption("--keyless-server", default=os.environ.get("KEYLESS_PYTEST_SERVER"),
                    help="use this running Keyless server (URL) instead of starting one "
                         "(its owner token from --keyless-owner-token-file or $KEYLESS_OWNER_TOKEN)")
    group.addoption("--keyless-owner-token-file", default=os.environ.get("KEYLESS_OWNER_TOKEN_FILE"),
                    help="the running server's owner token file (DATA_DIR/owner.token)")


def pytest_configure(config: pytest.Config) -> None:
    if (config.getoption("keyless_server") and not config.getoption("keyless_owner_token_file")
            and not os.environ.get("KEYLESS_OWNER_TOKEN")):
        raise pytest.UsageError("--keyless-server needs the server's owner token: --keyless-owner-token-file "
                                "DATA_DIR/owner.token or $KEYLESS_OWNER_TOKEN (keyless token owner prints one)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _EmbeddedServer:
    """`keyless serve` in a subprocess on a free loopback port, in its own data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = data_dir.parent / "keyless-serve.log"
        env = {**os.environ, "KEYLESS_DATA_DIR": str(data_dir)}
        for name in ("KEYLESS_SERVER", "KEYLESS_DATABASE_URL", "KEYLESS_PUBLIC_URL"):
            env.pop(name, None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(port), "--data-dir", str(data_dir),
                 "--allow-insecure-issuers"], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keyless serve exited ({self.proc.returncode}): {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"keyless serve did not start: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    def owner_token(self) -> str:
        return (self.data_dir / "owner.token").read_text().strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def keyless(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyless]:
    """A Keyless server for the session: embedded (a fresh data dir), or `--keyless-server`."""
    workdir = tmp_path_factory.mktemp("keyless")
    url = request.config.getoption("keyless_server")
    if url:
        token_file = request.config.getoption("keyless_owner_token_file")  # one of the two: pytest_configure

        def owner() -> str:  # read at each call: the server refreshes its file hourly
            return Path(token_file).read_text().strip() if token_file else os.environ["KEYLESS_OWNER_TOKEN"]
        server = Keyless(url, owner, workdir)
        yield server
        server.http.close()
        return
    embedded = _EmbeddedServer(Path(tempfile.mkdtemp(prefix="data-", dir=workdir)))
    server = Keyless(embedded.url, embedded.owner_token, workdir)
    try:
        yield server
    finally:
        server.http.close()
        embedded.stop()


@pytest.fixture
def keyless_adc(keyless: Keyless, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """`keyless_adc(provider, service_account=sa, repository="org/repo", project=project)`: points
    Application Default Credentials at a fresh credential configuration for a GitHub Actions job of
    `repository`, for the code under test; undone after the test."""

    def use(provider: Provider, *, service_account: ServiceAccount | None = None,
            repository: str = "my-org/my-repo", ref: str = "refs/heads/main",
            project: Project | None = None) -> Path:
        path = keyless.credentials_file(provider, service_account=service_account, repository=repository, ref=ref)
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", (project or provider.pool.project).project_id)
        return path

    return use
