"""The real kubectl against a Keyless cluster, as seeds 002 and 003 drive it: `gcloud container
clusters get-credentials` first, then the seeds' kubectl lines in order (namespace, KSA, annotate,
apply of the seed's manifests, get -o yaml, the seed's pod audit, create token), and Kubernetes'
own error answers. The kubeconfig is the one gcloud writes: its user runs gke-gcloud-auth-plugin,
which asks gcloud for the active configuration's token (README, "kubectl")."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shlex
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from keyless.gke import netns
from tests.api.helpers import token_for_user
from tests.conftest import Gcloud, KeylessServer, fresh_database_url

pytestmark = pytest.mark.gcloud
KUBECTL = shutil.which("kubectl")
PLUGIN = shutil.which("gke-gcloud-auth-plugin")
NUMBER = "123456789012"
PROJECT = "my-project-id"
POOL = f"{PROJECT}.svc.id.goog"
GSA = f"my-app-gsa@{PROJECT}.iam.gserviceaccount.com"
REGION = "europe-west2"
MANIFESTS = Path(__file__).parent / "manifests"
ISSUER = f"https://container.googleapis.com/v1/projects/{PROJECT}/locations/{REGION}/clusters/my-cluster"
CONTEXT = f"gke_{PROJECT}_{REGION}_my-cluster"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: these tests drive the real kubectl binary")
    # the README's one serve command: no --tls-port, TLS is on by default (issue #19)
    s = KeylessServer(tmp_path_factory.mktemp("keyless") / "data", fresh_database_url())
    yield s
    s.stop()


@pytest.fixture(scope="module")
def g(srv: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> Gcloud:
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud is not installed: get-credentials needs the Google Cloud CLI on PATH")
    gc = Gcloud(srv, tmp_path_factory.mktemp("gcloud"), project=PROJECT)
    gc.env["KUBECONFIG"] = str(tmp_path_factory.mktemp("kube") / "config")
    gc.env["CLOUDSDK_ACTIVE_CONFIG_NAME"] = "keyless"  # what gke-gcloud-auth-plugin's gcloud call reads
    assert srv.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
    return gc


def kubectl(g: Gcloud, *args: str, check: bool = True, stdin: str | None = None,
            binary: str | None = None) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    r = subprocess.run([binary or KUBECTL, *args], capture_output=True, text=True, env=g.env, input=stdin, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}):\n{r.stderr}\n"
                             f"server log:\n{g.server.logs()}")
    return r


def _api(g: Gcloud) -> str:
    config = yaml.safe_load(Path(g.env["KUBECONFIG"]).read_text())
    return str(next(c["cluster"]["server"] for c in config["clusters"] if c["name"] == CONTEXT))


def _ca(g: Gcloud) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(g.server.data_dir / "tls" / "ca.pem"))


def test_get_credentials_writes_a_kubeconfig_that_reaches_the_clusters_api(g: Gcloud) -> None:
    g.run("container", "clusters", "create", "my-cluster", f"--region={REGION}", f"--workload-pool={POOL}")
    g.run("container", "clusters", "get-credentials", "my-cluster", f"--region={REGION}")
    config = yaml.safe_load(Path(g.env["KUBECONFIG"]).read_text())
    assert config["current-context"] == CONTEXT
    server = _api(g)
    tls_port = json.loads((g.server.data_dir / "server.json").read_text())["tls_port"]  # chosen by serve
    assert isinstance(tls_port, int) and tls_port != g.server.port
    assert server == f"https://127.0.0.1:{tls_port}/kubernetes/projects/{PROJECT}/locations/{REGION}/clusters/my-cluster"
    user = next(u["user"] for u in config["users"] if u["name"] == CONTEXT)
    assert user["exec"]["command"].endswith("gke-gcloud-auth-plugin")
    if PLUGIN is None:  # as a user without GKE's plugin would: the caller's Keyless token (README)
        token = g.run("auth", "print-access-token").stdout.strip()
        kubectl(g, "config", "set-credentials", CONTEXT, f"--token={token}")
    # the CA gcloud wrote is the one Keyless's TLS port chains to
    version = kubectl(g, "version", "-o", "json")
    assert json.loads(version.stdout)["serverVersion"]["gitVersion"].startswith("v1.30")


def test_a_new_cluster_has_gke_s_namespaces_and_their_default_ksas(g: Gcloud) -> None:
    """What `kubectl get namespaces` shows on a new GKE cluster, each with its `default` KSA (the
    one a pod without serviceAccountName runs as: seed 003 step 8)."""
    names = [line.split() for line in as_owner(g, "get", "namespaces").stdout.splitlines()]
    assert names[0] == ["NAME", "STATUS", "AGE"]
    assert [(n[0], n[1]) for n in names[1:]] == [("default", "Active"), ("kube-node-lease", "Active"),
                                                 ("kube-public", "Active"), ("kube-system", "Active")]
    ksas = [line.split()[:2] for line in as_owner(g, "get", "serviceaccounts", "-A").stdout.splitlines()[1:]]
    assert ksas == [["default", "default"], ["kube-node-lease", "default"], ["kube-public", "default"],
                    ["kube-system", "default"]]
    ns = json.loads(as_owner(g, "get", "namespace", "kube-system", "-o", "json").stdout)
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "kube-system"}


def test_the_seeds_kubectl_lines_in_order(g: Gcloud) -> None:
    """Seed 003 steps 5, 6 and 8, seed 002's pod audit, then a KSA token the STS exchanges."""
    assert kubectl(g, "create", "namespace", "production").stdout.strip() == "namespace/production created"
    assert kubectl(g, "create", "serviceaccount", "my-app-ksa", "--namespace=production").stdout.strip() == \
        "serviceaccount/my-app-ksa created"
    out = kubectl(g, "annotate", "serviceaccount", "my-app-ksa", "--namespace=production",
                  f"iam.gke.io/gcp-service-account={GSA}").stdout
    assert out.strip() == "serviceaccount/my-app-ksa annotated"
    assert kubectl(g, "apply", "-f", str(MANIFESTS / "ksa.yaml")).stdout.strip() == \
        "serviceaccount/my-app-ksa configured"
    assert kubectl(g, "apply", "-f", str(MANIFESTS / "ksa.yaml")).stdout.strip() == \
        "serviceaccount/my-app-ksa unchanged"
    assert kubectl(g, "apply", "-f", str(MANIFESTS / "deployment.yaml")).stdout.strip() == \
        "deployment.apps/my-app created"
    ksa = yaml.safe_load(kubectl(g, "get", "serviceaccount", "my-app-ksa", "-n", "production", "-o", "yaml").stdout)
    assert ksa["kind"] == "ServiceAccount" and ksa["metadata"]["namespace"] == "production"
    assert ksa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == GSA
    # seed 002: which pods run as which KSA
    table = kubectl(g, "get", "pods", "-A", "-o",
                    "custom-columns=NS:.metadata.namespace,POD:.metadata.name,KSA:.spec.serviceAccountName").stdout
    rows = [line.split() for line in table.splitlines()[1:]]
    assert len(rows) == 2 and all(r[0] == "production" and r[1].startswith("my-app-") and r[2] == "my-app-ksa"
                                  for r in rows)
    listed = kubectl(g, "get", "deployments", "-n", "production").stdout.splitlines()
    assert listed[0].split()[:4] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE"] and listed[1].startswith("my-app ")

    # kubectl create token: a projected token of the cluster's issuer, exchanged at STS (the direct model)
    token = kubectl(g, "create", "token", "my-app-ksa", "-n", "production", f"--audience={POOL}").stdout.strip()
    assert token.count(".") == 2
    exchanged = httpx.post(f"{g.server.base_url}/sts/v1/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": f"identitynamespace:{POOL}:{ISSUER}", "scope": "https://www.googleapis.com/auth/cloud-platform",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": token, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"})
    assert exchanged.status_code == 200, exchanged.text
    info = httpx.get(f"{g.server.base_url}/oauth2/v3/tokeninfo",
                     params={"access_token": exchanged.json()["access_token"]}).text
    assert "production/sa/my-app-ksa" in info


