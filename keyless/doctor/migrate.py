"""`keyless doctor migrate`: the seeds' migration guide as a generated plan. For each workload
that feeds a key Secret to GOOGLE_APPLICATION_CREDENTIALS: the KSA manifest and its annotation,
the GSA and workloadIdentityUser binding as gcloud commands, node pools moved to GKE_METADATA, the
manifest patch, in zero-downtime order (bind first, deploy with both, verify, then delete the key).
"""

from __future__ import annotations

import copy
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from keyless.doctor.manifests import ADC_ENV, ANNOTATION, Manifest, key_file_uses, pod_spec, pod_spec_path
from keyless.doctor.model import Setup

WIU = "roles/iam.workloadIdentityUser"


@dataclass
class Step:
    title: str
    commands: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class WorkloadPlan:
    workload: str  # "Deployment production/my-app"
    path: str
    namespace: str
    ksa: str
    gsa: str
    secrets: list[str]
    ksa_manifest: dict[str, Any]
    patched: dict[str, Any]
    removed: dict[str, list[str]]
    steps: list[Step]


def _strip_key_file(body: dict[str, Any], ksa: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The manifest with serviceAccountName set and the key's volume, mounts and env removed."""
    patched = copy.deepcopy(body)
    spec = pod_spec(patched)
    assert spec is not None
    uses = key_file_uses(spec)
    volumes = {u.volume for u in uses if u.volume}
    removed: dict[str, list[str]] = {"volumes": sorted(volumes), "volumeMounts": [], "env": []}
    spec["serviceAccountName"] = ksa
    spec.pop("serviceAccount", None)
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            if not isinstance(c, dict):
                continue
            if isinstance(c.get("env"), list):
                kept = [e for e in c["env"] if not (isinstance(e, dict) and e.get("name") == ADC_ENV)]
                if len(kept) != len(c["env"]):
                    removed["env"].append(f"{c.get('name')}: {ADC_ENV}")
                c["env"] = kept
                if not kept:
                    del c["env"]
            if isinstance(c.get("volumeMounts"), list):
                kept = [m for m in c["volumeMounts"] if not (isinstance(m, dict) and m.get("name") in volumes)]
                removed["volumeMounts"] += [f"{c.get('name')}: {m.get('mountPath')}" for m in c["volumeMounts"]
                                            if isinstance(m, dict) and m.get("name") in volumes]
                c["volumeMounts"] = kept
                if not kept:
                    del c["volumeMounts"]
    if isinstance(spec.get("volumes"), list):
        spec["volumes"] = [v for v in spec["volumes"] if not (isinstance(v, dict) and v.get("name") in volumes)]
        if not spec["volumes"]:
            del spec["volumes"]
    return patched, removed


def plan(setup: Setup, manifests: list[Manifest], *, project: str | None = None, cluster: str | None = None,
         gsa: str | None = None) -> list[WorkloadPlan]:
    project_id = project or setup.project or "PROJECT_ID"
    q = shlex.quote
    clusters = [c for c in setup.clusters if (cluster is None or c.name == cluster)
                and (project is None or c.project_id == project)]
    out: list[WorkloadPlan] = []
    for m in manifests:
        spec = pod_spec(m.body)
        if spec is None or pod_spec_path(m.body) is None:
            continue
        uses = key_file_uses(spec)
        if not uses:
            continue
        ns = m.namespace
        current = spec.get("serviceAccountName") or spec.get("serviceAccount")
        ksa = str(current) if current and current != "default" else f"{m.name}-ksa"
        email = gsa or f"{m.name}-gsa@{project_id}.iam.gserviceaccount.com"
        ksa_manifest = {"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": ksa, "namespace": ns, "annotations": {ANNOTATION: email}}}
        patched, removed = _strip_key_file(m.body, ksa)
        secrets = sorted({u.secret_name for u in uses})
        member = f"serviceAccount:{project_id}.svc.id.goog[{ns}/{ksa}]"
        steps: list[Step] = []
        cluster_cmds: list[str] = []
        for c in clusters:
            if not c.workload_pool:
                cluster_cmds.append(f"gcloud container clusters update {c.name} --location={c.location} "
                                    f"--project={c.project_id} --workload-pool={c.project_id}.svc.id.goog")
            for np in setup.node_pools:
                if np.cluster.id == c.id and np.mode != "GKE_METADATA" and not c.autopilot:
                    cluster_cmds.append(f"gcloud container node-pools update {np.name} --cluster={c.name} "
                                        f"--location={c.location} --project={c.project_id} "
                                        "--workload-metadata=GKE_METADATA")
        if not clusters:
            cluster_cmds = [f"gcloud container clusters update CLUSTER_NAME --location=REGION "
                            f"--workload-pool={project_id}.svc.id.goog",
                            "gcloud container node-pools update NODE_POOL --cluster=CLUSTER_NAME --location=REGION "
                            "--workload-metadata=GKE_METADATA"]
        steps.append(Step("Enable Workload Identity on the cluster and every node pool", cluster_cmds,
                          "nodes are recreated; pods on old nodes still reach the Compute Engine metadata server"))
        create = [] if setup.account_by_email(email) else [
            f"gcloud iam service-accounts create {email.split('@')[0]} --project={project_id}",
            f"gcloud projects add-iam-policy-binding {project_id} --member={q('serviceAccount:' + email)} "
            "--role=ROLE_THE_KEY_WAS_USED_FOR"]
        steps.append(Step("Bind first: let the KSA impersonate the GSA", create + [
            f"gcloud iam service-accounts add-iam-policy-binding {email} --role={WIU} --member={q(member)}"],
            "the key keeps working meanwhile"))
        steps.append(Step("Create the annotated KSA", [f"kubectl apply -f {ksa}.yaml  # the KSA manifest below"]))
        steps.append(Step("Deploy with both: set serviceAccountName, keep the key mounted", [
            f"kubectl patch {m.kind.lower()} {m.name} --namespace={ns} --type=merge "
            + q(json.dumps(_sa_patch(m.body, ksa)))],
            "the client library still prefers GOOGLE_APPLICATION_CREDENTIALS, so nothing changes yet"))
        steps.append(Step("Verify the identity from a pod running as the KSA", [
            f"kubectl run -it --rm workload-identity-test --image=google/cloud-sdk:slim --namespace={ns} "
            f"--overrides={q(json.dumps({'spec': {'serviceAccountName': ksa}}))} -- "
            "curl -s -H 'Metadata-Flavor: Google' "
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/email"],
            f"it must print {email}"))
        steps.append(Step("Deploy without the key: apply the patched manifest below", [
            f"kubectl apply -f {m.path}  # after applying the patch"]))
        key_cmds = [f"gcloud iam service-accounts keys list --iam-account={email} --managed-by=user"]
        key_ids = [k.key_id for k in setup.keys if k.sa_email == email and k.key_type == "USER_MANAGED"]
        key_cmds += [f"gcloud iam service-accounts keys delete {k} --iam-account={email}" for k in key_ids] or [
            f"gcloud iam service-accounts keys delete KEY_ID --iam-account={email}"]
        key_cmds += [f"kubectl delete secret {s} --namespace={ns}" for s in secrets]
        steps.append(Step("Then delete the key and its Secret", key_cmds))
        steps.append(Step("Keep it from coming back", [
            f"gcloud resource-manager org-policies enable-enforce iam.disableServiceAccountKeyCreation "
            f"--project={project_id}"]))
        out.append(WorkloadPlan(f"{m.kind} {ns}/{m.name}", m.path, ns, ksa, email, secrets, ksa_manifest, patched,
                                removed, steps))
    return out


def _sa_patch(body: dict[str, Any], ksa: str) -> dict[str, Any]:
    path = pod_spec_path(body) or ("spec",)
    patch: dict[str, Any] = {"serviceAccountName": ksa}
    for step in reversed(path):
        patch = {step: patch}
    return patch


def render_json(plans: list[WorkloadPlan]) -> str:
    return json.dumps({"workloads": [{
        "workload": p.workload, "path": p.path, "namespace": p.namespace, "ksa": p.ksa, "gsa": p.gsa,
        "secrets": p.secrets, "ksaManifest": p.ksa_manifest, "patchedManifest": p.patched, "removed": p.removed,
        "steps": [{"title": s.title, "commands": s.commands, "note": s.note} for s in p.steps],
    } for p in plans]}, indent=2)


def render_text(plans: list[WorkloadPlan]) -> str:
    if not plans:
        return "No workload feeds a key Secret to GOOGLE_APPLICATION_CREDENTIALS: nothing to migrate.\n"
    lines: list[str] = []
    for p in plans:
        lines += [f"# {p.workload} ({p.path}): KSA {p.ksa} -> GSA {p.gsa}", ""]
        for i, s in enumerate(p.steps, 1):
            lines.append(f"## {i}. {s.title}")
            lines += s.commands
            if s.note:
                lines.append(f"# {s.note}")
            lines.append("")
        lines += [f"## KSA manifest ({p.ksa}.yaml)", yaml.safe_dump(p.ksa_manifest, sort_keys=False).rstrip(), ""]
        lines += ["## Patched manifest", yaml.safe_dump(p.patched, sort_keys=False).rstrip(), ""]
        lines += ["## Removed", *(f"{k}: {', '.join(v)}" for k, v in p.removed.items() if v), ""]
    return "\n".join(lines)
