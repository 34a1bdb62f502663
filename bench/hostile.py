"""What hostile requests cost the server (issue #23): its peak memory under oversized bodies and
headers, how fast they are refused, and how the event loop fares under costly attribute conditions.

Starts `keyless serve` on a fresh SQLite store and prints, per attack, the answer, the seconds to
it, what was sent before it, and the growth of the server's peak RSS (VmHWM in /proc/PID/status);
then `/healthz` latency (p50, max) while 2 clients send endless headers and while 4 clients
present tokens to a provider whose condition is costly, and what the costliest condition found
(4,096 characters) costs evaluated directly and through the server.

    .venv/bin/python bench/hostile.py [--body-mb 200] [--header-mb 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.api.test_sts_hostile import ISSUER, JWK, NUMBER, POOL, claims, sign  # noqa: E402
from tests.conftest import KeylessServer  # noqa: E402
from tests.hostile.attack import MB, peak_rss, send  # noqa: E402

FORM = "application/x-www-form-urlencoded"
# The costliest condition found within Google's 4,096 characters: RE2 runs `.{0,1000}` four times
# over a claim as long as a 16 KB subject token allows (2.7 s each match).
WORST = " || ".join(["assertion.blob.matches('.{0,1000}.{0,1000}.{0,1000}.{0,1000}y')"] * 61)
COSTLY = " || ".join(["assertion.blob.matches('[a-q][^u-z]{13}x.{0,1000}y')"] * 60)  # issue #23's 3.3 KB


def _head(srv: KeylessServer, method: str, path: str, content_type: str, token: bool) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
             "Transfer-Encoding: chunked"]
    if token:
        lines.append(f"Authorization: Bearer {srv.owner_token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def bodies(srv: KeylessServer, size: int) -> None:
    assert srv.proc is not None
    print(f"\nStreamed (chunked) {size // MB} MB bodies: answer, seconds, MB sent before it, peak RSS growth")
    for method, path, content_type, token in (
            ("POST", "/oauth2/token", FORM, False), ("POST", "/oauth2/v3/tokeninfo", FORM, False),
            ("POST", "/sts/v1/token", FORM, False), ("POST", "/console/signin", FORM, False),
            ("POST", "/iam/v1/projects/my-project/serviceAccounts", "application/json", True)):
        before = peak_rss(srv.proc.pid)
        status, _, sent, seconds = send(srv.port, _head(srv, method, path, content_type, token), stream=size,
                                        chunked=True, timeout=120)
        grown = (peak_rss(srv.proc.pid) - before) / MB
        print(f"  {method} {path:<46} {status}  {seconds:6.3f} s  {sent / MB:6.1f} MB  +{grown:.1f} MB")


def headers(srv: KeylessServer, size: int) -> None:
    assert srv.proc is not None
    before = peak_rss(srv.proc.pid)
    status, _, sent, seconds = send(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", stream=size,
                                    timeout=120)
    grown = (peak_rss(srv.proc.pid) - before) / MB
    print(f"\nA {size // MB} MB header to /healthz: {status} after {seconds:.3f} s, {sent / MB:.1f} MB sent, "
          f"peak RSS +{grown:.1f} MB")


def healthz_during(srv: KeylessServer, attack: object, clients: int, label: str) -> None:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            attack()  # type: ignore[operator]

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    timings = []
    with httpx.Client(base_url=srv.base_url) as client:
        for _ in range(40):
            start = time.monotonic()
            client.get("/healthz")
            timings.append((time.monotonic() - start) * 1000)
            time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(30)
    print(f"  /healthz during {label}: p50 {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms")


def exchange(client: httpx.Client, provider: str, token: str) -> httpx.Response:
    return client.post("/sts/v1/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": f"//iam.googleapis.com/{POOL}/providers/{provider}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "subject_token": token,
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token"}, timeout=60)


def conditions(srv: KeylessServer) -> None:
    from keyless.cel import Activation, compile_expression

    base = "/iam/v1/projects/my-project/locations/global/workloadIdentityPools"
    srv.call("POST", base, params={"workloadIdentityPoolId": "hostile-pool"}, body={})
    oidc = {"issuerUri": ISSUER, "jwksJson": json.dumps({"keys": [JWK]})}
    for provider, condition in (("costly", COSTLY), ("worst", WORST)):
        r = srv.call("POST", f"{base}/hostile-pool/providers", params={"workloadIdentityPoolProviderId": provider},
                     body={"oidc": oidc, "attributeMapping": {"google.subject": "assertion.sub"},
                           "attributeCondition": condition})
        assert r.status_code == 200, r.text
    blob = "x" * 11_000
    program = compile_expression(WORST.split(" || ")[0])
    start = time.perf_counter()
    program.evaluate(Activation({"assertion": {"blob": blob}}))
    one = time.perf_counter() - start
    print(f"\nThe worst condition found ({len(WORST)} characters, 61 matches over an 11 KB claim): one match "
          f"{one:.2f} s, so ~{one * 61:.0f} s per evaluation unbounded")
    with httpx.Client(base_url=srv.base_url) as client:
        token = sign(claims("worst", blob=blob))
        for _ in range(2):
            start = time.monotonic()
            r = exchange(client, "worst", token)
            print(f"  exchange through the server: {r.status_code} {r.json().get('error_description', '')!r} "
                  f"after {time.monotonic() - start:.2f} s")
    costly = sign(claims("costly", blob="x" * 8000))
    worst = sign(claims("worst", blob=blob))

    def present(provider: str, token: str) -> object:
        client = httpx.Client(base_url=srv.base_url)
        return lambda: exchange(client, provider, token)

    print("\nThe event loop under costly conditions:")
    healthz_during(srv, lambda: None, 1, "nothing")
    healthz_during(srv, present("costly", costly), 4, "4 clients presenting tokens to the 3.3 KB condition")
    healthz_during(srv, present("worst", worst), 4, "4 clients presenting tokens to the worst condition")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--body-mb", type=int, default=200)
    p.add_argument("--header-mb", type=int, default=100)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv = KeylessServer(Path(tmp) / "data", None)
        try:
            assert srv.keyless("projects", "create", "my-project", "--number", NUMBER).returncode == 0
            assert srv.proc is not None
            print(f"keyless serve pid {srv.proc.pid}, peak RSS at start {peak_rss(srv.proc.pid) / MB:.1f} MB")
            bodies(srv, args.body_mb * MB)
            headers(srv, args.header_mb * MB)
            print()
            healthz_during(srv, lambda: send(srv.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ",
                                             stream=40 * MB), 2, "2 clients sending 40 MB headers")
            conditions(srv)
            print(f"\npeak RSS at the end {peak_rss(srv.proc.pid) / MB:.1f} MB")
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