def as_owner(g: Gcloud, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """kubectl as the owner with a token in the kubeconfig (README's choice where the plugin is absent;
    also ~8x faster than starting gcloud for every call)."""
    if not getattr(g, "owner_user", False):
        kubectl(g, "config", "set-credentials", "owner", f"--token={g.server.owner_token}")
        g.owner_user = True  # type: ignore[attr-defined]
    return kubectl(g, "--user=owner", *args, **kw)


METADATA_EMAIL = "computeMetadata/v1/instance/service-accounts/default/email"


def _seed_curl() -> list[str]:
    """Seed 002's Verify line; with loopback pods (no network namespaces here) the metadata
    server is at $GCE_METADATA_HOST instead of metadata.google.internal (README, pods)."""
    if netns.unavailable_reason() is None:
        return ["curl", "-s", "-H", "Metadata-Flavor: Google", f"http://metadata.google.internal/{METADATA_EMAIL}"]
    return ["sh", "-c", f'curl -s -H "Metadata-Flavor: Google" "http://$GCE_METADATA_HOST/{METADATA_EMAIL}"']


def test_exec_and_run_reach_the_metadata_server_as_the_ksa(g: Gcloud) -> None:
    """Seed 002/003's Verify blocks: exec into a Deployment's pod, and `kubectl run -i --rm` with
    the KSA set through --overrides, both print the annotated GSA."""
    pods = as_owner(g, "get", "pods", "-n", "production", "-o", "name").stdout.split()
    assert len(pods) == 2
    shown = as_owner(g, "exec", "-n", "production", pods[0].split("/")[1], "--", *_seed_curl())
    assert shown.stdout.strip() == GSA
    assert as_owner(g, "get", "pods", "-n", "production", "-o", "name").stdout.split() == pods  # exec ended no pod
    run = as_owner(g, "run", "-i", "--rm", "--restart=Never", "workload-identity-test", "--image=google/cloud-sdk:slim",
                  "--namespace=production", '--overrides={"spec": {"serviceAccountName": "my-app-ksa"}}', "--",
                  *_seed_curl())
    assert run.stdout.startswith(GSA) and 'pod "workload-identity-test" deleted' in run.stdout
    # The nodes' logging agent (keyless/gke/logging_agent.py) takes attach's output (kubectl run),
    # the container's own, and not exec's; the nodes' account here may not write logs, so the
    # agent's log names the pods whose lines it refused.
    agent = (g.server.data_dir / "gke" / "logging-agent.log").read_text()
    assert "the logs of pod production/workload-identity-test are not written" in agent
    assert f"production/{pods[0].split('/')[1]} are not written" not in agent
    # `-- bash` fed the seed's commands on stdin; the shell's exit code is kubectl's
    script = " ".join(f"'{a}'" for a in _seed_curl()) + "; echo; exit 3\n"
    shell = as_owner(g, "run", "-i", "--rm", "--restart=Never", "wi-debug", "--image=google/cloud-sdk:slim",
                    "--namespace=production", '--overrides={"spec":{"serviceAccountName":"my-app-ksa"}}', "--", "bash",
                    stdin=script, check=False)
    assert shell.returncode == 3 and shell.stdout.startswith(GSA), shell.stderr
    assert "wi-debug" not in as_owner(g, "get", "pods", "-n", "production").stdout
    # kubectl 1.29 speaks SPDY unless told otherwise: the error says what to do
    old = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.29")
    if old.exists():
        spdy = kubectl(g, "--user=owner", "exec", "-n", "production", pods[0].split("/")[1], "--", "true",
                       binary=str(old), check=False)
        assert "KUBECTL_REMOTE_COMMAND_WEBSOCKETS=true" in spdy.stderr
        g.env["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"] = "true"
        try:
            assert kubectl(g, "--user=owner", "exec", "-n", "production", pods[0].split("/")[1], "--", "echo", "ws",
                           binary=str(old)).stdout == "ws\n"
        finally:
            del g.env["KUBECTL_REMOTE_COMMAND_WEBSOCKETS"]
    # `get pods -o wide` while a pod runs: its IP and its node, in kubectl's wide columns
    name = pods[0].split("/")[1]
    assert KUBECTL is not None
    # (it ends by itself, as the other execs do: a killed one would leave the pod Failed and running on)
    running = subprocess.Popen([KUBECTL, "--user=owner", "exec", "-n", "production", name, "--", "sleep", "8"],
                               env=g.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, wide = time.monotonic() + 30, ""
        while time.monotonic() < deadline:
            wide = as_owner(g, "get", "pods", "-n", "production", "-o", "wide").stdout
            row = next(line.split() for line in wide.splitlines() if line.startswith(name))
            if row[5] != "<none>":
                break
            time.sleep(0.2)
        assert re.match(r"NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE\s+NOMINATED NODE\s+READINESS GATES$",
                        wide.splitlines()[0]), wide
        assert row[2] == "Running" and ipaddress.ip_address(row[5]) and row[6].startswith("gke-my-cluster-"), wide
        assert row[7:] == ["<none>", "<none>"]
        pod = json.loads(as_owner(g, "get", "pod", name, "-n", "production", "-o", "json").stdout)
        assert (row[5], row[6]) == (pod["status"]["podIP"], pod["spec"]["nodeName"])
    finally:
        assert running.wait(120) == 0
    # images are not pulled: an image's own binary is not on this machine
    missing = as_owner(g, "exec", "-n", "production", pods[0].split("/")[1], "--", "no-such-binary", check=False)
    assert missing.returncode != 0 and 'exec: "no-such-binary": executable file not found in $PATH' in missing.stderr
    assert "images such as europe-west2-docker.pkg.dev/my-project-id/my-repo/my-app:latest are not pulled" in \
        missing.stderr


def test_kubernetes_error_answers(g: Gcloud) -> None:
    unknown = as_owner(g, "get", "foos", check=False)
    assert unknown.returncode != 0 and 'the server doesn\'t have a resource type "foos"' in unknown.stderr
    bad = as_owner(g, "create", "serviceaccount", "Bad_Name", "-n", "production", check=False)
    assert bad.returncode != 0 and 'ServiceAccount "Bad_Name" is invalid: metadata.name: Invalid value' in bad.stderr
    assert "RFC 1123 subdomain" in bad.stderr
    again = as_owner(g, "create", "namespace", "production", check=False)
    assert 'Error from server (AlreadyExists): namespaces "production" already exists' in again.stderr
    missing = as_owner(g, "get", "serviceaccount", "nope", "-n", "production", check=False)
    assert 'Error from server (NotFound): serviceaccounts "nope" not found' in missing.stderr
    for args, said in ((("get", "pod", "x", "-n", "production"), 'pods "x" not found'),
                       (("get", "namespace", "x"), 'namespaces "x" not found'),
                       (("get", "deployment", "x", "-n", "production"), 'deployments.apps "x" not found'),
                       (("annotate", "serviceaccount", "x", "-n", "production", "a=b"), 'serviceaccounts "x" not found'),
                       (("delete", "pod", "x", "-n", "production"), 'pods "x" not found')):
        r = as_owner(g, *args, check=False)
        assert r.returncode != 0 and f"Error from server (NotFound): {said}" in r.stderr, (args, r.stderr)
    run = g.server.keyless("pod", "run", "--cluster", "my-cluster", "--namespace", "nope", "--", "true")
    assert run.returncode != 0 and 'namespaces "nope" not found' in run.stderr, run.stderr
    run = g.server.keyless("pod", "run", "--cluster", "my-cluster", "--namespace", "production", "--pod", "x", "--",
                           "true")
    assert run.returncode != 0 and 'pods "x" not found' in run.stderr, run.stderr
    no_ns = as_owner(g, "create", "serviceaccount", "x", "-n", "staging", check=False)
    assert 'failed to create serviceaccount: namespaces "staging" not found' in no_ns.stderr
    # a stale resourceVersion: replace with what was read before someone else's change
    stale = as_owner(g, "get", "serviceaccount", "my-app-ksa", "-n", "production", "-o", "json").stdout
    as_owner(g, "annotate", "serviceaccount", "my-app-ksa", "-n", "production", "team=payments")
    conflict = as_owner(g, "replace", "-f", "-", stdin=stale, check=False)
    assert conflict.returncode != 0 and ('Error from server (Conflict): error when replacing "STDIN": Operation '
                                         'cannot be fulfilled on serviceaccounts "my-app-ksa": the object has been '
                                         'modified') in conflict.stderr
    # the wire shapes themselves (Status objects)
    headers = {"Authorization": f"Bearer {g.server.owner_token}"}
    base = _api(g)
    r = httpx.post(f"{base}/api/v1/namespaces/production/serviceaccounts", verify=_ca(g), headers=headers,
                   json={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "-bad-"}})
    body = r.json()
    assert r.status_code == 422 and body["kind"] == "Status" and body["reason"] == "Invalid" and body["code"] == 422
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    r = httpx.put(f"{base}/api/v1/namespaces/production/serviceaccounts/my-app-ksa", verify=_ca(g), headers=headers,
                  json={**json.loads(stale), "metadata": {**json.loads(stale)["metadata"]}})
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    r = httpx.post(f"{base}/api/v1/namespaces/production/serviceaccounts/my-app-ksa", verify=_ca(g),
                   headers=headers, json={})
    assert r.status_code == 405 and r.json()["reason"] == "MethodNotAllowed"
    r = httpx.get(f"{base}/api/v1/foos", verify=_ca(g), headers=headers)
    assert r.status_code == 404 and r.json()["message"] == "the server could not find the requested resource"
    r = httpx.patch(f"{base}/api/v1/namespaces/production/serviceaccounts/my-app-ksa", verify=_ca(g),
                    headers={**headers, "Content-Type": "text/plain"}, content=b"{}")
    assert r.status_code == 415 and r.json()["reason"] == "UnsupportedMediaType"
    r = httpx.get(f"{base}/api/v1/namespaces/production/serviceaccounts", verify=_ca(g))
    assert r.status_code == 401 and r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                                 "status": "Failure", "message": "Unauthorized",
                                                 "reason": "Unauthorized", "code": 401}
    # nothing stored changed: the annotation and the name survive every refused write
    ksa = json.loads(as_owner(g, "get", "sa", "my-app-ksa", "-n", "production", "-o", "json").stdout)
    assert ksa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == GSA
    assert "Bad_Name" not in as_owner(g, "get", "sa", "-n", "production").stdout


