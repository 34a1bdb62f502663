"""Audit under several servers (issue #14): entries written by every server land in one log,
ordered by time, and any server reads all of them, with the real `gcloud logging read` too."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyless.cli.cluster import Cluster
from tests.conftest import GCLOUD, Gcloud
from tests.scale.world import call, ensure_project, ok

PROJECT, NUMBER = "audit-project", "616161616161"
CREATE = "google.iam.admin.v1.CreateServiceAccount"


def test_entries_from_both_servers_in_one_ordered_log(cluster: Cluster, tmp_path: Path) -> None:
    ensure_project(cluster, PROJECT, NUMBER)
    a, b = cluster.servers
    made = []
    for i in range(6):  # alternate servers, one after the other
        srv = cluster.servers[i % 2]
        account = f"audit-{i}-{'a' if srv is a else 'b'}"
        created = ok(call(srv, "POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account}))
        made.append(created["uniqueId"])  # Google names the account by its unique id in the entry

    for srv in (a, b):  # each server reads all of them, in the order they were made
        got = ok(call(srv, "POST", "/logging/v2/entries:list", body={
            "resourceNames": [f"projects/{PROJECT}"], "orderBy": "timestamp asc",
            "filter": f'protoPayload.methodName="{CREATE}"'}))
        names = [e["protoPayload"]["resourceName"].rsplit("/", 1)[-1] for e in got["entries"]]
        assert names == made, names
        stamps = [e["timestamp"] for e in got["entries"]]
        assert stamps == sorted(stamps)



def test_gcloud_logging_read_on_b_sees_a_entries(cluster: Cluster, tmp_path: Path) -> None:
    if GCLOUD is None:
        pytest.skip("gcloud is not installed: `gcloud logging read` needs the Google Cloud CLI on PATH")
    ensure_project(cluster, PROJECT, NUMBER)
    a, b = cluster.servers
    made = {ok(call(a, "POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": f"gcloud-{i}"}))[
        "uniqueId"] for i in range(2)}
    g = Gcloud(b, tmp_path / "gcloud", project=PROJECT)  # type: ignore[arg-type]
    read = g.json("logging", "read", f'protoPayload.methodName="{CREATE}"', f"--project={PROJECT}", "--limit=50")
    seen = {e["protoPayload"]["resourceName"].rsplit("/", 1)[-1] for e in read}
    assert made <= seen, seen  # B's gcloud sees the entries A wrote
