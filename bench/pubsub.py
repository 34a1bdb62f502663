"""Pub/Sub through Keyless (issue #20): publish throughput of google-cloud-pubsub's PublisherClient
(gRPC, batching) and end-to-end delivery latency, publish to the SubscriberClient.subscribe
callback over StreamingPull (p50/p99), against `keyless serve --tls-port` (SQLite, or --database URL).

Google's Pub/Sub emulator is not measured beside it: it is a gcloud component
(`gcloud components install pubsub-emulator`), downloaded from dl.google.com, which this machine
cannot reach, and it is not on PyPI.

    .venv/bin/python bench/pubsub.py [--messages 5000] [--latency-messages 300] [--database URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402

PROJECT = "bench-project"


def start(data_dir: Path, database: str | None) -> tuple[subprocess.Popen[bytes], str, int]:
    port, tls_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(port), "--tls-port", str(tls_port),
           "--data-dir", str(data_dir)] + (["--database", database] if database else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(base + "/healthz").status_code == 200:
                return proc, base, tls_port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("keyless serve did not start")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--latency-messages", type=int, default=300)
    parser.add_argument("--size", type=int, default=100, help="bytes of data per message")
    parser.add_argument("--database", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keyless-bench-pubsub-") as tmp:
        data_dir = Path(tmp) / "data"
        proc, base, tls_port = start(data_dir, args.database)
        try:
            subprocess.run([sys.executable, "-m", "keyless.cli.main", "projects", "create", PROJECT, "--data-dir",
                            str(data_dir)] + (["--database", args.database] if args.database else []),
                           check=True, capture_output=True, cwd=ROOT)
            token = (data_dir / "owner.token").read_text().strip()
            auth = {"Authorization": f"Bearer {token}"}
            for name in ("throughput", "latency"):
                httpx.put(f"{base}/pubsub/v1/projects/{PROJECT}/topics/bench-{name}", json={},
                          headers=auth).raise_for_status()
                httpx.put(f"{base}/pubsub/v1/projects/{PROJECT}/subscriptions/bench-{name}-sub",
                          json={"topic": f"projects/{PROJECT}/topics/bench-{name}"}, headers=auth).raise_for_status()
            # grpc reads the roots to trust when it loads: set before the client is imported
            os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(data_dir / "tls" / "ca.pem")
            run(token, tls_port, args)
        finally:
            proc.terminate()
            proc.wait(10)


def run(token: str, tls_port: int, args: argparse.Namespace) -> None:
    from google.cloud import pubsub_v1
    from google.oauth2.credentials import Credentials

    options = {"api_endpoint": f"localhost:{tls_port}"}
    creds = Credentials(token)
    publisher = pubsub_v1.PublisherClient(credentials=creds, client_options=options,
                                          batch_settings=pubsub_v1.types.BatchSettings(max_messages=500,
                                                                                       max_latency=0.01))
    subscriber = pubsub_v1.SubscriberClient(credentials=creds, client_options=options)
    topic = f"projects/{PROJECT}/topics/bench-throughput"
    payload = b"x" * args.size
    publisher.publish(topic, payload).result(timeout=60)  # warm: channel, TLS, first gRPC server start
    t0 = time.perf_counter()
    futures = [publisher.publish(topic, payload) for _ in range(args.messages)]
    for f in futures:
        f.result(timeout=120)
    elapsed = time.perf_counter() - t0
    print(f"publish: {args.messages} messages of {args.size} B in {elapsed:.2f} s = "
          f"{args.messages / elapsed:,.0f} messages/s (PublisherClient, batches of up to 500)")

    latencies: list[float] = []
    lock, done = threading.Lock(), threading.Event()

    def callback(message: pubsub_v1.subscriber.message.Message) -> None:
        arrived = time.perf_counter()
        message.ack()
        with lock:
            latencies.append((arrived - float(message.attributes["t"])) * 1000)
            if len(latencies) >= args.latency_messages:
                done.set()

    latency_topic = f"projects/{PROJECT}/topics/bench-latency"
    future = subscriber.subscribe(f"projects/{PROJECT}/subscriptions/bench-latency-sub", callback)
    time.sleep(1)  # the stream is open before the first message
    unbatched = pubsub_v1.PublisherClient(credentials=creds, client_options=options,
                                          batch_settings=pubsub_v1.types.BatchSettings(max_messages=1))
    for _ in range(args.latency_messages):
        unbatched.publish(latency_topic, payload, t=repr(time.perf_counter())).result(timeout=30)
        time.sleep(0.01)
    done.wait(60)
    future.cancel()
    print(f"end to end (publish -> subscribe callback, StreamingPull): {len(latencies)} messages, "
          f"p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
          f"max {max(latencies):.1f} ms")


if __name__ == "__main__":
    main()
