"""Token exchange throughput over loopback, driven by wrk at fixed concurrency.

Starts `keyless serve` (1 and 2 worker processes) on a fresh SQLite store, sets up seed 001's
GitHub pool, provider and deploy service account, and measures, at concurrency 32 and 128:
  - OIDC exchange (RS256 GitHub-shaped token, condition, mapping, access token);
  - OIDC exchange + generateAccessToken (each connection alternates the two calls);
  - AWS exchange, with moto's server as AWS (so bounded by moto's own rate);
  - the peer: moto's STS AssumeRoleWithWebIdentity (which verifies no signature), when moto
    is installed.
Prints requests/s, p50 and p99 per case, and the server's CPU time per request (serving
processes and audit writers apart: a figure contention on the machine barely moves). Data Access
audit logs are on for sts and iam, so every call writes an entry. Needs `wrk` (Debian package wrk).

    .venv/bin/python bench/exchange.py [--duration 10] [--workers 1,2] [--connections 32,128]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
NUMBER = "123456789"
POOL = f"projects/{NUMBER}/locations/global/workloadIdentityPools/github-pool"
AUDIENCE = f"//iam.googleapis.com/{POOL}/providers/github-provider"
SA = "deploy-sa@my-project.iam.gserviceaccount.com"

STS_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "%s"
"""

FLOW_LUA = """
local sts_body = "%s"
local gat_path = "/iamcredentials/v1/projects/-/serviceAccounts/%s:generateAccessToken"
local token = nil
local step = 0
request = function()
  step = step + 1
  if token == nil or step %% 2 == 1 then
    return wrk.format("POST", "/sts/v1/token", {["Content-Type"] = "application/x-www-form-urlencoded"}, sts_body)
  end
  return wrk.format("POST", gat_path, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token},
                    '{"scope": ["https://www.googleapis.com/auth/cloud-platform"]}')
end
response = function(status, headers, body)
  local t = body:match('"access_token":"([^"]+)"')
  if t then token = t end
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keyless(data: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "keyless.cli.main", *args, "--data-dir", str(data)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.strip()


def start(data: Path, port: int, workers: int, loop: str = "asyncio") -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(port),
                             "--data-dir", str(data), "--allow-insecure-issuers", "--workers", str(workers), "--loop", loop],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def setup(base: str, token: str, audit: bool = True) -> None:
    h = {"Authorization": f"Bearer {token}"}
    iam = f"{base}/iam/v1/projects/my-project"

    def ok(r: httpx.Response) -> None:
        if r.status_code != 200:
            raise SystemExit(f"setup failed: {r.status_code} {r.text}")

    ok(httpx.post(f"{iam}/locations/global/workloadIdentityPools?workloadIdentityPoolId=github-pool", json={},
                  headers=h))
    ok(httpx.post(f"{iam}/locations/global/workloadIdentityPools/github-pool/providers"
                  "?workloadIdentityPoolProviderId=github-provider", headers=h, json={
                      "attributeMapping": {"google.subject": "assertion.sub",
                                           "attribute.repository": "assertion.repository",
                                           "attribute.ref": "assertion.ref", "attribute.actor": "assertion.actor"},
                      "attributeCondition": "assertion.repository_owner == 'my-org' && (assertion.ref == "
                                            "'refs/heads/main' || assertion.ref.startsWith('refs/heads/release/'))",
                      "oidc": {"issuerUri": f"{base}/idp/github"}}))
    ok(httpx.post(f"{iam}/serviceAccounts", json={"accountId": "deploy-sa"}, headers=h))
    member = f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/my-org/my-repo"
    ok(httpx.post(f"{base}/iam/v1/projects/-/serviceAccounts/{SA}:setIamPolicy", headers=h,
                  json={"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}}))
    # The most demanding audit set-up: every exchange (ADMIN_READ of sts) and every
    # impersonation (DATA_READ of iam) writes a Data Access entry.
    if not audit:
        return  # Google's default: Data Access logs off, so exchanges write no entry
    crm = f"{base}/cloudresourcemanager/v1/projects/my-project"
    policy = httpx.post(f"{crm}:getIamPolicy", json={}, headers=h).json()
    policy["auditConfigs"] = [
        {"service": "sts.googleapis.com", "auditLogConfigs": [{"logType": "ADMIN_READ"}]},
        {"service": "iam.googleapis.com", "auditLogConfigs": [{"logType": "DATA_READ"}]}]
    ok(httpx.post(f"{crm}:setIamPolicy", headers=h, json={"policy": policy, "updateMask": "bindings,etag,auditConfigs"}))


def wrk(url: str, script: str, connections: int, duration: int) -> tuple[float, float, float, int, int]:
    """(requests/s, p50 ms, p99 ms, non-2xx answers, requests) of one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", f.name, url],
                         capture_output=True, text=True).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    if bad:
        print(f"  WARNING: {bad} non-2xx answers: the figure below counts failures and is not valid")
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, _ms(lat.get("50", "0ms")), _ms(lat.get("99", "0ms")), bad, total


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def form_body(token: str) -> str:
    from urllib.parse import urlencode
    return urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "audience": AUDIENCE,
                      "scope": "https://www.googleapis.com/auth/cloud-platform",
                      "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                      "subject_token": token, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"})


