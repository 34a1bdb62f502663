"""How long `keyless serve` takes to answer (issue #19: under 1 s to the first request).

Starts `keyless serve` `--runs` times on a fresh data dir (a new SQLite store: schema, keys, owner
token made at start) and `--runs` times on an existing one, and prints per start the time from
exec to: the first 200 from /healthz (and the CPU time the server had used by then, a figure a
loaded machine inflates less); a token exchange's 200 (POST /sts/v1/token with a subject token
from Keyless's test GitHub issuer: loads the STS and federation code); an owner API call's 200
(`gcloud projects list`'s GET). Then the top offenders of `python -X importtime` for what
`keyless serve` imports before it listens (run it without PYTHONDONTWRITEBYTECODE, or after
`python -m compileall keyless`, or it counts compiling the sources too).

    .venv/bin/python bench/startup.py [--runs 5] [--top 15]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import free_port  # noqa: E402

SERVE = [sys.executable, "-m", "keyless.cli.main", "serve", "--allow-insecure-issuers"]


def _wait_listening(port: int, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until a TCP connect succeeds (polled every millisecond: the figure is what is measured)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"keyless serve exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.001)
    raise SystemExit("keyless serve did not listen within 60 s")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (proc(5): utime and stime, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup(data: Path, port: int) -> dict[str, Any]:
    """Seed 001's federation (`keyless quickstart`) on a store; returns its credentials file. Its
    provider trusts the issuer at this port, so the later starts on this store take it again."""
    proc = subprocess.Popen([*SERVE, "--port", str(port), "--data-dir", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc, time.monotonic() + 60)
        out = subprocess.run([sys.executable, "-m", "keyless.cli.main", "quickstart", "--data-dir", str(data),
                              "--output-file", str(data.parent / "credentials.json")],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise SystemExit(f"keyless quickstart failed: {out.stderr}")
        creds: dict[str, Any] = json.loads((data.parent / "credentials.json").read_text())
        return creds
    finally:
        proc.terminate()
        proc.wait(10)


def one_start(data: Path, port: int, creds: dict[str, Any] | None) -> dict[str, float]:
    """Seconds from exec to: /healthz 200, a token exchange's 200, an owner API call's 200."""
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    proc = subprocess.Popen([*SERVE, "--port", str(port), "--data-dir", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict[str, float] = {}
    try:
        _wait_listening(port, proc, started + 60)
        with httpx.Client(base_url=base, timeout=30, trust_env=False) as http:
            r = http.get("/healthz")
            assert r.status_code == 200, r.text
            out["healthz"] = time.monotonic() - started
            out["cpu"] = _cpu_seconds(proc.pid)
            if creds is not None:  # as google-auth does with the file: the subject token, then STS
                source = creds["credential_source"]
                url = httpx.URL(source["url"])
                subject = http.get(url.raw_path.decode(), headers=source["headers"])
                assert subject.status_code == 200, subject.text
                mark = time.monotonic()
                r = http.post("/sts/v1/token", data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                    "audience": creds["audience"], "scope": "https://www.googleapis.com/auth/cloud-platform",
                    "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                    "subject_token": subject.json()["value"], "subject_token_type": creds["subject_token_type"]})
                assert r.status_code == 200, r.text
                out["exchange"] = out["healthz"] + time.monotonic() - mark
            owner = (data / "owner.token").read_text().strip()
            mark = time.monotonic()
            r = http.get("/cloudresourcemanager/v1/projects", headers={"Authorization": f"Bearer {owner}"})
            assert r.status_code == 200, r.text
            out["api"] = out["healthz"] + time.monotonic() - mark
    finally:
        proc.terminate()
        proc.wait(10)
    return out


# What `keyless serve` does before it listens (keyless.cli.main._start up to uvicorn.run), in a
# child process: the CPU time it takes and the modules it loads.
PROBE = """
import sys, time
t = time.process_time()
import uvicorn.config
from keyless.app import build_app
from keyless.cli.main import _settings, parser
from keyless.state import ServerState
state = ServerState(_settings(parser().parse_args(["serve", "--data-dir", sys.argv[1]])))
state.bootstrap()
state.write_owner_token()
build_app(state)
print(time.process_time() - t, len(sys.modules), len([m for m in sys.modules if m.startswith("keyless.")]))
"""


def importtime(data: Path, top: int) -> tuple[str, list[tuple[int, str]]]:
    """The start's CPU time and module counts on an existing store, and its imports by cumulative
    import time (µs): the top-level ones and those they pull in."""
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), **os.environ}  # the tree under test
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", PROBE, str(data)], capture_output=True,
                         text=True, env=env, check=True)
    cpu, modules, own = out.stdout.split()
    rows = []
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 5:  # top-level and first-level imports: who pulls the weight in
            rows.append((int(m.group(1)), ("  " if len(m.group(2)) > 1 else "") + m.group(3)))
    summary = f"{float(cpu) * 1000:.0f} ms of CPU (with -X importtime's own cost), {modules} modules ({own} of Keyless)"
    return summary, sorted(rows, reverse=True)[:top]


def _summary(name: str, runs: list[dict[str, float]]) -> None:
    for key in ("healthz", "cpu", "exchange", "api"):
        values = [r[key] for r in runs if key in r]
        if values:
            print(f"  {name:9s} {key:9s} median {statistics.median(values) * 1000:6.0f} ms  "
                  f"min {min(values) * 1000:6.0f}  max {max(values) * 1000:6.0f}  "
                  f"({', '.join(f'{v * 1000:.0f}' for v in values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    tmp = Path(tempfile.mkdtemp(prefix="keyless-bench-startup-"))
    try:
        fresh = [one_start(tmp / f"fresh-{i}" / "data", free_port(), None) for i in range(args.runs)]
        existing_dir, port = tmp / "existing" / "data", free_port()
        creds = setup(existing_dir, port)
        existing = [one_start(existing_dir, port, creds) for _ in range(args.runs)]
        summary, offenders = importtime(existing_dir, args.top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"time from exec of `keyless serve` to the first answer ({args.runs} starts each):")
    _summary("fresh", fresh)
    _summary("existing", existing)
    print(f"what `keyless serve` does before it listens, on the existing store: {summary}; python -X importtime, "
          f"top {args.top} by cumulative time:")
    for micros, name in offenders:
        print(f"  {micros / 1000:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
