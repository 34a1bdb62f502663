"""The GKE metadata server under load, from inside real pods (network namespaces).

Starts `keyless serve` on a fresh store, a cluster whose GKE_METADATA node runs the pods, one
KSA per pod annotated with a GSA that grants each roles/iam.workloadIdentityUser, then runs
N pods at once with `keyless pod run`. Each pod times its first `/token` (cold: STS exchange
+ generateAccessToken), waits for the others, then requests `/token` back to back on one
keep-alive connection (cached). Prints cold latency, cached p50/p99 and requests/s.

With `--flood N`, one more pod on the same node floods the metadata server meanwhile (issue
#23): it opens N connections and holds them, reopening each the server closes, for the whole
run; the figures are those of the well-behaved pods. Pods see none of the host's /tmp, so the
load script, wrk's Lua and the start signal reach them as arguments and on stdin.

    .venv/bin/python bench/metadata.py [--pods 16] [--duration 5] [--tls | --network loopback] [--flood 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyless.gke import netns  # noqa: E402
from tests.conftest import KeylessServer, free_port  # noqa: E402
from tests.gke.pod_helpers import GSA, NUMBER, POOL, PROJECT, apply_ksa, leftovers, make_cluster  # noqa: E402

# Inside each pod: the first /token is timed from Python (cold: STS exchange +
# generateAccessToken); then the pod execs wrk, one connection back to back, so that the
# load generator's own CPU does not crowd the 2 cores (http.client costs ~150 µs a request,
# 2.5x the server's, and 16 such processes made their own scheduling the p99).
LOAD = """
import http.client, json, os, sys, tempfile, time
duration, lua = sys.argv[1], os.path.join(tempfile.mkdtemp(), "quantiles.lua")
with open(lua, "w") as f:
    f.write(sys.argv[2])
host = os.environ.get("GCE_METADATA_HOST", "169.254.169.254")  # set in loopback pods
conn = http.client.HTTPConnection(host)
t = time.perf_counter()
conn.request("GET", "/computeMetadata/v1/instance/service-accounts/default/token", headers={"Metadata-Flavor": "Google"})
r = conn.getresponse(); body = r.read()
assert r.status == 200, body
print(json.dumps({"cold": time.perf_counter() - t}), flush=True)
conn.close()
sys.stdin.readline()  # the start signal
os.execvp("wrk", ["wrk", "-t1", "-c1", "-d" + duration + "s", "-s", lua, "-H", "Metadata-Flavor: Google",
                  "http://" + host + "/computeMetadata/v1/instance/service-accounts/default/token"])
"""

# wrk's done() prints each pod's latency quantiles on a 0.05 % grid (Debian's wrk 4.1 has no
# access to the raw histogram from Lua); the bench merges the pods' grids weighted by their
# request counts, so the p99 it prints is over all pods' requests, to within one grid step.
QUANTILES_LUA = """
done = function(summary, latency, requests)
  local parts = {}
  for i = 1, 2000 do parts[i] = latency:percentile(i * 0.05) end
  io.write(string.format("WRK %d %d %d %s\\n", summary.requests, summary.errors.status,
                         summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
                         table.concat(parts, ",")))
end
"""


# The flooding pod: N connections held open; each one the server closes is reopened at once.
FLOOD = """
import json, selectors, socket, sys, time
host, n, duration = "169.254.169.254", int(sys.argv[1]), float(sys.argv[2])
sel = selectors.DefaultSelector()
opened = closed = failed = 0
def open_one():
    global opened, failed
    try:
        s = socket.socket()
    except OSError:  # the pod's own file limit
        failed += 1
        return
    s.setblocking(False)
    s.connect_ex((host, 80))
    sel.register(s, selectors.EVENT_READ)
    opened += 1
for _ in range(n):
    open_one()
print(json.dumps({"ready": True}), flush=True)
sys.stdin.readline()
end = time.monotonic() + duration
while time.monotonic() < end:
    for key, _ in sel.select(0.1):
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fileobj); key.fileobj.close(); closed += 1
            open_one()
