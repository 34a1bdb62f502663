"""How long `keyless serve` takes to answer, with TLS on (the default since issue #19) and off: the
first start in a data dir (which creates the local CA) and the starts after it. Prints seconds
from spawn to /healthz answering over HTTP and, with TLS, to a TLS handshake on the recorded port.

    python bench/serve_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import free_port


def start(data: Path, tls: str) -> tuple[float, float | None]:
    port = free_port()
    env = {**os.environ, "KEYLESS_DATA_DIR": str(data)}
    began = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(port), "--data-dir",
                             str(data), "--tls-port", tls], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.01)
        http = time.perf_counter() - began
        tls_ready = None
        record = json.loads((data / "server.json").read_text())
        if record["tls_port"]:
            context = ssl.create_default_context(cafile=str(data / "tls" / "ca.pem"))
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", record["tls_port"]), timeout=1) as raw, \
                            context.wrap_socket(raw, server_hostname="iam.googleapis.com"):
                        break
                except OSError:
                    time.sleep(0.01)
            tls_ready = time.perf_counter() - began
        return http, tls_ready
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for tls in ("off", "auto"):
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            first = start(data, tls)
            later = [start(data, tls) for _ in range(args.runs)]
        tls_text = f", TLS answering after {first[1]:.2f} s" if first[1] is not None else ""
        print(f"--tls-port {tls:4}: first start (new data dir) HTTP {first[0]:.2f} s{tls_text}")
        http = statistics.median(t[0] for t in later)
        tls_times = [t[1] for t in later if t[1] is not None]
        tls_text = f", TLS {statistics.median(tls_times):.2f} s" if tls_times else ""
        print(f"--tls-port {tls:4}: later starts, median of {args.runs}: HTTP {http:.2f} s{tls_text}")


if __name__ == "__main__":
    main()
