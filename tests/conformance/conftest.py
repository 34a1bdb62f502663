"""The conformance suite's server: one `keyless serve` per family module, driven as the owner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import harness
from tests.conftest import KeylessServer


@pytest.fixture(scope="module")
def client(module_server: KeylessServer) -> Callable[[str], Any]:
    """`client("iam.v1")`: Google's discovery-based client for that document, as the owner."""
    made: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in made:
            made[name] = harness.build(module_server.base_url, module_server.owner_token, name)
        return made[name]

    return get
