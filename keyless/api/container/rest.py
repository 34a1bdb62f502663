"""Kubernetes Engine API (container.googleapis.com v1): clusters, node pools and their operations,
as gcloud drives them (docs/gcloud-wire.md section 6;
https://cloud.google.com/kubernetes-engine/docs/reference/rest/v1/projects.locations.clusters),
and each cluster's service-account token issuer documents (discovery and JWKS, public as GKE's).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from keyless import projects
from keyless.api.http import Call, allowed_fields, object_field, route
from keyless.errors import NotFound
from keyless.gke import clusters, issuer
from keyless.state import ServerState
from keyless.store.models import GkeCluster, Operation, Project

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

    return [
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
