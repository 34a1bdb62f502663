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
        base = f"/iamcredentials/v1/projects/-/serviceAccounts/{SA}"
        bodies = {"signBlob": {"payload": base64.b64encode(b"x" * 256).decode()},
                  "signJwt": {"payload": json.dumps({"sub": SA, "aud": "https://example.com", "exp": 2_000_000_000})}}
        for method, body in bodies.items():
            r = srv.call("POST", f"{base}:{method}", body=body)  # the first call creates the key
            assert r.status_code == 200, r.text
            times = []
            for _ in range(args.calls):
                t = time.perf_counter()
                r = srv.call("POST", f"{base}:{method}", body=body)
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
