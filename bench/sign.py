"""IAM Credentials signBlob and signJwt, one call at a time: the latency of signing with a
service account's system-managed key (RS256, ~0.7 ms of RSA itself) over loopback HTTP.

    .venv/bin/python bench/sign.py [--calls 200]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import KeylessServer  # noqa: E402

SA = "signer@my-project.iam.gserviceaccount.com"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    srv = KeylessServer(Path(tempfile.mkdtemp(prefix="keyless-bench-sign-")), None)
    try:
        assert srv.keyless("projects", "create", "my-project").returncode == 0
        r = srv.call("POST", "/iam/v1/projects/my-project/serviceAccounts", body={"accountId": "signer"})
        assert r.status_code == 200, r.text
        owner = srv.call("GET", f"/oauth2/v3/tokeninfo?access_token={srv.owner_token}").json()["email"]
        r = srv.call("POST", f"/iam/v1/projects/-/serviceAccounts/{SA}:setIamPolicy", body={"policy": {"bindings": [
            {"role": "roles/iam.serviceAccountTokenCreator", "members": [f"user:{owner}"]}]}})
        assert r.status_code == 200, r.text
        base = f"/iamcredentials/v1/projects/-/serviceAccounts/{SA}"
        bodies = {"signBlob": {"payload": base64.b64encode(b"x" * 256).decode()},
                  "signJwt": {"payload": json.dumps({"sub": SA, "aud": "https://example.com", "exp": int(time.time()) + 3600})}}
        # One keep-alive client (srv.call makes a client, and an SSL context, per call: ~25 ms).
        client = httpx.Client(base_url=srv.base_url, headers={"Authorization": f"Bearer {srv.owner_token}"})
        for method, body in bodies.items():
            r = client.post(f"{base}:{method}", json=body)  # the first call creates the key
            assert r.status_code == 200, r.text
            times = []
            for _ in range(args.calls):
                t = time.perf_counter()
                r = client.post(f"{base}:{method}", json=body)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
            times.sort()
            print(f"{method:<9} {args.calls} calls: p50 {statistics.median(times) * 1000:6.2f} ms  "
                  f"p99 {times[int(len(times) * 0.99) - 1] * 1000:6.2f} ms")
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
