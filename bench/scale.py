"""OIDC exchanges/s with 1, 2 and 4 Keyless servers on one PostgreSQL (issue #14), and what each
exchange costs PostgreSQL: CPU of the database's backends (from /proc, so run as root or as the
postgres user) and the transactions it saw, per exchange. A warm exchange should cost the
database nothing: the servers, not PostgreSQL, bound the rate.

Servers are started by `keyless cluster` (keyless/cli/cluster.py) on a fresh database of the
PostgreSQL at $KEYLESS_BENCH_POSTGRES_URL (default postgresql+psycopg://keyless@127.0.0.1:54329/postgres),
one worker each; one wrk per server (-t1) shares the connections. Data Access logs are off
(Google's default), so an exchange writes no audit entry. Needs `wrk` (Debian package wrk).

    PYTHONPATH=$PWD .venv/bin/python bench/scale.py [--servers 1,2,4] [--duration 8] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import psycopg

from bench.revocation import DEFAULT_URL, STS_LUA, fresh_database
from keyless.cli.cluster import Cluster
from tests.scale.world import EXCHANGE, call, federation

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def tree(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                stack += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def backends(conninfo: str, dbname: str) -> tuple[list[int], int]:
    """PIDs of the database's backends (not ours), and its transaction count so far."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND "
                                           "pid <> pg_backend_pid()", (dbname,)).fetchall()]
        xacts = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                             (dbname,)).fetchone()
    return pids, int(xacts[0]) if xacts else 0


def wrk_run(urls: list[str], script: str, connections: int, duration: int) -> tuple[float, int, float]:
    """(requests/s in all, requests, worst p99 ms) of one wrk per URL, run together."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    per = max(2, connections // len(urls))
    procs = [subprocess.Popen(["wrk", "-t1", f"-c{per}", f"-d{duration}s", "--latency", "-s", f.name, u],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for u in urls]
    rps = 0.0
    total = 0
    p99 = 0.0
    for proc in procs:
        out, _ = proc.communicate()
        rps += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        total += int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
        if bad:
            print(f"  WARNING: {bad.group(1)} non-2xx answers")
        m = re.search(r"^\s+99%\s+([\d.]+)(\w+)", out, re.M)
        if m:
            p99 = max(p99, float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)])
    os.unlink(f.name)
    return rps, total, p99


def run(n: int, base_url: str, duration: int, connections: int) -> None:
    database = fresh_database(base_url)
    dbname = database.rsplit("/", 1)[1]
    conninfo = database.replace("postgresql+psycopg://", "postgresql://")
    root = Path(tempfile.mkdtemp(prefix="keyless-bench-scale-"))
    cluster = Cluster(database, root, servers=n, workers=1, extra=("--allow-insecure-issuers",)).start()
    try:
        fed = federation(cluster, "bench-project", "434343434343")
        body = urlencode({**EXCHANGE, "audience": fed.audience, "subject_token": fed.github_token(cluster)})
        urls = [f"{s.base_url}/sts/v1/token" for s in cluster.servers]
        for srv in cluster.servers:
            assert fed.exchange(srv, fed.github_token(cluster)).status_code == 200
        wrk_run(urls, STS_LUA % body, connections, 2)  # warm-up
        time.sleep(11)  # let the set-up's statistics reach pg_stat_database first (within 10 s)
        pids, xacts_before = backends(conninfo, dbname)
        pg_before = sum(cpu_seconds(p) for p in pids)
        servers = [p for s in cluster.servers if s.proc for p in tree(s.proc.pid)]
        srv_before = sum(cpu_seconds(p) for p in servers)
        rps, total, p99 = wrk_run(urls, STS_LUA % body, connections, duration)
        pg_after = sum(cpu_seconds(p) for p in pids)
        srv_after = sum(cpu_seconds(p) for p in servers)
        time.sleep(11)  # let idle backends flush their statistics (PostgreSQL: within 10 s)
        _, xacts_after = backends(conninfo, dbname)
        print(f"{n} server(s): {rps:8.0f} exchanges/s  worst p99 {p99:6.1f} ms  "
              f"PostgreSQL CPU {(pg_after - pg_before) * 1e6 / max(total, 1):6.2f} µs/exchange "
              f"({pg_after - pg_before:.2f} s in all, {len(pids)} backends)  "
              f"transactions {xacts_after - xacts_before - 1} in {total} exchanges  "
              f"server CPU {(srv_after - srv_before) * 1000 / max(total, 1):.3f} ms/exchange  "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def cold_statements() -> None:
    """Statements one exchange sends after the store changed (its caches dropped), counted in the
    statement log of a throwaway PostgreSQL (tests/scale/postgres.py): the change is a service
    account created on the server, then one exchange, then the log is read."""
    from tests.scale.postgres import ThrowawayPostgres, binaries

    if binaries() is None:
        print("cold exchange: skipped (PostgreSQL's server binaries are not installed)")
        return
    pg = ThrowawayPostgres("-c log_statement=all -c log_line_prefix='%a|'")
    root = Path(tempfile.mkdtemp(prefix="keyless-bench-cold-"))
    cluster = Cluster(pg.url, root, servers=1, extra=("--allow-insecure-issuers",)).start()
    try:
        fed = federation(cluster, "bench-project", "434343434343")
        srv = cluster.servers[0]
        subject = fed.github_token(cluster)
        assert fed.exchange(srv, subject).status_code == 200
        assert fed.exchange(srv, subject).status_code == 200
        time.sleep(0.5)
        mark = pg.log.stat().st_size
        assert fed.exchange(srv, subject).status_code == 200
        time.sleep(0.5)
        warm = [line for line in pg.log.read_bytes()[mark:].decode().splitlines() if "LOG:  statement:" in line or "LOG:  execute" in line]
        r = call(srv, "POST", f"/iam/v1/projects/{fed.project}/serviceAccounts", body={"accountId": "cold-bench"})
        assert r.status_code == 200, r.text
        time.sleep(0.5)
        mark = pg.log.stat().st_size
        assert fed.exchange(srv, subject).status_code == 200
        time.sleep(0.5)
        cold = [line for line in pg.log.read_bytes()[mark:].decode().splitlines() if "LOG:  statement:" in line or "LOG:  execute" in line]
        print(f"warm exchange: {len(warm)} statements; first exchange after a change: {len(cold)} statements:")
        for line in cold:
            print("   ", line[:160])
    finally:
        cluster.stop()
        pg.destroy()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--servers", default="1,2,4")
    p.add_argument("--duration", type=int, default=8)
    p.add_argument("--connections", type=int, default=32, help="wrk connections in all, shared by the servers")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    base = os.environ.get("KEYLESS_BENCH_POSTGRES_URL", DEFAULT_URL)
    print(f"# OIDC exchanges on N servers x 1 worker, one PostgreSQL, {args.duration}s each, {args.connections} "
          f"wrk connections, {os.cpu_count()} cores", flush=True)
    cold_statements()
    for n in (int(s) for s in args.servers.split(",")):
        run(n, base, args.duration, args.connections)


if __name__ == "__main__":
    main()
