"""GKE's node logging agent for pods (keyless/gke/logging_agent.py, issue #20): how fast a pod's
output is drained from its pipe (lines split, passed on), and how fast the agent stores entries
(text lines, and google-cloud-logging's structured JSON lines) as the node's account, into the
store of a `keyless serve` (SQLite, or --database URL). The agent's own bounds (1,000 entries/s per
pod) sit far below both: these figures say how much headroom a node has.

    .venv/bin/python bench/logging_agent.py [--lines 200000] [--database URL]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyless.gke import logging_agent  # noqa: E402
from keyless.gke.logging_agent import ContainerOutput, ContainerRef, NodeLoggingAgent  # noqa: E402
from tests.api.helpers import server_state  # noqa: E402
from tests.conftest import KeylessServer  # noqa: E402

PROJECT = "bench-agent"


def ok(r: object) -> dict:  # type: ignore[type-arg]
    assert r.status_code == 200, r.text  # type: ignore[attr-defined]
    return r.json()  # type: ignore[attr-defined,no-any-return]


def drained(lines: list[bytes]) -> tuple[ContainerOutput, float]:
    """The output after reading `lines` from a pipe (passed on to /dev/null); seconds taken."""
    output = ContainerOutput()
    read_fd, write_fd = os.pipe()
    sink = os.open(os.devnull, os.O_WRONLY)
    data = b"".join(lines)
    t0 = time.perf_counter()
    output.follow("stdout", read_fd, sink)
    writer = threading.Thread(target=_write, args=(write_fd, data))
    writer.start()
    writer.join()
    os.close(write_fd)
    output.join(600)
    seconds = time.perf_counter() - t0
    os.close(sink)
    return output, seconds


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    n = args.lines
    text = [b"GET /orders/%08d 200 12ms user-agent=bench %s\n" % (i, b"x" * 50) for i in range(n)]
    structured = [json.dumps({"message": f"order {i} shipped", "severity": "INFO",
                              "logging.googleapis.com/labels": {"python_logger": "orders"},
                              "logging.googleapis.com/trace": "", "logging.googleapis.com/spanId": "",
                              "logging.googleapis.com/trace_sampled": False,
                              "logging.googleapis.com/sourceLocation": {"line": 7, "file": "app.py",
                                                                        "function": "ship"},
                              "httpRequest": {}}).encode() + b"\n" for i in range(n)]

    logging_agent.BUFFER_LINES, logging_agent.BUFFER_BYTES = n, 1 << 40  # measure the parts, not the bounds
    output, seconds = drained(text)
    size = sum(map(len, text))
    print(f"pipe drained: {n:,} lines ({size / 1e6:.1f} MB) in {seconds:.2f} s: {n / seconds:10,.0f} lines/s, "
          f"{size / seconds / 1e6:.0f} MB/s")

    with tempfile.TemporaryDirectory(prefix="keyless-bench-agent-") as tmp:
        srv = KeylessServer(Path(tmp) / "data", args.database)
        try:
            ok(srv.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": PROJECT}))
            number = ok(srv.call("GET", f"/cloudresourcemanager/v1/projects/{PROJECT}"))["projectNumber"]
            node_sa = f"{number}-compute@developer.gserviceaccount.com"
            policy = ok(srv.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy", body={}))
            policy["bindings"].append({"role": "roles/container.defaultNodeServiceAccount",
                                       "members": [f"serviceAccount:{node_sa}"]})
            ok(srv.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:setIamPolicy", body={"policy": policy}))
            ref = ContainerRef(project_id=PROJECT, location="us-central1", cluster_name="bench", namespace="default",
                               pod_name="bench", container_name="bench", node_service_account=node_sa,
                               enabled=True, scoped=True)
            print(f"store: {args.database or 'sqlite'}")
            for kind, lines in (("text lines", text), ("structured JSON lines", structured)):
                output, _ = drained(lines)
                agent = NodeLoggingAgent(server_state(srv), ref, output)
                t0 = time.perf_counter()
                while agent.ship(logging_agent.ROUND_ENTRIES, logging_agent.ROUND_BYTES):
                    pass
                seconds = time.perf_counter() - t0
                assert agent.stored == n, agent.stored
                print(f"agent stored {n:,} {kind:<21} in {seconds:6.2f} s: {n / seconds:8,.0f} entries/s "
                      f"(rounds of {logging_agent.ROUND_ENTRIES} without the pause between them)")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