def test_a_caller_without_container_permissions_gets_kubernetes_403(g: Gcloud) -> None:
    dev = "dev@example.com"
    kubectl(g, "config", "set-credentials", "dev", f"--token={token_for_user(g.server, dev)}")
    denied = kubectl(g, "get", "serviceaccounts", "-n", "production", "--user=dev", check=False)
    assert denied.returncode != 0
    assert (f'Error from server (Forbidden): serviceaccounts is forbidden: User "{dev}" cannot list resource '
            f'"serviceaccounts" in API group "" in the namespace "production": requires one of '
            f'["container.serviceAccounts.list"] permission(s).') in denied.stderr
    token = kubectl(g, "create", "token", "my-app-ksa", "-n", "production", "--user=dev", check=False)
    assert 'cannot create resource "serviceaccounts/token"' in token.stderr
    g.run("projects", "add-iam-policy-binding", PROJECT, f"--member=user:{dev}",
          "--role=roles/container.developer")
    assert "my-app-ksa" in kubectl(g, "get", "serviceaccounts", "-n", "production", "--user=dev").stdout
    bad = kubectl(g, "get", "pods", "--user=dev", "--token=not-a-token", check=False)
    assert "error: You must be logged in to the server (Unauthorized)" in bad.stderr


def test_doctor_lint_reads_what_kubectl_wrote(g: Gcloud) -> None:
    """A KSA bound to a GSA but left without the annotation (the seeds' first mistake), made with
    kubectl, is found by `keyless doctor lint`; kubectl annotate fixes it."""
    g.run("iam", "service-accounts", "create", "reports-gsa")
    reports = f"reports-gsa@{PROJECT}.iam.gserviceaccount.com"
    g.run("iam", "service-accounts", "add-iam-policy-binding", reports, "--role=roles/iam.workloadIdentityUser",
          f"--member=serviceAccount:{POOL}[production/reports-ksa]")
    as_owner(g, "create", "serviceaccount", "reports-ksa", "-n", "production")

    def findings() -> list[dict[str, str]]:
        out = g.server.keyless("doctor", "lint", "--project", PROJECT, "--format", "json")
        return [f for f in json.loads(out.stdout)["findings"] if "reports-ksa" in json.dumps(f)]

    assert [f["rule"] for f in findings()] == ["KL027"]
    # doctor explain on a pod of that KSA names the fix as the seeds' kubectl line, at the context
    # get-credentials wrote; run as it is printed, it clears the finding
    as_owner(g, "run", "reports", "-n", "production", "--image=google/cloud-sdk:slim", "--restart=Never",
             "--overrides", json.dumps({"spec": {"serviceAccountName": "reports-ksa"}}))
    explained = g.server.keyless("doctor", "explain", "--pod", "production/reports", "--cluster", "my-cluster",
                                 "--permission", "storage.objects.get",
                                 "--resource", "//storage.googleapis.com/projects/_/buckets/b", "--format", "json")
    step = next(st for st in json.loads(explained.stdout)["steps"] if st["step"] == "annotation")
    assert step["status"] == "FAIL", explained.stdout
    assert step["fix"] == (f"kubectl --context {CONTEXT} annotate serviceaccount reports-ksa --namespace production "
                           f"iam.gke.io/gcp-service-account={reports}")
    fix = shlex.split(step["fix"])
    assert fix[0] == "kubectl"
    as_owner(g, *fix[1:])
    assert findings() == []


