"""A real project, imported (issue #22): what gcloud exports with `--format=json` turned into a
world file (keyless.world) that `keyless apply` rebuilds locally, so `keyless doctor` and real
clients test the production policy offline. Keyless never calls Google: the files are given.

Read, one file per flag (keyless.cli.state's `import` command):
- `gcloud projects get-iam-policy P --format=json`: the project's bindings and auditConfigs;
- `gcloud iam service-accounts list --format=json`, and per account
  `gcloud iam service-accounts get-iam-policy EMAIL --format=json` (given as EMAIL=FILE: the policy
  does not name its resource);
- `gcloud iam roles list --project P --format=json` (with `--show-deleted` or not);
- `gcloud iam workload-identity-pools list --location=global --format=json` and, per pool,
  `gcloud iam workload-identity-pools providers list --workload-identity-pool=POOL --location=global
  --format=json` (each provider's name says its pool);
- `gcloud container clusters describe C --location=L --format=json`;
- `gcloud resource-manager org-policies describe CONSTRAINT --project=P --format=json`.
The project number comes from the pools' or providers' names, or `--project-number`.

Public issuers are mapped to Keyless's test issuers for the run, and the mapping is printed:
GitHub Actions' `https://token.actions.githubusercontent.com` becomes this server's `/idp/github`.
A GKE cluster's own issuer (`https://container.googleapis.com/v1/projects/P/locations/L/clusters/C`)
stays: Keyless serves it for an imported cluster of that name. Other issuers stay as they are, with
a warning: tokens for them cannot be minted here.
"""

from __future__ import annotations

import re
from typing import Any

from keyless.world import (
    ACCOUNT_FIELDS,
    FORMAT,
    ORG_POLICY_FIELDS,
    POOL_FIELDS,
    PROVIDER_FIELDS,
    ROLE_FIELDS,
)

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
POOL_NAME = re.compile(r"^projects/(\d+)/locations/global/workloadIdentityPools/([^/]+)$")
PROVIDER_NAME = re.compile(r"^projects/(\d+)/locations/global/workloadIdentityPools/([^/]+)/providers/([^/]+)$")


def _list(data: Any, what: str) -> list[dict[str, Any]]:
    if isinstance(data, dict):  # a REST answer rather than gcloud's list
        for key in ("accounts", "roles", "workloadIdentityPools", "workloadIdentityPoolProviders"):
            if key in data:
                data = data[key]
                break
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise ValueError(f"{what}: expected gcloud's --format=json list")
    return data


