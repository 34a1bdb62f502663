"""Declarative state (issue #22): a world file (YAML) of projects and what they hold, in the
resources' own REST shapes (what `gcloud ... --format=yaml` prints), exported from a running
server and applied to one through its Google APIs as the bootstrap owner.

`export` reads every project, its IAM policy (bindings and auditConfigs), custom roles, service
accounts (and their IAM policies), workload identity pools and providers, buckets and secrets (and
their IAM policies; never secret payloads), GKE clusters, node pools, namespaces and Kubernetes
ServiceAccounts. `plan` compares a world with the server's and lists the changes; `apply` makes
them in dependency order (projects, roles, accounts, pools, providers, buckets, secrets, clusters,
then every IAM policy, whose members may name what was just made). Like `kubectl apply` without
`--prune`, what the file does not name is left alone. Project numbers are kept: no Google API sets
one, so a missing project is created through the store (`create_project`), as `keyless projects
create --number` does.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

FORMAT = "keyless.dev/world/v1"
PROJECT_FIELDS = ("name", "labels")
ACCOUNT_FIELDS = ("displayName", "description", "disabled")
ROLE_FIELDS = ("title", "description", "includedPermissions", "stage")
POOL_FIELDS = ("displayName", "description", "disabled")
PROVIDER_FIELDS = ("displayName", "description", "disabled", "attributeMapping", "attributeCondition", "oidc", "aws")
BUCKET_FIELDS = ("location", "storageClass", "labels", "iamConfiguration", "versioning")
SECRET_FIELDS = ("replication", "labels")
ORG_POLICY_FIELDS = ("constraint", "booleanPolicy", "listPolicy", "restoreDefault")
ENFORCED_CONSTRAINTS = ("constraints/iam.disableServiceAccountKeyCreation",)  # keyless.projects: what is enforced


class Api(Protocol):
    def call(self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None) -> dict[str, Any]:
        ...


@dataclass
class Change:
    """One API call of a plan, with the line it prints (`+ create ...`, `~ update ...`)."""

    summary: str
    method: str
    path: str
    body: Any = None
    params: dict[str, str] | None = None
    run: Callable[[], None] | None = field(default=None, repr=False)


def _pick(resource: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: copy.deepcopy(resource[k]) for k in names if resource.get(k) not in (None, {}, [], "", False)}


def _policy(policy: dict[str, Any]) -> dict[str, Any]:
    """A policy as the file holds it: bindings and auditConfigs, sorted, without etag or version."""
    bindings = []
    for b in policy.get("bindings", []):
        binding = {"role": b["role"], "members": sorted(b.get("members", []))}
        if b.get("condition"):
            binding["condition"] = b["condition"]
        bindings.append(binding)
    bindings.sort(key=lambda b: (b["role"], json.dumps(b.get("condition"), sort_keys=True)))
    out: dict[str, Any] = {}
    if bindings:
        out["bindings"] = bindings
    if policy.get("auditConfigs"):
        out["auditConfigs"] = sorted(policy["auditConfigs"], key=lambda c: c.get("service", ""))
    return out


def _id(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# -- export ------------------------------------------------------------------------------------------


def export(api: Api) -> dict[str, Any]:
    projects = []
    for p in sorted(api.call("GET", "/cloudresourcemanager/v1/projects").get("projects", []),
                    key=lambda p: p["projectId"]):
        if p.get("lifecycleState", "ACTIVE") != "ACTIVE":
            continue
        projects.append(_export_project(api, p))
    return {"apiVersion": FORMAT, "projects": projects}


def _export_project(api: Api, p: dict[str, Any]) -> dict[str, Any]:
    pid = p["projectId"]
    out: dict[str, Any] = {"projectId": pid, "projectNumber": str(p["projectNumber"]), **_pick(p, PROJECT_FIELDS)}
    out["iamPolicy"] = _policy(api.call("POST", f"/cloudresourcemanager/v1/projects/{pid}:getIamPolicy",
                                        {"options": {"requestedPolicyVersion": 3}}))
    org_policies = []
    for constraint in ENFORCED_CONSTRAINTS:
        got = api.call("POST", f"/cloudresourcemanager/v1/projects/{pid}:getOrgPolicy", {"constraint": constraint})
        policy = _pick(got, ORG_POLICY_FIELDS)
        if set(policy) - {"constraint"}:
            org_policies.append(policy)
    if org_policies:
        out["orgPolicies"] = org_policies
    roles = api.call("GET", f"/iam/v1/projects/{pid}/roles", params={"view": "FULL"}).get("roles", [])
    if roles:
        out["roles"] = [{"roleId": _id(r["name"]), **_pick(r, ROLE_FIELDS)}
                        for r in sorted(roles, key=lambda r: r["name"])]
    accounts = []
    for a in sorted(api.call("GET", f"/iam/v1/projects/{pid}/serviceAccounts").get("accounts", []),
                    key=lambda a: a["email"]):
        account = {"accountId": a["email"].split("@", 1)[0], **_pick(a, ACCOUNT_FIELDS)}
        policy = _policy(api.call("POST", f"/iam/v1/projects/{pid}/serviceAccounts/{a['email']}:getIamPolicy",
                                  {"options": {"requestedPolicyVersion": 3}}))
        if policy:
            account["iamPolicy"] = policy
        accounts.append(account)
    if accounts:
        out["serviceAccounts"] = accounts
    pools_path = f"/iam/v1/projects/{pid}/locations/global/workloadIdentityPools"
    pools = []
    for pool in sorted(api.call("GET", pools_path).get("workloadIdentityPools", []), key=lambda x: x["name"]):
        entry = {"poolId": _id(pool["name"]), **_pick(pool, POOL_FIELDS)}
        providers = api.call("GET", f"{pools_path}/{entry['poolId']}/providers").get("workloadIdentityPoolProviders", [])
        if providers:
            entry["providers"] = [{"providerId": _id(x["name"]), **_pick(x, PROVIDER_FIELDS)}
                                  for x in sorted(providers, key=lambda x: x["name"])]
        pools.append(entry)
    if pools:
        out["workloadIdentityPools"] = pools
    buckets = []
    for b in sorted(api.call("GET", "/storage/v1/b", params={"project": pid}).get("items", []),
                    key=lambda b: b["name"]):
        bucket = {"name": b["name"], **_pick(b, BUCKET_FIELDS)}
        if "iamConfiguration" in bucket:  # the settable part: lockedTime is output only, bucketPolicyOnly its alias
            iam = bucket["iamConfiguration"]
            bucket["iamConfiguration"] = {
                "uniformBucketLevelAccess": {"enabled": bool(iam.get("uniformBucketLevelAccess", {}).get("enabled"))},
                **({"publicAccessPrevention": iam["publicAccessPrevention"]} if "publicAccessPrevention" in iam else {})}
        bucket["iamPolicy"] = _policy(api.call("GET", f"/storage/v1/b/{b['name']}/iam",
                                               params={"optionsRequestedPolicyVersion": "3"}))
        buckets.append(bucket)
    if buckets:
        out["buckets"] = buckets
    secrets = []
    for sec in sorted(api.call("GET", f"/secretmanager/v1/projects/{pid}/secrets").get("secrets", []),
                      key=lambda s: s["name"]):
        secret = {"secretId": _id(sec["name"]), **_pick(sec, SECRET_FIELDS)}
        policy = _policy(api.call("GET", f"/secretmanager/v1/{sec['name']}:getIamPolicy",
                                  params={"options.requestedPolicyVersion": "3"}))
        if policy:
            secret["iamPolicy"] = policy
        secrets.append(secret)
    if secrets:
        out["secrets"] = secrets
    clusters = [_export_cluster(api, pid, c) for c in sorted(
        api.call("GET", f"/container/v1/projects/{pid}/locations/-/clusters").get("clusters", []),
        key=lambda c: (c["location"], c["name"]))]
    if clusters:
        out["clusters"] = clusters
    return out


def _cluster_path(pid: str, location: str, name: str) -> str:
    return f"projects/{pid}/locations/{location}/clusters/{name}"


def _export_cluster(api: Api, pid: str, c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": c["name"], "location": c["location"]}
    if c.get("workloadIdentityConfig"):
        out["workloadIdentityConfig"] = c["workloadIdentityConfig"]
    pools = []
    for np in sorted(c.get("nodePools", []), key=lambda n: n["name"]):
        entry: dict[str, Any] = {"name": np["name"]}
        config = _pick(np.get("config", {}), ("serviceAccount", "workloadMetadataConfig", "oauthScopes"))
        if config:
            entry["config"] = config
        pools.append(entry)
    if pools:
        out["nodePools"] = pools
    base = f"/kubernetes/{_cluster_path(pid, c['location'], c['name'])}/api/v1"
    namespaces = []
    for ns in sorted(api.call("GET", f"{base}/namespaces").get("items", []), key=lambda n: n["metadata"]["name"]):
        name = ns["metadata"]["name"]
        ksas = []
        for sa in sorted(api.call("GET", f"{base}/namespaces/{name}/serviceaccounts").get("items", []),
                         key=lambda s: s["metadata"]["name"]):
            ksa: dict[str, Any] = {"name": sa["metadata"]["name"]}
            if sa["metadata"].get("annotations"):
                ksa["annotations"] = dict(sorted(sa["metadata"]["annotations"].items()))
            ksas.append(ksa)
        entry = {"name": name}
        if ksas:
            entry["serviceAccounts"] = ksas
        namespaces.append(entry)
    if namespaces:
        out["namespaces"] = namespaces
    return out


# -- plan and apply ----------------------------------------------------------------------------------


def _diff(kind: str, name: str, have: dict[str, Any], want: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """The fields of `want` that differ from `have` (fields the file leaves out are not changed)."""
    return [k for k in names if k in want and have.get(k) != want[k]]


def plan(api: Api, world: dict[str, Any], create_project: Callable[[str, str | None, str | None], None]) -> list[Change]:
    if world.get("apiVersion", FORMAT) != FORMAT:
        raise ValueError(f"apiVersion must be {FORMAT}")
    current = {p["projectId"]: p for p in export(api)["projects"]}
    changes: list[Change] = []
    policies: list[Change] = []
    for want in world.get("projects") or []:
        pid = want.get("projectId")
        if not pid:
            raise ValueError("every project needs a projectId")
        have = current.get(pid)
        if have is None:
            number = want.get("projectNumber")
            changes.append(Change(f"+ create project {pid}" + (f" (number {number})" if number else ""), "", "",
                                  run=functools.partial(create_project, pid, number, want.get("name"))))
            have = {"projectId": pid}
        elif want.get("projectNumber") and str(want["projectNumber"]) != have["projectNumber"]:
            raise ValueError(f"project {pid} exists with number {have['projectNumber']}, the file says "
                             f"{want['projectNumber']} (a number never changes)")
        fields = _diff("project", pid, have, want, ("labels",))
        if fields and "projectNumber" in have:
            changes.append(Change(f"~ update project {pid}: {', '.join(fields)}", "PATCH",
                                  f"/cloudresourcemanager/v3/projects/{pid}", {k: want[k] for k in fields},
                                  {"updateMask": ",".join(fields)}))
        _plan_project(pid, have, want, changes, policies)
    return changes + policies


def _policy_change(label: str, have: dict[str, Any] | None, want: dict[str, Any] | None, method: str, path: str,
                   wrap: Callable[[dict[str, Any]], Any]) -> list[Change]:
    if want is None:
        return []
    want = _policy(want)
    if have is not None and _policy(have) == want:
        return []
    policy = {**want, "version": 3}
    return [Change(f"~ set IAM policy of {label}", method, path, wrap(policy))]


def _plan_project(pid: str, have: dict[str, Any], want: dict[str, Any], changes: list[Change],
                  policies: list[Change]) -> None:
    policies += _policy_change(f"project {pid}", have.get("iamPolicy"), want.get("iamPolicy"), "POST",
                               f"/cloudresourcemanager/v1/projects/{pid}:setIamPolicy",
                               lambda p: {"policy": p, "updateMask": "bindings,etag,auditConfigs"})
    have_org = {p["constraint"]: p for p in have.get("orgPolicies", [])}
    for org_policy in want.get("orgPolicies") or []:
        if have_org.get(org_policy["constraint"]) != _pick(org_policy, ORG_POLICY_FIELDS):
            changes.append(Change(f"~ set org policy {org_policy['constraint']} on {pid}", "POST",
                                  f"/cloudresourcemanager/v1/projects/{pid}:setOrgPolicy",
                                  {"policy": _pick(org_policy, ORG_POLICY_FIELDS)}))
    have_roles = {r["roleId"]: r for r in have.get("roles", [])}
    for role in want.get("roles") or []:
        rid = role["roleId"]
        body = {k: role[k] for k in ROLE_FIELDS if k in role}
        if rid not in have_roles:
            changes.append(Change(f"+ create role projects/{pid}/roles/{rid}", "POST", f"/iam/v1/projects/{pid}/roles",
                                  {"roleId": rid, "role": body}))
        elif fields := _diff("role", rid, have_roles[rid], role, ROLE_FIELDS):
            changes.append(Change(f"~ update role projects/{pid}/roles/{rid}: {', '.join(fields)}", "PATCH",
                                  f"/iam/v1/projects/{pid}/roles/{rid}", {k: role[k] for k in fields},
                                  {"updateMask": ",".join(fields)}))
    have_accounts = {a["accountId"]: a for a in have.get("serviceAccounts", [])}
    for account in want.get("serviceAccounts") or []:
        aid = account["accountId"]
        email = f"{aid}@{pid}.iam.gserviceaccount.com"
        path = f"/iam/v1/projects/{pid}/serviceAccounts/{email}"
        current = have_accounts.get(aid)
        if current is None:
            changes.append(Change(f"+ create service account {email}", "POST", f"/iam/v1/projects/{pid}/serviceAccounts",
                                  {"accountId": aid, "serviceAccount": _pick(account, ("displayName", "description"))}))
            current = {}
        if fields := [f for f in _diff("account", aid, current, account, ("displayName", "description")) if current]:
            changes.append(Change(f"~ update service account {email}: {', '.join(fields)}", "PATCH", path,
                                  {"serviceAccount": {k: account[k] for k in fields}, "updateMask": ",".join(fields)}))
        if "disabled" in account and bool(current.get("disabled")) != bool(account["disabled"]):
            verb = "disable" if account["disabled"] else "enable"
            changes.append(Change(f"~ {verb} service account {email}", "POST", f"{path}:{verb}", {}))
        policies += _policy_change(f"service account {email}", current.get("iamPolicy", {}), account.get("iamPolicy"),
                                   "POST", f"{path}:setIamPolicy", lambda p: {"policy": p})
    pools_path = f"/iam/v1/projects/{pid}/locations/global/workloadIdentityPools"
    have_pools = {p["poolId"]: p for p in have.get("workloadIdentityPools", [])}
    for pool in want.get("workloadIdentityPools") or []:
        pool_id = pool["poolId"]
        current = have_pools.get(pool_id)
        if current is None:
            changes.append(Change(f"+ create workload identity pool {pool_id} in {pid}", "POST", pools_path,
                                  _pick(pool, POOL_FIELDS), {"workloadIdentityPoolId": pool_id}))
            current = {}
        elif fields := _diff("pool", pool_id, current, pool, POOL_FIELDS):
            changes.append(Change(f"~ update workload identity pool {pool_id}: {', '.join(fields)}", "PATCH",
                                  f"{pools_path}/{pool_id}", {k: pool[k] for k in fields},
                                  {"updateMask": ",".join(fields)}))
        have_providers = {p["providerId"]: p for p in current.get("providers", [])}
        for provider in pool.get("providers") or []:
            provider_id = provider["providerId"]
            path = f"{pools_path}/{pool_id}/providers"
            if provider_id not in have_providers:
                changes.append(Change(f"+ create provider {pool_id}/{provider_id}", "POST", path,
                                      _pick(provider, PROVIDER_FIELDS), {"workloadIdentityPoolProviderId": provider_id}))
            elif fields := _diff("provider", provider_id, have_providers[provider_id], provider, PROVIDER_FIELDS):
                changes.append(Change(f"~ update provider {pool_id}/{provider_id}: {', '.join(fields)}", "PATCH",
                                      f"{path}/{provider_id}", {k: provider[k] for k in fields},
                                      {"updateMask": ",".join(fields)}))
    have_buckets = {b["name"]: b for b in have.get("buckets", [])}
    for bucket in want.get("buckets") or []:
        name = bucket["name"]
        current = have_buckets.get(name)
        if current is None:
            changes.append(Change(f"+ create bucket gs://{name}", "POST", "/storage/v1/b",
                                  {"name": name, **_pick(bucket, BUCKET_FIELDS)}, {"project": pid}))
            current = {}
        policies += _policy_change(f"gs://{name}", current.get("iamPolicy"), bucket.get("iamPolicy"), "PUT",
                                   f"/storage/v1/b/{name}/iam", lambda p: p)
    have_secrets = {s["secretId"]: s for s in have.get("secrets", [])}
    for secret in want.get("secrets") or []:
        sid = secret["secretId"]
        current = have_secrets.get(sid)
        base = f"/secretmanager/v1/projects/{pid}/secrets"
        if current is None:
            body = {"replication": {"automatic": {}}, **_pick(secret, SECRET_FIELDS)}
            changes.append(Change(f"+ create secret projects/{pid}/secrets/{sid}", "POST", base, body, {"secretId": sid}))
            current = {}
        policies += _policy_change(f"secret {sid}", current.get("iamPolicy", {}), secret.get("iamPolicy"), "POST",
                                   f"{base}/{sid}:setIamPolicy", lambda p: {"policy": p})
    have_clusters = {(c["location"], c["name"]): c for c in have.get("clusters", [])}
    for cluster in want.get("clusters") or []:
        _plan_cluster(pid, have_clusters.get((cluster["location"], cluster["name"])), cluster, changes)


def _plan_cluster(pid: str, have: dict[str, Any] | None, want: dict[str, Any], changes: list[Change]) -> None:
    location, name = want["location"], want["name"]
    path = _cluster_path(pid, location, name)
    if have is None:
        body: dict[str, Any] = {"name": name, "initialNodeCount": 1}
        if want.get("workloadIdentityConfig"):
            body["workloadIdentityConfig"] = want["workloadIdentityConfig"]
        pools = [{"name": p["name"], "initialNodeCount": 1, **({"config": p["config"]} if p.get("config") else {})}
                 for p in want.get("nodePools") or []]
        if pools:
            body["nodePools"] = pools
        changes.append(Change(f"+ create cluster {path}", "POST", f"/container/v1/projects/{pid}/locations/{location}"
                                                                  "/clusters", {"cluster": body}))
        have = {"nodePools": [{"name": p["name"]} for p in pools], "namespaces": []}
    have_pools = {p["name"] for p in have.get("nodePools", [])}
    for pool in want.get("nodePools") or []:
        if pool["name"] not in have_pools:
            body = {"name": pool["name"], "initialNodeCount": 1, **({"config": pool["config"]} if pool.get("config") else {})}
            changes.append(Change(f"+ create node pool {path}/nodePools/{pool['name']}", "POST",
                                  f"/container/v1/{path}/nodePools", {"nodePool": body}))
    base = f"/kubernetes/{path}/api/v1/namespaces"
    have_ns = {n["name"]: {k["name"]: k for k in n.get("serviceAccounts", [])} for n in have.get("namespaces", [])}
    for ns in want.get("namespaces") or []:
        known = have_ns.get(ns["name"])
        if known is None:
            changes.append(Change(f"+ create namespace {ns['name']} in {path}", "POST", base,
                                  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns["name"]}},
                                  {"__exists_ok": "1"}))
            known = {}
        for ksa in ns.get("serviceAccounts") or []:
            meta: dict[str, Any] = {"name": ksa["name"], "namespace": ns["name"]}
            if ksa.get("annotations"):
                meta["annotations"] = ksa["annotations"]
            body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
            current = known.get(ksa["name"])
            if current is None:
                changes.append(Change(f"+ create Kubernetes ServiceAccount {ns['name']}/{ksa['name']} in {path}", "POST",
                                      f"{base}/{ns['name']}/serviceaccounts", body, {"__exists_ok": "1"}))
            elif "annotations" in ksa and current.get("annotations") != ksa["annotations"]:
                # A whole-object replace (PUT), which every client sends as JSON; the object is small.
                changes.append(Change(f"~ annotate Kubernetes ServiceAccount {ns['name']}/{ksa['name']} in {path}",
                                      "PUT", f"{base}/{ns['name']}/serviceaccounts/{ksa['name']}", body))


def apply(api: Api, changes: list[Change]) -> None:
    """Make the changes in order; the first refusal stops (what was made before stays)."""
    for change in changes:
        if change.run is not None:
            change.run()
            continue
        params = dict(change.params or {})
        exists_ok = params.pop("__exists_ok", None) is not None
        try:
            api.call(change.method, change.path, change.body, params=params or None)
        except ValueError as exc:  # a Kubernetes object made with its cluster (default namespaces) is fine
            if not (exists_ok and ("409" in str(exc) or "ALREADY_EXISTS" in str(exc))):
                raise ValueError(f"{change.summary.lstrip('+~ ')}: {exc}") from exc
