"""Issue #23 items 1, 2 and 6: a hostile pod against its neighbours, its node and the host. Each
attack as reported is replayed and must get nothing: taking another pod's IP (a second address,
forged ARP, a changed MAC) even with CAP_NET_ADMIN and CAP_NET_RAW (the node's bridge rules
alone refuse it), reading the owner's token, entering another pod's namespace, seeing other
processes, writing the host's files, and flooding the node's metadata server."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.gke import netns
from tests.conftest import KeylessServer
from tests.gke.pod_helpers import PROJECT, apply_ksa, curl, make_cluster, node_namespaces, pod_run

PYTHON = sys.executable
ALICE = f"alice-gsa@{PROJECT}.iam.gserviceaccount.com"
BOB = f"bob-gsa@{PROJECT}.iam.gserviceaccount.com"
TOKEN = "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token"
EMAIL = "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/email"
# Pod A's ARP replies claiming B's IP (and the gateway's), from an AF_PACKET socket on its eth0.
ARP_SPOOF = textwrap.dedent("""
    import socket, struct, sys
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    mac = s.getsockname()[4]
    for claimed, to in ((sys.argv[1], sys.argv[2]), (sys.argv[2], sys.argv[1])):
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + socket.inet_aton(claimed) + b"\\xff" * 6 + socket.inet_aton(to)
        for _ in range(3):
            s.send(b"\\xff" * 6 + mac + b"\\x08\\x06" + arp)
    print("sent")
