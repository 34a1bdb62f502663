"""Seed 003's workload in a real pod (issue #20): a KSA bound to a GSA (roles/iam.workloadIdentityUser
on the GSA for `serviceAccount:PROJECT.svc.id.goog[NS/KSA]`), the GSA holding roles/pubsub.publisher
on one topic, roles/logging.logWriter and roles/secretmanager.secretAccessor on one secret (and
roles/cloudasset.viewer, to ask seed 002's Policy Analyzer question itself), and Google's Python
clients run unmodified in the pod through the GKE metadata server: google-cloud-pubsub publishes over
gRPC to pubsub.googleapis.com, google-cloud-logging's handler writes structured entries to
logging.googleapis.com over gRPC, google-cloud-asset (REST) analyzes the GSA's access, and `gcloud
logging read` (as the owner) finds the entries beside the audit entries of the same pod's calls.
Least privilege holds: another topic, another project's logs and a pod whose KSA is not bound get
nothing. The pods cost seconds each, so one pod runs the whole workload.

The workload also logs as an unmodified application on GKE does (`setup_logging()`: JSON lines on
stderr), and the node's logging agent ships its containers' output as the node's account
(keyless/gke/logging_agent.py): found by `gcloud logging read` as `k8s_container` entries; a pod
flooding its stdout stays bounded; nothing is shipped from a cluster without workload logging or
by a node account without logging.logEntries.create."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from keyless.gke import logging_agent
from tests.api.helpers import audit_data_access, server_state
from tests.conftest import GCLOUD, Gcloud, KeylessServer, free_port, fresh_database_url
from tests.gke.pod_helpers import CLUSTERS, GSA, POOL, PROJECT, apply_ksas, leftovers, make_cluster, pod_run

PYTHON = sys.executable
ANNOTATION = "iam.gke.io/gcp-service-account"
OTHER_PROJECT = "other-project"
TOPIC = f"projects/{PROJECT}/topics/orders"
KSA_MEMBER = f"serviceAccount:{POOL}[production/my-app-ksa]"
BARE_NODE_SA = f"bare-node@{PROJECT}.iam.gserviceaccount.com"

# The workload: seed 003's pod, Google's clients with no endpoint or credential setting and their
# default transports (gRPC), but for google-cloud-asset: its REST transport (Keyless's Cloud Asset is
# REST). It prints one JSON object: what each call returned, or the error the client raised.
WORKLOAD = r'''
import json, logging
from google.cloud import asset_v1, pubsub_v1, secretmanager
import google.cloud.logging
from google.cloud.logging.handlers import CloudLoggingHandler, setup_logging

GSA = "my-app-gsa@my-project.iam.gserviceaccount.com"

out = {}
def attempt(name, call):
    try:
        out[name] = call()
    except Exception as e:
        out[name] = {"error": type(e).__name__, "code": getattr(e, "code", None) and int(e.code),
                     "message": " ".join(str(getattr(e, "message", e)).split())[:300]}

publisher = pubsub_v1.PublisherClient()
attempt("publish", lambda: publisher.publish("projects/my-project/topics/orders", b"order 42",
                                             origin="pod").result(timeout=60))
attempt("publish_other", lambda: publisher.publish("projects/my-project/topics/audit-events",
                                                   b"not yours").result(timeout=60))
secrets = secretmanager.SecretManagerServiceClient()
attempt("secret", lambda: secrets.access_secret_version(
    name="projects/my-project/secrets/db-password/versions/latest").payload.data.decode())

client = google.cloud.logging.Client()
out["project"] = client.project
# On GKE the default handler is the structured one (JSON on stdout, which GKE's agent ships); the
# API handler writes the same records to logging.googleapis.com as the pod's identity.
out["default_handler"] = type(client.get_default_handler()).__name__
handler = CloudLoggingHandler(client, name="my-app")
out["resource"] = handler.resource._to_dict()
setup_logging(handler)
logging.getLogger("orders").warning("order 42 published as %s", out["publish"])
handler.flush()
elsewhere = google.cloud.logging.Client(project="other-project").logger("my-app")
attempt("log_other", lambda: elsewhere.log_struct({"message": "not yours"}))
analyzer = asset_v1.AssetServiceClient(transport="rest")
def analysis():
    got = analyzer.analyze_iam_policy(request={"analysis_query": {
        "scope": "projects/my-project", "identity_selector": {"identity": "serviceAccount:" + GSA}}})
    return sorted([r.attached_resource_full_name, r.iam_binding.role] for r in got.main_analysis.analysis_results)
attempt("analysis", analysis)
# What an unmodified application on GKE does: setup_logging() finds GKE and installs the
# structured handler (JSON lines on stderr), which the node's logging agent ships.
logging.getLogger().removeHandler(handler)
google.cloud.logging.Client().setup_logging()
logging.getLogger("shipping").error("order 42 shipped", extra={"labels": {"order": "42"}})
print(json.dumps(out))
'''

# A pod flooding its stdout: one structured line, one line of 1 MiB (over Cloud Logging's 256 KB
# entry limit), then 100,000 lines as fast as Python writes them.
FLOOD = r'''
import sys
w = sys.stdout.write
w('{"message": "flood starts", "severity": "NOTICE"}\n')
w("A" * (1 << 20) + "\n")
for i in range(100_000):
    w("flood %06d %s\n" % (i, "x" * 80))
'''
FLOOD_LINES = 100_000

# A pod whose KSA is not bound: the metadata server refuses its token, and the clients (called
# without retries: they would retry UNAVAILABLE for a minute) fail before sending anything.
UNBOUND = r'''
import json
import google.auth, google.auth.transport.requests, requests
from google.cloud import pubsub_v1, secretmanager

out = {}
def attempt(name, call):
    try:
        out[name] = call()
    except Exception as e:
        out[name] = {"error": type(e).__name__, "message": " ".join(str(e).split())[:600]}

credentials, project = google.auth.default()
out["email"] = requests.get("http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/email",
                            headers={"Metadata-Flavor": "Google"}).text
attempt("refresh", lambda: credentials.refresh(google.auth.transport.requests.Request()))
attempt("publish", lambda: pubsub_v1.PublisherClient().publish("projects/my-project/topics/orders", b"order 43",
                                                              retry=None, timeout=10).result(timeout=30))
attempt("secret", lambda: secretmanager.SecretManagerServiceClient().access_secret_version(
    name="projects/my-project/secrets/db-password/versions/latest", retry=None, timeout=10).payload.data.decode())
print(json.dumps(out))
'''


def ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    """Seed 003's setup: my-app-gsa bound to production/my-app-ksa (annotated); the GSA holds
    roles/pubsub.publisher on `orders` only, roles/logging.logWriter and roles/cloudasset.viewer on
    my-project and secretAccessor on db-password. `audit-events` and other-project exist but grant
    it nothing; unbound-ksa is annotated with the GSA but has no workloadIdentityUser binding."""
    tls_port = free_port()
    server = KeylessServer(tmp_path_factory.mktemp("pod-wi") / "data", fresh_database_url(),
                           "--tls-port", str(tls_port))
    server.tls_port = tls_port  # type: ignore[attr-defined]
    for project in (PROJECT, OTHER_PROJECT):  # as gcloud projects create does; Keyless picks the numbers
        ok(server.call("POST", "/cloudresourcemanager/v3/projects", body={"projectId": project}))
    server.number = ok(server.call("GET", f"/cloudresourcemanager/v1/projects/{PROJECT}"))["projectNumber"]  # type: ignore[attr-defined]
    ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "my-app-gsa"}))
    cluster_id = make_cluster(server, pools={"default-pool": "GKE_METADATA"})
    # bare-pool's nodes run as an account holding nothing; quiet-cluster ships system logs only.
    ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "bare-node"}))
    ok(server.call("POST", f"{CLUSTERS}/my-cluster/nodePools", body={"nodePool": {
        "name": "bare-pool", "initialNodeCount": 1,
        "config": {"serviceAccount": BARE_NODE_SA, "workloadMetadataConfig": {"mode": "GKE_METADATA"}}}}))
    ok(server.call("POST", CLUSTERS, body={"cluster": {
        "name": "quiet-cluster", "nodePools": [{"name": "default-pool", "initialNodeCount": 1}],
        "loggingConfig": {"componentConfig": {"enableComponents": ["SYSTEM_COMPONENTS"]}}}}))
    ok(server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts/{GSA}:setIamPolicy", body={"policy": {
        "bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [KSA_MEMBER]}]}}))
    apply_ksas(server, cluster_id, "production", {"my-app-ksa": {ANNOTATION: GSA}, "unbound-ksa": {ANNOTATION: GSA}})
    audit_data_access(server, PROJECT, {"iam.googleapis.com": ["DATA_READ"],
                                        "secretmanager.googleapis.com": ["DATA_READ"]})
    policy = ok(server.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy", body={}))
    policy["bindings"].append({"role": "roles/logging.logWriter", "members": [f"serviceAccount:{GSA}"]})
    policy["bindings"].append({"role": "roles/cloudasset.viewer", "members": [f"serviceAccount:{GSA}"]})
    # The nodes' account (the default compute SA) writes the pods' stdout/stderr, as on GKE.
    policy["bindings"].append({"role": "roles/container.defaultNodeServiceAccount",
                               "members": [f"serviceAccount:{server.number}-compute@developer.gserviceaccount.com"]})  # type: ignore[attr-defined]
    ok(server.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:setIamPolicy", body={"policy": policy}))
    ps = f"/pubsub/v1/projects/{PROJECT}"
    for topic in ("orders", "audit-events"):
        ok(server.call("PUT", f"{ps}/topics/{topic}", body={}))
        ok(server.call("PUT", f"{ps}/subscriptions/{topic}-sub", body={"topic": f"projects/{PROJECT}/topics/{topic}"}))
    ok(server.call("POST", f"{ps}/topics/orders:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/pubsub.publisher", "members": [f"serviceAccount:{GSA}"]}]}}))
    sm = f"/secretmanager/v1/projects/{PROJECT}/secrets"
    ok(server.call("POST", sm, params={"secretId": "db-password"}, body={"replication": {"automatic": {}}}))
    ok(server.call("POST", f"{sm}/db-password:addVersion", body={"payload": {"data": base64.b64encode(b"hunter2").decode()}}))
    ok(server.call("POST", f"{sm}/db-password:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{GSA}"]}]}}))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def nothing_left_behind(srv: KeylessServer) -> Iterator[None]:
    """After each test, nothing its server's pods made is left on this machine (pod_helpers.leftovers)."""
    yield
    deadline = time.monotonic() + 10
    while leftovers(srv) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leftovers(srv) == []


