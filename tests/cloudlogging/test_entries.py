"""Cloud Logging's names and entry checks as pure functions (issue #20): log names, proto field
names, entry defaults, and the sink file names Google writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from keyless.cloudlogging import names
from keyless.cloudlogging.entries import check_entry
from keyless.cloudlogging.export import file_name
from keyless.errors import InvalidArgument

pytestmark = pytest.mark.store_independent
NOW = datetime(2026, 12, 7, 14, 5, 6, tzinfo=UTC)


@pytest.mark.parametrize("given, project, log_id", [
    ("projects/p-1/logs/syslog", "p-1", "syslog"),
    ("projects/p-1/logs/cloudaudit.googleapis.com%2Factivity", "p-1", "cloudaudit.googleapis.com/activity"),
    ("projects/123/logs/a/b", "123", "a/b"),
    ("/projects/p-1/logs/x", "p-1", "x"),
])
def test_log_names(given: str, project: str, log_id: str) -> None:
    name = names.parse_log_name(given)
    assert (name.project, name.log_id) == (project, log_id)
    assert name.canonical("p-1").endswith("/logs/" + log_id.replace("/", "%2F"))


@pytest.mark.parametrize("given", ["", "projects/p/logs/", "projects/p/logs/a b", "projects/p/logs/%00",
                                   "folders/1/logs/x", "projects/p/logs/" + "x" * 512, None, 5])
def test_bad_log_names(given: object) -> None:
    with pytest.raises(InvalidArgument):
        names.parse_log_name(given)


def test_proto_field_names_become_camel_but_data_keys_do_not() -> None:
    assert names.camel({"dry_run": True, "log_name": "x", "jsonPayload": {}, "a_B": 1}) == {
        "dryRun": True, "logName": "x", "jsonPayload": {}, "a_B": 1}
    entry = check_entry({"text_payload": "t", "labels": {"snake_key": "v"}}, 0, log_name="projects/p/logs/l",
                        resource={"type": "global"}, labels={}, now=NOW).entry
    assert entry["textPayload"] == "t" and entry["labels"] == {"snake_key": "v"}


def test_entry_defaults_and_normalisation() -> None:
    w = check_entry({"severity": 400, "timestamp": "2026-12-07T15:00:00+01:00", "labels": {"a": "entry"}}, 0,
                    log_name="projects/p/logs/l", resource={"type": "global"}, labels={"a": "req", "b": "req"},
                    now=NOW)
    assert w.entry["severity"] == "WARNING"
    assert w.entry["timestamp"] == "2026-12-07T14:00:00.000000Z"
    assert w.entry["receiveTimestamp"] == "2026-12-07T14:05:06.000000Z"
    assert w.entry["labels"] == {"a": "entry", "b": "req"}
    for bad in ({"severity": "LOUD"}, {"severity": 450}, {"timestamp": "yesterday"}, {"timestamp": "2026-12-07"},
                {"textPayload": "a", "jsonPayload": {}}, {"protoPayload": {"x": 1}}, {"textPayload": 5},
                {"resource": {"type": ""}}, {"unknownField": 1}, {"traceSampled": "yes"}):
        with pytest.raises(InvalidArgument):
            check_entry(bad, 0, log_name="projects/p/logs/l", resource={"type": "global"}, labels={}, now=NOW)
    with pytest.raises(InvalidArgument, match="monitored resource is required"):
        check_entry({"textPayload": "a"}, 0, log_name="projects/p/logs/l", resource=None, labels={}, now=NOW)


def test_sink_file_names_are_googles() -> None:
    entry = {"logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity"}
    assert file_name(entry, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == \
        "cloudaudit.googleapis.com/activity/2026/01/02/03:00:00_03:59:59_S"


def test_destinations_and_writer_identities() -> None:
    assert names.parse_destination("storage.googleapis.com/my-bucket").bucket == "my-bucket"
    assert names.parse_destination("pubsub.googleapis.com/projects/my-project/topics/logs-topic").topic == \
        "projects/my-project/topics/logs-topic"
    for bad in ("storage.googleapis.com/", "storage.googleapis.com/a/b", "bigquery.googleapis.com/projects/p/datasets/d",
                "logging.googleapis.com/projects/p/locations/global/buckets/b", "pubsub.googleapis.com/projects/p/topics/", "pubsub.googleapis.com/projects/my-project/topics/t1",
                "", None):
        with pytest.raises(InvalidArgument):
            names.parse_destination(bad)
    assert names.writer_identity("42", True) == "serviceAccount:service-42@gcp-sa-logging.iam.gserviceaccount.com"
    assert names.writer_identity("42", False) == names.LEGACY_WRITER