class Moto:
    """moto's server as AWS: an IAM role assumed by a session whose credentials sign for us."""

    def __init__(self) -> None:
        import boto3
        import requests
        from botocore.awsrequest import AWSRequest
        from moto.iam import access_control
        from moto.server import ThreadedMotoServer

        def raw_body(self: object) -> AWSRequest:  # moto hashes the query for an empty body: hash the body
            signed = self._get_string_between("SignedHeaders=", ",", self._headers["Authorization"]).split(";")  # type: ignore[attr-defined]
            headers = self._create_headers_for_aws_request(signed, self._headers)  # type: ignore[attr-defined]
            req = AWSRequest(method=self._method, url=self._path, data=self._body, headers=headers)  # type: ignore[attr-defined]
            req.context["timestamp"] = headers["X-Amz-Date"]
            return req

        access_control.IAMRequestBase._create_aws_request = raw_body  # type: ignore[method-assign]
        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        admin = {"endpoint_url": self.endpoint, "region_name": "us-east-1", "aws_access_key_id": "testing",
                 "aws_secret_access_key": "testing"}
        iam = boto3.client("iam", **admin)
        iam.create_user(UserName="bench")
        key = iam.create_access_key(UserName="bench")["AccessKey"]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]}
        role = iam.create_role(RoleName="bench-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        sts = boto3.client("sts", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
        self.session = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="bench")["Credentials"]
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"0", timeout=5)

    def subject_token(self, audience: str) -> str:
        from google.auth import aws
        from google.auth.transport.requests import Request

        os.environ.update(AWS_ACCESS_KEY_ID=self.session["AccessKeyId"],
                          AWS_SECRET_ACCESS_KEY=self.session["SecretAccessKey"],
                          AWS_SESSION_TOKEN=self.session["SessionToken"], AWS_REGION="us-east-1")
        creds = aws.Credentials(audience=audience, subject_token_type="urn:ietf:params:aws:token-type:aws4_request",
                                token_url="https://sts.googleapis.com/v1/token",
                                credential_source={"environment_id": "aws1", "regional_cred_verification_url":
                                                   "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity"
                                                   "&Version=2011-06-15"})
        return str(creds.retrieve_subject_token(Request()))

    def stop(self) -> None:
        import requests

        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"inf", timeout=5)  # auth is process-global
        self.server.stop()


