"""Keyless's own RSA keys are parsed once per process, and still sign what their public key verifies."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from keyless.tokens.keys import own_rsa_key

pytestmark = pytest.mark.store_independent  # no store: the SQLite leg only (tests/conftest.py)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_a_stored_key_signs_and_is_parsed_once() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _pem(private)
    key = own_rsa_key(pem)
    signature = key.sign(b"payload", padding.PKCS1v15(), hashes.SHA256())
    private.public_key().verify(signature, b"payload", padding.PKCS1v15(), hashes.SHA256())
    assert own_rsa_key(pem) is key  # the same object: no second parse


def test_only_rsa_keys() -> None:
    with pytest.raises(ValueError):
        own_rsa_key(_pem(ec.generate_private_key(ec.SECP256R1())))
