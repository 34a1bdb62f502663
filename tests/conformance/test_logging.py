"""Cloud Logging (logging.googleapis.com v2) through Google's discovery-based client: every served
method called in a realistic order, each answer checked against its response schema (issue #19;
entries.write, logs.delete, sinks and exclusions: issue #20)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import harness
from tests.conformance.harness import Flow, Step

DOC = "logging.v2"
PROJECT = "conformance-logging"
P = f"projects/{PROJECT}"
LOG = f"{P}/logs/conformance%2Fapp"
SINK = f"{P}/sinks/conformance-sink"
EXCLUSION = f"{P}/exclusions/conformance-noise"


def fails(text: str) -> Callable[[dict[str, Any], Any], None]:
    def check(ctx: dict[str, Any], answer: Any) -> None:
        pytest.fail(f"{text}: {answer}")
    return check


FLOW = Flow(DOC, [
    Step("logging.entries.write", lambda c: {"body": {
        "logName": LOG, "resource": {"type": "global", "labels": {"project_id": PROJECT}},
        "labels": {"suite": "conformance"}, "partialSuccess": True,
        "entries": [{"jsonPayload": {"event": "deploy", "ok": True}, "severity": "NOTICE", "insertId": "c-1"},
                    {"textPayload": "plain text", "severity": "INFO", "labels": {"line": "2"}}]}}),
    Step("logging.entries.list", lambda c: {"body": {
        "resourceNames": [P], "orderBy": "timestamp desc", "pageSize": 5,
        "filter": f'logName="{LOG}" AND labels.suite="conformance"'}},
         present=["entries"],
         check=lambda c, a: {e.get("severity") for e in a["entries"]} == {"NOTICE", "INFO"} or fails("entries")(c, a)),
    Step("logging.projects.logs.list", lambda c: {"parent": P},
         check=lambda c, a: LOG in a["logNames"] or fails("logs")(c, a)),
    Step("logging.projects.sinks.create", lambda c: {"parent": P, "uniqueWriterIdentity": True, "body": {
        "name": "conformance-sink", "destination": "storage.googleapis.com/conformance-logging-sink",
        "filter": "severity>=WARNING", "description": "conformance",
        "exclusions": [{"name": "quiet", "filter": 'labels.quiet="true"'}],
        "writerIdentity": "serviceAccount:ignored@example.com", "createTime": "2000-01-01T00:00:00Z"}},
         save="sink", present=["name", "destination", "filter", "writerIdentity", "createTime", "updateTime"],
         check=lambda c, a: a["writerIdentity"].endswith("@gcp-sa-logging.iam.gserviceaccount.com")
         or fails("writerIdentity")(c, a)),
    Step("logging.projects.sinks.get", lambda c: {"sinkName": SINK},
         present=["name", "destination", "writerIdentity", "exclusions"]),
    Step("logging.projects.sinks.list", lambda c: {"parent": P, "pageSize": 10},
         check=lambda c, a: [s["name"] for s in a["sinks"]] == ["conformance-sink"] or fails("sinks")(c, a)),
    Step("logging.projects.sinks.patch", lambda c: {"sinkName": SINK, "updateMask": "filter", "body": {
        "filter": "severity>=ERROR"}}, check=lambda c, a: a["filter"] == "severity>=ERROR" or fails("patch")(c, a)),
    Step("logging.projects.sinks.update", lambda c: {"sinkName": SINK, "uniqueWriterIdentity": True,
                                                     "updateMask": "destination,filter,disabled", "body": {
        "name": "conformance-sink", "destination": "pubsub.googleapis.com/projects/conformance-logging/topics/logs",
        "filter": "severity>=ERROR", "disabled": True}},
         check=lambda c, a: (a["disabled"] and a["destination"].startswith("pubsub.")) or fails("update")(c, a)),
    Step("logging.projects.sinks.delete", lambda c: {"sinkName": SINK}),
    Step("logging.projects.sinks.get", lambda c: {"sinkName": SINK}, error=404),
    Step("logging.projects.exclusions.create", lambda c: {"parent": P, "body": {
        "name": "conformance-noise", "filter": 'jsonPayload.noise="yes"', "description": "drop noise"}},
         present=["name", "filter", "createTime", "updateTime"]),
    Step("logging.projects.exclusions.get", lambda c: {"name": EXCLUSION}, present=["name", "filter"]),
    Step("logging.projects.exclusions.list", lambda c: {"parent": P},
         check=lambda c, a: [e["name"] for e in a["exclusions"]] == [EXCLUSION] or fails("exclusions")(c, a)),
    Step("logging.projects.exclusions.patch", lambda c: {"name": EXCLUSION, "updateMask": "disabled", "body": {
        "disabled": True}}, check=lambda c, a: a["disabled"] is True or fails("patch")(c, a)),
    Step("logging.projects.exclusions.delete", lambda c: {"name": EXCLUSION}),
    Step("logging.projects.logs.delete", lambda c: {"logName": LOG}),
    Step("logging.projects.logs.delete", lambda c: {"logName": LOG}, error=404),
])


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any]) -> dict[str, Any]:
    client("cloudresourcemanager.v1").projects().create(body={"projectId": PROJECT}).execute()
    return harness.run(client(DOC), FLOW, {})


def test_every_served_method_has_a_step() -> None:
    assert not FLOW.unflowed(harness.served_methods(DOC))


def test_flow(flowed: dict[str, Any]) -> None:
    assert flowed["called"] == [s.method for s in FLOW.steps]


@pytest.mark.parametrize("method_id", harness.body_methods(FLOW))
def test_every_defined_request_field_is_known(client: Callable[[str], Any], flowed: dict[str, Any],
                                              method_id: str) -> None:
    harness.probe_fields(client(DOC), FLOW, method_id, flowed)
