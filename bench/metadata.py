"""The GKE metadata server under load, from inside real pods (network namespaces).

Starts `keyless serve` on a fresh store, a cluster whose GKE_METADATA node runs the pods, one
KSA per pod annotated with a GSA that grants each roles/iam.workloadIdentityUser, then runs
N pods at once with `keyless pod run`. Each pod times its first `/token` (cold: STS exchange
+ generateAccessToken), waits for the others, then requests `/token` back to back on one
keep-alive connection (cached). Prints cold latency, cached p50/p99 and requests/s.

    .venv/bin/python bench/metadata.py [--pods 16] [--duration 5] [--tls]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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

LOAD = """
import http.client, json, os, sys, time
start_file, duration = sys.argv[1], float(sys.argv[2])
conn = http.client.HTTPConnection("169.254.169.254", 80)
headers = {"Metadata-Flavor": "Google"}
def token():
    t = time.perf_counter()
    conn.request("GET", "/computeMetadata/v1/instance/service-accounts/default/token", headers=headers)
    r = conn.getresponse(); body = r.read()
    assert r.status == 200, body
    return time.perf_counter() - t
cold = token()
open(start_file + "." + str(os.getpid()), "w").close()
while not os.path.exists(start_file):
    time.sleep(0.005)
lat, end = [], time.perf_counter() + duration
while time.perf_counter() < end:
    lat.append(token())
print(json.dumps({"cold": cold, "lat": lat}))
"""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


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
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="keyless-bench-md-"))
    tls_port = free_port()
    srv = KeylessServer(tmp / "data", None, *(["--tls-port", str(tls_port)] if args.tls else []))
    try:
        assert srv.keyless("projects", "create", PROJECT, "--number", NUMBER).returncode == 0
        r = srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "my-app-gsa"})
        assert r.status_code == 200, r.text
        cluster_id = make_cluster(srv, pools={"default-pool": "GKE_METADATA"})
        members = [f"serviceAccount:{POOL}[bench/ksa-{i}]" for i in range(args.pods)]
        path = f"/iam/v1/projects/{PROJECT}/serviceAccounts/{GSA}"
        r = srv.call("POST", f"{path}:setIamPolicy", body={"policy": {"bindings": [
            {"role": "roles/iam.workloadIdentityUser", "members": members}]}})
        assert r.status_code == 200, r.text
        for i in range(args.pods):
            apply_ksa(srv, cluster_id, "bench", f"ksa-{i}", {"iam.gke.io/gcp-service-account": GSA})
        script = tmp / "load.py"
        script.write_text(LOAD)
        start = tmp / "start"
        base = [sys.executable, "-m", "keyless.cli.main", "pod", "run", "--cluster", "my-cluster", "--namespace",
                "bench", "--data-dir", str(srv.data_dir)]
        if args.tls:
            base += ["--tls-port", str(tls_port), "--server", srv.base_url]
        procs = [subprocess.Popen([*base, "--service-account", f"ksa-{i}", "--", sys.executable, str(script),
                                   str(start), str(args.duration)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for i in range(args.pods)]
        deadline = time.monotonic() + 120
        while len(list(tmp.glob("start.*"))) < args.pods and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.05)
        servers = [rec["server"][0] for rec in netns.records().values() if rec.get("server") and
                   str(srv.data_dir) in Path(f"/proc/{rec['server'][0]}/cmdline").read_text(errors="replace")]
        cpu0 = sum(cpu_seconds(pid) for pid in servers)
        start.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=args.duration + 120)
            if p.returncode != 0:
                print(f"pod failed ({p.returncode}): {err[-2000:]}", file=sys.stderr)
                return 1
            results.append(json.loads(out.strip().splitlines()[-1]))
        cpu = sum(cpu_seconds(pid) for pid in servers) - cpu0
        cold = [r["cold"] for r in results]
        lat = [x for r in results for x in r["lat"]]
        print(f"pods: {args.pods} concurrent, one node's metadata server{' and relay' if args.tls else ''}, "
              f"{args.duration:.0f} s")
        print(f"cold first /token (STS exchange + generateAccessToken): p50 {pct(cold, 0.5):.1f} ms, "
              f"max {max(cold) * 1000:.1f} ms")
        print(f"cached /token: {len(lat)} requests, {len(lat) / args.duration:.0f} req/s, "
              f"p50 {pct(lat, 0.5):.2f} ms, p99 {pct(lat, 0.99):.2f} ms, mean {statistics.mean(lat) * 1000:.2f} ms, "
              f"max {max(lat) * 1000:.1f} ms")
        print(f"metadata server CPU: {cpu / len(lat) * 1e6:.0f} µs per cached /token")
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
