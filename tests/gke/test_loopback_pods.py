"""`keyless pod run` as a user without root (uid 65534, via setpriv): the namespace mode refuses
and names `--network loopback`; in loopback mode each pod gets its own 127.x address and metadata
server, and curl, google-auth and gcloud inside it get the identity GKE would give it (seed 002)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from keyless.store.models import K8sObject
from tests.api.helpers import server_state
from tests.conftest import GCLOUD, KeylessServer, fresh_database_url
from tests.gke.pod_helpers import (
    COMPUTE_SA,
    GSA,
    NUMBER,
    POOL,
    PROJECT,
    apply_ksa,
    make_cluster,
    unique_sleep,
)

NOBODY = 65534
OTHER_GSA = f"other-gsa@{PROJECT}.iam.gserviceaccount.com"
ROOT = Path(__file__).resolve().parents[2]
TOKEN_PATH = "instance/service-accounts/default/token"
EMAIL_PATH = "instance/service-accounts/default/email"


def pod_python() -> tuple[str, list[str]]:
    """An interpreter uid 65534 may execute, with google-auth importable: this one, or (where it
    lives under root's private home, as with pyenv) the system's, given this one's site-packages."""
    probe = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "sh", "-c", '"$0" -c ""']
    if subprocess.run([*probe[:-1], probe[-1], sys.executable], capture_output=True).returncode == 0:
        return sys.executable, []
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin")
    assert system is not None, f"no {version} that uid {NOBODY} can run"
    return system, ["--env", f"PYTHONPATH={sysconfig.get_paths()['purelib']}"]