def aws_case(moto: Moto, connections: list[int], duration: int) -> None:
    from urllib.parse import urlencode

    data = Path(tempfile.mkdtemp(prefix="keyless-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    keyless(data, "projects", "create", "my-project", "--number", NUMBER)
    proc = subprocess.Popen([sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(port), "--data-dir",
                             str(data), "--aws-sts-endpoint", moto.endpoint], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        h = {"Authorization": f"Bearer {(data / 'owner.token').read_text().strip()}"}
        pools = f"{base}/iam/v1/projects/my-project/locations/global/workloadIdentityPools"
        httpx.post(f"{pools}?workloadIdentityPoolId=aws-pool", json={}, headers=h).raise_for_status()
        httpx.post(f"{pools}/aws-pool/providers?workloadIdentityPoolProviderId=aws-provider", headers=h,
                   json={"aws": {"accountId": "123456789012"}}).raise_for_status()
        audience = f"//iam.googleapis.com/projects/{NUMBER}/locations/global/workloadIdentityPools/aws-pool/providers/aws-provider"
        body = urlencode({"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "audience": audience,
                          "scope": "https://www.googleapis.com/auth/cloud-platform",
                          "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                          "subject_token": moto.subject_token(audience),
                          "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request"})
        check = httpx.post(f"{base}/sts/v1/token", content=body,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert check.status_code == 200, check.text
        for c in connections:
            rps, p50, p99, bad, _ = wrk(f"{base}/sts/v1/token", STS_LUA % body, c, duration)
            print(f"{'AWS exchange (moto as AWS), 1 worker':<44} conc {c:>3}: {rps:>8.0f} req/s  "
                  f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  non-2xx {bad}")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def moto_peer(connections: list[int], duration: int) -> None:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("moto peer: skipped (moto is not installed)")
        return
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    body = ("Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleSessionName=bench&"
            "RoleArn=arn:aws:iam::123456789012:role/bench&WebIdentityToken=" + "a" * 800)
    for c in connections:
        rps, p50, p99, bad, _ = wrk(f"http://127.0.0.1:{port}/", STS_LUA % body, c, duration)
        print(f"{'moto AssumeRoleWithWebIdentity (peer)':<44} conc {c:>3}: {rps:>8.0f} req/s  "
              f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  non-2xx {bad}")
    server.stop()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_by_role(root: int, workers: int) -> dict[str, float]:
    """CPU seconds (user+system) used so far by the server's processes, split into the serving
    processes and the audit writers (the leaves spawned by a serving process). A figure that
    contention on the machine barely moves, unlike requests/s."""
    tick = os.sysconf("SC_CLK_TCK")
    totals = {"serving": 0.0, "audit writer": 0.0, "other": 0.0}
    stack = [(root, 0)]
    while stack:
        pid, depth = stack.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        serving_depth = 0 if workers == 1 else 1
        if b"resource_tracker" in cmdline:
            role = "other"
        elif depth == serving_depth:
            role = "serving"
        elif depth == serving_depth + 1:
            role = "audit writer"
        else:
            role = "other"
        totals[role] += seconds
        stack += [(c, depth + 1) for c in _children(pid)]
    return totals


def measured(proc: subprocess.Popen[bytes], workers: int, run):  # type: ignore[no-untyped-def]
    """Run `run()` (a wrk case) and add the server's CPU ms per request to its figures."""
    before = cpu_by_role(proc.pid, workers)
    rps, p50, p99, bad, requests = run()
    after = cpu_by_role(proc.pid, workers)
    per = {k: (after[k] - before[k]) * 1000 / max(requests, 1) for k in ("serving", "audit writer")}
    return rps, p50, p99, bad, per


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--connections", default="32,128")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="keyless serve --loop")
    p.add_argument("--data-access-logs", choices=("on", "off"), default="on",
                   help="enable Data Access audit logs for sts and iam (default on: every call writes an entry)")
    args = p.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request it serves
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required: apt-get install wrk")
    connections = [int(c) for c in args.connections.split(",")]
    print(f"# keyless token exchange, {args.duration}s per case, wrk -t2, {os.cpu_count()} cores, "
          f"Data Access audit logs {args.data_access_logs}")
    for workers in (int(w) for w in args.workers.split(",")):
        data = Path(tempfile.mkdtemp(prefix="keyless-bench-"))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        keyless(data, "projects", "create", "my-project", "--number", NUMBER)
        proc = start(data, port, workers, args.loop)
        try:
            setup(base, (data / "owner.token").read_text().strip(), args.data_access_logs == "on")
            gh = keyless(data, "token", "github", "--repository", "my-org/my-repo", "--audience", f"https:{AUDIENCE}",
                         "--lifetime", "3600", "--server", base)
            body = form_body(gh)
            check = httpx.post(f"{base}/sts/v1/token", content=body,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert check.status_code == 200, check.text
            wrk(f"{base}/sts/v1/token", STS_LUA % body, 16, 2)  # warm-up: caches, the audit writer
            for c in connections:
                rps, p50, p99, bad, cpu = measured(proc, workers, lambda c=c, base=base, body=body: wrk(
                    f"{base}/sts/v1/token", STS_LUA % body, c, args.duration))
                print(f"{f'OIDC exchange, {workers} worker(s)':<44} conc {c:>3}: {rps:>8.0f} req/s  "
                      f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  non-2xx {bad}  "
                      f"cpu/req {cpu['serving']:.3f} ms serving + {cpu['audit writer']:.3f} ms audit writer")
            for c in connections:
                rps, p50, p99, bad, cpu = measured(proc, workers, lambda c=c, base=base, body=body: wrk(
                    base, FLOW_LUA % (body, SA), c, args.duration))
                print(f"{f'exchange + generateAccessToken, {workers} w':<44} conc {c:>3}: {rps / 2:>8.0f} flows/s "
                      f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  non-2xx {bad}  (per request)  "
                      f"cpu/req {cpu['serving']:.3f} ms serving + {cpu['audit writer']:.3f} ms audit writer")
        finally:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(data, ignore_errors=True)
    try:
        moto = Moto()
    except ImportError as exc:
        print(f"AWS exchange: skipped ({exc})")
    else:
        try:
            aws_case(moto, connections, args.duration)
        finally:
            moto.stop()
    moto_peer(connections, args.duration)


if __name__ == "__main__":
    main()
