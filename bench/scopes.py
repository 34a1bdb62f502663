"""What OAuth scope enforcement and Credential Access Boundaries (issue #19) cost per call, in
process: the per-route scope check (one frozenset test), verifying a token with and without a
boundary (the boundary's CEL compiled once, then found by its claim), and a boundary's decision
with a condition.

    .venv/bin/python bench/scopes.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyless.api import scopes  # noqa: E402
from keyless.config import Settings  # noqa: E402
from keyless.state import ServerState  # noqa: E402
from keyless.tokens.boundary import parse_options  # noqa: E402

READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only"
CONDITION = "resource.name.startsWith('projects/_/buckets/my-bucket/objects/reports/')"


def per_call(label: str, calls: int, fn: Callable[[], object]) -> None:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    print(f"{label:<52} {(time.perf_counter() - t) / calls * 1e6:8.2f} µs")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    state = ServerState(Settings(data_dir=Path(tempfile.mkdtemp(prefix="keyless-bench-scopes-"))))
    state.bootstrap()
    token = state.tokens.mint(state.owner, [READ_ONLY], 3600)
    needed = scopes.for_route("storage", "GET", "/v1/b/{bucket}/o/{object:path}")
    refused = scopes.for_route("secretmanager", "GET", "/v1/projects/{p}/secrets/{s}/versions/{v}:access")
    assert needed is not None and refused is not None and needed.allows(token) and not refused.allows(token)
    per_call("scope check, allowed (MethodScopes.allows)", args.calls, lambda: needed.allows(token))
    per_call("scope check, refused", args.calls, lambda: refused.allows(token))
    boundary = parse_options({"accessBoundary": {"accessBoundaryRules": [{
        "availableResource": "//storage.googleapis.com/projects/_/buckets/my-bucket",
        "availablePermissions": ["inRole:roles/storage.objectViewer"],
        "availabilityCondition": {"expression": CONDITION}}]}})
    bounded = state.tokens.mint(state.owner, [READ_ONLY], 3600, boundary=boundary)
    calls = args.calls // 10
    per_call("verify a token", calls, lambda: state.tokens.verify(token.token))
    per_call("verify a downscoped token (boundary found by claim)", calls, lambda: state.tokens.verify(bounded.token))
    name = "projects/_/buckets/my-bucket/objects/reports/2026.txt"
    per_call("boundary decision with a CEL condition", calls,
             lambda: boundary.allows("storage.objects.get", "my-bucket", name, "storage.googleapis.com/Object"))
    state.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
