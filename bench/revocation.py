"""Revocation latency across servers (issue #14): flip state on server A, poll server B until it
enforces the change, for every kind of revocation; idle, then with both servers under OIDC
exchange load (wrk on another pool). Prints p50 / p99 / max in ms per kind, measured from A's
200 (the change acknowledged) to B's first refusal; and the queries/s an idle server sends.

Two servers (`keyless cluster`, keyless/cli/cluster.py) on a fresh database of the PostgreSQL
at $KEYLESS_BENCH_POSTGRES_URL (default postgresql+psycopg://keyless@127.0.0.1:54329/postgres).
With 20 trials a kind, p99 is the second-slowest trial: read it with max.

    PYTHONPATH=$PWD .venv/bin/python bench/revocation.py [--trials 20] [--load-connections 16]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import jwt
import psycopg

from keyless.cli.cluster import Cluster
from tests.scale.world import CLOUD, EXCHANGE, Federation, call, federation, ok

DEFAULT_URL = "postgresql+psycopg://keyless@127.0.0.1:54329/postgres"
STS_LUA = 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\nwrk.body = "%s"\n'


def fresh_database(base: str) -> str:
    name = "keyless_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


@dataclass
class Trial:
    """One flip: `prepare()` readies a fresh subject (B warm, allowed); `flip()` changes it on A;
    `refused()` asks B whether it now refuses."""

    prepare: Callable[[], None]
    flip: Callable[[], None]
    refused: Callable[[], bool]


class Kinds:
    """Every kind of revocation, each a source of trials."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.a, self.b = cluster.servers
        self.http_b = httpx.Client(base_url=self.b.base_url, timeout=10)
        self.http_a = httpx.Client(base_url=self.a.base_url, timeout=10,
                                   headers={"Authorization": f"Bearer {self.a.owner_token}"})

    def _fed(self) -> tuple[Federation, str]:
        fed = federation(self.cluster, "bench-project", "434343434343")
        return fed, fed.github_token(self.cluster)

    def _exchange(self, fed: Federation, subject: str) -> int:
        return self.http_b.post("/sts/v1/token", content=urlencode(
            {**EXCHANGE, "audience": fed.audience, "subject_token": subject}),
            headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code

    def _a(self, method: str, path: str, body: object = None, params: object = None) -> None:
        r = self.http_a.request(method, path, json=body, params=params)  # type: ignore[arg-type]
        if r.status_code != 200:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")

    def provider_kind(self, kind: str) -> Trial:
        box: dict[str, object] = {}

        def prepare() -> None:
            fed, subject = self._fed()
            box.update(fed=fed, subject=subject)
            assert self._exchange(fed, subject) == 200

        def flip() -> None:
            fed: Federation = box["fed"]  # type: ignore[assignment]
            if kind == "disable pool":
                self._a("PATCH", fed.pool_path, {"disabled": True}, {"updateMask": "disabled"})
            elif kind == "disable provider":
                self._a("PATCH", fed.provider_path, {"disabled": True}, {"updateMask": "disabled"})
            else:
                self._a("PATCH", fed.provider_path, {"attributeCondition": "assertion.repository_owner == 'x'"},
                        {"updateMask": "attributeCondition"})

        return Trial(prepare, flip, lambda: self._exchange(box["fed"], box["subject"]) != 200)  # type: ignore[arg-type]

    def account_kind(self, kind: str) -> Trial:
        box: dict[str, object] = {}

        def prepare() -> None:
            fed, subject = self._fed()
            federated = ok(fed.exchange(self.b, subject))["access_token"]
            box.update(fed=fed, federated=federated)
            box["sa_token"] = ok(fed.generate_access_token(self.b, federated))["accessToken"]
            assert refused() is False

        def flip() -> None:
            fed: Federation = box["fed"]  # type: ignore[assignment]
            if kind == "disable account":
                self._a("POST", f"{fed.sa_path}:disable", {})
            elif kind == "delete account":
                self._a("DELETE", fed.sa_path)
            else:
                self._a("POST", f"{fed.sa_path}:setIamPolicy", {"policy": {"bindings": []}})

        def refused() -> bool:
            fed: Federation = box["fed"]  # type: ignore[assignment]
            if kind == "remove binding":
                r = self.http_b.post(f"/iamcredentials/v1/projects/-/serviceAccounts/{fed.sa_email}:generateAccessToken",
                                     json={"scope": [CLOUD]}, headers={"Authorization": f"Bearer {box['federated']}"})
                return r.status_code == 403
            r = self.http_b.get(f"/iam/v1/projects/{fed.project}/serviceAccounts",
                                headers={"Authorization": f"Bearer {box['sa_token']}"})
            return r.status_code == 401

        return Trial(prepare, flip, refused)

    def key_kind(self, kind: str) -> Trial:
        box: dict[str, object] = {}

        def prepare() -> None:
            fed, _ = self._fed()
            created = ok(call(self.a, "POST", f"{fed.sa_path}/keys", body={}))
            key = json.loads(base64.b64decode(created["privateKeyData"]))
            now = int(time.time())
            # Signed once: parsing the PEM and signing per poll would make each poll ~50 ms.
            assertion = jwt.encode({"iss": key["client_email"], "sub": key["client_email"], "scope": CLOUD,
                                    "iat": now, "exp": now + 600, "aud": "https://oauth2.googleapis.com/token"},
                                   key["private_key"], algorithm="RS256", headers={"kid": key["private_key_id"]})
            box.update(fed=fed, assertion=assertion, path=created["name"].replace("projects/", "/iam/v1/projects/", 1))
            assert refused() is False

        def flip() -> None:
            if kind == "disable key":
                self._a("POST", f"{box['path']}:disable", {})
            else:
                self._a("DELETE", str(box["path"]))

        def refused() -> bool:
            r = self.http_b.post("/oauth2/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                                        "assertion": box["assertion"]})
            return r.status_code == 400

        return Trial(prepare, flip, refused)

    def trial(self, kind: str) -> Trial:
        if kind in ("disable pool", "disable provider", "attribute condition"):
            return self.provider_kind(kind)
        if kind in ("disable account", "delete account", "remove binding"):
            return self.account_kind(kind)
        return self.key_kind(kind)


KINDS = ("disable account", "delete account", "disable key", "delete key", "remove binding", "disable pool",
         "disable provider", "attribute condition")


def measure(kinds: Kinds, kind: str, trials: int) -> tuple[list[float], int]:
    """Per trial, ms from A's 200 to B's first refusal (an upper bound: it includes that
    refusing request's own latency); and in how many trials B's very first poll refused."""
    out, first = [], 0
    for _ in range(trials):
        t = kinds.trial(kind)
        t.prepare()
        t.flip()
        acked = time.perf_counter()
        polls = 1
        while not t.refused():
            polls += 1
            if time.perf_counter() - acked > 10:
                raise SystemExit(f"{kind}: B still allowed it 10 s after A acknowledged")
        out.append((time.perf_counter() - acked) * 1000)
        first += polls == 1
    return out, first


def report(label: str, measured: tuple[list[float], int]) -> None:
    samples, first = measured
    s = sorted(samples)
    p99 = s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]
    print(f"  {label:<22} p50 {statistics.median(s):7.1f} ms  p99 {p99:7.1f} ms  max {s[-1]:7.1f} ms  (n={len(s)}; "
          f"B's first poll already refused in {first})", flush=True)


def idle_queries(database_url: str, seconds: float) -> tuple[int, int]:
    """(statements, backends) the servers' connections to the database ran while idle for
    `seconds`: a backend's `state_change` in pg_stat_activity moves with every statement it runs."""
    dbname = database_url.rsplit("/", 1)[1]
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    sql = ("SELECT pid, state_change, query FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        before = {pid: changed for pid, changed, _ in conn.execute(sql, (dbname,)).fetchall()}
        time.sleep(seconds)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        after = conn.execute(sql, (dbname,)).fetchall()
    moved = sum(1 for pid, changed, _ in after if before.get(pid) != changed)
    return moved, len(after)


def start_load(cluster: Cluster, connections: int, seconds: int) -> list[subprocess.Popen[bytes]]:
    """wrk exchanging tokens on both servers, for a pool of its own (it stays allowed)."""
    fed = federation(cluster, "bench-project", "434343434343")
    body = urlencode({**EXCHANGE, "audience": fed.audience, "subject_token": fed.github_token(cluster)})
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(STS_LUA % body)
    procs = []
    for srv in cluster.servers:
        procs.append(subprocess.Popen(["wrk", "-t1", f"-c{connections // 2}", f"-d{seconds}s",
                                       f"{srv.base_url}/sts/v1/token", "-s", f.name],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    return procs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--load-connections", type=int, default=16, help="wrk connections in all, half per server")
    p.add_argument("--workers", type=int, default=1, help="processes per server")
    args = p.parse_args()
    database = fresh_database(os.environ.get("KEYLESS_BENCH_POSTGRES_URL", DEFAULT_URL))
    root = Path(tempfile.mkdtemp(prefix="keyless-bench-revocation-"))
    cluster = Cluster(database, root, servers=2, workers=args.workers, extra=("--allow-insecure-issuers",)).start()
    try:
        print(f"# revocation on A seen by B: 2 servers x {args.workers} worker(s), one PostgreSQL, "
              f"{args.trials} trials a kind, load average {os.getloadavg()[0]:.2f}", flush=True)
        kinds = Kinds(cluster)
        time.sleep(1)
        moved, backends = idle_queries(database, 10)
        print(f"idle: {moved} of the servers' {backends} PostgreSQL sessions ran a statement in 10 s "
              f"({moved / 10:.1f} queries/s at most)", flush=True)
        print("idle servers:", flush=True)
        for kind in KINDS:
            report(kind, measure(kinds, kind, args.trials))
        if shutil.which("wrk") is None:
            print("under load: skipped (wrk is not installed: apt-get install wrk)")
            return
        print(f"under exchange load (wrk, {args.load_connections} connections over both servers):", flush=True)
        load = start_load(cluster, args.load_connections, 600)
        time.sleep(2)
        try:
            for kind in KINDS:
                report(kind, measure(kinds, kind, args.trials))
            print(f"  (load average {os.getloadavg()[0]:.2f})", flush=True)
        finally:
            for proc in load:
                proc.terminate()
                proc.wait(10)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
