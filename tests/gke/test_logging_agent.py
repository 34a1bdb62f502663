"""GKE's node logging agent's parts that need no server (keyless/gke/logging_agent.py, issue #20):
Google's structured-logging fields lifted from a JSON line, the cluster's logging config, and the
bounds on what a pod's output may hold in the runner (line length, buffered lines) while its pipes
are always drained. The agent writing to the store, as the node's account, is in
tests/e2e/test_gke_pod_pubsub_logging.py."""

from __future__ import annotations

import json
import os
import threading

import pytest

from keyless.gke import logging_agent
from keyless.gke.logging_agent import MAX_LINE_BYTES, ContainerOutput, structured, workload_logging
from keyless.store.models import GkeCluster

pytestmark = pytest.mark.store_independent


def test_structured_line_lifts_googles_special_fields_and_keeps_the_rest_as_json_payload() -> None:
    line = json.dumps({
        "message": "order 42 shipped", "severity": "warn", "order": 42,
        "logging.googleapis.com/labels": {"team": "orders"}, "logging.googleapis.com/trace": "projects/p/traces/abc",
        "logging.googleapis.com/spanId": "00f067aa0ba902b7", "logging.googleapis.com/trace_sampled": True,
        "logging.googleapis.com/sourceLocation": {"file": "app.py", "line": "7", "function": "ship"},
        "logging.googleapis.com/insertId": "order-42", "logging.googleapis.com/operation": {"id": "op", "first": True},
        "httpRequest": {"requestMethod": "GET", "status": 200}, "time": "2026-12-07T10:00:00.5Z"})
    assert structured(line) == {
        "severity": "WARNING", "labels": {"team": "orders"}, "trace": "projects/p/traces/abc",
        "spanId": "00f067aa0ba902b7", "traceSampled": True,
        "sourceLocation": {"file": "app.py", "line": "7", "function": "ship"}, "insertId": "order-42",
        "operation": {"id": "op", "first": True}, "httpRequest": {"requestMethod": "GET", "status": 200},
        "timestamp": "2026-12-07T10:00:00.5Z", "jsonPayload": {"message": "order 42 shipped", "order": 42}}
    # google-cloud-logging's StructuredLogHandler writes empty trace and httpRequest: not lifted
    assert structured('{"message": "m", "logging.googleapis.com/trace": "", "httpRequest": {}}') == {
        "jsonPayload": {"message": "m"}}
    assert structured('{"timestampSeconds": 1765101600, "timestampNanos": 500000000}')["timestamp"] == \
        "2025-12-07T10:00:00.500000Z"
    # anything but one JSON object is text
    for text in ("plain words", "[1, 2]", '"a string"', "{not json", "42"):
        assert structured(text) == {"textPayload": text}


def test_workload_logs_follow_the_clusters_logging_service_and_config() -> None:
    def cluster(**body: object) -> GkeCluster:
        return GkeCluster(body=body)

    assert workload_logging(cluster())  # GKE's default: system and workload logs
    assert workload_logging(cluster(loggingService="logging.googleapis.com/kubernetes"))
    assert not workload_logging(cluster(loggingService="none"))
    assert not workload_logging(cluster(loggingConfig={"componentConfig": {"enableComponents": ["SYSTEM_COMPONENTS"]}}))
    assert workload_logging(cluster(loggingConfig={"componentConfig": {
        "enableComponents": ["SYSTEM_COMPONENTS", "WORKLOADS"]}}))


def _feed(output: ContainerOutput, data: bytes) -> int:
    """Write `data` into a pipe the output follows (with an echo pipe drained beside it); how many
    bytes the echo passed on."""
    read_fd, write_fd = os.pipe()
    echo_read, echo_write = os.pipe()
    echoed = [0]

    def drain() -> None:
        while chunk := os.read(echo_read, 1 << 16):
            echoed[0] += len(chunk)

    drainer = threading.Thread(target=drain)
    drainer.start()
    output.follow("stdout", read_fd, echo_write)
    view = memoryview(data)
    while view:
        view = view[os.write(write_fd, view):]
    os.close(write_fd)
    output.join(30)
    os.close(echo_write)
    drainer.join(30)
    os.close(echo_read)
    return echoed[0]


def test_a_line_longer_than_an_entry_is_skipped_to_its_end_and_the_next_lines_kept() -> None:
    output = ContainerOutput()
    data = b"before\n" + b"A" * (4 * MAX_LINE_BYTES) + b"\nafter\n" + b"B" * MAX_LINE_BYTES + b"\nlast"
    assert _feed(output, data) == len(data)  # the runner's own stdout gets every byte
    assert [line.text for line in output.take(10, 1 << 30)] == ["before", "after", "B" * MAX_LINE_BYTES, "last"]
    assert output.too_long == 1 and output.dropped == 0


def test_a_flooding_pod_fills_its_buffer_only_and_is_never_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging_agent, "BUFFER_LINES", 1_000)
    output = ContainerOutput()
    lines = 50_000
    data = b"".join(b"flood %06d\n" % i for i in range(lines))
    assert _feed(output, data) == len(data)  # drained to the end while nothing shipped
    assert len(output.lines) == 1_000 and output.dropped == lines - 1_000
    assert output.lines[0].text == "flood 000000"
    # the agent takes at most its round's share
    assert len(output.take(300, 1 << 30)) == 300 and len(output.take(10_000, 30)) == 2  # 12-byte lines: 2 fit in 30


def test_buffered_bytes_are_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging_agent, "BUFFER_BYTES", 1_000_000)
    output = ContainerOutput()
    _feed(output, (b"x" * 99_999 + b"\n") * 40)
    assert len(output.lines) == 10 and output.buffered == 999_990 and output.dropped == 30
