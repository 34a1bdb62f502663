"""Several `keyless serve` processes on one PostgreSQL database (issue #14), started the way
`keyless cluster` starts them (keyless/cli/cluster.py): own data dirs, shared database and
object-bytes directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from keyless.cli.cluster import Cluster
from tests.conftest import fresh_database_url

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) these tests on the SQLite leg: servers on several machines share a
    database over the network, which SQLite (one file, one machine) is not, and what they test
    (the LISTEN/NOTIFY change feed, PostgreSQL restarts) is PostgreSQL's by nature. The
    PostgreSQL leg of CI runs them."""
    if os.environ.get("KEYLESS_TEST_DATABASE") == "postgres":
        return
    keep, drop = [], []
    for item in items:
        (drop if HERE in Path(str(item.fspath)).parents else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two servers (A and B) on one fresh PostgreSQL database, shared by the modules here (each
    makes its own pools, accounts and projects; the crash test restarts A, as the others may)."""
    url = fresh_database_url()
    assert url is not None
    c = Cluster(url, tmp_path_factory.mktemp("cluster"), servers=2, extra=("--allow-insecure-issuers",))
    c.start()
    yield c
    c.stop()
