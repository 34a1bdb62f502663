"""`keyless cluster`: several `keyless serve` processes on one PostgreSQL database, the way an
operator runs one per machine, started on this machine (compose-style: one command up, Ctrl-C
down). The benchmarks use it; docs/scaling.md shows the `keyless serve` line each server runs.

Each server has its own data directory (owner token, TLS CA, logs) and port; all share the
database and the object-bytes directory (`--storage-dir`), which is what servers on several
machines must share too.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(*, port: int, data_dir: Path, database_url: str, storage_dir: Path, workers: int = 1,
                  extra: tuple[str, ...] = ()) -> list[str]:
    """The `keyless serve` line of one server of a cluster."""
    return [sys.executable, "-m", "keyless.cli.main", "serve", "--port", str(port), "--data-dir", str(data_dir),
            "--database", database_url, "--storage-dir", str(storage_dir), "--workers", str(workers), *extra]


@dataclass
class ClusterServer:
    """One server of the cluster: its process, port and data directory."""

    name: str
    port: int
    data_dir: Path
    command: list[str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / f"{self.name}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def owner_token(self) -> str:
        return (self.data_dir / "owner.token").read_text().strip()

    def start(self, wait: bool = True) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # A session of its own: kill() ends the server's workers and audit writers with it.
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        import httpx  # here, not at the top: every `keyless` command imports this module to build its parser

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.logs()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start: {self.logs()}")

    def kill(self) -> None:
        """SIGKILL the server and every process of its session (a crash, as kill -9 of a host's service)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class Cluster:
    """`servers` Keyless servers (each with `workers` processes) on one database."""

    def __init__(self, database_url: str, root: Path, servers: int = 2, workers: int = 1,
                 extra: tuple[str, ...] = (), ports: list[int] | None = None) -> None:
        self.database_url = database_url
        self.root = root
        self.storage_dir = root / "shared-storage"
        self.servers = []
        for i in range(servers):
            port = ports[i] if ports else free_port()
            data_dir = root / f"server-{i}" / "data"
            cmd = serve_command(port=port, data_dir=data_dir, database_url=database_url,
                                storage_dir=self.storage_dir, workers=workers, extra=extra)
            self.servers.append(ClusterServer(f"server-{i}", port, data_dir, cmd))

    def start(self) -> Cluster:
        self.storage_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for server in self.servers:  # all at once: they migrate one at a time (an advisory lock)
            server.start(wait=False)
        for server in self.servers:
            server.wait_ready()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def cmd_cluster(args: argparse.Namespace) -> int:
    database = args.database or os.environ.get("KEYLESS_DATABASE_URL")
    if not database or not database.startswith("postgresql"):
        print("keyless cluster: --database must be a PostgreSQL URL (servers on several machines share it)",
              file=sys.stderr)
        return 2
    root = Path(args.root).resolve()
    ports = [args.base_port + i for i in range(args.servers)] if args.base_port else None
    extra = tuple(args.serve_args[1:] if args.serve_args[:1] == ["--"] else args.serve_args)
    cluster = Cluster(database, root, args.servers, args.workers, extra, ports)
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cluster.start()
    for server in cluster.servers:
        print(f"{server.name}: {server.base_url} (data in {server.data_dir}, log {server.log_path})", flush=True)
        print("  " + " ".join(server.command[1:]).replace("-m keyless.cli.main", "keyless"), flush=True)
    print(f"shared object bytes: {cluster.storage_dir}; Ctrl-C stops them all", flush=True)
    try:
        while not stop:
            for server in cluster.servers:
                if server.proc is not None and server.proc.poll() is not None:
                    print(f"{server.name} exited ({server.proc.returncode}): restarting", flush=True)
                    server.start()
            time.sleep(0.5)
    finally:
        cluster.stop()
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cluster", help="run several servers on one PostgreSQL database (docs/scaling.md)")
    p.add_argument("--database", help="the PostgreSQL URL all servers share (or $KEYLESS_DATABASE_URL)")
    p.add_argument("--servers", type=int, default=2, help="how many servers (default 2)")
    p.add_argument("--workers", type=int, default=1, help="processes per server (default 1)")
    p.add_argument("--root", default="keyless-cluster", help="directory of the servers' data dirs and shared "
                   "object bytes (default ./keyless-cluster)")
    p.add_argument("--base-port", type=int, default=0, help="first server's port, then +1 each (default: free ports)")
    p.add_argument("serve_args", nargs=argparse.REMAINDER, help="-- then more `keyless serve` flags for every server")
    p.set_defaults(func=cmd_cluster)
