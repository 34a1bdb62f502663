"""Test helpers for pods: a cluster with node pools made through the container API, KSAs applied
with `keyless k8s apply`, and `keyless pod run` as a user types it."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterable

import yaml
from sqlalchemy import select

from keyless.config import Settings
from keyless.gke import netns
from keyless.gke.clusters import find_cluster
from keyless.gke.pods import node_namespace
from keyless.store.models import GkeCluster, GkeNode
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
    apply_ksas(srv, cluster_id, namespace, {name: annotations or {}})


def apply_ksas(srv: KeylessServer, cluster_id: str, namespace: str, accounts: dict[str, dict[str, str]]) -> None:
    """ServiceAccounts ({name: annotations}) and their namespace in one `keyless k8s apply -f`."""
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    docs += [{"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": name, "namespace": namespace, "annotations": annotations}}
             for name, annotations in accounts.items()]
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


def unique_sleep() -> str:
    """`sleep N` with an N no other test picks (7 digits), so `pgrep -f` finds this test's process
    only: other xdist workers and the other CI leg run the same tests at the same time."""
    return f"sleep {1_000_000 + secrets.randbelow(9_000_000)}"


def remains(names: Iterable[str]) -> list[str]:
    """Which of these namespaces still exist on this machine, with their owner records, node locks
    and /etc/netns entries."""
    names = set(names)
    found = [n for n in netns.namespaces() if n in names]
    found += [p.name for p in netns.run_dir().glob(f"{netns.PREFIX}*")
              if p.suffix in (".json", ".lock") and p.stem in names]
    if netns.ETC_NETNS.exists():
        found += [p.name for p in netns.ETC_NETNS.iterdir() if p.name in names]
    return sorted(found)


def node_namespaces(srv: KeylessServer) -> set[str]:
    """The network namespaces of this server's nodes (named after its store and node,
    keyless.gke.pods.node_namespace): a pod of this server is a record whose `node` is one of them.
    Pod names alone do not say whose a pod is: the other CI leg runs the same tests at the same time."""
    settings = Settings(data_dir=srv.data_dir, database_url=srv.database_url)
    with server_state(srv).db.read() as s:
        return {node_namespace(settings, name)[0] for name in s.scalars(select(GkeNode.name))}


def leftovers(srv: KeylessServer) -> list[str]:
    """What this server's pods left on this machine: its nodes' namespaces (named after its store and
    node, keyless.gke.pods.node_namespace) and the pods placed on them (their owner records name the
    node), with records, locks and /etc/netns entries. Scoped to this server because other tests
    (xdist workers, the other CI leg) run pods at the same time. Also any pod namespace or /etc/netns
    entry without an owner record, whoever's: none exists even for a moment (the record is written
    first and removed last, keyless.gke.netns), so one is a leak."""
    nodes = node_namespaces(srv)
    records = netns.records()
    mine = nodes | {name for name, rec in records.items() if rec.get("node") in nodes}
    orphans = set(netns.namespaces(netns.POD_PREFIX))
    if netns.ETC_NETNS.exists():
        orphans |= {p.name for p in netns.ETC_NETNS.iterdir() if p.name.startswith(netns.PREFIX)}
    return remains(mine | {name for name in orphans if netns.read_record(name) is None})
