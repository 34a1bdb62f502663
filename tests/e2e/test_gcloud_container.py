"""GKE's control plane as seeds 002 and 003 drive it: clusters and node pools through the real
gcloud, Kubernetes objects from the seeds' own manifests through `keyless k8s`, and each cluster's
service-account tokens federating into the project's PROJECT_ID.svc.id.goog pool at STS."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import Gcloud, KeylessServer

pytestmark = [pytest.mark.gcloud, pytest.mark.store_independent]  # gcloud's side of the wire: SQLite leg only; the PostgreSQL leg drives the same methods with the discovery client (tests/conformance)
NUMBER = "123456789012"
PROJECT = "my-project-id"
POOL = f"{PROJECT}.svc.id.goog"
GSA = f"my-app-gsa@{PROJECT}.iam.gserviceaccount.com"
MANIFESTS = Path(__file__).parent / "manifests"
REGION = "europe-west2"


@pytest.fixture(scope="module")
def g(module_gcloud: Gcloud, module_server: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> Gcloud:
    assert module_server.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
    module_gcloud.env["KUBECONFIG"] = str(tmp_path_factory.mktemp("kube") / "config")
    return module_gcloud


def k8s(srv: KeylessServer, *args: str) -> str:
    out = srv.keyless("k8s", *args, "--cluster", "my-cluster", "--project", PROJECT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_seed_003_cluster_and_node_pool(g: Gcloud) -> None:
    """Step 1 and 2: the cluster with its workload pool; the node pool's metadata mode."""
    g.run("container", "clusters", "create", "my-cluster", f"--region={REGION}", f"--workload-pool={POOL}",
          f"--project={PROJECT}")
    pool = g.run("container", "clusters", "describe", "my-cluster", f"--region={REGION}", f"--project={PROJECT}",
                 "--format=value(workloadIdentityConfig.workloadPool)").stdout.strip()
    assert pool == POOL
    mode = g.run("container", "node-pools", "describe", "default-pool", "--cluster=my-cluster", f"--region={REGION}",
                 f"--project={PROJECT}", "--format=value(config.workloadMetadataConfig.mode)").stdout.strip()
    assert mode == "GKE_METADATA"
    listed = g.json("container", "clusters", "list", f"--region={REGION}", f"--project={PROJECT}")
    assert [c["name"] for c in listed] == ["my-cluster"] and listed[0]["endpoint"]


def test_workload_identity_on_an_existing_cluster_leaves_node_pools_on_gce_metadata(g: Gcloud) -> None:
    """The seeds' number-one trap: enabling the pool on the cluster alone."""
    args = ("--cluster=legacy", f"--region={REGION}", f"--project={PROJECT}")
    g.run("container", "clusters", "create", "legacy", f"--region={REGION}", f"--project={PROJECT}")
    mode = lambda: g.run("container", "node-pools", "describe", "default-pool", *args,  # noqa: E731
                         "--format=value(config.workloadMetadataConfig.mode)").stdout.strip()
    assert mode() == "GCE_METADATA"
    g.run("container", "clusters", "update", "legacy", f"--region={REGION}", f"--workload-pool={POOL}",
          f"--project={PROJECT}")
    assert mode() == "GCE_METADATA"  # still: the node pool needs its own update
    g.run("container", "node-pools", "update", "default-pool", *args, "--workload-metadata=GKE_METADATA")
    assert mode() == "GKE_METADATA"
    g.run("container", "node-pools", "create", "np2", *args, "--workload-metadata=GKE_METADATA")
    names = [p["name"] for p in g.json("container", "node-pools", "list", *args)]
    assert names == ["default-pool", "np2"]
    g.run("container", "node-pools", "delete", "np2", *args)
    g.run("container", "clusters", "delete", "legacy", f"--region={REGION}", f"--project={PROJECT}")
    assert g.json("container", "clusters", "list", f"--region={REGION}", f"--project={PROJECT}")[0]["name"] \
        == "my-cluster"


def test_a_foreign_or_misspelt_workload_pool_is_refused(g: Gcloud) -> None:
    r = g.run("container", "clusters", "create", "typo", f"--region={REGION}", "--workload-pool=my-project.svc.id.goog",
              f"--project={PROJECT}", check=False)
    assert r.returncode != 0 and "my-project-id.svc.id.goog" in r.stderr


