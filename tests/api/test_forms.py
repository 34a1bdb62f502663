"""The one form parser (keyless/api/forms.py) reads what urllib's parse_qsl reads, and the token
endpoints answer a body it refuses with OAuth's invalid_request, never a 500."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyless.api import forms
from keyless.api.forms import FormError, parse_form
from tests.conftest import KeylessServer

# Characters that matter to form decoding, plus arbitrary text.
_PIECES = st.sampled_from(["&", "=", "+", "%", "%2", "%2F", "%3a", "%zz", "%E2%82%AC", "%ff", "a", " ", "é", ";"])
FORMS = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=24).map("".join)


def reference(text: str, max_fields: int) -> dict[str, str] | type[ValueError]:
    try:
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields))
    except ValueError:
        return ValueError


@pytest.mark.store_independent  # pure functions: the SQLite leg only (tests/conftest.py)
@settings(max_examples=3000, deadline=None)
@given(FORMS, st.integers(min_value=1, max_value=8))
def test_same_fields_as_parse_qsl(text: str, max_fields: int) -> None:
    forms._decoded.clear()
    for _ in range(2):  # the second read comes from the remembered values
        try:
            got: dict[str, str] | type[ValueError] = parse_form(text.encode(), max_fields=max_fields)
        except FormError:
            got = ValueError
        assert got == reference(text, max_fields)


@pytest.mark.store_independent
def test_an_sts_form_and_its_limits() -> None:
    fields = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
              "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
              "scope": "https://www.googleapis.com/auth/cloud-platform openid", "subject_token": "a.b.c"}
    assert parse_form(urlencode(fields).encode(), max_fields=32) == fields
    assert parse_form(b"a=1&a=2", max_fields=4) == {"a": "2"}  # the last value wins, as dict(parse_qsl) has it
    with pytest.raises(FormError):
        parse_form(b"\xff=1", max_fields=4)
    with pytest.raises(FormError):
        parse_form(b"&".join([b"a=1"] * 5), max_fields=4)


@pytest.mark.store_independent
def test_the_remembered_values_are_bounded() -> None:
    forms._decoded.clear()
    for i in range(forms._REMEMBERED + 10):
        assert parse_form(f"k=v%2F{i}".encode(), max_fields=1) == {"k": f"v/{i}"}
    assert len(forms._decoded) <= forms._REMEMBERED
    long = "%41" * (forms._SHORT + 1)
    assert parse_form(f"t={long}".encode(), max_fields=1) == {"t": "A" * (forms._SHORT + 1)}
    assert long not in forms._decoded


@pytest.mark.parametrize("path", ["/sts/v1/token", "/oauth2/token", "/oauth2/v3/tokeninfo"])
def test_token_endpoints_refuse_bodies_that_are_not_forms(module_server: KeylessServer, path: str) -> None:
    for body in (b"\xff\xfe=1", b"&".join([b"a=1"] * 40)):
        r = httpx.post(module_server.base_url + path, content=body,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400, (path, body[:20], r.status_code, r.text)
        assert r.json()["error"] == "invalid_request", r.text