def _bind(srv: KeylessServer, gsa: str, member: str) -> None:
    path = f"/iam/v1/projects/{PROJECT}/serviceAccounts/{gsa}"
    r = srv.call("POST", f"{path}:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/iam.workloadIdentityUser", "members": [member]}]}})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def srv() -> Iterator[KeylessServer]:
    """A server (root, as CI runs it) whose data directory the unprivileged runner may use."""
    base = Path(tempfile.mkdtemp(prefix="keyless-loopback-"))
    base.chmod(0o755)
    server = KeylessServer(base / "data", fresh_database_url())
    try:
        assert server.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
        for account in ("my-app-gsa", "other-gsa"):
            r = server.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account})
            assert r.status_code == 200, r.text
        cluster_id = make_cluster(server)  # default-pool GKE_METADATA, legacy-pool GCE_METADATA
        _bind(server, GSA, f"serviceAccount:{POOL}[production/my-app-ksa]")
        _bind(server, OTHER_GSA, f"serviceAccount:{POOL}[production/other-ksa]")
        apply_ksa(server, cluster_id, "production", "my-app-ksa", {"iam.gke.io/gcp-service-account": GSA})
        apply_ksa(server, cluster_id, "production", "other-ksa", {"iam.gke.io/gcp-service-account": OTHER_GSA})
        for path in [server.data_dir, *server.data_dir.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def as_nobody(srv: KeylessServer, *args: str, command: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-m",
            "keyless.cli.main", "pod", "run", "--cluster", "my-cluster", "--namespace", "production", *args,
            "--data-dir", str(srv.data_dir), *(["--database", srv.database_url] if srv.database_url else []),
            "--", *command]


def nobody_env() -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"}


def run(srv: KeylessServer, *args: str, script: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(as_nobody(srv, "--network", "loopback", *args, command=["sh", "-c", script]),
                            capture_output=True, text=True,
                            timeout=180, env=nobody_env(), cwd="/")
    assert result.returncode == 0, result.stderr
    return result


def curl(path: str, *extra: str) -> str:
    """Seed 002's curl, pointed where a loopback pod's clients look: $GCE_METADATA_HOST."""
    url = f"http://$GCE_METADATA_HOST/computeMetadata/v1/{path}"
    return " ".join([*map(shlex.quote, ["curl", "-s", "-H", "Metadata-Flavor: Google", *extra]), f'"{url}"'])


def refused(host: str) -> bool:
    address, _, port = host.partition(":")
    try:
        socket.create_connection((address, int(port or 80)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def pods_at(srv: KeylessServer, prefix: str = "127.") -> list[str]:
    with server_state(srv).db.read() as s:
        return [ip for ip in s.scalars(select(K8sObject.pod_ip).where(K8sObject.pod_ip.is_not(None))).all()
                if ip.startswith(prefix)]


def test_namespace_mode_refuses_without_root_and_names_loopback(srv: KeylessServer) -> None:
    result = subprocess.run(as_nobody(srv, "--service-account", "my-app-ksa", command=["true"]), capture_output=True,
                            text=True, timeout=60, env=nobody_env(), cwd="/")
    assert result.returncode == 1
    err = result.stderr
    assert "needs root" in err and "network namespace" in err
    assert "--network loopback" in err
    assert "any local process can reach a pod's metadata endpoint" in err
    assert "not by its source address" in err


def test_seed_002_verify_block_in_a_loopback_pod(srv: KeylessServer) -> None:
    python, python_env = pod_python()
    script = "echo $GCE_METADATA_HOST $GCE_METADATA_IP $GCE_METADATA_ROOT; id -u; " + "; ".join(f'echo "$({cmd})"' for cmd in [
        curl(EMAIL_PATH),
        curl(TOKEN_PATH, "-o", "/dev/null", "-w", "%{http_code}"),
        curl(TOKEN_PATH),
        shlex.join([python, "-c", "import google.auth, google.auth.transport.requests as r; "
                    "c, p = google.auth.default(); c.refresh(r.Request()); print(type(c).__name__, p, "
                    "c.service_account_email)"]),
        curl(EMAIL_PATH, "-H", "X-Forwarded-For: 10.0.0.1"),
        'curl -s "http://$GCE_METADATA_HOST/computeMetadata/v1/project/project-id"',
    ])
    result = run(srv, "--service-account", "my-app-ksa", *python_env, script=script)
    out = result.stdout.splitlines()
    hosts = out[0].split()
    assert len(set(hosts)) == 1 and hosts[0].startswith("127.") and not hosts[0].startswith("127.0.0.1")
    assert out[1] == str(NOBODY)
    assert out[2] == GSA
    assert out[3] == "200"
    token = json.loads(out[4])
    assert token["token_type"] == "Bearer" and 3000 < token["expires_in"] <= 3600
    assert out[5] == f"Credentials {PROJECT} {GSA}", result.stderr  # google.auth.compute_engine.Credentials
    assert out[6].startswith("Request denied: requests with an X-Forwarded-For header")
    assert out[7].startswith("Missing required header")
    r = srv.call("GET", "/oauth2/v3/tokeninfo", token="", params={"access_token": token["access_token"]})
    assert r.status_code == 200 and r.json()["email"] == GSA
    assert refused(hosts[0])  # the pod has ended: its metadata server with it
    assert pods_at(srv) == []


@pytest.mark.skipif(not GCLOUD, reason="gcloud is not installed")
def test_gcloud_auth_list_in_a_loopback_pod(srv: KeylessServer) -> None:
    script = "gcloud auth list --filter=status:ACTIVE --format='value(account)'"
    out = run(srv, "--service-account", "my-app-ksa", script=script).stdout.split()
    assert out == [GSA]


def test_two_pods_with_different_ksas_get_their_own_identities(srv: KeylessServer) -> None:
    """Both pods run at once on the same node; each address answers for its own pod only."""
    script = f"echo $GCE_METADATA_HOST; {curl(EMAIL_PATH)}; echo; touch $READY.$$; while [ ! -e $GO ]; do sleep 0.05; done"
    tmp = Path(tempfile.mkdtemp(prefix="keyless-loopback-sync-"))
    tmp.chmod(0o777)
    ready, go = tmp / "ready", tmp / "go"
    procs = [subprocess.Popen(as_nobody(srv, "--network", "loopback", "--service-account", ksa, "--env", f"READY={ready}", "--env", f"GO={go}",
                                        command=["sh", "-c", script]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=nobody_env(), cwd="/")
             for ksa in ("my-app-ksa", "other-ksa")]
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp.glob("ready.*"))) < 2 and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.05)
        assert len(pods_at(srv)) == 2  # both running at once
        go.touch()
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    assert [p.returncode for p in procs] == [0, 0], outs
    (host_a, email_a), (host_b, email_b) = (out.split() for out, _ in outs)
    assert (email_a, email_b) == (GSA, OTHER_GSA)
    assert host_a != host_b


def test_gce_metadata_node_pool_gives_the_nodes_compute_account(srv: KeylessServer) -> None:
    out = run(srv, "--service-account", "my-app-ksa", "--node-pool", "legacy-pool",
              script=curl(EMAIL_PATH)).stdout
    assert out == COMPUTE_SA


def test_killed_runner_leaves_no_listener_pod_or_process(srv: KeylessServer) -> None:
    marker = unique_sleep()
    proc = subprocess.Popen(as_nobody(srv, "--network", "loopback", "--service-account", "my-app-ksa", "--name", "doomed",
                                      command=["sh", "-c", f"echo $GCE_METADATA_HOST; {marker}; true"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=nobody_env(), cwd="/")
    assert proc.stdout is not None
    host = proc.stdout.readline().strip()
    assert host.startswith("127.") and not refused(host)  # the pod's metadata server answers while it runs
    os.kill(proc.pid, signal.SIGKILL)  # the runner (setpriv exec'd it: same pid)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (pods_at(srv) or not refused(host) or subprocess.run(
            ["pgrep", "-f", marker], capture_output=True).returncode == 0):
        time.sleep(0.1)
    assert refused(host)
    assert pods_at(srv) == []
    with server_state(srv).db.read() as s:
        assert s.scalars(select(K8sObject).where(K8sObject.name == "doomed")).first() is None
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1  # its process group too


def test_processes_that_left_the_pods_group_end_with_it(srv: KeylessServer) -> None:
    """A daemon that called setsid (its own session and group) and one double-forked away are
    still the pod's: Kubernetes kills a container's every process, and so does the runner."""
    a, b = unique_sleep(), unique_sleep()
    quiet = "</dev/null >/dev/null 2>&1"
    out = run(srv, "--service-account", "my-app-ksa",
              script=f"setsid sh -c '{a} & wait' {quiet} & (setsid {b} {quiet} &); sleep 0.3; "
                     f"pgrep -f '{a}' >/dev/null && pgrep -f '{b}' >/dev/null && echo both-running").stdout
    assert out.strip() == "both-running"
    for marker in (a, b):
        assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1, marker
