"""Authorised Cloud Storage reads and IAM checks, with 10 and with 10,000 bindings in the
project's policy, side by side: the Authorizer indexes each policy by member, so a check
must cost the same whatever the number of bindings.

For each size: starts `keyless serve` on a fresh SQLite store, creates a project, a service
account granted roles/storage.objectViewer on the project (one binding among N), a bucket
and a 1 KiB object; then measures
  - object GETs/s: `GET /download/storage/v1/b/B/o/O?alt=media` with the account's token,
    driven by wrk (Debian package wrk) at 16 connections over loopback;
  - IAM checks/s: `Authorizer.check(storage.objects.get)` in-process on the same store, for
    the granted account and for a principal that no binding names (the worst case).

    .venv/bin/python bench/resources.py [--duration 5] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyless.config import Settings  # noqa: E402
from keyless.etag import new_etag  # noqa: E402
from keyless.iam.evaluate import ResourceContext  # noqa: E402
from keyless.iam.service_accounts import find_by_email  # noqa: E402
from keyless.state import ServerState, service_account_principal, user_principal  # noqa: E402
from keyless.store.models import IamPolicy  # noqa: E402
from keyless.tokens.access import CLOUD_PLATFORM  # noqa: E402

PROJECT = "bench-project"
SA = f"reader@{PROJECT}.iam.gserviceaccount.com"
ROLES = ["roles/storage.objectViewer", "roles/viewer", "roles/storage.objectCreator", "roles/iam.serviceAccountUser"]
LUA = 'wrk.headers["Authorization"] = "Bearer %s"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(port),
                             "--data-dir", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def setup(base: str, data: Path, bindings: int) -> tuple[ServerState, str]:
    owner = {"Authorization": f"Bearer {(data / 'owner.token').read_text().strip()}"}

    def ok(r: httpx.Response) -> None:
        if r.status_code != 200:
            raise SystemExit(f"setup failed: {r.status_code} {r.text}")

    ok(httpx.post(f"{base}/cloudresourcemanager/v1/projects", json={"projectId": PROJECT}, headers=owner))
    ok(httpx.post(f"{base}/iam/v1/projects/{PROJECT}/serviceAccounts", json={"accountId": "reader"}, headers=owner))
    ok(httpx.post(f"{base}/storage/v1/b", params={"project": PROJECT}, json={"name": "bench-bucket"}, headers=owner))
    ok(httpx.post(f"{base}/upload/storage/v1/b/bench-bucket/o", params={"uploadType": "media", "name": "obj"},
                  content=os.urandom(1024), headers=owner))
    # The policy is written through the store (a second worker's view): the API caps a policy at
    # 1,500 members, as Google does, and this measures the evaluator beyond that.
    state = ServerState(Settings(data_dir=data))
    with state.db.write() as s:
        row = s.get(IamPolicy, f"projects/{PROJECT}")
        assert row is not None
        extra = [{"role": ROLES[i % len(ROLES)], "members": [f"user:u{i}@example.com"]} for i in range(bindings - 1)]
        row.bindings = [*extra, {"role": "roles/storage.objectViewer", "members": [f"serviceAccount:{SA}"]}]
        row.etag, row.update_time = new_etag(), datetime.now(UTC)
    with state.db.read() as s:
        account = find_by_email(s, SA)
    assert account is not None
    token = state.tokens.mint(service_account_principal(account), [CLOUD_PLATFORM], 3600).token
    r = httpx.get(f"{base}/download/storage/v1/b/bench-bucket/o/obj", params={"alt": "media"},
                  headers={"Authorization": f"Bearer {token}"})
    if r.status_code != 200:
        raise SystemExit(f"the granted read failed: {r.status_code} {r.text}")
    return state, token


def wrk(url: str, token: str, connections: int, duration: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA % token)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", f.name, url],
                         capture_output=True, text=True).stdout
    os.unlink(f.name)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if bad:
        print(f"  WARNING: {bad.group(1)} non-2xx answers")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def checks_per_second(state: ServerState, granted: bool, duration: float) -> float:
    with state.db.read() as s:
        account = find_by_email(s, SA)
    assert account is not None
    principal = service_account_principal(account) if granted else user_principal("stranger@example.com")
    chain = ["projects/_/buckets/bench-bucket", f"projects/{PROJECT}", "//keyless.dev/root"]
    ctx = ResourceContext("projects/_/buckets/bench-bucket/objects/obj", "storage.googleapis.com/Object",
                          "storage.googleapis.com")
    assert state.authz.check(principal, "storage.objects.get", chain, ctx).granted is granted
    n, deadline = 0, time.perf_counter() + duration
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(200):
            state.authz.check(principal, "storage.objects.get", chain, ctx)
        n += 200
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()
    results: dict[int, tuple[float, float, float]] = {}
    for bindings in (10, 10_000):
        with tempfile.TemporaryDirectory() as tmp:
            data, port = Path(tmp) / "data", free_port()
            proc = start(data, port)
            try:
                base = f"http://127.0.0.1:{port}"
                state, token = setup(base, data, bindings)
                gets = wrk(f"{base}/download/storage/v1/b/bench-bucket/o/obj?alt=media", token,
                           args.connections, args.duration)
                results[bindings] = (gets, checks_per_second(state, True, 2.0), checks_per_second(state, False, 2.0))
                state.db.dispose()
            finally:
                proc.terminate()
                proc.wait(10)
    print(f"{'bindings in project policy':<40}{'10':>14}{'10,000':>14}")
    labels = ("authorised object GETs/s (HTTP, wrk)", "IAM checks/s (granted)", "IAM checks/s (denied)")
    for i, label in enumerate(labels):
        print(f"{label:<40}{results[10][i]:>14,.0f}{results[10_000][i]:>14,.0f}")


if __name__ == "__main__":
    main()
