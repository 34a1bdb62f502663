"""The README's quickstart, run as a newcomer would: its block copied into a shell script, on a
port other than the default, in an empty home with no KEYLESS_* variables, on the embedded SQLite
the README's serve line uses (so on the suite's SQLite leg only). Every command after
`keyless serve &` finds the server by itself (keyless.discovery)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import GCLOUD, free_port

pytestmark = pytest.mark.store_independent  # runs on the SQLite leg only (tests/conftest.py)

README = Path(__file__).resolve().parents[2] / "README.md"
PROVIDER = "projects/123456789/locations/global/workloadIdentityPools/github-pool/providers/github-provider"


def quickstart_block() -> str:
    text = README.read_text()
    m = re.search(r"<!-- quickstart -->\n```sh\n(.*?)```\n<!-- /quickstart -->", text, re.S)
    assert m, "the README has no quickstart block"
    return m.group(1)


def newcomer_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KEYLESS_", "CLOUDSDK_", "GOOGLE_"))}
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    if GCLOUD is None:
        pytest.skip("gcloud is not installed: the README's quickstart calls gcloud")
    block = quickstart_block()
    port = free_port()
    script = block.replace("--port 9000", f"--port {port}")
    assert script != block, "the quickstart's serve line no longer says --port 9000"
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    # Files, not pipes: the background server holds them open after the script ends.
    with open(tmp_path / "out", "w") as stdout, open(tmp_path / "err", "w") as stderr:
        proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=work, env=newcomer_env(home),
                                stdout=stdout, stderr=stderr, start_new_session=True)
        try:
            proc.wait(timeout=300)
        finally:
            record = home / ".keyless" / "server.json"
            pid = json.loads(record.read_text())["pid"] if record.exists() else None
            os.killpg(proc.pid, signal.SIGTERM)  # the background `keyless serve` is in the script's group
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"

    # keyless whoami: google-auth exchanged the GitHub token and impersonated deploy-sa
    assert "deploy-sa@my-project.iam.gserviceaccount.com\n  credentials: google.auth.identity_pool.Credentials" in out
    # keyless audit read: the impersonation's Data Access entry, by the federated subject
    assert re.search(r"data_access\s+iamcredentials\.googleapis\.com\s+GenerateAccessToken\s+principal://iam\.googleapis\.com/"
                     r"projects/123456789/locations/global/workloadIdentityPools/github-pool/subject/"
                     r"repo:my-org/my-repo:ref:refs/heads/main", out), out
    # gcloud, through the configuration configure-gcloud wrote: the provider trusts this server's issuer
    assert f"issuerUri: http://127.0.0.1:{port}/idp/github" in out
    # the token minted for the provider passes every step of the doctor's walk
    assert re.search(r"PASS\s+token", out) and "FAIL" not in out, out

    # the server's records go when it stops
    deadline = time.monotonic() + 15
    while pid is not None and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    assert not (home / ".keyless" / "server.json").exists()
