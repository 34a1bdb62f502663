"""GKE clusters and node pools as the container API v1 describes them
(https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters).

What Keyless acts on is kept in columns (workload pool, node pools' workload metadata mode and
service account, nodes); the rest of the Cluster resource is echoed as given. Workload Identity
follows https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity: the pool must
be the cluster's own project's `PROJECT_ID.svc.id.goog`; node pools of a cluster with a pool
default to GKE_METADATA, others to GCE_METADATA; Autopilot clusters always have it on. Every
cluster is its own Kubernetes service-account token issuer (keyless.gke.issuer).
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from keyless.clock import rfc3339
from keyless.config import Settings
from keyless.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from keyless.store.models import GkeCluster, GkeNode, GkeNodePool, K8sObject, Operation, Project

NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,38}[a-z0-9])?$")  # clusters: 40 chars; node pools the same rule
LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9](?:-[a-z])?$")  # us-central1 (region) or us-central1-a (zone)
GKE_METADATA, GCE_METADATA = "GKE_METADATA", "GCE_METADATA"
MODES = (GKE_METADATA, GCE_METADATA)
VERSION = "1.30.5-gke.1014001"  # every new cluster's and every node's
# the versions a control plane can be set to (updateMaster): the default, a newer patch, the next minor
VERSIONS = (VERSION, "1.30.6-gke.1125000", "1.31.1-gke.1846000")
DEFAULT_NODE_COUNT = 3
MAX_NODES = 50  # per node pool: enough for any local test, bounded for hostile input
# NodeConfig.oauthScopes when a request names none: "If unspecified, no scopes are added, unless
# Cloud Logging or Cloud Monitoring are enabled, in which case their required scopes will be added"
# (both are on by default). gcloud always sends its own set (`--scopes`, default gke-default:
# devstorage.read_only, logging.write, monitoring, servicecontrol, service.management.readonly,
# trace.append), which is kept as sent.
DEFAULT_OAUTH_SCOPES = ("https://www.googleapis.com/auth/logging.write", "https://www.googleapis.com/auth/monitoring")
MAX_OAUTH_SCOPES = 64


def oauth_scopes(config: dict[str, Any]) -> tuple[str, ...]:
    """The node pool's oauthScopes: those its config names, else the API's default."""
    named = config.get("oauthScopes")
    return tuple(named) if isinstance(named, list) and named else DEFAULT_OAUTH_SCOPES
API = "https://container.googleapis.com/v1"


def workload_pool_of(project_id: str) -> str:
    return f"{project_id}.svc.id.goog"


def default_compute_sa(project_number: str) -> str:
    return f"{project_number}-compute@developer.gserviceaccount.com"


def node_service_account(pool: GkeNodePool, project_number: str) -> str:
    """The nodes' service account: the pool's config.serviceAccount, else the project's default
    Compute Engine account (PROJECT_NUMBER-compute@developer.gserviceaccount.com)."""
    config = (pool.body.get("config") or {}) if isinstance(pool.body, dict) else {}
    node_sa = pool.service_account or config.get("serviceAccount") or ""
    if not node_sa or node_sa == "default":
        node_sa = default_compute_sa(project_number)
    return str(node_sa)


def cluster_path(c: GkeCluster) -> str:
    return f"projects/{c.project_id}/locations/{c.location}/clusters/{c.name}"


def find_cluster(s: Session, project_id: str, name: str, location: str | None = None) -> GkeCluster | None:
    """The cluster named `name` in the project (in `location` when given; else the only one)."""
    q = select(GkeCluster).where(GkeCluster.project_id == project_id, GkeCluster.name == name)
    if location and location != "-":
        q = q.where(GkeCluster.location == location)
    rows = s.scalars(q).all()
    return rows[0] if len(rows) == 1 else None


def get_cluster(s: Session, project_id: str, location: str, name: str) -> GkeCluster:
    row = find_cluster(s, project_id, name, location)
    if row is None:
        raise NotFound(f"Not found: projects/{project_id}/locations/{location}/clusters/{name}.")
    return row


def list_clusters(s: Session, project_id: str, location: str) -> list[GkeCluster]:
    q = select(GkeCluster).where(GkeCluster.project_id == project_id)
    if location != "-":
        q = q.where(GkeCluster.location == location)
    return list(s.scalars(q.order_by(GkeCluster.name)).all())


def node_pools(s: Session, cluster: GkeCluster) -> list[GkeNodePool]:
    return list(s.scalars(select(GkeNodePool).where(GkeNodePool.cluster_id == cluster.id)
                          .order_by(GkeNodePool.create_time, GkeNodePool.name)).all())


def get_node_pool(s: Session, cluster: GkeCluster, name: str) -> GkeNodePool:
    row = s.scalar(select(GkeNodePool).where(GkeNodePool.cluster_id == cluster.id, GkeNodePool.name == name))
    if row is None:
        raise NotFound(f"Not found: {cluster_path(cluster)}/nodePools/{name}.")
    return row


def _check_location(location: str) -> None:
    if not LOCATION.match(location):
        raise InvalidArgument(f"Location \"{location[:64]}\" is not a valid region or zone.")


def _check_pool(project: Project, pool: Any) -> str:
    if pool in (None, ""):
        return ""
    if pool != workload_pool_of(project.project_id):
        raise InvalidArgument(f"Workload Identity Pool \"{str(pool)[:128]}\" is invalid: the only supported pool "
                              f"is \"{workload_pool_of(project.project_id)}\" for project \"{project.project_id}\".")
    return str(pool)


def _mode(config: dict[str, Any], cluster_pool: str) -> str:
    wmc = config.get("workloadMetadataConfig") or {}
    mode = wmc.get("mode") or wmc.get("nodeMetadata")
    if mode in (None, "", "MODE_UNSPECIFIED"):
        return GKE_METADATA if cluster_pool else GCE_METADATA
    if mode == "GKE_METADATA_SERVER":  # the v1beta1 spelling
        mode = GKE_METADATA
    if mode not in MODES:
        raise InvalidArgument(f"Invalid value for workloadMetadataConfig.mode: \"{str(mode)[:40]}\".")
    if mode == GKE_METADATA and not cluster_pool:
        raise FailedPrecondition("Workload Identity must be enabled on the cluster to use GKE_METADATA "
                                 "(set --workload-pool on the cluster first).")
    return str(mode)


def _issuer_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def add_nodes(s: Session, cluster: GkeCluster, pool: GkeNodePool, count: int) -> None:
    for _ in range(count):
        s.add(GkeNode(name=f"gke-{cluster.name[:20]}-{pool.name[:20]}-{secrets.token_hex(4)}-{secrets.token_hex(2)}",
                      cluster_id=cluster.id, node_pool_id=pool.id,
                      internal_ip=f"10.128.{secrets.randbelow(256)}.{secrets.randbelow(253) + 2}"))


def _new_pool(s: Session, project: Project, cluster: GkeCluster, body: Any) -> GkeNodePool:
    if not isinstance(body, dict):
        raise InvalidArgument("Invalid value for nodePool: expected an object.")
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidArgument(f"Invalid node pool name \"{str(name)[:64]}\": it must match "
                              "[a-z]([-a-z0-9]{0,38}[a-z0-9])?.")
    if s.scalar(select(GkeNodePool).where(GkeNodePool.cluster_id == cluster.id, GkeNodePool.name == name)):
        raise AlreadyExists(f"Already exists: {cluster_path(cluster)}/nodePools/{name}.")
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise InvalidArgument("Invalid value for nodePool.config: expected an object.")
    count = body.get("initialNodeCount", DEFAULT_NODE_COUNT)
    if not isinstance(count, int) or not 0 <= count <= MAX_NODES:
        raise InvalidArgument(f"initialNodeCount must be between 0 and {MAX_NODES}.")
    scopes = config.get("oauthScopes")
    if scopes is not None and not (isinstance(scopes, list) and len(scopes) <= MAX_OAUTH_SCOPES and all(
            isinstance(x, str) and 0 < len(x) <= 256 for x in scopes)):
        raise InvalidArgument("Invalid value for nodePool.config.oauthScopes.")
    sa = config.get("serviceAccount") or "default"
    if not isinstance(sa, str) or len(sa) > 256:
        raise InvalidArgument("Invalid value for nodePool.config.serviceAccount.")
    pool = GkeNodePool(id=str(uuid.uuid4()), cluster_id=cluster.id, name=name, status="RUNNING",
                       workload_metadata_mode=_mode(config, cluster.workload_pool),
                       service_account=default_compute_sa(project.project_number) if sa == "default" else sa,
                       node_count=count, create_time=datetime.now(UTC),
                       body={k: v for k, v in body.items() if k not in ("name", "initialNodeCount", "status")})
    s.add(pool)
    s.flush()
    add_nodes(s, cluster, pool, pool.node_count)
    return pool


def create_cluster(s: Session, project: Project, location: str, body: Any) -> GkeCluster:
    _check_location(location)
    if not isinstance(body, dict):
        raise InvalidArgument("Invalid value for cluster: expected an object.")
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidArgument(f"Invalid cluster name \"{str(name)[:64]}\": it must match [a-z]([-a-z0-9]{{0,38}}[a-z0-9])?.")
    if find_cluster(s, project.project_id, name, location) is not None:
        raise AlreadyExists(f"Already exists: projects/{project.project_id}/locations/{location}/clusters/{name}.")
    autopilot = bool((body.get("autopilot") or {}).get("enabled"))
    pool = _check_pool(project, (body.get("workloadIdentityConfig") or {}).get("workloadPool"))
    if autopilot:
        pool = workload_pool_of(project.project_id)  # Autopilot clusters always have Workload Identity
    cluster = GkeCluster(id=str(uuid.uuid4()), project_id=project.project_id, location=location, name=name,
                         status="RUNNING", workload_pool=pool, autopilot=autopilot,
                         endpoint=f"127.{secrets.randbelow(200) + 10}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}",
                         create_time=datetime.now(UTC), issuer_key_pem=_issuer_key(),
                         body={k: v for k, v in body.items()
                               if k not in ("name", "nodePools", "workloadIdentityConfig", "status", "endpoint",
                                            "initialNodeCount", "nodeConfig", "currentMasterVersion",
                                            "currentNodeVersion", "labelFingerprint") and not k.startswith("_")})
    s.add(cluster)
    s.flush()
    pools = body.get("nodePools")
    if pools is None:
        pools = [{"name": "default-pool", "initialNodeCount": body.get("initialNodeCount", DEFAULT_NODE_COUNT),
                  "config": body.get("nodeConfig") or {}}]
    if not isinstance(pools, list):
        raise InvalidArgument("Invalid value for cluster.nodePools: expected a list.")
    for p in pools:
        if autopilot and isinstance(p, dict):
            p = {**p, "config": {**(p.get("config") or {}), "workloadMetadataConfig": {"mode": GKE_METADATA}}}
        _new_pool(s, project, cluster, p)
    from keyless.gke.kubernetes import ensure_cluster_namespaces  # it builds on this module

    ensure_cluster_namespaces(s, cluster)
    return cluster


def update_cluster(s: Session, project: Project, cluster: GkeCluster, update: Any) -> None:
    """ClusterUpdate: Keyless models the workload pool; other desired* fields are refused
    rather than silently ignored."""
    if not isinstance(update, dict) or not update:
        raise InvalidArgument("Invalid value for update: at least one field must be set.")
    for field in update:
        if field != "desiredWorkloadIdentityConfig":
            raise InvalidArgument(f"Keyless does not support updating {field[:64]} (only the workload pool).")
    desired = update["desiredWorkloadIdentityConfig"] or {}
    pool = _check_pool(project, desired.get("workloadPool"))
    if cluster.autopilot and not pool:
        raise FailedPrecondition("Workload Identity cannot be disabled on Autopilot clusters.")
    cluster.workload_pool = pool


def create_node_pool(s: Session, project: Project, cluster: GkeCluster, body: Any) -> GkeNodePool:
    return _new_pool(s, project, cluster, body)


def update_node_pool(s: Session, cluster: GkeCluster, pool: GkeNodePool, body: dict[str, Any]) -> None:
    wmc = body.get("workloadMetadataConfig")
    if wmc is None:
        raise InvalidArgument("Keyless supports updating a node pool's workloadMetadataConfig only.")
    if not isinstance(wmc, dict):
        raise InvalidArgument("Invalid value for workloadMetadataConfig: expected an object.")
    if cluster.autopilot:
        raise FailedPrecondition("Node pools of Autopilot clusters are managed by GKE.")
    pool.workload_metadata_mode = _mode({"workloadMetadataConfig": wmc}, cluster.workload_pool)


def delete_node_pool(s: Session, pool: GkeNodePool) -> None:
    s.execute(delete(GkeNode).where(GkeNode.node_pool_id == pool.id))
    s.delete(pool)


def delete_cluster(s: Session, cluster: GkeCluster) -> None:
    for table, column in ((GkeNode, GkeNode.cluster_id), (GkeNodePool, GkeNodePool.cluster_id),
                          (K8sObject, K8sObject.cluster_id)):
        s.execute(delete(table).where(column == cluster.id))
    s.delete(cluster)


# -- wire shapes --------------------------------------------------------------------------------

def node_pool_json(cluster: GkeCluster, pool: GkeNodePool) -> dict[str, Any]:
    from keyless.gke.cluster_updates import management  # it builds on this module

    body = dict(pool.body or {})
    body["management"] = management(cluster, pool)
    config = dict(body.pop("config", None) or {})
    config["workloadMetadataConfig"] = {"mode": pool.workload_metadata_mode}
    config["serviceAccount"] = pool.service_account
    config["oauthScopes"] = list(oauth_scopes(config))
    config.setdefault("machineType", "e2-medium")
    config.setdefault("diskSizeGb", 100)
    return {"name": pool.name, **body, "config": config, "initialNodeCount": pool.node_count,
            "status": pool.status, "version": VERSION,
            "selfLink": f"{API}/{cluster_path(cluster)}/nodePools/{pool.name}"}


def kubernetes_endpoint(settings: Settings, cluster: GkeCluster) -> str:
    """Where the cluster's Kubernetes API is served (keyless.api.kubernetes): a path on Keyless's
    TLS port (its HTTP port without one). gcloud get-credentials writes `https://` + this."""
    host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{settings.tls_port or settings.port}/kubernetes/{cluster_path(cluster)}"


def master_ca(settings: Settings, cluster: GkeCluster) -> str:
    """masterAuth.clusterCaCertificate: the CA the endpoint's certificate chains to — Keyless's
    local CA (keyless.tls.ca; during a CA rotation both CAs) when it serves TLS."""
    import base64

    from keyless.gke.issuer import ca_certificate_b64

    ca_pem = settings.data_dir / "tls" / "ca.pem"
    if settings.tls_port and ca_pem.exists():
        return base64.b64encode(ca_pem.read_bytes()).decode()
    return ca_certificate_b64(cluster)


def cluster_json(s: Session, cluster: GkeCluster, settings: Settings | None = None) -> dict[str, Any]:
    from keyless.gke import cluster_updates  # it builds on this module
    from keyless.gke.issuer import ca_certificate_b64

    pools = node_pools(s, cluster)
    body = {k: v for k, v in (cluster.body or {}).items() if not k.startswith("_")}  # "_": Keyless's own state
    named = body.get("resourceLabels")
    labels: dict[str, str] = named if isinstance(named, dict) else {}
    out: dict[str, Any] = {
        "name": cluster.name, "loggingService": cluster_updates.LOGGING_SERVICES[0],
        "monitoringService": cluster_updates.MONITORING_SERVICES[0], "legacyAbac": {}, **body,
        "labelFingerprint": cluster_updates.label_fingerprint(labels),
        "addonsConfig": cluster_updates.addons(cluster),
        "maintenancePolicy": cluster_updates.maintenance_policy(cluster),
        "location": cluster.location, "zone": cluster.location, "status": cluster.status,
        "endpoint": kubernetes_endpoint(settings, cluster) if settings else cluster.endpoint,
        "masterAuth": {"clusterCaCertificate": master_ca(settings, cluster) if settings
                       else ca_certificate_b64(cluster)},
        "currentMasterVersion": cluster_updates.master_version(cluster), "currentNodeVersion": VERSION,
        "currentNodeCount": sum(p.node_count for p in pools),
        "nodePools": [node_pool_json(cluster, p) for p in pools],
        "locations": cluster_updates.locations(cluster),
        "createTime": rfc3339(cluster.create_time),
        "selfLink": f"{API}/{cluster_path(cluster)}", "id": cluster.id.replace("-", ""),
    }
    if cluster.workload_pool:
        out["workloadIdentityConfig"] = {"workloadPool": cluster.workload_pool}
    if cluster.autopilot:
        out["autopilot"] = {"enabled": True}
    return out


def operation(s: Session, cluster: GkeCluster, kind: str, target: str) -> dict[str, Any]:
    """A container Operation, born DONE (Keyless finishes before answering) and stored, since
    gcloud always polls it once (docs/gcloud-wire.md section 6)."""
    now = rfc3339(datetime.now(UTC))
    name = f"operation-{secrets.token_hex(8)}"
    where = f"projects/{cluster.project_id}/locations/{cluster.location}"
    body = {"name": name, "operationType": kind, "status": "DONE", "zone": cluster.location,
            "location": cluster.location, "selfLink": f"{API}/{where}/operations/{name}",
            "targetLink": f"{API}/{target}", "startTime": now, "endTime": now}
    s.add(Operation(name=f"{where}/operations/{name}", body=body, create_time=datetime.now(UTC)))
    return body