@pytest.fixture(scope="module")
def pods(srv: KeylessServer) -> dict[str, Any]:
    """WORKLOAD in a pod of my-app-ksa (named my-app) and UNBOUND in a pod of unbound-ksa, side by
    side (a pod costs seconds of imports), each reaching Keyless as Google's hosts (the server's URL
    and TLS port come from its record, keyless.discovery); what each printed. Beside them, for the
    node's logging agent: FLOOD (its runner's output and seconds), a pod of my-app-ksa on bare-pool,
    one on quiet-cluster and a `--network loopback` one (their runners' output)."""
    def run(ksa: str, script: str, *extra: str) -> dict[str, Any]:
        result = pod_run(srv, "--cluster", "my-cluster", "--node-pool", "default-pool", "--namespace", "production",
                         "--service-account", ksa, *extra, command=[PYTHON, "-c", script])
        assert result.returncode == 0, result.stdout + result.stderr[-4000:]
        return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def runner(cluster: str, *args: str, command: list[str]) -> tuple[Any, float]:
        started = time.monotonic()
        result = pod_run(srv, "--cluster", cluster, *args, command=command)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        return result, time.monotonic() - started

    echo = ["sh", "-c", 'echo "words of a quiet pod"; echo \'{"message": "json of a quiet pod"}\' >&2']
    with ThreadPoolExecutor(6) as pool:
        bound = pool.submit(run, "my-app-ksa", WORKLOAD, "--name", "my-app")
        unbound = pool.submit(run, "unbound-ksa", UNBOUND)
        flood = pool.submit(runner, "my-cluster", "--node-pool", "default-pool", "--name", "flood",
                            command=[PYTHON, "-c", FLOOD])
        bare = pool.submit(runner, "my-cluster", "--namespace", "production", "--service-account", "my-app-ksa",
                           "--node-pool", "bare-pool", "--name", "bare", command=echo)
        quiet = pool.submit(runner, "quiet-cluster", "--name", "quiet", command=echo)
        loop = pool.submit(runner, "my-cluster", "--node-pool", "default-pool", "--network", "loopback",
                           "--name", "loop", command=echo)
        return {"bound": bound.result(), "unbound": unbound.result(), "flood": flood.result(),
                "bare": bare.result()[0], "quiet": quiet.result()[0], "loop": loop.result()[0]}