def _policy(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not set(data) <= {"bindings", "auditConfigs", "etag", "version"}:
        raise ValueError(f"{what}: expected an IAM policy (gcloud ... get-iam-policy --format=json)")
    out: dict[str, Any] = {}
    if data.get("bindings"):
        out["bindings"] = data["bindings"]
    if data.get("auditConfigs"):
        out["auditConfigs"] = data["auditConfigs"]
    return out


def _pick(resource: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: resource[k] for k in names if resource.get(k) not in (None, {}, [], "", False)}


def build_world(project_id: str, *, server_url: str, project_number: str | None = None,
                iam_policy: Any = None, service_accounts: Any = None,
                service_account_policies: dict[str, Any] | None = None, roles: Any = None, pools: Any = None,
                providers: list[Any] | None = None, clusters: list[Any] | None = None,
                org_policies: list[Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The world file, and the lines to print (issuer mappings and warnings)."""
    notes: list[str] = []
    numbers: set[str] = set()
    project: dict[str, Any] = {"projectId": project_id}
    if iam_policy is not None:
        project["iamPolicy"] = _policy(iam_policy, "--iam-policy")
    org = []
    for policy in org_policies or []:
        if not isinstance(policy, dict) or not str(policy.get("constraint", "")).startswith("constraints/"):
            raise ValueError("--org-policy: expected gcloud resource-manager org-policies describe --format=json")
        picked = _pick(policy, ORG_POLICY_FIELDS)
        if set(picked) - {"constraint"}:
            org.append(picked)
    if org:
        project["orgPolicies"] = org
    if roles is not None:
        project["roles"] = [{"roleId": r["name"].rsplit("/", 1)[-1], **_pick(r, ROLE_FIELDS)}
                            for r in _list(roles, "--roles") if not r.get("deleted")
                            and r.get("name", "").startswith(f"projects/{project_id}/roles/")]
    accounts = []
    policies = dict(service_account_policies or {})
    for a in _list(service_accounts, "--service-accounts") if service_accounts is not None else []:
        email = a.get("email", "")
        if not email.endswith(f"@{project_id}.iam.gserviceaccount.com"):
            notes.append(f"skipped service account {email}: not of project {project_id}")
            continue
        account = {"accountId": email.split("@", 1)[0], **_pick(a, ACCOUNT_FIELDS)}
        if email in policies:
            account["iamPolicy"] = _policy(policies.pop(email), f"--service-account-policy {email}")
        accounts.append(account)
    if policies:
        raise ValueError(f"--service-account-policy {sorted(policies)[0]}: no such account in --service-accounts")
    if accounts:
        project["serviceAccounts"] = accounts
    by_pool: dict[str, dict[str, Any]] = {}
    for pool in _list(pools, "--pools") if pools is not None else []:
        m = POOL_NAME.match(pool.get("name", ""))
        if not m:
            raise ValueError(f"--pools: not a workload identity pool name: {pool.get('name')!r}")
        if pool.get("state") == "DELETED":
            continue
        numbers.add(m.group(1))
        by_pool[m.group(2)] = {"poolId": m.group(2), **_pick(pool, POOL_FIELDS)}
    for listing in providers or []:
        for provider in _list(listing, "--providers"):
            m = PROVIDER_NAME.match(provider.get("name", ""))
            if not m:
                raise ValueError(f"--providers: not a provider name: {provider.get('name')!r}")
            if provider.get("state") == "DELETED":
                continue
            numbers.add(m.group(1))
            entry = {"providerId": m.group(3), **_pick(provider, PROVIDER_FIELDS)}
            if "oidc" in entry:
                entry["oidc"] = dict(entry["oidc"])
                entry["oidc"]["issuerUri"] = _map_issuer(entry["oidc"].get("issuerUri", ""), server_url, notes)
            by_pool.setdefault(m.group(2), {"poolId": m.group(2)}).setdefault("providers", []).append(entry)
    if by_pool:
        project["workloadIdentityPools"] = [by_pool[k] for k in sorted(by_pool)]
    if project_number:
        numbers.add(project_number)
    if len(numbers) > 1:
        raise ValueError(f"the files name several project numbers: {sorted(numbers)}")
    if numbers:
        project["projectNumber"] = numbers.pop()
    imported_clusters = []
    for c in clusters or []:
        if not isinstance(c, dict) or "name" not in c or "location" not in c:
            raise ValueError("--cluster: expected gcloud container clusters describe --format=json")
        cluster: dict[str, Any] = {"name": c["name"], "location": c["location"]}
        if c.get("workloadIdentityConfig"):
            cluster["workloadIdentityConfig"] = c["workloadIdentityConfig"]
        node_pools = []
        for np in c.get("nodePools", []):
            entry = {"name": np["name"]}
            config = _pick(np.get("config", {}), ("serviceAccount", "workloadMetadataConfig", "oauthScopes"))
            if config:
                entry["config"] = config
            node_pools.append(entry)
        if node_pools:
            cluster["nodePools"] = node_pools
        imported_clusters.append(cluster)
    if imported_clusters:
        project["clusters"] = imported_clusters
    return {"apiVersion": FORMAT, "projects": [project]}, notes


def _map_issuer(issuer: str, server_url: str, notes: list[str]) -> str:
    if issuer.rstrip("/") == GITHUB_ISSUER:
        mapped = f"{server_url.rstrip('/')}/idp/github"
        notes.append(f"issuer {issuer} -> {mapped} (Keyless's GitHub Actions test issuer: keyless token github)")
        return mapped
    if issuer.startswith("https://container.googleapis.com/v1/projects/"):
        notes.append(f"issuer {issuer} kept: Keyless serves it for the imported cluster of that name")
        return issuer
    notes.append(f"warning: issuer {issuer} kept as it is; Keyless cannot mint its tokens")
    return issuer
