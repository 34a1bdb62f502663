"""Pub/Sub through Keyless (issue #20): publish throughput of google-cloud-pubsub's PublisherClient
(gRPC, batching) and end-to-end delivery latency, publish to the SubscriberClient.subscribe
callback over StreamingPull (p50/p99), against `keyless serve --tls-port` (SQLite, or --database URL),
and the same workload against Google's Pub/Sub emulator where it is installed (the gcloud component
`pubsub-emulator`, Debian package google-cloud-cli-pubsub-emulator, which needs a Java runtime).
Last, one line each on IAM: a caller with no grant publishing (Keyless refuses, the emulator takes
any caller; Google's emulator documentation says it does not enforce IAM).

    .venv/bin/python bench/pubsub.py [--messages 5000] [--latency-messages 300] [--database URL]
        [--target keyless|emulator|both]
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
EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")


def emulator_path() -> Path | None:
    """The emulator gcloud would start (`gcloud beta emulators pubsub start`), beside gcloud's own tree."""
    import shutil

    gcloud = shutil.which("gcloud")
    candidates = [EMULATOR]
    if gcloud:
        candidates.insert(0, Path(gcloud).resolve().parent.parent / "platform/pubsub-emulator/bin/cloud-pubsub-emulator")
    found = next((c for c in candidates if c.exists()), None)
    return found if found and shutil.which("java") else None


def start_emulator(path: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([str(path), "--host=127.0.0.1", f"--port={port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/projects/{PROJECT}/topics")
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the Pub/Sub emulator did not start")


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
    parser.add_argument("--target", choices=("keyless", "emulator", "both"), default="both")
    args = parser.parse_args()
    if args.target in ("keyless", "both"):
        bench_keyless(args)
    if args.target in ("emulator", "both"):
        path = emulator_path()
        if path is None:
            print("emulator: not measured (no pubsub-emulator component beside gcloud, or no java)")
            return
        bench_emulator(path, args)


def bench_keyless(args: argparse.Namespace) -> None:
    print(f"== Keyless ({'PostgreSQL' if args.database else 'SQLite'}, gRPC over TLS, IAM enforced)")
    with tempfile.TemporaryDirectory(prefix="keyless-bench-pubsub-") as tmp:
        data_dir = Path(tmp) / "data"
        proc, base, tls_port = start(data_dir, args.database)
        try:
            subprocess.run([sys.executable, "-m", "keyless.cli.main", "projects", "create", PROJECT, "--data-dir",
                            str(data_dir)] + (["--database", args.database] if args.database else []),
                           check=True, capture_output=True, cwd=ROOT)
            token = (data_dir / "owner.token").read_text().strip()
            auth = {"Authorization": f"Bearer {token}"}
            make_topics(f"{base}/pubsub", auth)
            # grpc reads the roots to trust when it loads: set before the client is imported
            os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(data_dir / "tls" / "ca.pem")
            from google.oauth2.credentials import Credentials

            run(Credentials(token), {"api_endpoint": f"localhost:{tls_port}"}, args)
            # A service account with no grant at all, through the same gRPC publisher.
            sa = httpx.post(f"{base}/iam/v1/projects/{PROJECT}/serviceAccounts", headers=auth,
                            json={"accountId": "no-grant"}).json()["email"]
            owner = httpx.get(f"{base}/oauth2/v3/tokeninfo", params={"access_token": token}).json()["email"]
            httpx.post(f"{base}/iam/v1/projects/-/serviceAccounts/{sa}:setIamPolicy", headers=auth, json={"policy": {
                "bindings": [{"role": "roles/iam.serviceAccountTokenCreator", "members": [f"user:{owner}"]}]}}
            ).raise_for_status()
            answer = httpx.post(f"{base}/iamcredentials/v1/projects/-/serviceAccounts/{sa}:generateAccessToken",
                                headers=auth, json={"scope": ["https://www.googleapis.com/auth/cloud-platform"]})
            if answer.status_code == 200:
                iam_line(Credentials(answer.json()["accessToken"]), {"api_endpoint": f"localhost:{tls_port}"},
                         f"a token of {sa}, which holds no role")
            else:
                print(f"IAM: could not mint a token for the no-grant account ({answer.status_code})")
        finally:
            proc.terminate()
            proc.wait(10)


def bench_emulator(path: Path, args: argparse.Namespace) -> None:
    print(f"== Google's Pub/Sub emulator ({path.parent.parent.name}, {emulator_jar(path)}; plaintext gRPC, no IAM)")
    proc, port = start_emulator(path)
    try:
        make_topics(f"http://127.0.0.1:{port}", {})
        os.environ["PUBSUB_EMULATOR_HOST"] = f"127.0.0.1:{port}"  # the clients' documented switch
        from google.auth.credentials import AnonymousCredentials

        run(AnonymousCredentials(), {}, args)
        iam_line(AnonymousCredentials(), {}, "no credentials at all")
    finally:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
        proc.terminate()
        proc.wait(10)


def emulator_jar(path: Path) -> str:
    jars = sorted((path.parent.parent / "lib").glob("cloud-pubsub-emulator-*.jar"))
    return jars[-1].name if jars else "unknown version"


def make_topics(base: str, auth: dict[str, str]) -> None:
    for name in ("throughput", "latency"):
        httpx.put(f"{base}/v1/projects/{PROJECT}/topics/bench-{name}", json={}, headers=auth).raise_for_status()
        httpx.put(f"{base}/v1/projects/{PROJECT}/subscriptions/bench-{name}-sub",
                  json={"topic": f"projects/{PROJECT}/topics/bench-{name}"}, headers=auth).raise_for_status()


def iam_line(creds: object, options: dict[str, str], who: str) -> None:
    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient(credentials=creds, client_options=options)
    try:
        publisher.publish(f"projects/{PROJECT}/topics/bench-latency", b"x").result(timeout=30)
        print(f"IAM: publish with {who}: accepted")
    except exceptions.GoogleAPICallError as e:
        print(f"IAM: publish with {who}: refused, {getattr(e, 'grpc_status_code', None) or e.code}: {e.message}")


def run(creds: object, options: dict[str, str], args: argparse.Namespace) -> None:
    from google.cloud import pubsub_v1

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
