"""Keyless's local certificate authority and the server certificate it issues (X.509 as profiled
by RFC 5280), so unmodified clients can reach Keyless under Google's own hostnames over HTTPS.

The CA is made once and kept in `DATA_DIR/tls/` (directory 0700, keys 0600; the key never
leaves it); clients trust it through `ca.pem` (or `bundle.pem`, the system's roots plus ours, for
variables such as REQUESTS_CA_BUNDLE that replace the roots rather than add to them). The server
certificate is short-lived (7 days) and reissued when a third of its life is left, when the names
it must cover change, or when another CA signs. A CA rotation stages the new CA in the trust
files first (both trusted, the old one still signing) and switches the signer when finished.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from keyless.errors import FailedPrecondition

CA_LIFETIME = dt.timedelta(days=3650)
SERVER_LIFETIME = dt.timedelta(days=7)  # short-lived: reissued while the server runs (keyless.tls.frontend)
RENEW_AT = 1 / 3  # reissue when this share of the certificate's life is left


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CAs clients trust: ours alone (two of them while a rotation is under way)
    bundle: Path  # the system's roots plus ca.pem
    cert: Path  # the server's certificate chain
    key: Path  # the server's private key


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)  # whatever the umask
    os.replace(tmp, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One writer at a time in DATA_DIR/tls: every worker process renews, and the CLI rotates."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Keyless"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"Keyless local CA {os.urandom(4).hex()}")])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    return cert.public_key() == key.public_key()


def _load_or_create_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The signing CA: the certificate of ca.pem whose key is ca-key.pem (made on first use)."""
    cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        os.chmod(key_path, 0o600)
        key = _load_key(key_path)
        for cert in x509.load_pem_x509_certificates(cert_path.read_bytes()):
            if _same_key(cert, key):
                return cert, key
        raise ValueError(f"{cert_path} holds no certificate of the key {key_path}")
    cert, key = _new_ca()
    # The key first: a certificate without its key would make every later start fail.
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _pem(cert))
    return cert, key


def _write_bundle(files: TlsFiles) -> None:
    """bundle.pem = the system's roots + ca.pem, rewritten whenever ca.pem changes."""
    import certifi

    wanted = Path(certifi.where()).read_bytes() + b"\n" + files.ca.read_bytes()
    if not files.bundle.exists() or files.bundle.read_bytes() != wanted:
        _write(files.bundle, wanted)


def _alt_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _current(cert: x509.Certificate, ca: x509.Certificate, names: list[str]) -> bool:
    """Whether `cert` is still good: issued by the signing CA, covering `names`, with more than
    RENEW_AT of its life left."""
    try:
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    return set(names) <= have and cert.not_valid_after_utc - _now() > life * RENEW_AT


def _files(directory: Path) -> TlsFiles:
    return TlsFiles(ca=directory / "ca.pem", bundle=directory / "bundle.pem", cert=directory / "server.pem",
                    key=directory / "server-key.pem")


def ensure(data_dir: Path, names: list[str], lifetime: dt.timedelta = SERVER_LIFETIME) -> TlsFiles:
    """The CA (made on first use) and a server certificate covering `names` (DNS names, `*.`
    wildcards, IP addresses), issued anew when it does not cover them all, was issued by another
    CA (after a rotation) or has less than a third of its life left."""
    directory = data_dir / "tls"
    with _locked(directory):
        ca_cert, ca_key = _load_or_create_ca(directory)
        files = _files(directory)
        _write_bundle(files)
        if files.cert.exists() and files.key.exists():
            os.chmod(files.key, 0o600)
            current = x509.load_pem_x509_certificates(files.cert.read_bytes())[0]
            if _current(current, ca_cert, names):
                return files
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - min(dt.timedelta(minutes=5), lifetime)).not_valid_after(now + lifetime)
                .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        # Written under the lock, which load_server_chain also takes: never a key beside another's cert.
        _write(files.key, _key_pem(key), 0o600)
        _write(files.cert, _pem(cert) + _pem(ca_cert))
        return files


def load_server_chain(context: ssl.SSLContext, files: TlsFiles) -> x509.Certificate:
    """Load the server's certificate and key into `context` (later handshakes use them)."""
    with _locked(files.cert.parent):
        context.load_cert_chain(files.cert, files.key)
        return x509.load_pem_x509_certificates(files.cert.read_bytes())[0]


# -- CA rotation --------------------------------------------------------------------------------


def rotate_ca(data_dir: Path) -> x509.Certificate:
    """Stage a new CA: clients are told to trust it (ca.pem and bundle.pem carry both) while the
    current one still signs, so every client keeps working. Returns the new CA's certificate."""
    directory = data_dir / "tls"
    with _locked(directory):
        current, _ = _load_or_create_ca(directory)
        if (directory / "ca-next-key.pem").exists():
            raise FailedPrecondition("A CA rotation is already under way: finish it with `keyless tls rotate-ca "
                                     "--finish` once clients trust the new CA.")
        cert, key = _new_ca()
        _write(directory / "ca-next-key.pem", _key_pem(key), 0o600)
        _write(directory / "ca-next.pem", _pem(cert))
        _write(directory / "ca.pem", _pem(current) + _pem(cert))
        _write_bundle(_files(directory))
        return cert


def finish_ca_rotation(data_dir: Path) -> x509.Certificate:
    """The staged CA becomes the signer and the only CA trusted; the old one's key is deleted.
    Running servers reissue their certificate from it at their next check."""
    directory = data_dir / "tls"
    with _locked(directory):
        next_key, next_cert = directory / "ca-next-key.pem", directory / "ca-next.pem"
        if not next_key.exists() or not next_cert.exists():
            raise FailedPrecondition("No CA rotation is under way: start one with `keyless tls rotate-ca`.")
        cert = x509.load_pem_x509_certificate(next_cert.read_bytes())
        os.replace(next_key, directory / "ca-key.pem")
        _write(directory / "ca.pem", _pem(cert))
        next_cert.unlink()
        _write_bundle(_files(directory))
        return cert


def rotation_pending(data_dir: Path) -> bool:
    return (data_dir / "tls" / "ca-next-key.pem").exists()
