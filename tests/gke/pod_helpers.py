"""Test helpers for pods: a cluster with node pools and nodes written to a running server's
store (as the container API stores them), KSAs, and `keyless pod run` as a user types it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from keyless.gke import netns
from keyless.store.models import GkeCluster, GkeNode, GkeNodePool, K8sObject
from tests.api.helpers import server_state
from tests.conftest import KeylessServer

PROJECT = "my-project"
NUMBER = "123456789012"
POOL = f"{PROJECT}.svc.id.goog"
GSA = f"my-app-gsa@{PROJECT}.iam.gserviceaccount.com"
COMPUTE_SA = f"{NUMBER}-compute@developer.gserviceaccount.com"


def make_cluster(srv: KeylessServer, name: str = "my-cluster", *, pools: dict[str, str] | None = None) -> str:
    """A cluster with one node per pool ({pool name: workload metadata mode}); returns its id."""
    pools = pools or {"default-pool": "GKE_METADATA", "legacy-pool": "GCE_METADATA"}
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    now = datetime.now(UTC)
    cluster_id = str(uuid.uuid4())
    with server_state(srv).db.write() as s:
        s.add(GkeCluster(id=cluster_id, project_id=PROJECT, location="us-central1", name=name, status="RUNNING",
                         workload_pool=POOL, autopilot=False, endpoint="", create_time=now, issuer_key_pem=key,
                         body={}))
        for i, (pool, mode) in enumerate(pools.items()):
            pool_id = str(uuid.uuid4())
            s.add(GkeNodePool(id=pool_id, cluster_id=cluster_id, name=pool, status="RUNNING",
                              workload_metadata_mode=mode, service_account=COMPUTE_SA, node_count=1, create_time=now,
                              body={"config": {"workloadMetadataConfig": {"mode": mode}}}))
            s.add(GkeNode(name=f"gke-{name}-{pool}-{cluster_id[:8]}-{i:04d}", cluster_id=cluster_id,
                          node_pool_id=pool_id, internal_ip=f"10.128.0.{10 + i}"))
    return cluster_id


def set_mode(srv: KeylessServer, cluster_id: str, pool: str, mode: str) -> None:
    with server_state(srv).db.write() as s:
        row = s.scalars(select(GkeNodePool).where(GkeNodePool.cluster_id == cluster_id,
                                                  GkeNodePool.name == pool)).one()
        row.workload_metadata_mode = mode


def apply_ksa(srv: KeylessServer, cluster_id: str, namespace: str, name: str,
              annotations: dict[str, str] | None = None) -> None:
    """A ServiceAccount as `kubectl apply` stores it (created or replaced)."""
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount",
                            "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}}}
    with server_state(srv).db.write() as s:
        row = s.scalars(select(K8sObject).where(K8sObject.cluster_id == cluster_id, K8sObject.kind == "ServiceAccount",
                                                K8sObject.namespace == namespace, K8sObject.name == name)).first()
        if row is None:
            s.add(K8sObject(cluster_id=cluster_id, kind="ServiceAccount", namespace=namespace, name=name,
                            uid=str(uuid.uuid4()), create_time=datetime.now(UTC), body=body))
        else:
            row.body = body


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