def test_kubeconfig_entries_of_other_clusters_are_separate(g: Gcloud) -> None:
    """Two clusters, two endpoints: objects of one are not the other's."""
    g.run("container", "clusters", "create", "other", f"--region={REGION}", f"--workload-pool={POOL}")
    g.run("container", "clusters", "get-credentials", "other", f"--region={REGION}")
    try:
        assert "production" not in as_owner(g, "get", "namespaces").stdout
        assert "my-app" not in as_owner(g, "get", "pods", "-A").stdout
    finally:
        kubectl(g, "config", "use-context", CONTEXT)
    assert "production" in as_owner(g, "get", "namespaces").stdout
    assert os.path.exists(g.env["KUBECONFIG"])


VERSIONS = sorted(Path("/usr/lib/google-cloud-sdk/bin").glob("kubectl.1.*"))


@pytest.mark.store_independent  # the same server paths as the seed flow, once per kubectl: SQLite leg only
@pytest.mark.parametrize("binary", VERSIONS, ids=[p.name for p in VERSIONS])
def test_every_installed_kubectl_version(g: Gcloud, binary: Path, tmp_path: Path) -> None:
    """gcloud's kubectl 1.27 ... 1.33 (the dispatcher at /usr/bin/kubectl picks one by the server's
    version): the seed's lines work with each."""
    ksa = f"ksa-{binary.name.replace('.', '-')}"
    run = lambda *a, **kw: kubectl(g, "--user=owner", *a, binary=str(binary), **kw)  # noqa: E731
    as_owner(g, "version", "-o", "json")
    assert run("create", "serviceaccount", ksa, "-n", "production").stdout.strip() == f"serviceaccount/{ksa} created"
    run("annotate", "serviceaccount", ksa, "-n", "production", f"iam.gke.io/gcp-service-account={GSA}")
    manifest = tmp_path / "ksa.yaml"
    manifest.write_text((MANIFESTS / "ksa.yaml").read_text().replace("my-app-ksa", ksa))
    assert run("apply", "-f", str(manifest)).stdout.strip() == f"serviceaccount/{ksa} configured"
    got = yaml.safe_load(run("get", "sa", ksa, "-n", "production", "-o", "yaml").stdout)
    assert got["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == GSA
    token = run("create", "token", ksa, "-n", "production", f"--audience={POOL}", "--duration=20m").stdout
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == [POOL] and claims["exp"] - claims["iat"] == 1200
    assert claims["sub"] == f"system:serviceaccount:production:{ksa}"
    assert claims["kubernetes.io"]["serviceaccount"]["uid"] == got["metadata"]["uid"]


def test_the_node_selector_picks_the_gke_metadata_pool(g: Gcloud, tmp_path: Path) -> None:
    """The seeds' trap: a pool left on GCE_METADATA answers with the node's account. A Deployment
    whose pods select `iam.gke.io/gke-metadata-server-enabled: "true"` lands on the
    GKE_METADATA pool, and its pods act as the annotated GSA; without the selector they land on
    the first node, here a GCE_METADATA one."""
    where = ("--cluster=np-cluster", f"--region={REGION}")
    g.run("container", "clusters", "create", "np-cluster", f"--region={REGION}", f"--workload-pool={POOL}",
          "--num-nodes=1")
    g.run("container", "node-pools", "update", "default-pool", *where, "--workload-metadata=GCE_METADATA")
    g.run("container", "node-pools", "create", "wi-pool", *where, "--workload-metadata=GKE_METADATA", "--num-nodes=1")
    g.run("container", "clusters", "get-credentials", "np-cluster", f"--region={REGION}")
    try:
        as_owner(g, "apply", "-f", str(MANIFESTS / "production-namespace.yaml"))
        as_owner(g, "apply", "-f", str(MANIFESTS / "ksa.yaml"))
        selected = yaml.safe_load((MANIFESTS / "deployment.yaml").read_text())
        selected["metadata"]["name"] = "selected"
        selected["spec"]["replicas"] = 1
        selected["spec"]["template"]["spec"]["nodeSelector"] = {"iam.gke.io/gke-metadata-server-enabled": "true"}
        (tmp_path / "selected.yaml").write_text(yaml.safe_dump(selected))
        plain = {**selected, "metadata": {**selected["metadata"], "name": "plain"},
                 "spec": {**selected["spec"], "template": {**selected["spec"]["template"], "spec": {
                     k: v for k, v in selected["spec"]["template"]["spec"].items() if k != "nodeSelector"}}}}
        (tmp_path / "plain.yaml").write_text(yaml.safe_dump(plain))
        as_owner(g, "apply", "-f", str(tmp_path))
        pods = {line.split("/")[1].rsplit("-", 2)[0]: line.split("/")[1]
                for line in as_owner(g, "get", "pods", "-n", "production", "-o", "name").stdout.split()}
        email = lambda pod: as_owner(g, "exec", "-n", "production", pod, "--", *_seed_curl()).stdout.strip()  # noqa: E731
        assert email(pods["selected"]) == GSA
        assert email(pods["plain"]) == f"{NUMBER}-compute@developer.gserviceaccount.com"
    finally:
        kubectl(g, "config", "use-context", CONTEXT)