print(json.dumps({"opened": opened, "closed_by_server": closed, "failed": failed, "held": len(sel.get_map())}))
"""


def fresh_connections(count: int) -> list[tuple[float, bool]]:
    """(seconds, answered 200) of `count` requests from pod load-0's namespace, each on a new
    connection (curl run there by the host): what a pod starting now, or reconnecting, meets."""
    pod_ns = next(name for name, rec in netns.records().items() if rec.get("pod") == "load-0")
    out = []
    for _ in range(count):
        t = time.perf_counter()
        r = subprocess.run(["ip", "netns", "exec", pod_ns, "curl", "-s", "-m", "10", "-o", "/dev/null", "-w",
                            "%{http_code}", "-H", "Metadata-Flavor: Google",
                            "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/email"],
                           capture_output=True, text=True)
        out.append((time.perf_counter() - t, r.stdout == "200"))
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def merged_pct(pods: list[tuple[int, list[float]]], p: float) -> float:
    """The p-quantile, in ms, over all pods' requests: each pod is (requests, its latency in µs
    at quantiles 0.05 %, 0.10 %, … 100 %), each grid point standing for requests/2000 of them."""
    points = sorted((us, n / len(grid)) for n, grid in pods for us in grid)
    total, seen = sum(w for _, w in points), 0.0
    for us, w in points:
        seen += w
        if seen >= total * p:
            return us / 1000
    return points[-1][0] / 1000


def pod_result(out: str) -> tuple[float, int, list[float], int]:
    """(cold seconds, requests, latency quantile grid in µs, failed requests) from one pod's output."""
    cold = next(json.loads(line)["cold"] for line in out.splitlines() if line.startswith("{"))
    line = next(line for line in out.splitlines() if line.startswith("WRK "))
    _, requests, status_errors, io_errors, grid = line.split(" ")
    return cold, int(requests), [float(x) for x in grid.split(",")], int(status_errors) + int(io_errors)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (proc(5): fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--tls", action="store_true", help="serve --tls-port and run the pods with Google's hosts "
                                                           "relayed by the node (the relay runs beside /token)")
    parser.add_argument("--flood", type=int, default=0, metavar="N",
                        help="one more pod holds N connections to the node's metadata server meanwhile")
    parser.add_argument("--network", choices=("namespace", "loopback"), default="namespace",
                        help="keyless pod run --network (loopback: each pod's own metadata endpoint, no root needed)")
    args = parser.parse_args()
    if (args.tls or args.flood) and args.network == "loopback":
        parser.error("--tls and --flood need --network namespace")
    tmp = Path(tempfile.mkdtemp(prefix="keyless-bench-md-"))
    tls_port = free_port()
    srv = KeylessServer(tmp / "data", None, *(["--tls-port", str(tls_port)] if args.tls else []))
    try:
        assert srv.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
        r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "my-app-gsa"})
        assert r.status_code == 200, r.text
        cluster_id = make_cluster(srv, pools={"default-pool": "GKE_METADATA"})
        members = [f"serviceAccount:{POOL}[bench/ksa-{i}]" for i in range(args.pods + 1)]
        path = f"/iam/v1/projects/{PROJECT}/serviceAccounts/{GSA}"
        r = srv.call("POST", f"{path}:setIamPolicy", body={"policy": {"bindings": [
            {"role": "roles/iam.workloadIdentityUser", "members": members}]}})
        assert r.status_code == 200, r.text
        for i in range(args.pods + 1):
            apply_ksa(srv, cluster_id, "bench", f"ksa-{i}", {"iam.gke.io/gcp-service-account": GSA})
        base = [sys.executable, "-m", "keyless.cli.main", "pod", "run", "--cluster", "my-cluster", "--namespace",
                "bench", "--data-dir", str(srv.data_dir), "--network", args.network]
        if args.tls:
            base += ["--tls-port", str(tls_port), "--server", srv.base_url]
        flooder = None
        if args.flood:
            flooder = subprocess.Popen([*base, "--service-account", f"ksa-{args.pods}", "--", sys.executable, "-c",
                                        FLOOD, str(args.flood), f"{args.duration:g}"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert flooder.stdout is not None
            if not flooder.stdout.readline():
                print(f"the flooding pod failed: {flooder.communicate()}", file=sys.stderr)
                return 1
        procs = [subprocess.Popen([*base, "--service-account", f"ksa-{i}", "--name", f"load-{i}", "--", sys.executable, "-c", LOAD,
                                   f"{args.duration:g}", QUANTILES_LUA], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(args.pods)]
        firsts = [p.stdout.readline() if p.stdout else "" for p in procs]  # each pod's cold /token: it is ready
        # The metadata servers: per node in namespace mode, each runner's own thread in loopback mode.
        if args.network == "loopback":
            servers = [p.pid for p in procs]
        else:
            servers = [rec["server"][0] for rec in netns.records().values() if rec.get("server") and
                       str(srv.data_dir) in Path(f"/proc/{rec['server'][0]}/cmdline").read_text(errors="replace")]
        for p in [*procs, *([flooder] if flooder else [])]:  # the start signal
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.close()
            p.stdin = None  # communicate() below would flush it
        # Server CPU is sampled over the middle of the run (a loopback runner is gone once its pod
        # ends) and divided by that window's share of the requests.
        window = max(args.duration - 1.0, args.duration / 2)
        time.sleep((args.duration - window) / 2)
        cpu0 = sum(cpu_seconds(pid) for pid in servers)
        time.sleep(window / 2)
        descriptors = sum(len(os.listdir(f"/proc/{pid}/fd")) for pid in servers)  # mid-run: what the server holds
        fresh = fresh_connections(10) if args.network == "namespace" else []
        time.sleep(max(0.0, window / 2 - sum(t for t, _ in fresh)))
        cpu = sum(cpu_seconds(pid) for pid in servers) - cpu0
        results = []
        for p, first in zip(procs, firsts, strict=True):
            out, err = p.communicate(timeout=args.duration + 120)
            if p.returncode != 0:
                print(f"pod failed ({p.returncode}): {first}{out[-2000:]}{err[-2000:]}", file=sys.stderr)
                return 1
            results.append(pod_result(first + out))
        flood = None
        if flooder is not None:
            out, err = flooder.communicate(timeout=args.duration + 120)
            flood = json.loads(out.splitlines()[-1]) if out.strip() else {"error": err[-2000:]}
        cold = [r[0] for r in results]
        pods = [(r[1], r[2]) for r in results]
        failed = sum(r[3] for r in results)
        count = sum(r[1] for r in results)
        where = "each pod's own loopback endpoint" if args.network == "loopback" else "one node's metadata server"
        print(f"pods: {args.pods} concurrent, {where}{' and relay' if args.tls else ''}, "
              f"{args.duration:.0f} s")
        if fresh:
            answered = sorted(t for t, ok in fresh if ok)
            print(f"new connections of pod load-0 meanwhile (curl /email, one connection each): "
                  f"{len(answered)}/{len(fresh)} answered, p50 {pct(answered, 0.5) if answered else 0:.1f} ms, "
                  f"max {max(answered) * 1000 if answered else 0:.1f} ms")
        if flood is not None:
            print(f"flooding pod (asked {args.flood} connections, reopening each one closed): {flood}; "
                  f"the metadata server's open descriptors mid-run: {descriptors}")
        print(f"cold first /token (STS exchange + generateAccessToken): p50 {pct(cold, 0.5):.1f} ms, "
              f"max {max(cold) * 1000:.1f} ms")
        print(f"cached /token (wrk -c1 in each pod): {count} requests, {count / args.duration:.0f} req/s, "
              f"p50 {merged_pct(pods, 0.5):.2f} ms, p99 {merged_pct(pods, 0.99):.2f} ms, "
              f"p99.9 {merged_pct(pods, 0.999):.2f} ms, max {merged_pct(pods, 1.0):.1f} ms, failed {failed}")
        print(f"metadata server CPU: {cpu / (count * window / args.duration) * 1e6:.0f} µs per cached /token")
    finally:
        srv.stop()
        deadline = time.monotonic() + 10
        while leftovers() and time.monotonic() < deadline:
            time.sleep(0.1)
        if leftovers():
            print(f"left behind: {leftovers()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