def test_autopilot_clusters_have_workload_identity(g: Gcloud) -> None:
    g.run("container", "clusters", "create-auto", "auto", f"--region={REGION}", f"--project={PROJECT}")
    got = g.json("container", "clusters", "describe", "auto", f"--region={REGION}", f"--project={PROJECT}")
    assert got["workloadIdentityConfig"] == {"workloadPool": POOL} and got["autopilot"] == {"enabled": True}
    g.run("container", "clusters", "delete", "auto", f"--region={REGION}", f"--project={PROJECT}")


def test_seed_manifests_load_as_written(g: Gcloud, module_server: KeylessServer) -> None:
    srv = module_server
    out = k8s(srv, "apply", "-f", str(MANIFESTS / "production-namespace.yaml"))
    assert "namespace/production created" in out
    assert "serviceaccount/my-app-ksa created" in k8s(srv, "apply", "-f", str(MANIFESTS / "ksa.yaml"))
    assert "serviceaccount/my-app-ksa unchanged" in k8s(srv, "apply", "-f", str(MANIFESTS / "ksa.yaml"))
    out = k8s(srv, "apply", "-f", str(MANIFESTS / "deployment.yaml"))
    assert "deployment.apps/my-app created" in out or "deployment/my-app created" in out
    assert out.count("pod/my-app-") == 2
    # seed 002's audit of which pods run as which KSA
    table = k8s(srv, "get", "pods", "-A", "-o", "custom-columns=NS:.metadata.namespace,POD:.metadata.name,"
                                                "KSA:.spec.serviceAccountName")
    rows = [line.split() for line in table.splitlines()[1:]]
    assert len(rows) == 2 and all(r[0] == "production" and r[2] == "my-app-ksa" for r in rows)
    # every namespace has its default KSA; a pod without serviceAccountName runs as it
    pod = MANIFESTS.parent / "bare-pod.yaml"
    pod.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  namespace: production\n"
                   "spec:\n  containers:\n  - name: c\n    image: busybox\n")
    try:
        k8s(srv, "apply", "-f", str(pod))
    finally:
        pod.unlink()
    got = json.loads(k8s(srv, "get", "pods", "bare", "-n", "production", "-o", "json"))
    assert got["spec"]["serviceAccountName"] == "default"
    assert "default" in k8s(srv, "get", "serviceaccounts", "-n", "production")
    # kubectl's answers for what does not exist
    missing = srv.keyless("k8s", "apply", "-f", str(MANIFESTS / "ksa.yaml").replace("ksa.yaml", "nope.yaml"),
                          "--cluster", "my-cluster", "--project", PROJECT)
    assert missing.returncode != 0


def test_annotate_like_kubectl(module_server: KeylessServer, g: Gcloud) -> None:
    srv = module_server
    k8s(srv, "create", "serviceaccount", "other-ksa", "-n", "production")
    key = "iam.gke.io/gcp-service-account"
    assert "annotated" in k8s(srv, "annotate", "serviceaccount", "other-ksa", "-n", "production", f"{key}={GSA}")
    refused = srv.keyless("k8s", "annotate", "serviceaccount", "other-ksa", "-n", "production", f"{key}=x@y.z",
                          "--cluster", "my-cluster", "--project", PROJECT)
    assert refused.returncode != 0 and "--overwrite" in refused.stderr
    got = json.loads(k8s(srv, "get", "serviceaccount", "other-ksa", "-n", "production", "-o", "json"))
    assert got["metadata"]["annotations"][key] == GSA


def _ksa_token(srv: KeylessServer, namespace: str, ksa: str) -> str:
    from keyless.gke.clusters import find_cluster
    from keyless.gke.issuer import mint_ksa_token
    from tests.api.helpers import server_state

    with server_state(srv).db.read() as s:
        cluster = find_cluster(s, PROJECT, "my-cluster")
    assert cluster is not None
    return mint_ksa_token(cluster, namespace=namespace, service_account=ksa, audience=POOL)


def _exchange(srv: KeylessServer, token: str, cluster: str = "my-cluster") -> httpx.Response:
    issuer = f"https://container.googleapis.com/v1/projects/{PROJECT}/locations/{REGION}/clusters/{cluster}"
    return httpx.post(f"{srv.base_url}/sts/v1/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": f"identitynamespace:{POOL}:{issuer}", "scope": "https://www.googleapis.com/auth/cloud-platform",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": token, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"})


