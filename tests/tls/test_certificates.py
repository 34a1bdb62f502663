"""Keyless's CA and server certificate on a running `keyless serve --tls-port` (keyless.tls.ca,
keyless.tls.frontend): short-lived certificates reissued without a restart, observed over real
TLS handshakes; a two-step CA rotation that never leaves a client without trust; safe modes."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.conftest import KeylessServer, free_port, fresh_database_url


def served(port: int, cafile: Path) -> x509.Certificate:
    """The certificate the server presents, verified against `cafile` (ssl.SSLError if it fails)."""
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="secretmanager.googleapis.com") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lifetime: int | None) -> KeylessServer:
    if lifetime is not None:
        monkeypatch.setenv("KEYLESS_TLS_CERT_LIFETIME", str(lifetime))
    port = free_port()
    server = KeylessServer(tmp_path / "data", fresh_database_url(), "--tls-port", str(port))
    server.tls_port = port  # type: ignore[attr-defined]
    return server


@pytest.fixture
def srv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[KeylessServer]:
    server = start(tmp_path, monkeypatch, getattr(request, "param", None))
    yield server
    server.stop()


def test_server_certificate_is_short_lived_and_files_are_private(srv: KeylessServer) -> None:
    tls = srv.data_dir / "tls"
    cert = served(srv.tls_port, tls / "ca.pem")  # type: ignore[attr-defined]
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=7) <= life <= dt.timedelta(days=7, minutes=5)
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    for key in ("ca-key.pem", "server-key.pem"):
        assert stat.S_IMODE((tls / key).stat().st_mode) == 0o600, key
    assert b"PRIVATE KEY" not in (tls / "ca.pem").read_bytes() + (tls / "bundle.pem").read_bytes()


@pytest.mark.parametrize("srv", [6], indirect=True)
def test_certificate_is_reissued_while_the_server_runs(srv: KeylessServer) -> None:
    ca = srv.data_dir / "tls" / "ca.pem"
    first = served(srv.tls_port, ca)  # type: ignore[attr-defined]
    assert first.not_valid_after_utc - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=6)
    pid = srv.proc.pid  # type: ignore[union-attr]
    serials = {first.serial_number}
    deadline = time.monotonic() + 20
    while len(serials) < 3 and time.monotonic() < deadline:  # two renewals, each over a new handshake
        serials.add(served(srv.tls_port, ca).serial_number)  # type: ignore[attr-defined]
        time.sleep(0.3)
    assert len(serials) >= 3, serials
    assert srv.proc.poll() is None and srv.proc.pid == pid  # type: ignore[union-attr]  # no restart


@pytest.mark.parametrize("srv", [30], indirect=True)
def test_rotate_ca_keeps_clients_trusting_then_drops_the_old_ca(srv: KeylessServer, tmp_path: Path) -> None:
    tls = srv.data_dir / "tls"
    port = srv.tls_port  # type: ignore[attr-defined]
    old_only = tmp_path / "old-ca.pem"
    old_only.write_bytes((tls / "ca.pem").read_bytes())
    old_ca = x509.load_pem_x509_certificate(old_only.read_bytes())

    out = srv.keyless("tls", "rotate-ca")
    assert out.returncode == 0, out.stderr
    both = x509.load_pem_x509_certificates((tls / "ca.pem").read_bytes())
    assert len(both) == 2 and both[0] == old_ca
    new_ca = both[1]
    assert (tls / "ca.pem").read_bytes() in (tls / "bundle.pem").read_bytes()
    assert stat.S_IMODE((tls / "ca-next-key.pem").stat().st_mode) == 0o600
    again = srv.keyless("tls", "rotate-ca")
    assert again.returncode == 1 and "already under way" in again.stderr
    # The overlap: a client that only knows the old CA and one that took the new ca.pem both connect.
    assert served(port, old_only).issuer == old_ca.subject
    assert served(port, tls / "ca.pem").issuer == old_ca.subject
    overlap = tmp_path / "overlap.pem"
    overlap.write_bytes((tls / "ca.pem").read_bytes())

    out = srv.keyless("tls", "rotate-ca", "--finish")
    assert out.returncode == 0, out.stderr
    assert x509.load_pem_x509_certificates((tls / "ca.pem").read_bytes()) == [new_ca]
    assert not (tls / "ca-next-key.pem").exists() and not (tls / "ca-next.pem").exists()
    assert old_only.read_bytes() not in (tls / "bundle.pem").read_bytes()
    assert stat.S_IMODE((tls / "ca-key.pem").stat().st_mode) == 0o600
    deadline = time.monotonic() + 10  # the running server picks the new CA up at its next check
    while served(port, overlap).issuer != new_ca.subject and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served(port, overlap).issuer == new_ca.subject
    assert served(port, tls / "ca.pem").issuer == new_ca.subject
    with pytest.raises(ssl.SSLCertVerificationError):
        served(port, old_only)  # the old CA is no longer trusted by anything Keyless serves
    assert srv.keyless("tls", "rotate-ca", "--finish").returncode == 1


def test_alpn_gives_http_clients_http_1_1_and_grpc_clients_grpc(srv: KeylessServer) -> None:
    """curl and browsers offer h2 and http/1.1: they get HTTP/1.1 (the REST API); gRPC C-core
    offers grpc-exp and h2: it gets the gRPC server."""
    port = srv.tls_port  # type: ignore[attr-defined]
    context = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "ca.pem"))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}") and (chunk := tls.recv(4096)):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'\r\n\r\n{"status":"SERVING"}')
    context = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "ca.pem"))
    context.set_alpn_protocols(["grpc-exp", "h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "grpc-exp"
        tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # preface, SETTINGS
        frame = tls.recv(9)
        assert frame[3] == 0x04  # the gRPC server's HTTP/2 SETTINGS frame