def pull(srv: KeylessServer, subscription: str) -> list[dict[str, Any]]:
    """What the subscription holds, received and acknowledged (as the owner)."""
    path = f"/pubsub/v1/projects/{PROJECT}/subscriptions/{subscription}"
    got = ok(srv.call("POST", f"{path}:pull", body={"maxMessages": 10})).get("receivedMessages", [])
    if got:
        ok(srv.call("POST", f"{path}:acknowledge", body={"ackIds": [m["ackId"] for m in got]}))
    return [m["message"] for m in got]


@pytest.fixture(scope="module")
def gc(srv: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> Gcloud:
    if GCLOUD is None:
        pytest.skip("gcloud is not installed: this test needs the Google Cloud CLI on PATH")
    return Gcloud(srv, tmp_path_factory.mktemp("gcloud"))


def test_bound_pod_publishes_and_logs_as_its_gsa_and_gcloud_finds_it_beside_the_audit(
        srv: KeylessServer, pods: dict[str, Any], gc: Gcloud) -> None:
    out = pods["bound"]
    # Pub/Sub over gRPC as the GSA: the message reaches the topic's subscription as published.
    [message] = pull(srv, "orders-sub")
    assert out["publish"] == message["messageId"]
    assert base64.b64decode(message["data"]) == b"order 42" and message["attributes"] == {"origin": "pod"}
    # roles/pubsub.publisher on `orders` only: the other topic refuses, and nothing reaches it.
    assert out["publish_other"] == {"error": "PermissionDenied", "code": 403,
                                    "message": "User not authorized to perform this action."}
    assert pull(srv, "audit-events-sub") == []
    assert out["secret"] == "hunter2"
    # google-cloud-logging found GKE through the metadata server (cluster-name, cluster-location,
    # asked of `metadata.google.internal.`): its default handler is the structured one, and the
    # API handler's entries are a k8s_container's.
    assert out["project"] == PROJECT and out["default_handler"] == "StructuredLogHandler"
    assert out["resource"] == {"type": "k8s_container", "labels": {
        "project_id": PROJECT, "location": "us-central1", "cluster_name": "my-cluster"}}
    # roles/logging.logWriter on my-project: writing into another project's logs is refused.
    # Seed 002's "what can this identity do", asked by the pod itself (google-cloud-asset, REST):
    # its project roles, the topic's grant and the secret's, as Google's analyzer lists them (issue #20).
    project, secret = f"//cloudresourcemanager.googleapis.com/projects/{PROJECT}", \
        f"//secretmanager.googleapis.com/projects/{srv.number}/secrets/db-password"  # type: ignore[attr-defined]
    assert out["analysis"] == [
        [project, "roles/cloudasset.viewer"], [project, "roles/logging.logWriter"],
        [f"//pubsub.googleapis.com/{TOPIC}", "roles/pubsub.publisher"],
        [secret, "roles/secretmanager.secretAccessor"]], out["analysis"]
    assert out["log_other"] == {"error": "PermissionDenied", "code": 403, "message": (
        "Permission 'logging.logEntries.create' denied on resource 'projects/other-project' (or it may not exist).")}

    # Seed 002's audit query, with the application's own log beside it, as the owner.
    found = gc.json("logging", "read", f'logName="projects/{PROJECT}/logs/my-app" OR '
                    f'protoPayload.authenticationInfo.principalEmail="{GSA}" OR '
                    f'protoPayload.authenticationInfo.principalSubject="{KSA_MEMBER}" OR '
                    '(resource.type="k8s_container" AND jsonPayload.message="order 42 shipped")',
                    f"--project={PROJECT}", "--limit=20")
    # setup_logging()'s structured line on the pod's stderr, shipped by the node's logging agent as
    # GKE's: the container's resource, Google's special fields lifted, the rest in jsonPayload.
    [shipped] = [e for e in found if e["logName"] != f"projects/{PROJECT}/logs/my-app" and "protoPayload" not in e]
    assert shipped["logName"] == f"projects/{PROJECT}/logs/stderr" and shipped["severity"] == "ERROR"
    assert shipped["resource"]["labels"] == {
        "project_id": PROJECT, "location": "us-central1", "cluster_name": "my-cluster",
        "namespace_name": "production", "pod_name": "my-app", "container_name": "my-app"}
    assert shipped["labels"] == {"order": "42", "python_logger": "shipping", "k8s-pod/run": "my-app",
                                 "compute.googleapis.com/resource_name": node_of(srv, "default-pool")}
    assert shipped["jsonPayload"] == {"message": "order 42 shipped"}
    assert shipped["sourceLocation"]["function"] == "<module>" and "trace" not in shipped
    [app] = [e for e in found if e["logName"] == f"projects/{PROJECT}/logs/my-app"]
    assert app["textPayload"] == "order 42 published as 1" and app["severity"] == "WARNING"
    assert app["labels"] == {"python_logger": "orders"} and app["resource"] == {
        "type": "k8s_container", "labels": {"project_id": PROJECT, "location": "us-central1",
                                            "cluster_name": "my-cluster"}}
    audit = {(e["protoPayload"]["methodName"], json.dumps(e["protoPayload"]["authenticationInfo"], sort_keys=True))
             for e in found if "protoPayload" in e}
    assert audit == {
        # the pod's KSA identity obtaining the GSA's token (the metadata server's impersonation) ...
        ("GenerateAccessToken", json.dumps({"principalSubject": KSA_MEMBER})),
        # ... and the GSA's own call, with the GSA as the principal
        ("google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion",
         json.dumps({"principalEmail": GSA, "principalSubject": f"serviceAccount:{GSA}"}, sort_keys=True)),
    }, found


def test_pod_whose_ksa_is_not_bound_gets_no_access(srv: KeylessServer, pods: dict[str, Any]) -> None:
    out = pods["unbound"]
    assert out["email"] == GSA  # the annotation answers: the refusal comes with the token
    # The metadata server's answer (quoted by google-auth inside its own message).
    denial = r"Unable to generate access token; IAM returned 403 Forbidden: Permission \'iam.serviceAccounts.getAccessToken\' denied"
    assert out["refresh"]["error"] == "RefreshError" and "Status: 403" in out["refresh"]["message"]
    assert denial in out["refresh"]["message"]
    for call in ("publish", "secret"):  # grpc's credentials plugin fails: no request is sent
        assert out[call]["error"] == "ServiceUnavailable", out
        assert out[call]["message"].startswith("503 Getting metadata from plugin failed with error: "), out
        assert denial in out[call]["message"], out
    assert b"order 43" not in [base64.b64decode(m["data"]) for m in pull(srv, "orders-sub")]


def test_logging_over_grpc_answers_as_the_rest_api(srv: KeylessServer) -> None:
    """google.logging.v2.LoggingServiceV2 on the TLS port (keyless.api.logging.grpc), called from the
    host as logging.googleapis.com: written entries and audit entries (protoPayload AuditLog) list
    as over REST; refusals carry Google's codes."""
    import grpc
    from google.cloud.logging_v2.types import logging as messages
    from google.protobuf import empty_pb2, json_format

    bundle = (srv.data_dir / "tls" / "bundle.pem").read_bytes()
    channel = grpc.secure_channel(f"127.0.0.1:{srv.tls_port}", grpc.ssl_channel_credentials(bundle),  # type: ignore[attr-defined]
                                  options=[("grpc.ssl_target_name_override", "logging.googleapis.com")])

    def rpc(name: str, request: Any, response: Any, token: str | None = srv.owner_token) -> Any:
        call = channel.unary_unary(f"/google.logging.v2.LoggingServiceV2/{name}",
                                   request_serializer=lambda m: m.SerializeToString(),
                                   response_deserializer=response.FromString)
        return call(request, metadata=[("authorization", f"Bearer {token}")] if token else [], timeout=30)

    log = f"projects/{PROJECT}/logs/grpc-check"
    entry = {"logName": log, "resource": {"type": "global"}, "jsonPayload": {"order": 7}, "severity": "NOTICE"}
    rpc("WriteLogEntries", json_format.ParseDict({"entries": [entry]}, messages.WriteLogEntriesRequest.pb()()),
        messages.WriteLogEntriesResponse.pb())
    wanted = f'logName="{log}" OR logName="projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"'
    request = {"resourceNames": [f"projects/{PROJECT}"], "filter": wanted, "pageSize": 50}
    listed = json_format.MessageToDict(rpc("ListLogEntries", json_format.ParseDict(
        request, messages.ListLogEntriesRequest.pb()()), messages.ListLogEntriesResponse.pb()))
    rest = ok(srv.call("POST", "/logging/v2/entries:list", body=request))
    assert listed["entries"] == rest["entries"]  # the same entries, AuditLog payloads included
    assert {e["logName"] for e in listed["entries"]} == {log, f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity"}
    assert next(e for e in listed["entries"] if e["logName"] == log)["jsonPayload"] == {"order": 7.0}
    logs = rpc("ListLogs", messages.ListLogsRequest.pb()(parent=f"projects/{PROJECT}"), messages.ListLogsResponse.pb())
    assert log in logs.log_names
    rpc("DeleteLog", messages.DeleteLogRequest.pb()(log_name=log), empty_pb2.Empty)
    assert not ok(srv.call("POST", "/logging/v2/entries:list", body={
        "resourceNames": [f"projects/{PROJECT}"], "filter": f'logName="{log}"'})).get("entries")
    # Refusals (PERMISSION_DENIED is the pod's, above): no credentials; a request without a project.
    with pytest.raises(grpc.RpcError) as caught:
        rpc("ListLogEntries", json_format.ParseDict(request, messages.ListLogEntriesRequest.pb()()),
            messages.ListLogEntriesResponse.pb(), token=None)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as caught:
        rpc("ListLogEntries", messages.ListLogEntriesRequest.pb()(), messages.ListLogEntriesResponse.pb())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert "resourceNames is required" in caught.value.details()  # type: ignore[attr-defined]
    channel.close()


def node_of(srv: KeylessServer, pool: str) -> str:
    """The name of my-cluster's node of `pool` (one node per pool)."""
    from sqlalchemy import select

    from keyless.store.models import GkeCluster, GkeNode, GkeNodePool

    with server_state(srv).db.read() as s:
        return str(s.scalars(select(GkeNode.name).join(GkeNodePool, GkeNodePool.id == GkeNode.node_pool_id)
                             .join(GkeCluster, GkeCluster.id == GkeNode.cluster_id)
                             .where(GkeCluster.name == "my-cluster", GkeNodePool.name == pool)).one())


def agent_log(srv: KeylessServer) -> str:
    """What the nodes' logging agent logged (keyless.gke.pods.agent_log)."""
    path = srv.data_dir / "gke" / "logging-agent.log"
    return path.read_text() if path.exists() else ""


def _shipped(srv: KeylessServer, cluster: str, pod: str) -> list[dict[str, Any]]:
    """The k8s_container entries stored for one pod (read from the store: a flood is thousands)."""
    from sqlalchemy import select

    from keyless.store.models import AuditEntry

    with server_state(srv).db.read() as s:
        rows = s.scalars(select(AuditEntry.entry).where(AuditEntry.project_id == PROJECT,
                                                        AuditEntry.resource_type == "k8s_container")).all()
    return [e for e in rows if e["resource"].get("labels", {}).get("cluster_name") == cluster
            and e["resource"]["labels"].get("pod_name") == pod]


def test_a_pod_flooding_stdout_is_bounded_by_its_nodes_agent(srv: KeylessServer, pods: dict[str, Any]) -> None:
    """The attack: 100,000 lines and a 1 MiB line as fast as the pod writes. Its output still
    reaches the runner's stdout whole (the pipes are always drained: the pod is never blocked), but
    the store gets at most its buffer plus its rate for the seconds it ran; the oversized line is
    skipped, and the runner says what was dropped. The pods beside it (above) shipped theirs."""
    result, seconds = pods["flood"]
    out = result.stdout.splitlines()
    assert len(out) == 2 + FLOOD_LINES and out[-1].startswith("flood 099999 ")
    shipped = _shipped(srv, "my-cluster", "flood")
    ceiling = logging_agent.BUFFER_LINES + logging_agent.ROUND_ENTRIES * (seconds / logging_agent.ROUND_SECONDS + 2)
    assert logging_agent.BUFFER_LINES <= len(shipped) <= ceiling < FLOOD_LINES / 2, (len(shipped), seconds)
    first = min(shipped, key=lambda e: e["timestamp"])
    assert first["jsonPayload"] == {"message": "flood starts"} and first["severity"] == "NOTICE"
    assert first["logName"] == f"projects/{PROJECT}/logs/stdout"
    assert all(len(e.get("textPayload", "")) < 1000 for e in shipped)  # the 1 MiB line never stored
    assert f"pod default/flood: {FLOOD_LINES + 1 - len(shipped)} log lines dropped (the agent's buffer was full), " \
        f"1 longer than {logging_agent.MAX_LINE_BYTES} bytes" in agent_log(srv)
    assert "flood" not in result.stderr  # the agent's own log is the node's, not the pod's output


def test_a_loopback_pods_lines_are_shipped_as_a_namespace_pods(srv: KeylessServer, pods: dict[str, Any]) -> None:
    assert pods["loop"].stdout == "words of a quiet pod\n"
    shipped = sorted(_shipped(srv, "my-cluster", "loop"), key=lambda e: e["logName"])
    assert [(e["logName"].rsplit("/", 1)[1], e.get("textPayload"), e.get("jsonPayload")) for e in shipped] == [
        ("stderr", None, {"message": "json of a quiet pod"}), ("stdout", "words of a quiet pod", None)]
    assert shipped[0]["resource"]["labels"] == {
        "project_id": PROJECT, "location": "us-central1", "cluster_name": "my-cluster",
        "namespace_name": "default", "pod_name": "loop", "container_name": "loop"}
    assert shipped[0]["severity"] == shipped[1]["severity"] == "DEFAULT"
    assert shipped[0]["labels"] == shipped[1]["labels"] == {
        "k8s-pod/run": "loop", "compute.googleapis.com/resource_name": node_of(srv, "default-pool")}


def test_no_workload_logs_where_the_cluster_or_the_nodes_account_does_not_allow_them(
        srv: KeylessServer, pods: dict[str, Any]) -> None:
    """quiet-cluster's loggingConfig names SYSTEM_COMPONENTS only: its pod's output is shown, not
    shipped. bare-pool's nodes run as an account without logging.logEntries.create: nothing is
    written, though the pod's own GSA holds roles/logging.logWriter (the agent writes as the node),
    and the runner says why."""
    for name in ("quiet", "bare"):
        assert pods[name].stdout == "words of a quiet pod\n"
        assert pods[name].stderr == '{"message": "json of a quiet pod"}\n'
    assert _shipped(srv, "quiet-cluster", "quiet") == [] and _shipped(srv, "my-cluster", "bare") == []
    assert "Permission 'logging.logEntries.create' denied on resource 'projects/my-project' for the node's " \
           f"service account {BARE_NODE_SA}: the logs of pod production/bare are not written" in agent_log(srv)
    assert "pod default/quiet" not in agent_log(srv)