""")


@pytest.fixture(scope="module")
def cluster(module_server: KeylessServer) -> Iterator[str]:
    srv = module_server
    assert srv.keyless("projects", "create", PROJECT, "--number", "123456789012").returncode == 0
    for account in ("alice-gsa", "bob-gsa"):
        r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account})
        assert r.status_code == 200, r.text
    cluster_id = make_cluster(srv, pools={"default-pool": "GKE_METADATA"})
    for ksa, gsa in (("alice-ksa", ALICE), ("bob-ksa", BOB)):
        path = f"/iam/v1/projects/{PROJECT}/serviceAccounts/{gsa}"
        policy = {"bindings": [{"role": "roles/iam.workloadIdentityUser",
                                "members": [f"serviceAccount:{PROJECT}.svc.id.goog[production/{ksa}]"]}]}
        assert srv.call("POST", f"{path}:setIamPolicy", body={"policy": policy}).status_code == 200
        apply_ksa(srv, cluster_id, "production", ksa, {"iam.gke.io/gcp-service-account": gsa})
    yield cluster_id


class RunningPod:
    """A pod kept running in the background (its runner a child of the test)."""

    def __init__(self, srv: KeylessServer, name: str, ksa: str, command: list[str], *extra: str) -> None:
        cmd = [PYTHON, "-m", "keyless.cli.main", "pod", "run", "--cluster", "my-cluster", "--namespace", "production",
               "--service-account", ksa, "--name", name, *extra, "--data-dir", str(srv.data_dir)]
        if srv.database_url:
            cmd += ["--database", srv.database_url]
        self.name = name
        self.proc = subprocess.Popen([*cmd, "--", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline, nodes = time.monotonic() + 60, node_namespaces(srv)
        while time.monotonic() < deadline:
            # this server's pod of that name: the other CI leg runs a "bob" of its own at the same
            # time (matching on the name alone once took the other leg's pods, issue #23's note)
            found = [(ns, rec) for ns, rec in netns.records().items()
                     if rec.get("pod") == name and rec.get("node") in nodes and netns.exists(ns)]
            if found and self._sandboxed(found[0][0]):  # set up and recorded: its own process runs there
                self.ns, record = found[0]
                self.ip, self.node = record["ip"], record["node"]
                return
            assert self.proc.poll() is None, self.proc.communicate()
            time.sleep(0.05)
        raise AssertionError(f"pod {name} did not start")

    @staticmethod
    def _sandboxed(pod_ns: str) -> bool:
        """The pod's sandbox runs in its namespace (`ip -n` of the set-up briefly lives there too,
        before the pod's IP is recorded: it does not count)."""
        for pid in netns.ip("netns", "pids", pod_ns, check=False).split():
            try:
                if b"sandbox.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
            except OSError:
                continue
        return False

    def host_exec(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """SCRIPT in this pod's network namespace as the host's root, every capability held."""
        return subprocess.run(["ip", "netns", "exec", self.ns, "sh", "-c", script], capture_output=True, text=True,
                              timeout=timeout)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        return out


@pytest.fixture
def bob(module_server: KeylessServer, cluster: str) -> Iterator[RunningPod]:
    pod = RunningPod(module_server, "bob", "bob-ksa", ["sleep", "300"])
    yield pod
    pod.stop()


def in_pod(srv: KeylessServer, script: str, *extra: str, ksa: str = "alice-ksa") -> str:
    result = pod_run(srv, "--cluster", "my-cluster", "--namespace", "production", "--service-account", ksa, *extra,
                     command=["sh", "-c", script])
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_another_pods_ip_gets_nothing_even_with_every_capability(module_server: KeylessServer,
                                                                  bob: RunningPod) -> None:
    """The node's bridge rules alone: the attack runs as the host's root in pod A's network
    namespace (CAP_NET_ADMIN, CAP_NET_RAW), not in A's sandbox."""
    alice = RunningPod(module_server, "alice", "alice-ksa", ["sleep", "300"])
    try:
        gateway = alice.ip.rsplit(".", 1)[0] + ".1"
        flavor = "-H 'Metadata-Flavor: Google'"
        assert alice.host_exec(f"curl -s -m 10 {flavor} {EMAIL}").stdout == ALICE  # A as itself: answered
        spoof = alice.host_exec(
            f"ip addr add {bob.ip}/32 dev eth0 && {shlex.quote(PYTHON)} -c {shlex.quote(ARP_SPOOF)} {bob.ip} {gateway}"
            f" && for i in 1 2 3; do curl -s -m 3 --interface {bob.ip} {flavor} {TOKEN}; echo \" rc=$?\"; done")
        assert "sent" in spoof.stdout, spoof.stderr
        # 3 of 3 tries answered B's token before; now nothing comes back (curl times out: rc 28).
        assert spoof.stdout.split("sent\n", 1)[1].split("\n")[:3] == [" rc=28"] * 3, spoof.stdout
        # An address of no pod at all, and A's own IP from B's MAC, are refused alike.
        spare = alice.ip.rsplit(".", 1)[0] + ".250"
        assert alice.host_exec(f"ip addr add {spare}/32 dev eth0; curl -s -m 3 --interface {spare} {flavor} {EMAIL};"
                               " echo rc=$?").stdout == "rc=28\n"
        moved = alice.host_exec(f"ip link set eth0 address {netns.pod_mac(bob.ip)} && "
                                f"curl -s -m 3 --interface {alice.ip} {flavor} {EMAIL}; echo rc=$?")
        assert moved.stdout == "rc=28\n", moved.stderr
        # The node still maps B's IP to B's MAC (a static entry), and B is still itself.
        neigh = subprocess.run(["ip", "-n", bob.node, "neigh", "show", bob.ip], capture_output=True, text=True).stdout
        assert netns.pod_mac(bob.ip) in neigh and "PERMANENT" in neigh, neigh
        assert bob.host_exec(f"curl -s -m 10 {flavor} {EMAIL}").stdout == BOB
    finally:
        alice.stop()


def test_root_pod_has_no_capabilities_and_cannot_spoof(module_server: KeylessServer, bob: RunningPod) -> None:
    gateway = bob.ip.rsplit(".", 1)[0] + ".1"
    script = "; ".join([
        "id -u", "grep -E '^Cap(Eff|Prm|Bnd|Amb|Inh)' /proc/self/status",
        f"ip addr add {bob.ip}/32 dev eth0 2>/dev/null; echo addr=$?",
        f"{shlex.quote(PYTHON)} -c {shlex.quote(ARP_SPOOF)} {bob.ip} {gateway} 2>&1 | tail -1",
        f"curl -s -m 3 --interface {bob.ip} -H 'Metadata-Flavor: Google' {TOKEN}; echo curl=$?",
        "grep NoNewPrivs /proc/self/status",
        "head -c 1 /etc/shadow 2>/dev/null; echo shadow=$?", "cat /proc/self/uid_map",
    ])
    out = in_pod(module_server, script, "--run-as-user", "0").splitlines()
    assert out[0] == "0"  # root, as the pod spec asked
    assert out[1:6] == [f"{name}:\t0000000000000000" for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")]
    assert out[6] == "addr=2"  # RTNETLINK: Operation not permitted
    assert out[7] == "PermissionError: [Errno 1] Operation not permitted"  # no AF_PACKET without CAP_NET_RAW
    assert out[8] == "curl=45"  # cannot bind to an address the pod does not have
    assert out[9] == "NoNewPrivs:\t1"
    # Its root is uid 65534 on the host (a user namespace of its own): root's files are not its own.
    assert out[10] == "shadow=1" and out[11].split() == ["0", "65534", "1"]


def test_pod_makes_no_namespaces_nor_keys(module_server: KeylessServer, cluster: str) -> None:
    """The seccomp filter (keyless/gke/sandbox.py): on this kernel an unprivileged process may make a
    user namespace and be root (every capability) in it, as the host's nobody can outside a pod;
    a pod may not, nor reach the kernel keyring; ordinary processes and threads still start."""
    outside = subprocess.run(["runuser", "-u", "nobody", "--", "unshare", "-U", "-r", "id", "-u"],
                             capture_output=True, text=True)
    assert outside.stdout == "0\n", outside  # the attack, where no filter stands in its way
    script = "; ".join([
        "grep Seccomp: /proc/self/status", "unshare -U -r id -u 2>/dev/null; echo userns=$?",
        "unshare -n true 2>/dev/null; echo netns=$?",
        f"{shlex.quote(PYTHON)} -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True);"
        " print(l.syscall(250, 0, 0), ctypes.get_errno())'",  # keyctl(KEYCTL_GET_KEYRING_ID): EPERM
        f"{shlex.quote(PYTHON)} -u -c 'import threading, subprocess; t = threading.Thread(target=print, args=(\"thread\",));"
        " t.start(); t.join(); subprocess.run([\"echo\", \"child\"])'",
    ])
    for extra in ((), ("--run-as-user", "0")):
        out = in_pod(module_server, script, *extra).splitlines()
        assert out == ["Seccomp:\t2", "userns=1", "netns=1", "-1 1", "thread", "child"], (extra, out)


def test_pod_reads_no_owner_token_nor_the_data_dir(module_server: KeylessServer, cluster: str) -> None:
    data = module_server.data_dir.resolve()
    assert (data / "owner.token").is_file()
    assert any((data / "tls").rglob("*key*.pem"))  # the host holds TLS keys beside the bundle
    probe = (f"head -c 20 {data}/owner.token; echo rc=$?; echo $(ls -A {data}); echo $(ls -A {data}/tls); "
             "ls /run/keyless /run/netns 2>&1 | wc -l")
    for extra in ((), ("--run-as-user", "0")):
        out = in_pod(module_server, probe, *extra).splitlines()
        assert out[0] == "rc=1", out  # no such file: the data dir is a tmpfs in the pod
        # ... holding only a copy of the public CA bundle the pod trusts Keyless's TLS port with
        # (TLS is on by default): no key, no token, no database
        assert out[1] == "tls" and out[2] == "bundle.pem", out
        assert out[3] == "2"  # two "No such file or directory": /run is the pod's own


def test_pod_cannot_enter_another_pods_namespace(module_server: KeylessServer, bob: RunningPod) -> None:
    script = (f"ip netns exec {bob.ns} curl -s -m 3 -H 'Metadata-Flavor: Google' {EMAIL}; echo rc=$?; "
              f"nsenter --net=/run/netns/{bob.ns} true 2>/dev/null; echo rc=$?")
    for extra in ((), ("--run-as-user", "0")):
        out = in_pod(module_server, script, *extra)
        assert BOB not in out
        assert "rc=0" not in out, out  # ip netns exec: no /run/netns, no CAP_SYS_ADMIN; nsenter alike


def test_pod_sees_only_its_own_processes_and_hostname(module_server: KeylessServer, bob: RunningPod) -> None:
    out = in_pod(module_server, "hostname; for p in /proc/[0-9]*; do cat $p/comm; done", "--name", "curious")
    lines = out.splitlines()
    assert lines[0] == "curious"
    # Its init, the shell, and the shell's cat children (one at a time): never B's sleep or the host's.
    assert "sleep" not in lines and "pytest" not in " ".join(lines) and len(lines) <= 5, lines


def test_pod_writes_nothing_of_the_host(module_server: KeylessServer, cluster: str) -> None:
    marker = f"pwned-{time.monotonic_ns()}"
    script = "; ".join([f"echo x > $HOME/{marker}", f"echo x > /tmp/{marker}",
                        f"echo x > /etc/{marker} 2>/dev/null; echo etc=$?",
                        f"echo x > /usr/local/{marker} 2>/dev/null; echo usr=$?",
                        f"echo x > /dev/shm/{marker}", f"cat $HOME/{marker} /tmp/{marker}"])
    for extra in ((), ("--run-as-user", "0")):
        out = in_pod(module_server, script, *extra).split()
        assert out == ["etc=2", "usr=2", "x", "x"], out  # its own HOME and /tmp are writable, the rest is not
    for path in (Path("/root") / marker, Path("/tmp") / marker, Path("/etc") / marker, Path("/dev/shm") / marker,
                 Path("/usr/local") / marker):
        assert not path.exists(), path


def test_run_as_user_from_the_pod_spec(module_server: KeylessServer, cluster: str, tmp_path: Path) -> None:
    """`kubectl exec`/`run` pods are `pod run --pod NAME`: the Pod object's securityContext decides."""
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runs-as-1234", "namespace": "production"},
        "spec": {"serviceAccountName": "alice-ksa", "securityContext": {"runAsUser": 1234, "runAsGroup": 5678},
                 "containers": [{"name": "main", "image": "google/cloud-sdk:slim", "command": ["sleep", "1"]}]}}))
    assert module_server.keyless("k8s", "apply", "-f", str(manifest), "--cluster", "my-cluster",
                                 "--project", PROJECT).returncode == 0
    result = pod_run(module_server, "--cluster", "my-cluster", "--namespace", "production", "--pod", "runs-as-1234",
                     command=["sh", "-c", f"id -u; id -g; {shlex.join(curl('instance/service-accounts/default/email'))}"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1234", "5678", ALICE]


FLOOD = textwrap.dedent("""
    import select, socket, sys, time
    conns = []
    for _ in range(int(sys.argv[1])):
        s = socket.socket()
        s.settimeout(10)
        s.connect(("169.254.169.254", 80))
        conns.append(s)
    def counts():
        poller = select.poll()
        for s in conns:
            poller.register(s, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(0)}
        readable = [s for s in conns if s.fileno() in ready]
        closed = 0
        for s in readable:
            try:
                closed += not s.recv(4096, socket.MSG_PEEK)
            except OSError:
                closed += 1
        return len(conns) - len(readable), closed
    seen, deadline = None, time.monotonic() + 30
    while time.monotonic() < deadline:  # until the server has dealt with every connection
        time.sleep(2)
        now = counts()
        if now == seen:
            break
        seen = now
    print(*seen, flush=True)
    time.sleep(300)
""")


def test_a_flooding_pod_does_not_silence_the_node(module_server: KeylessServer, bob: RunningPod) -> None:
    # Until 2026-12-07 RunningPod found its pod by name only, and with both CI legs at once `bob`
    # could be the other leg's bob (stopped under it): B's curl then got no answer. Runs on both legs.
    # B's token is fetched once first, untimed: the property is the node's server answering B while A
    # floods it, not how long a cold token takes (an exchange and an impersonation on a loaded store)
    warm = bob.host_exec(f"curl -s -m 60 -H 'Metadata-Flavor: Google' {TOKEN}")
    assert json.loads(warm.stdout)["access_token"], warm
    flooder = RunningPod(module_server, "flooder", "alice-ksa", [PYTHON, "-c", FLOOD, "3000"])
    try:
        assert flooder.proc.stdout is not None
        line = flooder.proc.stdout.readline()
        assert line, flooder.proc.communicate()
        held, closed = map(int, line.split())
        assert held <= 64 and held + closed == 3000, (held, closed)  # the server keeps 64 of them, closes the rest
        for _ in range(3):  # B, on the same node, is answered at once while A holds its connections
            t = time.monotonic()
            out = bob.host_exec(f"curl -s -m 5 -H 'Metadata-Flavor: Google' {TOKEN}")
            assert json.loads(out.stdout)["access_token"] and time.monotonic() - t < 2, out
        server = netns.read_record(flooder.node)["server"]  # type: ignore[index]
        threads = {p.read_text().strip() for p in Path(f"/proc/{server[0]}/task").glob("*/comm")}
        assert netns.alive(server) and netns.WATCHER_NAME.decode() in threads, threads
    finally:
        flooder.stop()


def test_the_idle_watcher_outlives_emfile(tmp_path: Path) -> None:
    """No descriptor left in the node's server (what 20,000 connections did): the watcher logs,
    retries, and once descriptors are free again removes the empty node as before."""
    script = textwrap.dedent("""
        import logging, os, resource, threading, time
        from keyless.gke import netns
        logging.basicConfig()
        name = "kl-n-emfile" + os.urandom(3).hex()
        netns.write_record(name, {"kind": "node", "owners": []})
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        stopping = threading.Event()
        watcher = threading.Thread(target=netns.watch_idle_node, args=(name, stopping), kwargs={"interval": 0.05})
        held = []
        try:
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            pass
        watcher.start()
        time.sleep(0.5)
        alive = watcher.is_alive()
        for fd in held:
            os.close(fd)
        watcher.join(10)
        print(alive, stopping.is_set(), netns.record_path(name).exists())
    """)
    result = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(Path.cwd()),
                                 "KEYLESS_RUN_DIR": str(tmp_path)})
    assert result.stdout.split() == ["True", "True", "False"], result.stdout + result.stderr
    assert "idle check failed, retrying" in result.stderr and "Too many open files" in result.stderr
