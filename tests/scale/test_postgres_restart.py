"""A PostgreSQL restart while two servers run (issue #14): while it is down they answer 503
UNAVAILABLE in Google's error shape (and STS its OAuth shape), never from caches that may miss a
change; once it is back they serve again without a restart, and their change feeds reconnect
(a revocation made on A reaches B)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyless.cli.cluster import Cluster
from tests.scale.postgres import ThrowawayPostgres, binaries
from tests.scale.world import call, eventually, federation, ok


@pytest.fixture(scope="module")
def pg() -> Iterator[ThrowawayPostgres]:
    if binaries() is None:
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    server = ThrowawayPostgres()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def own_cluster(pg: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(pg.url, tmp_path_factory.mktemp("cluster"), servers=2, extra=("--allow-insecure-issuers",))
    c.start()
    yield c
    c.stop()


def test_servers_answer_503_while_postgres_is_down_and_recover(pg: ThrowawayPostgres, own_cluster: Cluster) -> None:
    a, b = own_cluster.servers
    fed = federation(own_cluster)
    subject = fed.github_token(own_cluster)
    listing = f"/iam/v1/projects/{fed.project}/serviceAccounts"
    for srv in (a, b):
        assert fed.exchange(srv, subject).status_code == 200
        ok(call(srv, "GET", listing))

    pg.stop()
    try:
        for srv in (a, b):
            eventually(lambda srv=srv: call(srv, "GET", listing).status_code == 503, timeout=10)
            error = call(srv, "GET", listing).json()["error"]
            assert error["code"] == 503 and error["status"] == "UNAVAILABLE", error
            eventually(lambda srv=srv: fed.exchange(srv, subject).status_code == 503, timeout=10)
            assert fed.exchange(srv, subject).json()["error"] == "temporarily_unavailable"
    finally:
        pg.start()

    for srv in (a, b):
        eventually(lambda srv=srv: call(srv, "GET", listing).status_code == 200, timeout=15)
        eventually(lambda srv=srv: fed.exchange(srv, subject).status_code == 200, timeout=15)
    # the feeds are back: a change on A is enforced on B
    ok(call(a, "PATCH", fed.provider_path, params={"updateMask": "disabled"}, body={"disabled": True}))
    eventually(lambda: fed.exchange(b, subject).status_code == 400, timeout=2)
