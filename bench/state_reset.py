"""Test isolation's cost: `POST /keyless/v1/state:reset`, `:snapshot` and `:restore` (issue #22)
on a world of N projects, each with a pool, an OIDC provider, 3 service accounts with an IAM
binding each, a bucket with one object and a secret with one version, made through the APIs
by the pytest plugin's factories against `keyless serve` (SQLite, or --database URL).

    .venv/bin/python bench/state_reset.py [--projects 1,10,50] [--repeat 5] [--database URL]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyless.pytest_plugin import Keyless  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def build_world(kl: Keyless, projects: int) -> None:
    for i in range(projects):
        project = kl.project(f"bench-{i}")
        pool = kl.pool(project, "github-pool")
        kl.oidc_provider(pool, "github-provider")
        for j in range(3):
            sa = kl.service_account(project, f"bench-sa-{j}")
            kl.grant(pool.principal_set("repository", f"org/repo-{j}"), "roles/iam.workloadIdentityUser", sa)
        bucket = kl.bucket(project, f"bench-bucket-{i}")
        kl.http.post(f"/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": "o.txt"},
                     content=b"x" * 1024, headers={"Authorization": f"Bearer {kl.owner_token}"}).raise_for_status()
        kl.secret(project, "db", b"value")


def timed(fn: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - t0) * 1000)
    return times


def measure(kl: Keyless, n: int, repeat: int) -> None:
    kl.reset()
    build_world(kl, n)
    base = kl.snapshot("base")
    ids = iter(range(10**6))
    snap = timed(lambda: kl.snapshot(f"s{next(ids)}"), repeat)
    restore = timed(lambda: kl.restore(base), repeat)
    reset = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        kl.reset()
        reset.append((time.perf_counter() - t0) * 1000)
        kl.restore(base)
    listed = kl.call("GET", "/keyless/v1/snapshots")["snapshots"]
    size = next(s["sizeBytes"] for s in listed if s["name"] == base)
    print(f"{n:>8} {size:>15} {statistics.median(snap):>16.1f} {statistics.median(restore):>15.1f} "
          f"{statistics.median(reset):>13.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--projects", default="1,10,50")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--database", default=None)
    args = ap.parse_args()
    print(f"{'projects':>8} {'snapshot bytes':>15} {'snapshot ms p50':>16} {'restore ms p50':>15} {'reset ms p50':>13}")
    for n in (int(x) for x in args.projects.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            cmd = [sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(port), "--data-dir",
                   f"{tmp}/data", "--allow-insecure-issuers"]
            if args.database:
                cmd += ["--database", args.database]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
            try:
                url = f"http://127.0.0.1:{port}"
                while True:
                    try:
                        if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.05)
                kl = Keyless(url, lambda: Path(f"{tmp}/data/owner.token").read_text().strip(), Path(tmp))
                measure(kl, n, args.repeat)
            finally:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
