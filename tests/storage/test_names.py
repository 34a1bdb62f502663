"""Bucket and object naming rules, as Cloud Storage documents them."""

from __future__ import annotations

import pytest

from keyless.errors import InvalidArgument
from keyless.storage.names import validate_bucket_name, validate_object_name

pytestmark = pytest.mark.store_independent  # runs on the SQLite leg only (tests/conftest.py)


@pytest.mark.parametrize("name", ["my-bucket", "a_b", "abc", "my.data.bucket", "x" * 63])
def test_valid_bucket_names(name: str) -> None:
    assert validate_bucket_name(name) == name


@pytest.mark.parametrize("name", ["ab", "x" * 64, "My-Bucket", "-abc", "abc-", "goog-data", "my-google-bucket",
                                  "192.168.5.4", "a..b", "a/b", "", None, 12])
def test_invalid_bucket_names(name: object) -> None:
    with pytest.raises(InvalidArgument, match="Invalid bucket name"):
        validate_bucket_name(name)


@pytest.mark.parametrize("name", ["data.txt", "a/../b", "dir/", "ünï/cödé", "x" * 1024, "é" * 512])
def test_valid_object_names(name: str) -> None:
    # "a/../b" is a legal, opaque name on Google; it can never reach the filesystem here
    assert validate_object_name(name) == name


@pytest.mark.parametrize("name", [".", "..", "a\x00b", "a\nb", "a\rb", "x" * 1025, "é" * 513, "",
                                  ".well-known/acme-challenge/x", "\udc80"])
def test_invalid_object_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_object_name(name)


def test_long_name_message_counts_utf8_bytes() -> None:
    with pytest.raises(InvalidArgument, match="maximum object length is 1024 characters, but got a name with 1026"):
        validate_object_name("é" * 513)
