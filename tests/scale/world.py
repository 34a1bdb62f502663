"""What the cluster tests set up through the APIs, as a user would: a project, a GitHub pool and
provider, a service account its repository may impersonate; and small HTTP helpers."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from keyless.cli.cluster import Cluster, ClusterServer

CLOUD = "https://www.googleapis.com/auth/cloud-platform"
EXCHANGE = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "scope": CLOUD}


def call(srv: ClusterServer, method: str, path: str, *, token: str | None = None, body: Any = None,
         params: Any = None) -> httpx.Response:
    tok = srv.owner_token if token is None else token
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return httpx.request(method, srv.base_url + path, json=body, headers=headers, params=params, timeout=30)


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def keyless_cli(cluster: Cluster, srv: ClusterServer, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "keyless.cli.main", *args, "--data-dir", str(srv.data_dir),
                          "--database", cluster.database_url], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def ensure_project(cluster: Cluster, project: str, number: str) -> None:
    r = call(cluster.servers[0], "GET", f"/cloudresourcemanager/v1/projects/{project}")
    if r.status_code != 200:
        keyless_cli(cluster, cluster.servers[0], "projects", "create", project, "--number", number)


@dataclass
class Federation:
    """A pool, its GitHub provider and a service account the repository may impersonate."""

    project: str
    number: str
    pool: str
    provider: str
    sa_email: str
    issuer_server: ClusterServer

    @property
    def pool_path(self) -> str:
        return f"/iam/v1/projects/{self.project}/locations/global/workloadIdentityPools/{self.pool}"

    @property
    def provider_path(self) -> str:
        return f"{self.pool_path}/providers/{self.provider}"

    @property
    def audience(self) -> str:
        return (f"//iam.googleapis.com/projects/{self.number}/locations/global/workloadIdentityPools/"
                f"{self.pool}/providers/{self.provider}")

    @property
    def sa_path(self) -> str:
        return f"/iam/v1/projects/{self.project}/serviceAccounts/{self.sa_email}"

    def member(self) -> str:
        return (f"principalSet://iam.googleapis.com/projects/{self.number}/locations/global/"
                f"workloadIdentityPools/{self.pool}/attribute.repository/my-org/my-repo")

    def github_token(self, cluster: Cluster) -> str:
        return keyless_cli(cluster, self.issuer_server, "token", "github", "--repository", "my-org/my-repo",
                           "--audience", f"https:{self.audience}", "--lifetime", "3600",
                           "--server", self.issuer_server.base_url)

    def exchange(self, srv: ClusterServer, subject_token: str) -> httpx.Response:
        return httpx.post(f"{srv.base_url}/sts/v1/token", content=urlencode(
            {**EXCHANGE, "audience": self.audience, "subject_token": subject_token}),
            headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)

    def generate_access_token(self, srv: ClusterServer, federated: str) -> httpx.Response:
        return call(srv, "POST", f"/iamcredentials/v1/projects/-/serviceAccounts/{self.sa_email}:generateAccessToken",
                    token=federated, body={"scope": [CLOUD]})


def federation(cluster: Cluster, project: str = "scale-project", number: str = "424242424242") -> Federation:
    """A fresh pool, provider and account, made on server A (the first)."""
    a = cluster.servers[0]
    ensure_project(cluster, project, number)
    suffix = uuid.uuid4().hex[:8]
    fed = Federation(project, number, f"pool-{suffix}", f"gh-{suffix}", f"sa-{suffix}@{project}.iam.gserviceaccount.com",
                     a)
    pools = f"/iam/v1/projects/{project}/locations/global/workloadIdentityPools"
    ok(call(a, "POST", pools, params={"workloadIdentityPoolId": fed.pool}, body={}))
    ok(call(a, "POST", f"{fed.pool_path}/providers", params={"workloadIdentityPoolProviderId": fed.provider}, body={
        "attributeMapping": {"google.subject": "assertion.sub", "attribute.repository": "assertion.repository"},
        "attributeCondition": "assertion.repository_owner == 'my-org'",
        "oidc": {"issuerUri": f"{a.base_url}/idp/github"}}))
    ok(call(a, "POST", f"/iam/v1/projects/{project}/serviceAccounts", body={"accountId": f"sa-{suffix}"}))
    ok(call(a, "POST", f"{fed.sa_path}:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/iam.workloadIdentityUser", "members": [fed.member()]}]}}))
    return fed


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until `check()` held (polling back to back); fails after `timeout`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - start
