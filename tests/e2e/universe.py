"""A client process that sees Keyless as a universe's own hosts (`sts.UNIVERSE`, `iam.UNIVERSE`, ...):
`keyless env --write-hosts` writes the names, and the process runs in a mount namespace of its own
with that file bound over /etc/hosts (unshare(1), root), so the machine's /etc/hosts is never touched."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import KeylessServer


def run_in_universe(srv: KeylessServer, tmp_path: Path, universe: str, argv: list[str], env: dict[str, str],
                    timeout: int = 120) -> Any:
    """Run `argv` seeing `universe`'s hosts at Keyless; its last line of output, read as JSON."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    assert srv.keyless("env", "--universe-domain", universe, "--write-hosts", str(hosts)).returncode == 0
    run = subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && shift && exec "$@"',
                          str(hosts), "x", *argv], env=env, capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])
