"""Kubernetes Engine API (container.googleapis.com v1): clusters, node pools and their operations,
as gcloud drives them (docs/gcloud-wire.md section 6;
https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters),
and each cluster's service-account token issuer documents (discovery and JWKS, public as GKE's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.routing import Route

from keyless import projects
from keyless.api.http import Call, allowed_fields, object_field, route
from keyless.errors import NotFound
from keyless.gke import cluster_updates as updates
from keyless.gke import clusters, issuer
from keyless.state import ServerState
from keyless.store.models import GkeCluster, GkeNodePool, Operation, Project

SERVICE = "container.googleapis.com"


def _project(call: Call, s: Any, permission: str) -> Project:
    given = call.params["project"]
    row = projects.find_project(s, given, include_deleted=False)
    pid = row.project_id if row else given
    call.touch(project_id=pid, name=f"projects/{pid}/locations/{call.params['location']}", type="gke_cluster",
               labels={"project_id": pid, "location": call.params["location"]})
    call.require(permission, projects.project_chain(pid) if row else [projects.project_resource(given), projects.ROOT],
                 f"projects/{given}")
    if row is None:
        raise NotFound(f"Project '{given}' not found.")
    return row


def _cluster(call: Call, s: Any, permission: str) -> tuple[Project, GkeCluster]:
    project = _project(call, s, permission)
    cluster = clusters.get_cluster(s, project.project_id, call.params["location"], call.params["cluster"])
    call.touch(name=clusters.cluster_path(cluster),
               labels={"project_id": project.project_id, "location": cluster.location, "cluster_name": cluster.name})
    return project, cluster


def list_clusters(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project = _project(call, s, "container.clusters.list")
        return {"clusters": [clusters.cluster_json(s, c, call.state.settings) for c in
                             clusters.list_clusters(s, project.project_id, call.params["location"])]}


def create_cluster(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"cluster", "parent", "projectId", "zone"}, "")
    with call.write() as s:
        project = _project(call, s, "container.clusters.create")
        cluster = clusters.create_cluster(s, project, call.params["location"], object_field(call.body, "cluster", ""))
        call.touch(name=clusters.cluster_path(cluster))
        return clusters.operation(s, cluster, "CREATE_CLUSTER", clusters.cluster_path(cluster))


def get_cluster(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _, cluster = _cluster(call, s, "container.clusters.get")
        return clusters.cluster_json(s, cluster, call.state.settings)


def update_cluster(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"update", "name", "projectId", "zone", "clusterId"}, "")
    with call.write() as s:
        project, cluster = _cluster(call, s, "container.clusters.update")
        clusters.update_cluster(s, project, cluster, call.body.get("update"))
        return clusters.operation(s, cluster, "UPDATE_CLUSTER", clusters.cluster_path(cluster))


def delete_cluster(call: Call) -> dict[str, Any]:
    with call.write() as s:
        _, cluster = _cluster(call, s, "container.clusters.delete")
        op = clusters.operation(s, cluster, "DELETE_CLUSTER", clusters.cluster_path(cluster))
        clusters.delete_cluster(s, cluster)
        return op


def list_node_pools(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _, cluster = _cluster(call, s, "container.clusters.get")
        return {"nodePools": [clusters.node_pool_json(cluster, p) for p in clusters.node_pools(s, cluster)]}


def create_node_pool(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"nodePool", "parent", "projectId", "zone", "clusterId"}, "")
    with call.write() as s:
        project, cluster = _cluster(call, s, "container.clusters.update")
        pool = clusters.create_node_pool(s, project, cluster, object_field(call.body, "nodePool", ""))
        return clusters.operation(s, cluster, "CREATE_NODE_POOL", f"{clusters.cluster_path(cluster)}/nodePools/{pool.name}")


def get_node_pool(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _, cluster = _cluster(call, s, "container.clusters.get")
        return clusters.node_pool_json(cluster, clusters.get_node_pool(s, cluster, call.params["pool"]))


def update_node_pool(call: Call) -> dict[str, Any]:
    with call.write() as s:
        _, cluster = _cluster(call, s, "container.clusters.update")
        pool = clusters.get_node_pool(s, cluster, call.params["pool"])
        clusters.update_node_pool(s, cluster, pool, call.body)
        # Google's Operation.Type has no UPDATE_NODE_POOL: nodePools.update is an UPGRADE_NODES operation
        return clusters.operation(s, cluster, "UPGRADE_NODES", f"{clusters.cluster_path(cluster)}/nodePools/{pool.name}")


def delete_node_pool(call: Call) -> dict[str, Any]:
    with call.write() as s:
        _, cluster = _cluster(call, s, "container.clusters.update")
        pool = clusters.get_node_pool(s, cluster, call.params["pool"])
        clusters.delete_node_pool(s, pool)
        return clusters.operation(s, cluster, "DELETE_NODE_POOL", f"{clusters.cluster_path(cluster)}/nodePools/{pool.name}")


# -- set*, IP rotation and upgrades (issue #20): each a container.clusters.update on the cluster,
# answered with its Operation; the reads are container.clusters.get ---------------------------------

DEPRECATED = {"name", "projectId", "zone", "clusterId"}  # every request's: the path says them
POOL_DEPRECATED = DEPRECATED | {"nodePoolId"}
ClusterChange = Callable[[Session, GkeCluster, dict[str, Any]], None]
PoolChange = Callable[[Session, GkeCluster, GkeNodePool, dict[str, Any]], None]


def cluster_change(kind: str, fields: set[str], change: ClusterChange) -> Callable[[Call], dict[str, Any]]:
    """A cluster method that changes it: the request's fields checked, the change made, its Operation."""
    def handler(call: Call) -> dict[str, Any]:
        allowed_fields(call.body, fields | DEPRECATED, "")
        with call.write() as s:
            _, cluster = _cluster(call, s, "container.clusters.update")
            change(s, cluster, call.body)
            return clusters.operation(s, cluster, kind, clusters.cluster_path(cluster))
    return handler


