"""`keyless doctor lint` / `migrate` as a user runs them (subprocess on the store): exit codes gate
CI, SARIF 2.1.0 validates structurally, and the migration plan for the seeds' "before" manifest
binds first, deploys with both, verifies, then deletes the key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from keyless.doctor import manifests, migrate, model
from keyless.state import ServerState
from tests.doctor import seeds

# The SARIF 2.1.0 keys code-scanning tools require (a structural subset of the OASIS schema).
SARIF_SHAPE = {
    "type": "object", "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["tool", "results"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name", "rules"], "properties": {"rules": {"type": "array", "items": {
                        "type": "object", "required": ["id", "shortDescription", "help"],
                        "properties": {"shortDescription": {"type": "object", "required": ["text"]},
                                       "help": {"type": "object", "required": ["text"]}}}}}}}},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["ruleId", "level", "message", "locations"],
                    "properties": {
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": {"type": "object", "required": ["text"]},
                        "locations": {"type": "array", "minItems": 1, "items": {"type": "object", "anyOf": [
                            {"required": ["physicalLocation"], "properties": {"physicalLocation": {
                                "type": "object", "required": ["artifactLocation", "region"], "properties": {
                                    "artifactLocation": {"type": "object", "required": ["uri"]},
                                    "region": {"type": "object", "required": ["startLine"], "properties": {
                                        "startLine": {"type": "integer", "minimum": 1}}}}}}},
                            {"required": ["logicalLocations"]}]}}}}}}}},
    },
}


def _keyless(st: ServerState, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "keyless.cli.main", "doctor", *args, "--data-dir", str(st.settings.data_dir)]
    if st.settings.database_url:
        cmd += ["--database", st.settings.database_url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def st(state: ServerState, tmp_path: Path) -> ServerState:
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "app.yaml").write_text(seeds.MANIFESTS)
    return seeds.build(state)


def test_lint_exit_status_and_sarif(st: ServerState, tmp_path: Path) -> None:
    clean = _keyless(st, "lint", "--project", "my-project", "-f", str(tmp_path / "k8s"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "No problems found." in clean.stdout
    (tmp_path / "k8s" / "legacy.yaml").write_text(seeds.BEFORE.replace("name: my-app\n", "name: legacy-app\n", 1))
    seeds.grant(st, "projects/my-project", "roles/editor", f"serviceAccount:{seeds.APP_GSA}")
    out = _keyless(st, "lint", "--project", "my-project", "-f", str(tmp_path / "k8s"), "--format", "sarif")
    assert out.returncode == 1, out.stderr
    log = json.loads(out.stdout)
    jsonschema.validate(log, SARIF_SHAPE)
    results = {r["ruleId"]: r for r in log["runs"][0]["results"]}
    assert {"KL019", "KL025", "KL026"} <= set(results)
    loc = results["KL025"]["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("k8s/legacy.yaml") and loc["region"]["startLine"] == 20
    assert results["KL019"]["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == \
        f"serviceAccount:{seeds.APP_GSA}"
    warn_only = _keyless(st, "lint", "--project", "my-project", "--format", "json")
    body = json.loads(warn_only.stdout)
    # KL019 is an error; without the manifests, the bindings' KSAs are in no manifest, and the
    # cluster (which lists its namespaces as GKE's does) has none of them either: KL009, twice
    errors = sorted(f["rule"] for f in body["findings"] if f["severity"] == "error")
    assert warn_only.returncode == 1 and errors == ["KL009", "KL009", "KL019"], errors
    bad = _keyless(st, "lint", "-f", str(tmp_path / "missing.yaml"))
    assert bad.returncode == 1 and "no such file" in bad.stderr


def test_warnings_alone_do_not_fail_ci(st: ServerState, tmp_path: Path) -> None:
    (tmp_path / "k8s" / "app.yaml").write_text(seeds.MANIFESTS.replace("      serviceAccountName: my-app-ksa\n", ""))
    out = _keyless(st, "lint", "--project", "my-project", "-f", str(tmp_path / "k8s"), "--format", "json")
    body = json.loads(out.stdout)
    assert [f["rule"] for f in body["findings"]] == ["KL026"] and out.returncode == 0


def test_migrate_plans_the_seeds_before_manifest(st: ServerState, tmp_path: Path) -> None:
    seeds.add_cluster(st, name="old-cluster", mode="GCE_METADATA")
    path = tmp_path / "before.yaml"
    path.write_text(seeds.BEFORE)
    out = _keyless(st, "migrate", "-f", str(path), "--project", "my-project", "--cluster", "old-cluster",
                   "--service-account", seeds.APP_GSA, "--format", "json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)["workloads"][0]
    assert plan["ksa"] == "my-app-ksa" and plan["gsa"] == seeds.APP_GSA and plan["secrets"] == ["my-app-sa-key"]
    assert plan["ksaManifest"]["metadata"] == {"name": "my-app-ksa", "namespace": "production", "annotations": {
        "iam.gke.io/gcp-service-account": seeds.APP_GSA}}
    spec = plan["patchedManifest"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "my-app-ksa" and "volumes" not in spec
    assert spec["containers"][0]["env"] == [{"name": "LOG_LEVEL", "value": "info"}]
    assert "volumeMounts" not in spec["containers"][0]
    commands = [c for s in plan["steps"] for c in s["commands"]]
    bind = (f"gcloud iam service-accounts add-iam-policy-binding {seeds.APP_GSA} --role=roles/iam.workloadIdentityUser "
            "--member='serviceAccount:my-project.svc.id.goog[production/my-app-ksa]'")
    node = ("gcloud container node-pools update default-pool --cluster=old-cluster --location=europe-west2 "
            "--project=my-project --workload-metadata=GKE_METADATA")
    delete = f"gcloud iam service-accounts keys delete KEY_ID --iam-account={seeds.APP_GSA}"
    assert bind in commands and node in commands and delete in commands
    titles = [s["title"] for s in plan["steps"]]
    order = [next(i for i, t in enumerate(titles) if t.startswith(w)) for w in ("Bind first", "Deploy with both",
                                                                                  "Verify", "Deploy without", "Then delete")]
    assert order == sorted(order)
    assert commands.index(bind) < commands.index(delete)
    text = _keyless(st, "migrate", "-f", str(path), "--project", "my-project")
    assert text.returncode == 0 and "my-app-gsa@my-project.iam.gserviceaccount.com" in text.stdout
    patched = text.stdout.split("## Patched manifest\n", 1)[1].split("\n## ", 1)[0]
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in patched and "serviceAccountName: my-app-ksa" in patched
    assert yaml.safe_load(patched)["kind"] == "Deployment"


def test_migrate_names_the_stored_keys_and_secret_key_refs(st: ServerState) -> None:
    before = seeds.BEFORE.replace("""              value: /var/secrets/google/key.json""", """              valueFrom:
                secretKeyRef:
                  name: my-app-sa-key
                  key: key.json""")
    docs = manifests.parse_text(before, "before.yaml")
    plans = migrate.plan(model.load(st, "my-project"), docs, project="my-project")
    assert [p.secrets for p in plans] == [["my-app-sa-key"]]
    assert plans[0].removed["env"] == ["app: GOOGLE_APPLICATION_CREDENTIALS"]
    assert migrate.plan(model.load(st), manifests.parse_text(seeds.MANIFESTS, "x.yaml")) == []
