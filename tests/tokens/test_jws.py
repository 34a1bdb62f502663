"""Strict compact-JWS parsing, shared by every JWT Keyless verifies (RFC 7515 §7.1, RFC 7519 §4)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from keyless.errors import Unauthenticated
from keyless.state import ServerState, user_principal
from keyless.tokens import jws


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: str, claims: str, signature: bytes = b"sig") -> str:
    return f"{b64(header.encode())}.{b64(claims.encode())}.{b64(signature)}"


def test_a_well_formed_token_parses_and_the_signing_input_is_what_was_signed() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    head, body = b64(b'{"alg":"RS256","kid":"k1"}'), b64(json.dumps({"iss": "me", "exp": 2 ** 31}).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    parsed = jws.parse(f"{head}.{body}.{b64(signature)}", 4096)
    assert parsed.header == {"alg": "RS256", "kid": "k1"}
    assert parsed.claims["iss"] == "me"
    key.public_key().verify(parsed.signature, parsed.signing_input, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("token, why", [
    (compact('{"alg":"RS256"}', '{"a":1}') + "=", "padding"),
    (compact('{"alg":"RS256"}', '{"a":1}').replace(".", "+.", 1), "standard alphabet"),
    (compact('{"alg":"RS256"}', '{"a":1}').replace(".", "/.", 1), "standard alphabet"),
    (compact('{"alg":"RS256"}', '{"a":1,"a":2}'), "duplicate member"),
    (compact('{"alg":"RS256"}', '[1, 2]'), "not an object"),
    (compact('{"alg":"RS256"}', '{"a":' + "[" * 40 + "]" * 40 + "}"), "too deep"),
    (compact('{"alg":"RS256"}', '{"a":' + "[" * 100_000 + "]" * 100_000 + "}"), "recursion"),
    (compact('{"alg":"RS256"}', '"\\udc00"'), "not an object"),
    ("a.b", "two parts"),
    ("é.b.c", "not ASCII"),
    (compact('{"alg":"RS256"}', '{"a":"' + "x" * 5000 + '"}'), "too large"),
])
def test_malformed_tokens_are_refused(token: str, why: str) -> None:
    with pytest.raises(jws.MalformedJws):
        jws.parse(token, 4096)


def test_access_token_tags_must_be_canonical_base64url(state: ServerState) -> None:
    """A lax decoder drops characters outside the alphabet: the same token verified in many spellings."""
    token = state.tokens.mint(user_principal("alice@example.com"),
                              ["https://www.googleapis.com/auth/cloud-platform"], 3600).token
    assert state.tokens.verify(token).principal.member == "user:alice@example.com"
    for variant in (token + "=", token + "!!!!", token[:-2] + "!!!!" + token[-2:]):  # all verified before
        with pytest.raises(Unauthenticated):
            state.tokens.verify(variant)