def pool_change(kind: str, fields: set[str], change: PoolChange) -> Callable[[Call], dict[str, Any]]:
    def handler(call: Call) -> dict[str, Any]:
        allowed_fields(call.body, fields | POOL_DEPRECATED, "")
        with call.write() as s:
            _, cluster = _cluster(call, s, "container.clusters.update")
            pool = clusters.get_node_pool(s, cluster, call.params["pool"])
            change(s, cluster, pool, call.body)
            return clusters.operation(s, cluster, kind, f"{clusters.cluster_path(cluster)}/nodePools/{pool.name}")
    return handler


def check_autopilot_compatibility(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _, cluster = _cluster(call, s, "container.clusters.get")
        return updates.autopilot_compatibility(s, cluster)


def fetch_cluster_upgrade_info(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _, cluster = _cluster(call, s, "container.clusters.get")
        return updates.cluster_upgrade_info(cluster)


def fetch_node_pool_upgrade_info(call: Call) -> dict[str, Any]:
    with call.read() as s:
        _, cluster = _cluster(call, s, "container.clusters.get")
        return updates.node_pool_upgrade_info(cluster, clusters.get_node_pool(s, cluster, call.params["pool"]))


def complete_control_plane_upgrade(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, {"version"}, "")
    with call.write() as s:
        _, cluster = _cluster(call, s, "container.clusters.update")
        updates.complete_control_plane_upgrade(cluster)
        return clusters.operation(s, cluster, "UPGRADE_MASTER", clusters.cluster_path(cluster))


def complete_node_pool_upgrade(call: Call) -> dict[str, Any]:
    allowed_fields(call.body, set(), "")
    with call.write() as s:
        _, cluster = _cluster(call, s, "container.clusters.update")
        updates.complete_node_pool_upgrade(cluster, clusters.get_node_pool(s, cluster, call.params["pool"]))
        return {}


CLUSTER_CHANGES: dict[str, tuple[str, str, set[str], ClusterChange]] = {
    # verb: (ClusterManager RPC, Operation type, the request's own fields, the change)
    "setResourceLabels": ("SetLabels", "UPDATE_CLUSTER", {"resourceLabels", "labelFingerprint"},
                          lambda s, c, b: updates.set_resource_labels(c, b.get("resourceLabels"),
                                                                      b.get("labelFingerprint"))),
    "setLegacyAbac": ("SetLegacyAbac", "UPDATE_CLUSTER", {"enabled"},
                      lambda s, c, b: updates.set_legacy_abac(c, b.get("enabled"))),
    "setLocations": ("SetLocations", "UPDATE_CLUSTER", {"locations"},
                     lambda s, c, b: updates.set_locations(c, b.get("locations"))),
    "setLogging": ("SetLoggingService", "UPDATE_CLUSTER", {"loggingService"},
                   lambda s, c, b: updates.set_logging(c, b.get("loggingService"))),
    "setMonitoring": ("SetMonitoringService", "UPDATE_CLUSTER", {"monitoringService"},
                      lambda s, c, b: updates.set_monitoring(c, b.get("monitoringService"))),
    "setMaintenancePolicy": ("SetMaintenancePolicy", "UPDATE_CLUSTER", {"maintenancePolicy"},
                             lambda s, c, b: updates.set_maintenance_policy(c, b.get("maintenancePolicy"))),
    "setMasterAuth": ("SetMasterAuth", "UPDATE_CLUSTER", {"action", "update"},
                      lambda s, c, b: updates.set_master_auth(c, b.get("action"), b.get("update"))),
    "setNetworkPolicy": ("SetNetworkPolicy", "UPDATE_CLUSTER", {"networkPolicy"},
                         lambda s, c, b: updates.set_network_policy(c, b.get("networkPolicy"))),
    "setAddons": ("SetAddonsConfig", "UPDATE_CLUSTER", {"addonsConfig"},
                  lambda s, c, b: updates.set_addons(c, b.get("addonsConfig"))),
    "startIpRotation": ("StartIPRotation", "UPDATE_CLUSTER", {"rotateCredentials"},
                        lambda s, c, b: updates.start_ip_rotation(c, b.get("rotateCredentials"))),
    "completeIpRotation": ("CompleteIPRotation", "UPDATE_CLUSTER", set(),
                           lambda s, c, b: updates.complete_ip_rotation(c)),
    "updateMaster": ("UpdateMaster", "UPGRADE_MASTER", {"masterVersion"},
                     lambda s, c, b: updates.update_master(c, b.get("masterVersion"))),
}
POOL_CHANGES: dict[str, tuple[str, str, set[str], PoolChange]] = {
    "setAutoscaling": ("SetNodePoolAutoscaling", "UPGRADE_NODES", {"autoscaling"},
                       lambda s, c, p, b: updates.set_autoscaling(c, p, b.get("autoscaling"))),
    "setManagement": ("SetNodePoolManagement", "SET_NODE_POOL_MANAGEMENT", {"management"},
                      lambda s, c, p, b: updates.set_management(c, p, b.get("management"))),
    "setSize": ("SetNodePoolSize", "SET_NODE_POOL_SIZE", {"nodeCount"},
                lambda s, c, p, b: updates.set_size(s, c, p, b.get("nodeCount"))),
    "rollback": ("RollbackNodePoolUpgrade", "UPGRADE_NODES", {"respectPdb"},
                 lambda s, c, p, b: updates.rollback(c, p)),
}


def get_operation(call: Call) -> dict[str, Any]:
    with call.read() as s:
        project = _project(call, s, "container.operations.get")
        name = f"projects/{project.project_id}/locations/{call.params['location']}/operations/{call.params['operation']}"
        row = s.get(Operation, name)
        if row is None:
            raise NotFound(f"Operation \"{call.params['operation']}\" not found.")
        return dict(row.body)


def routes(state: ServerState) -> list[Route]:
    loc = "/v1/projects/{project}/locations/{location}"
    c = loc + "/clusters/{cluster}"

    def r(method: str, path: str, handler: Any, audit_method: str = "", **kw: Any) -> Route:
        return route(state, method, path, handler, service=SERVICE, method=audit_method, **kw)

    def openid_configuration(call: Call) -> dict[str, Any]:
        return issuer.discovery(_issuer_cluster(call), state.settings.base_url)

    def jwks(call: Call) -> dict[str, Any]:
        return issuer.jwks(_issuer_cluster(call))

    rpc = "google.container.v1.ClusterManager."
    # the `:verb` routes come first: `{cluster}` and `{pool}` would match "name:verb" too
    changes = [r("POST", f"{c}:{verb}", cluster_change(kind, fields, change), rpc + name)
               for verb, (name, kind, fields, change) in CLUSTER_CHANGES.items()]
    changes += [r("POST", f"{c}/nodePools/{{pool}}:{verb}", pool_change(kind, fields, change), rpc + name)
                for verb, (name, kind, fields, change) in POOL_CHANGES.items()]
    return [
        *changes,
        r("GET", c + ":checkAutopilotCompatibility", check_autopilot_compatibility),
        r("GET", c + ":fetchClusterUpgradeInfo", fetch_cluster_upgrade_info),
        r("GET", c + "/nodePools/{pool}:fetchNodePoolUpgradeInfo", fetch_node_pool_upgrade_info),
        r("POST", c + ":completeControlPlaneUpgrade", complete_control_plane_upgrade,
          rpc + "CompleteControlPlaneUpgrade"),
        r("POST", c + "/nodePools/{pool}:completeUpgrade", complete_node_pool_upgrade, rpc + "CompleteNodePoolUpgrade"),
        r("GET", loc + "/clusters", list_clusters),
        r("POST", loc + "/clusters", create_cluster, "google.container.v1.ClusterManager.CreateCluster"),
        # public, as GKE's issuer documents are
        r("GET", c + "/.well-known/openid-configuration", openid_configuration, authenticated=False, audited=False),
        r("GET", c + "/jwks", jwks, authenticated=False, audited=False),
        r("GET", c, get_cluster),
        r("PUT", c, update_cluster, "google.container.v1.ClusterManager.UpdateCluster"),
        r("DELETE", c, delete_cluster, "google.container.v1.ClusterManager.DeleteCluster"),
        r("GET", c + "/nodePools", list_node_pools),
        r("POST", c + "/nodePools", create_node_pool, "google.container.v1.ClusterManager.CreateNodePool"),
        r("GET", c + "/nodePools/{pool}", get_node_pool),
        r("PUT", c + "/nodePools/{pool}", update_node_pool, "google.container.v1.ClusterManager.UpdateNodePool"),
        r("DELETE", c + "/nodePools/{pool}", delete_node_pool, "google.container.v1.ClusterManager.DeleteNodePool"),
        r("GET", loc + "/operations/{operation}", get_operation),
    ]


def _issuer_cluster(call: Call) -> GkeCluster:
    p = call.params
    with call.read() as s:
        cluster = clusters.find_cluster(s, p["project"], p["cluster"], p["location"])
    if cluster is None:
        raise NotFound("Not found.")
    return cluster