def test_cluster_tokens_federate_into_the_project_pool(g: Gcloud, module_server: KeylessServer) -> None:
    """What the metadata server does: the KSA token exchanged at STS, then generateAccessToken
    for the GSA that grants roles/iam.workloadIdentityUser to exactly that KSA."""
    srv = module_server
    token = _ksa_token(srv, "production", "my-app-ksa")
    # the token verifies against the cluster's published JWKS, issuer as GKE's
    base = f"{srv.base_url}/container/v1/projects/{PROJECT}/locations/{REGION}/clusters/my-cluster"
    discovery = httpx.get(f"{base}/.well-known/openid-configuration").json()
    keys = jwt.PyJWKClient(discovery["jwks_uri"]).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, keys.key, algorithms=["RS256"], audience=POOL, issuer=discovery["issuer"])
    assert claims["sub"] == "system:serviceaccount:production:my-app-ksa"

    g.run("iam", "service-accounts", "create", "my-app-gsa", "--display-name=My Application GSA",
          f"--project={PROJECT}")
    g.run("iam", "service-accounts", "add-iam-policy-binding", GSA, "--role=roles/iam.workloadIdentityUser",
          f"--member=serviceAccount:{POOL}[production/my-app-ksa]", f"--project={PROJECT}")
    r = _exchange(srv, token)
    assert r.status_code == 200, r.text
    federated = r.json()["access_token"]
    info = httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": federated}).json()
    assert info.get("sub", "").endswith(f"workloadIdentityPools/{POOL}/subject/ns/production/sa/my-app-ksa") or \
        "production/sa/my-app-ksa" in json.dumps(info)
    gat = f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{GSA}:generateAccessToken"
    body = {"scope": ["https://www.googleapis.com/auth/cloud-platform"]}
    ok = httpx.post(gat, json=body, headers={"Authorization": f"Bearer {federated}"})
    assert ok.status_code == 200, ok.text
    # the wrong namespace (seed 002's "wrong namespace/KSA in the member string") is refused
    other = _exchange(srv, _ksa_token(srv, "staging", "my-app-ksa")).json()["access_token"]
    denied = httpx.post(gat, json=body, headers={"Authorization": f"Bearer {other}"})
    assert denied.status_code == 403 and "iam.serviceAccounts.getAccessToken" in denied.text


def test_sts_refuses_tokens_that_are_not_the_clusters(g: Gcloud, module_server: KeylessServer) -> None:
    srv = module_server
    token = _ksa_token(srv, "production", "my-app-ksa")
    head, body, sig = token.split(".")
    tampered = f"{head}.{body[:-4]}AAAA.{sig}"
    assert _exchange(srv, tampered).json()["error"] == "invalid_grant"
    # a cluster of the project without Workload Identity, or none at all
    r = _exchange(srv, token, cluster="no-such-cluster")
    assert r.status_code == 400 and r.json()["error"] == "invalid_target"
    # a token of my-cluster does not pass for another cluster's issuer
    g.run("container", "clusters", "create", "other", f"--region={REGION}", f"--workload-pool={POOL}",
          f"--project={PROJECT}")
    assert _exchange(srv, token, cluster="other").json()["error"] == "invalid_grant"


def test_update_labels_and_resize(g: Gcloud, module_server: KeylessServer) -> None:
    """`clusters update --update-labels` (get, then setResourceLabels with the labelFingerprint it
    read) and `clusters resize` (nodePools.setSize) as gcloud sends them (issue #20)."""
    where = (f"--region={REGION}", f"--project={PROJECT}")
    g.run("container", "clusters", "update", "my-cluster", *where, "--update-labels=env=prod,team=ml")
    g.run("container", "clusters", "resize", "my-cluster", "--node-pool=default-pool", "--num-nodes=4", *where,
          "--quiet")
    got = module_server.call("GET", f"/container/v1/projects/{PROJECT}/locations/{REGION}/clusters/my-cluster").json()
    assert got["resourceLabels"] == {"env": "prod", "team": "ml"}, got
    assert [p["initialNodeCount"] for p in got["nodePools"] if p["name"] == "default-pool"] == [4]
    assert got["currentNodeCount"] == sum(p["initialNodeCount"] for p in got["nodePools"])
