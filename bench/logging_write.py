"""Cloud Logging's write side (issue #20): entries.write throughput by batch size, and how long a
written entry takes to reach a Cloud Storage sink's file, against `keyless serve` (SQLite, or
--database URL).

    .venv/bin/python bench/logging_write.py [--batches 1,100,1000] [--seconds 5] [--database URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import KeylessServer  # noqa: E402

PROJECT = "bench-logging"


def ok(r: object) -> dict:  # type: ignore[type-arg]
    assert r.status_code == 200, r.text  # type: ignore[attr-defined]
    return r.json()  # type: ignore[attr-defined,no-any-return]


def throughput(srv: KeylessServer, batch: int, seconds: float) -> tuple[float, float]:
    """(entries per second, median ms per request) writing `batch` entries per request."""
    body = {"logName": f"projects/{PROJECT}/logs/bench-{batch}", "resource": {"type": "global"},
            "entries": [{"jsonPayload": {"i": i, "msg": "x" * 100}, "severity": "INFO"} for i in range(batch)]}
    times: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        ok(srv.call("POST", "/logging/v2/entries:write", body=body))
        times.append(time.perf_counter() - t0)
    return batch * len(times) / sum(times), statistics.median(times) * 1000


def routing_latency(srv: KeylessServer, repeat: int) -> list[float]:
    """Seconds from an entries.write answer to the entry's sink file being listed."""
    out = []
    for i in range(repeat):
        ok(srv.call("POST", "/logging/v2/entries:write", body={
            "logName": f"projects/{PROJECT}/logs/routed", "resource": {"type": "global"},
            "entries": [{"textPayload": f"routed {i}"}]}))
        t0 = time.perf_counter()
        while True:
            items = ok(srv.call("GET", "/storage/v1/b/bench-logging-sink/o", params={"prefix": "routed/"}))
            if len(items.get("items", [])) > i:
                break
            time.sleep(0.01)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", default="1,100,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keyless-bench-logging-") as tmp:
        srv = KeylessServer(Path(tmp) / "data", args.database)
        try:
            ok(srv.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": PROJECT}))
            ok(srv.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": "bench-logging-sink"}))
            print(f"store: {args.database or 'sqlite'}")
            for batch in (int(b) for b in args.batches.split(",")):
                rate, median = throughput(srv, batch, args.seconds)
                print(f"entries.write, {batch:>5} entries a request: {rate:10,.0f} entries/s, "
                      f"median {median:7.1f} ms a request")
            print("with one Cloud Storage sink (of another log):")
            sink = ok(srv.call("POST", f"/logging/v2/projects/{PROJECT}/sinks", params={"uniqueWriterIdentity": "true"},
                               body={"name": "bench", "destination": "storage.googleapis.com/bench-logging-sink",
                                     "filter": f'logName="projects/{PROJECT}/logs/routed"'}))
            policy = ok(srv.call("GET", "/storage/v1/b/bench-logging-sink/iam"))
            policy["bindings"].append({"role": "roles/storage.objectCreator", "members": [sink["writerIdentity"]]})
            ok(srv.call("PUT", "/storage/v1/b/bench-logging-sink/iam", body=policy))
            rate, median = throughput(srv, 1, args.seconds)
            print(f"entries.write,     1 entries a request: {rate:10,.0f} entries/s, median {median:7.1f} ms a request")
            latency = routing_latency(srv, 10)
            print(f"write to sink file: median {statistics.median(latency) * 1000:.0f} ms, "
                  f"max {max(latency) * 1000:.0f} ms (10 entries, one at a time)")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
