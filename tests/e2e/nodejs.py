"""Google's Node.js clients for the end-to-end tests: installed from the npm registry with `npm ci`
into tests/e2e/node/node_modules (git-ignored) from the pinned package-lock.json, once per checkout
(a stamp of the lock's hash lets the PostgreSQL leg reuse what the SQLite leg installed), and the
small scripts beside it run with the machine's `node`, each printing one JSON object."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parent / "node"
MODULES = NODE_DIR / "node_modules"
STAMP = MODULES / ".keyless-lock-sha256"  # npm ci removes node_modules first, so a stale stamp cannot survive


def lock_digest() -> str:
    return hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()


def install() -> str:
    """`npm ci` unless node_modules already holds this lock's packages; says what it did and how long
    it took. A file lock keeps two pytest runs in one checkout from installing at once."""
    npm = shutil.which("npm")
    assert npm is not None
    with open(NODE_DIR / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = lock_digest()
        if STAMP.exists() and STAMP.read_text() == digest:
            return f"Node.js clients: node_modules matches package-lock.json, npm ci skipped ({MODULES})"
        started = time.monotonic()
        # --ignore-scripts: no package here needs an install script (protobufjs's only prints);
        # --prefer-offline: a warm npm cache makes a reinstall take seconds without asking the registry.
        result = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline",
                                 "--loglevel=error"], cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed in {NODE_DIR} ({result.returncode}):\n{result.stderr[-3000:]}")
        STAMP.write_text(digest)
        count = len(json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]) - 1
        return f"Node.js clients: npm ci installed {count} pinned packages in {time.monotonic() - started:.1f} s"


def run(script: str, payload: dict[str, Any], *, env: dict[str, str] | None = None,
        hosts: Path | None = None, resolv: Path | None = None) -> dict[str, Any]:
    """`node SCRIPT PAYLOAD`; its JSON output. With `hosts`, the script runs in its own mount
    namespace (`unshare -m`, root only) where that file is /etc/hosts and `resolv` is
    /etc/resolv.conf, so Google's host names reach Keyless and this machine's files stay as they are."""
    node = shutil.which("node")
    assert node is not None
    command = [node, str(NODE_DIR / script), json.dumps(payload)]
    if hosts is not None:
        assert resolv is not None
        command = ["unshare", "-m", "sh", "-c",
                   'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf && shift && exec "$@"',
                   str(hosts), str(resolv), *command]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GCLOUD_", "GRPC_", "NODE_"))}
    result = subprocess.run(command, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"node {script} failed ({result.returncode}):\n{result.stderr[-3000:]}"
    lines = result.stdout.strip().splitlines()
    assert lines, f"node {script} printed nothing:\n{result.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(lines[-1])
    return out
