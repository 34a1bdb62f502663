"""Test helpers for pods: a cluster with node pools made through the container API, KSAs applied
with `keyless k8s apply`, and `keyless pod run` as a user types it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import yaml

from keyless.gke import netns
from keyless.gke.clusters import find_cluster
from keyless.store.models import GkeCluster
from tests.api.helpers import server_state
from tests.conftest import KeylessServer

PROJECT = "my-project"
NUMBER = "123456789012"
POOL = f"{PROJECT}.svc.id.goog"
GSA = f"my-app-gsa@{PROJECT}.iam.gserviceaccount.com"
COMPUTE_SA = f"{NUMBER}-compute@developer.gserviceaccount.com"
CLUSTERS = f"/container/v1/projects/{PROJECT}/locations/us-central1/clusters"


def make_cluster(srv: KeylessServer, name: str = "my-cluster", *, pools: dict[str, str] | None = None) -> str:
    """A cluster with one node per pool ({pool name: workload metadata mode}), created through the
    container API as gcloud creates it; returns its id."""
    pools = pools or {"default-pool": "GKE_METADATA", "legacy-pool": "GCE_METADATA"}
    body = {"cluster": {"name": name, "workloadIdentityConfig": {"workloadPool": POOL},
                        "nodePools": [{"name": pool, "initialNodeCount": 1,
                                       "config": {"workloadMetadataConfig": {"mode": mode}}}
                                      for pool, mode in pools.items()]}}
    r = srv.call("POST", f"{CLUSTERS}", body=body)
    assert r.status_code == 200, r.text
    with server_state(srv).db.read() as s:
        cluster = find_cluster(s, PROJECT, name, "us-central1")
    assert cluster is not None
    return cluster.id


def set_mode(srv: KeylessServer, cluster_id: str, pool: str, mode: str) -> None:
    """`gcloud container node-pools update POOL --workload-metadata=MODE`."""
    r = srv.call("PUT", f"{CLUSTERS}/{_cluster_name(srv, cluster_id)}/nodePools/{pool}",
                 body={"workloadMetadataConfig": {"mode": mode}})
    assert r.status_code == 200, r.text


def apply_ksa(srv: KeylessServer, cluster_id: str, namespace: str, name: str,
              annotations: dict[str, str] | None = None) -> None:
    """A ServiceAccount applied with `keyless k8s apply -f` (its namespace too), as a user would."""
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}}}]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(docs, f)
    try:
        out = srv.keyless("k8s", "apply", "-f", f.name, "--cluster", _cluster_name(srv, cluster_id),
                          "--project", PROJECT)
    finally:
        os.unlink(f.name)
    assert out.returncode == 0, out.stderr


def _cluster_name(srv: KeylessServer, cluster_id: str) -> str:
    with server_state(srv).db.read() as s:
        cluster = s.get(GkeCluster, cluster_id)
    assert cluster is not None
    return cluster.name


def pod_run(srv: KeylessServer, *args: str, command: list[str], timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`keyless pod run ARGS -- COMMAND` against this server's store."""
    cmd = [sys.executable, "-m", "keyless.cli.main", "pod", "run", *args, "--data-dir", str(srv.data_dir)]
    if srv.database_url:
        cmd += ["--database", srv.database_url]
    return subprocess.run([*cmd, "--", *command], capture_output=True, text=True, timeout=timeout, env=env)


def curl(path: str, *extra: str, host: str = "metadata.google.internal") -> list[str]:
    return ["curl", "-s", "-H", "Metadata-Flavor: Google", *extra, f"http://{host}/computeMetadata/v1/{path}"]


def leftovers() -> list[str]:
    """Keyless namespaces, records and /etc/netns entries left on this machine."""
    found = netns.namespaces()
    found += [p.name for p in netns.run_dir().glob(f"{netns.PREFIX}*") if p.suffix in (".json", ".lock")]
    if netns.ETC_NETNS.exists():
        found += [p.name for p in netns.ETC_NETNS.iterdir() if p.name.startswith(netns.PREFIX)]
    return found
