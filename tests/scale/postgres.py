"""A throwaway PostgreSQL cluster of a test's own (initdb under /tmp, a free port), which the
test may stop and start: never the shared one the rest of the suite uses."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from keyless.cli.cluster import free_port


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: [int(x) for x in
                                                                                  p.split("/")[4].split(".")])
    return Path(found[-1]).parent if found else None


class ThrowawayPostgres:
    def __init__(self, options: str = "") -> None:
        self.options = options  # more server options, e.g. "-c log_statement=all"
        bindir = binaries()
        assert bindir is not None
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="keyless-scale-pg-"))
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0  # PostgreSQL refuses to run as root
        if self._as_postgres:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "keyless")
        self.start()
        subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "keyless",
                        "-d", "postgres", "-qc", "CREATE DATABASE keyless"], check=True, capture_output=True)
        self.url = f"postgresql+psycopg://keyless@127.0.0.1:{self.port}/keyless"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200 {self.options}",
                  "start")

    @property
    def log(self) -> Path:
        return self.dir / "log"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
