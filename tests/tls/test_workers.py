"""`keyless serve --workers 2`: TLS is on by default (issue #19), its port chosen once by the
parent and recorded in server.json; every worker opens it (SO_REUSEPORT) and serves HTTPS and
gRPC on it; the kernel spreads connections over them."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KeylessServer, free_port, fresh_database_url

CONNECTIONS = 16  # all on one of two workers by chance: 2 in 2**16


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[KeylessServer]:
    server = KeylessServer(tmp_path / "data", fresh_database_url(), "--workers", "2")  # no --tls-port: auto
    server.tls_port = json.loads((server.data_dir / "server.json").read_text())["tls_port"]  # type: ignore[attr-defined]
    yield server
    server.stop()


def test_auto_takes_the_http_port_plus_363_or_else_a_free_one_and_holds_it() -> None:
    from keyless.listen import listening_socket, reserve_port

    preferred = free_port()
    with reserve_port("127.0.0.1", preferred) as held:
        assert held.getsockname()[1] == preferred
        with socket.socket() as other:  # held: no other program (nor a client's port choice) takes it
            with pytest.raises(OSError):
                other.bind(("127.0.0.1", preferred))
        with listening_socket("127.0.0.1", preferred) as worker:  # the workers' listeners join it
            worker_port = worker.getsockname()[1]
        assert worker_port == preferred
    with listening_socket("127.0.0.1", preferred):  # SO_REUSEPORT, as our own servers listen: still taken
        with reserve_port("127.0.0.1", preferred) as fallback:
            other_port = fallback.getsockname()[1]
            assert other_port != preferred and 0 < other_port < 65536
    with reserve_port("127.0.0.1", 70_000) as any_port:
        assert 0 < any_port.getsockname()[1] < 65536


def test_tls_off_serves_no_tls_port(tmp_path: Path) -> None:
    server = KeylessServer(tmp_path / "data", fresh_database_url(), "--tls-port", "off")
    try:
        assert json.loads((server.data_dir / "server.json").read_text())["tls_port"] is None
        assert owners(server.port + 363, "listening") == set()
        assert not (server.data_dir / "tls").exists()  # no CA made either
        bad = subprocess.run([sys.executable, "-m", "keyless.cli.main", "serve", "--tls-port", "https",
                              "--data-dir", str(tmp_path / "other")], capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "--tls-port wants a port number, `auto` or `off`" in bad.stderr, bad.stderr
    finally:
        server.stop()


def owners(port: int, state: str) -> set[str]:
    """Pids of the processes holding sockets of local port `port` in `state` (ss -p)."""
    out = subprocess.run(["ss", "-Htnp", "state", state, f"( sport = :{port} )"], capture_output=True, text=True,
                         check=True).stdout
    return {part.split("=", 1)[1] for part in out.replace(",", " ").split() if part.startswith("pid=")}


GRPC_CLIENT = r'''
import sys
from google.cloud import secretmanager
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import SecretManagerServiceGrpcTransport
from google.oauth2.credentials import Credentials

endpoint, token, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
got = []
for _ in range(count):  # a connection each: no subchannel shared between the clients
    channel = SecretManagerServiceGrpcTransport.create_channel(
        endpoint, credentials=Credentials(token), options=[("grpc.use_local_subchannel_pool", 1)])
    client = secretmanager.SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
    got.append(client.access_secret_version(
        request={"name": "projects/my-project/secrets/api-key/versions/latest"}).payload.data.decode())
    channel.close()
print(sorted(set(got)), len(got))
'''


def test_two_workers_serve_https_and_grpc(srv: KeylessServer, tmp_path: Path) -> None:
    port = srv.tls_port  # type: ignore[attr-defined]
    ca = srv.data_dir / "tls" / "ca.pem"
    deadline = time.monotonic() + 30  # the server answers once its first worker is up
    while len(listeners := owners(port, "listening")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(listeners) == 2, listeners  # each worker opened the port
    context = ssl.create_default_context(cafile=str(ca))
    held = []
    for _ in range(CONNECTIONS):
        tls = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                  server_hostname="cloudresourcemanager.googleapis.com")
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert tls.recv(4096).startswith(b"HTTP/1.1 200 "), "HTTPS answered"
        held.append(tls)
    try:
        assert owners(port, "established") == listeners  # both workers answered HTTPS
    finally:
        for tls in held:
            tls.close()

    assert srv.keyless("projects", "create", "my-project").returncode == 0
    sm = "/secretmanager/v1/projects/my-project/secrets"
    assert srv.call("POST", sm, params={"secretId": "api-key"}, body={"replication": {"automatic": {}}}).status_code == 200
    assert srv.call("POST", f"{sm}/api-key:addVersion",
                    body={"payload": {"data": base64.b64encode(b"from a worker").decode()}}).status_code == 200
    (tmp_path / "client.py").write_text(GRPC_CLIENT)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GRPC_"))},
           "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(ca)}
    run = subprocess.run([sys.executable, str(tmp_path / "client.py"), f"127.0.0.1:{port}", srv.owner_token,
                          str(CONNECTIONS)], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == f"['from a worker'] {CONNECTIONS}"
