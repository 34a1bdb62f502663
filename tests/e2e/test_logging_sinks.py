"""Cloud Logging's write side and sinks end to end (issue #20): google-cloud-logging writes as a
service account (log_struct, log_text, CloudLoggingHandler with its sync transport), gcloud logging
write/read and sinks create/list/describe/delete, entries.write's limits and partialSuccess, sinks
routing written and audit entries into a Cloud Storage bucket as Google's sink files, only where
the writer identity holds roles/storage.objectCreator, exclusions, logs.delete, and each method's
IAM permission and audit entry."""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import token_for_service_account, token_for_user
from tests.conftest import Gcloud, KeylessServer, _need_gcloud

PROJECT, OTHER = "log-project", "log-other"
WRITER = f"log-writer@{PROJECT}.iam.gserviceaccount.com"
IDLE = f"log-idle@{PROJECT}.iam.gserviceaccount.com"
WRITE = "/logging/v2/entries:write"
LIST = "/logging/v2/entries:list"
SINKS = f"/logging/v2/projects/{PROJECT}/sinks"


def _ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def entries(srv: KeylessServer, filter_text: str, project: str = PROJECT) -> list[dict[str, Any]]:
    return _ok(srv.call("POST", LIST, body={"resourceNames": [f"projects/{project}"], "filter": filter_text,
                                            "pageSize": 1000})).get("entries", [])


def until(probe: Callable[[], Any], what: str, seconds: float = 15) -> Any:
    """The first truthy answer of `probe` (routing runs on the server's own thread)."""
    deadline = time.monotonic() + seconds
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def objects(srv: KeylessServer, bucket: str) -> dict[str, str]:
    """The bucket's objects and their text."""
    listed = _ok(srv.call("GET", f"/storage/v1/b/{bucket}/o")).get("items", [])
    out = {}
    for item in listed:
        r = srv.call("GET", f"/download/storage/v1/b/{bucket}/o/{httpx.URL(item['name']).raw_path.decode()}",
                     params={"alt": "media"})
        assert r.status_code == 200, r.text
        out[item["name"]] = r.text
    return out


def grant_bucket(srv: KeylessServer, bucket: str, role: str, member: str) -> httpx.Response:
    policy = _ok(srv.call("GET", f"/storage/v1/b/{bucket}/iam"))
    policy["bindings"].append({"role": role, "members": [member]})
    return srv.call("PUT", f"/storage/v1/b/{bucket}/iam", body=policy)


def write(srv: KeylessServer, body: dict[str, Any], token: str | None = None) -> httpx.Response:
    return srv.call("POST", WRITE, body={"resource": {"type": "global"}, **body}, token=token)


@pytest.fixture(scope="module")
def world(module_server: KeylessServer) -> KeylessServer:
    srv = module_server
    for project in (PROJECT, OTHER):
        _ok(srv.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": project}))
    for account in (WRITER, IDLE):
        _ok(srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": account.split("@")[0]}))
    policy = _ok(srv.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy", body={}))
    policy["bindings"] += [{"role": "roles/logging.logWriter", "members": [f"serviceAccount:{WRITER}"]},
                           {"role": "roles/logging.viewer", "members": ["user:viewer@example.com"]}]
    _ok(srv.call("POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:setIamPolicy", body={"policy": policy}))
    for bucket in ("log-archive", "log-closed"):
        _ok(srv.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": bucket}))
    return srv


@pytest.fixture(scope="module")
def number(world: KeylessServer) -> str:
    return str(_ok(world.call("GET", f"/cloudresourcemanager/v1/projects/{PROJECT}"))["projectNumber"])


@pytest.fixture(scope="module")
def agent(number: str) -> str:
    """The project's Logging service agent, its sinks' writer identity."""
    return f"service-{number}@gcp-sa-logging.iam.gserviceaccount.com"


# -- google-cloud-logging, as a service account ---------------------------------------------------


def test_client_library_writes_as_a_service_account(world: KeylessServer, tmp_path: Path) -> None:
    from google.cloud import logging as cloud_logging
    from google.cloud.logging import Resource
    from google.cloud.logging.handlers import CloudLoggingHandler
    from google.cloud.logging.handlers.transports import SyncTransport
    from google.oauth2 import service_account

    key = _ok(world.call("POST", f"/iam/v1/projects/-/serviceAccounts/{WRITER}/keys", body={}))
    key_file = tmp_path / "writer.json"
    key_file.write_bytes(base64.b64decode(key["privateKeyData"]))
    creds = service_account.Credentials.from_service_account_file(
        str(key_file), scopes=["https://www.googleapis.com/auth/logging.write"])
    client = cloud_logging.Client(project=PROJECT, credentials=creds, _use_grpc=False,
                                  client_options={"api_endpoint": f"{world.base_url}/logging"})
    here = Resource(type="generic_task", labels={"project_id": PROJECT, "location": "local", "namespace": "ci",
                                                  "job": "deploy", "task_id": "1"})
    logger = client.logger("deploy-log", resource=here)
    logger.log_struct({"event": "deploy", "version": 7, "ok": True}, severity="WARNING", labels={"env": "ci"})
    logger.log_text("deploy finished", severity="INFO")
    handler = CloudLoggingHandler(client, name="app-log", resource=here, transport=SyncTransport)
    py_logger = logging.getLogger("keyless-test-app")
    py_logger.addHandler(handler)
    py_logger.propagate = False
    try:
        py_logger.error("disk almost full: %d%%", 93)
    finally:
        py_logger.removeHandler(handler)

    found = entries(world, f'logName="projects/{PROJECT}/logs/deploy-log"')
    # the library's first write carries its instrumentation entry, as on Google
    diagnostic = "logging.googleapis.com/diagnostic"
    assert any(diagnostic in e.get("jsonPayload", {}) for e in found)
    found = [e for e in found if diagnostic not in e.get("jsonPayload", {})]
    assert [e.get("jsonPayload", e.get("textPayload")) for e in found] == [
        {"event": "deploy", "version": 7, "ok": True}, "deploy finished"]
    assert found[0]["severity"] == "WARNING" and found[0]["labels"] == {"env": "ci"}
    assert found[0]["resource"] == {"type": "generic_task", "labels": here.labels}
    assert found[1]["severity"] == "INFO"
    # the handler's record, found with the filter language as Google's
    handled = entries(world, f'logName="projects/{PROJECT}/logs/app-log" AND severity>=ERROR AND "almost full"')
    assert len(handled) == 1 and "disk almost full: 93%" in json.dumps(handled[0])
    # the writer's token carries the logging.write scope only: it cannot read
    from google.api_core import exceptions

    with pytest.raises(exceptions.Forbidden, match="insufficient authentication scopes"):
        list(client.list_entries(filter_="severity>=DEFAULT"))
    # read back by the library too, as the owner
    owner = cloud_logging.Client(project=PROJECT, credentials=_token_creds(world.owner_token), _use_grpc=False,
                                 client_options={"api_endpoint": f"{world.base_url}/logging"})
    read = list(owner.list_entries(filter_=f'logName="projects/{PROJECT}/logs/deploy-log" AND '
                                           '(labels.env="ci" OR "deploy finished")'))
    assert [type(e).__name__ for e in read] == ["StructEntry", "TextEntry"]
    # entries.write writes no audit entry (Google audits none)
    assert not entries(world, 'protoPayload.methodName:"WriteLogEntries"')

    # a service account without roles/logging.logWriter is refused, and nothing is written
    idle = cloud_logging.Client(project=PROJECT, credentials=_token_creds(token_for_service_account(world, IDLE)),
                                _use_grpc=False, client_options={"api_endpoint": f"{world.base_url}/logging"})
    with pytest.raises(exceptions.Forbidden, match="logging.logEntries.create"):
        idle.logger("deploy-log", resource=here).log_text("should not land")
    assert not entries(world, '"should not land"')


def _token_creds(token: str) -> Any:
    from google.oauth2.credentials import Credentials

    return Credentials(token)


# -- entries.write: names, limits, partialSuccess ------------------------------------------------


@pytest.mark.parametrize("name", [
    f"projects/{PROJECT}/logs/has space", f"projects/{PROJECT}/logs/" + "a" * 512, f"projects/{PROJECT}/logs/",
    "organizations/123/logs/x", f"projects/{PROJECT}/logs/caf%C3%A9", "logs/x"])
def test_bad_log_names_are_refused(world: KeylessServer, name: str) -> None:
    r = write(world, {"logName": name, "entries": [{"textPayload": "bad name"}]})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT", r.text


def test_log_ids_are_url_encoded_and_at_most_511_characters(world: KeylessServer, number: str) -> None:
    longest = "a/b-c_d." + "x" * 503
    _ok(write(world, {"logName": f"projects/{PROJECT}/logs/{longest.replace('/', '%2F')}",
                      "entries": [{"textPayload": "longest"}]}))
    _ok(write(world, {"logName": f"/projects/{number}/logs/svc/requests", "entries": [{"textPayload": "slashes"}]}))
    got = entries(world, '"longest" OR "slashes"')
    assert sorted(e["logName"] for e in got) == sorted([f"projects/{PROJECT}/logs/a%2Fb-c_d.{'x' * 503}",
                                                        f"projects/{PROJECT}/logs/svc%2Frequests"])
    names = _ok(world.call("GET", f"/logging/v2/projects/{PROJECT}/logs", params={"pageSize": 1000}))["logNames"]
    assert f"projects/{PROJECT}/logs/svc%2Frequests" in names


def test_size_limits(world: KeylessServer) -> None:
    log = f"projects/{PROJECT}/logs/sizes"
    near = {"textPayload": "n" * (255 * 1024)}
    _ok(write(world, {"logName": log, "entries": [near]}))
    over = write(world, {"logName": log, "entries": [{"textPayload": "o" * (256 * 1024 + 1)}]})
    assert over.status_code == 400 and "exceeds maximum size of 256.0K" in over.json()["error"]["message"]
    labels = write(world, {"logName": log, "entries": [{"textPayload": "l", "labels": {f"k{i}": "v" for i in range(65)}}]})
    assert labels.status_code == 400 and "at most 64" in labels.text
    # a request over 10 MB is refused before it is read whole
    huge = world.call("POST", WRITE, raw=b'{"entries": [' + b" " * (10 * 1024 * 1024 + 1) + b"]}",
                      headers={"Content-Type": "application/json"})
    assert huge.status_code == 400 and "Request payload size exceeds the limit" in huge.text
    assert len(entries(world, f'logName="{log}"')) == 1
    # a deeply nested payload is stored whole, and a global search over it answers (never a 500)
    deep: Any = "needle-in-depth"
    for _ in range(600):
        deep = {"d": deep}
    _ok(write(world, {"logName": log, "entries": [{"jsonPayload": deep}]}))
    assert len(entries(world, f'logName="{log}" AND jsonPayload.d:*')) == 1
    assert entries(world, '"needle-in-depth"') == []  # global terms search 64 levels deep, as bounded


def test_partial_success_dry_run_and_duplicates(world: KeylessServer) -> None:
    log = f"projects/{PROJECT}/logs/partial"
    batch = [{"textPayload": "good one", "insertId": "p-1"},
             {"textPayload": "bad severity", "severity": "LOUD"},
             {"textPayload": "other project", "logName": f"projects/{OTHER}/logs/partial"},
             {"textPayload": "two payloads", "jsonPayload": {"a": 1}}]
    token = token_for_service_account(world, WRITER)
    # all or nothing by default: the first failure answers, nothing is written
    r = write(world, {"logName": log, "entries": batch}, token=token)
    assert r.status_code == 400 and "LogSeverity" in r.json()["error"]["message"], r.text
    assert not entries(world, f'logName="{log}"')
    # partialSuccess: the valid entry is written, the failures answered by index
    r = write(world, {"logName": log, "entries": batch, "partialSuccess": True}, token=token)
    assert r.status_code == 400, r.text
    detail = next(d for d in r.json()["error"]["details"] if d["@type"].endswith("WriteLogEntriesPartialErrors"))
    errors = detail["logEntryErrors"]
    assert sorted(errors) == ["1", "2", "3"]
    assert errors["1"]["code"] == 3 and errors["3"]["code"] == 3
    assert errors["2"]["code"] == 7 and "logging.logEntries.create" in errors["2"]["message"]
    assert [e["textPayload"] for e in entries(world, f'logName="{log}"')] == ["good one"]
    assert not entries(world, '"other project"', project=OTHER)
    # the same insertId and timestamp again is a duplicate, stored once; dryRun stores nothing
    stamp = entries(world, f'logName="{log}"')[0]["timestamp"]
    _ok(write(world, {"logName": log, "entries": [{"textPayload": "good one", "insertId": "p-1", "timestamp": stamp}]}))
    _ok(write(world, {"logName": log, "dryRun": True, "entries": [{"textPayload": "dry"}]}))
    assert [e["textPayload"] for e in entries(world, f'logName="{log}"')] == ["good one"]


# -- sinks ----------------------------------------------------------------------------------------


def _sink_files(srv: KeylessServer, bucket: str, log_dir: str) -> dict[str, str]:
    return {name: text for name, text in objects(srv, bucket).items() if name.startswith(log_dir + "/")}


def test_sink_routes_written_and_audit_entries_as_google_sink_files(world: KeylessServer, agent: str) -> None:
    sink = _ok(world.call("POST", SINKS, params={"uniqueWriterIdentity": "true"}, body={
        "name": "to-archive", "destination": "storage.googleapis.com/log-archive",
        "filter": 'logName:"logs/routed" OR logName:"cloudaudit.googleapis.com%2Factivity"',
        "exclusions": [{"name": "quiet", "filter": 'labels.quiet="yes"'}],
        "writerIdentity": f"serviceAccount:{WRITER}"}))  # output only: the client cannot choose it
    assert sink["writerIdentity"] == f"serviceAccount:{agent}"
    _ok(grant_bucket(world, "log-archive", "roles/storage.objectCreator", sink["writerIdentity"]))
    _ok(write(world, {"logName": f"projects/{PROJECT}/logs/routed", "entries": [
        {"jsonPayload": {"n": 1}, "severity": "ERROR"}, {"jsonPayload": {"n": 2}, "labels": {"quiet": "yes"}},
        {"textPayload": "three", "timestamp": "2026-01-02T03:04:05Z"}]}))
    _ok(write(world, {"logName": f"projects/{PROJECT}/logs/not-routed", "entries": [{"textPayload": "x"}]}))
    # the filter matches another project's log too; a sink routes its own project's entries only
    _ok(write(world, {"logName": f"projects/{OTHER}/logs/routed", "entries": [{"jsonPayload": {"n": "other"}}]}))
    # an Admin Activity entry made after the sink (an exclusion's creation) is routed too
    _ok(world.call("POST", f"/logging/v2/projects/{PROJECT}/exclusions", body={
        "name": "routed-audit", "filter": 'jsonPayload.never="true"', "disabled": True}))

    files = until(lambda: len(_sink_files(world, "log-archive", "routed")) == 2
                  and "CreateExclusion" in "".join(_sink_files(world, "log-archive", "cloudaudit.googleapis.com/activity")
                                                   .values())
                  and objects(world, "log-archive"), "the sink's files")
    now = datetime.now(UTC)
    hour = f"{now.hour:02d}"
    current = f"routed/{now:%Y/%m/%d}/{hour}:00:00_{hour}:59:59_S0.json"
    assert current in files, sorted(files)
    lines = [json.loads(line) for line in files[current].splitlines()]
    assert [e["jsonPayload"] for e in lines] == [{"n": 1}]  # the quiet one excluded by the sink
    assert lines[0]["logName"] == f"projects/{PROJECT}/logs/routed" and lines[0]["severity"] == "ERROR"
    assert "routed/2026/01/02/03:00:00_03:59:59_S0.json" in files  # by the entry's own hour
    assert not any(name.startswith("not-routed/") for name in files)
    audit = [json.loads(line) for name, text in files.items() if name.startswith("cloudaudit.googleapis.com/activity/")
             for line in text.splitlines()]
    assert "google.logging.v2.ConfigServiceV2.CreateExclusion" in [e["protoPayload"]["methodName"] for e in audit]
    # another round of the same hour is the next shard
    _ok(write(world, {"logName": f"projects/{PROJECT}/logs/routed", "entries": [{"jsonPayload": {"n": 4}}]}))
    nxt = current.replace("_S0.json", "_S1.json")
    assert json.loads(until(lambda: objects(world, "log-archive").get(nxt), "shard 1"))["jsonPayload"] == {"n": 4}
    _ok(world.call("DELETE", f"{SINKS}/to-archive"))
    _ok(world.call("DELETE", f"/logging/v2/projects/{PROJECT}/exclusions/routed-audit"))


def test_sink_without_object_creator_writes_nothing_and_records_the_error(world: KeylessServer, agent: str) -> None:
    _ok(world.call("POST", SINKS, params={"uniqueWriterIdentity": "true"}, body={
        "name": "to-closed", "destination": "storage.googleapis.com/log-closed",
        "filter": f'logName="projects/{PROJECT}/logs/closed"'}))
    # a grant that is not object creation (viewer) does not let it write
    _ok(grant_bucket(world, "log-closed", "roles/storage.objectViewer", f"serviceAccount:{agent}"))
    _ok(write(world, {"logName": f"projects/{PROJECT}/logs/closed", "entries": [{"textPayload": "kept out"}]}))
    errors = until(lambda: entries(world, f'logName="projects/{PROJECT}/logs/logging.googleapis.com%2Fsink_error"'
                                          ' AND resource.labels.name="to-closed"'), "the sink error")
    assert errors[0]["severity"] == "ERROR" and errors[0]["resource"]["type"] == "logging_sink"
    assert "roles/storage.objectCreator" in errors[0]["jsonPayload"]["error"]
    assert objects(world, "log-closed") == {}
    # the service agent of a project that does not exist cannot be granted anything
    bad = grant_bucket(world, "log-closed", "roles/storage.objectCreator",
                       "serviceAccount:service-1111@gcp-sa-logging.iam.gserviceaccount.com")
    assert bad.status_code == 400 and "does not exist" in bad.text
    _ok(world.call("DELETE", f"{SINKS}/to-closed"))


def test_sink_bad_input_and_pubsub(world: KeylessServer, agent: str) -> None:
    for body in ({"name": "x", "destination": "bigquery.googleapis.com/projects/p/datasets/d"},
                 {"name": "x", "destination": "storage.googleapis.com/Not_A_Bucket"},
                 {"name": "-x", "destination": "storage.googleapis.com/log-archive"},
                 {"name": "x" * 101, "destination": "storage.googleapis.com/log-archive"},
                 {"name": "x", "destination": "storage.googleapis.com/log-archive", "filter": "a=("},
                 {"name": "x", "destination": "storage.googleapis.com/log-archive", "unknownField": 1}):
        r = world.call("POST", SINKS, body=body)
        assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT", (body, r.text)
    # Pub/Sub topics are accepted whether or not the topic exists yet (routing says so later)
    topic = f"pubsub.googleapis.com/projects/{PROJECT}/topics/logs"
    sink = _ok(world.call("POST", SINKS, body={"name": "to-topic", "destination": topic}))
    assert sink["destination"] == topic
    assert sink["writerIdentity"] == "serviceAccount:cloud-logs@system.gserviceaccount.com"  # no uniqueWriterIdentity
    again = world.call("POST", SINKS, body={"name": "to-topic", "destination": topic})
    assert again.status_code == 409 and again.json()["error"]["status"] == "ALREADY_EXISTS"
    # update with uniqueWriterIdentity moves it to the service agent
    moved = _ok(world.call("PATCH", f"{SINKS}/to-topic", params={"uniqueWriterIdentity": "true",
                                                                 "updateMask": "description"},
                           body={"description": "now unique"}))
    assert moved["writerIdentity"] == f"serviceAccount:{agent}" and moved["description"] == "now unique"
    # without updateMask, Google updates destination, filter and includeChildren only
    put = _ok(world.call("PUT", f"{SINKS}/to-topic", body={
        "destination": "storage.googleapis.com/log-archive", "filter": "severity>=ERROR", "description": "kept out"}))
    assert (put["destination"], put["filter"], put["description"]) == (
        "storage.googleapis.com/log-archive", "severity>=ERROR", "now unique")
    bad_mask = world.call("PATCH", f"{SINKS}/to-topic", params={"updateMask": "writerIdentity"}, body={})
    assert bad_mask.status_code == 400 and "Invalid update mask path 'writerIdentity'" in bad_mask.text
    _ok(world.call("DELETE", f"{SINKS}/to-topic"))
    assert world.call("GET", f"{SINKS}/to-topic").status_code == 404


def test_sink_to_a_pubsub_topic_publishes_each_entry_once_the_agent_may(world: KeylessServer, agent: str) -> None:
    """Google's Pub/Sub export: one message per entry, the LogEntry as its data and its timestamp as
    the `logging.googleapis.com/timestamp` attribute, only with pubsub.topics.publish on the topic."""
    topics, subs = f"/pubsub/v1/projects/{PROJECT}/topics", f"/pubsub/v1/projects/{PROJECT}/subscriptions"
    world.call("PUT", f"{topics}/exported", body={})
    _ok(world.call("PUT", f"{subs}/exported-sub", body={"topic": f"projects/{PROJECT}/topics/exported"}))
    _ok(world.call("POST", SINKS, params={"uniqueWriterIdentity": "true"}, body={
        "name": "to-pubsub", "destination": f"pubsub.googleapis.com/projects/{PROJECT}/topics/exported",
        "filter": f'logName="projects/{PROJECT}/logs/to-pubsub"'}))

    def pulled() -> list[dict[str, Any]]:
        got = _ok(world.call("POST", f"{subs}/exported-sub:pull", body={"maxMessages": 10}))
        return got.get("receivedMessages", [])

    _ok(write(world, {"logName": f"projects/{PROJECT}/logs/to-pubsub", "entries": [{"textPayload": "refused"}]}))
    errors = until(lambda: entries(world, f'logName="projects/{PROJECT}/logs/logging.googleapis.com%2Fsink_error"'
                                          ' AND resource.labels.name="to-pubsub"'), "the sink error")
    assert "roles/pubsub.publisher" in errors[0]["jsonPayload"]["error"], errors
    assert pulled() == []  # without the grant nothing was published
    policy = _ok(world.call("GET", f"{topics}/exported:getIamPolicy"))
    policy["bindings"] = [*policy.get("bindings", []), {"role": "roles/pubsub.publisher",
                                                         "members": [f"serviceAccount:{agent}"]}]
    _ok(world.call("POST", f"{topics}/exported:setIamPolicy", body={"policy": policy}))
    _ok(write(world, {"logName": f"projects/{PROJECT}/logs/to-pubsub", "entries": [
        {"jsonPayload": {"n": 1}, "timestamp": "2026-12-07T01:02:03Z"}, {"jsonPayload": {"n": 2}}]}))
    messages = until(pulled, "the exported messages")
    while len(messages) < 2:
        messages += until(pulled, "the second message")
    decoded = sorted((json.loads(base64.b64decode(m["message"]["data"])) for m in messages),
                     key=lambda e: e["jsonPayload"]["n"])
    assert [e["jsonPayload"] for e in decoded] == [{"n": 1}, {"n": 2}]
    assert decoded[0]["logName"] == f"projects/{PROJECT}/logs/to-pubsub"
    for m in messages:  # each message carries its entry's timestamp (the given one, kept as written)
        entry = json.loads(base64.b64decode(m["message"]["data"]))
        assert m["message"]["attributes"] == {"logging.googleapis.com/timestamp": entry["timestamp"]}, m
    assert decoded[0]["timestamp"].startswith("2026-12-07T01:02:03"), decoded[0]
    _ok(world.call("DELETE", f"{SINKS}/to-pubsub"))


def test_iam_and_audit_of_sink_methods(world: KeylessServer) -> None:
    viewer = token_for_user(world, "viewer@example.com")
    denied = world.call("POST", SINKS, token=viewer, body={"name": "nope", "destination": "storage.googleapis.com/x-y"})
    assert denied.status_code == 403 and "logging.sinks.create" in denied.text
    _ok(world.call("POST", SINKS, body={"name": "audited", "destination": "storage.googleapis.com/log-archive"}))
    assert _ok(world.call("GET", SINKS, token=viewer))["sinks"][0]["name"] == "audited"  # logging.sinks.list
    assert world.call("GET", f"{SINKS}/audited", token=viewer).status_code == 200
    for method, args in (("PATCH", {"body": {"description": "x"}}), ("PUT", {"body": {"destination": "storage.googleapis.com/log-archive"}}),
                         ("DELETE", {})):
        r = world.call(method, f"{SINKS}/audited", token=viewer, **args)
        assert r.status_code == 403 and ("logging.sinks.update" if method != "DELETE" else "logging.sinks.delete") in r.text
    writer = token_for_service_account(world, WRITER)
    assert world.call("GET", SINKS, token=writer).status_code == 403  # logWriter writes, it does not read config
    assert world.call("DELETE", f"/logging/v2/projects/{PROJECT}/logs/partial", token=viewer).status_code == 403
    assert world.call("POST", f"/logging/v2/projects/{PROJECT}/exclusions", token=viewer,
                      body={"name": "e", "filter": "a=1"}).status_code == 403
    _ok(world.call("DELETE", f"{SINKS}/audited"))
    activity = entries(world, f'logName="projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity" AND '
                              'protoPayload.serviceName="logging.googleapis.com" AND resource.labels.name="audited"')
    methods = [(e["protoPayload"]["methodName"], e["protoPayload"].get("status", {}).get("code", 0)) for e in activity]
    assert ("google.logging.v2.ConfigServiceV2.CreateSink", 0) in methods
    assert ("google.logging.v2.ConfigServiceV2.DeleteSink", 0) in methods
    assert ("google.logging.v2.ConfigServiceV2.UpdateSink", 7) in methods  # the denied update, recorded
    created = next(e for e in activity if e["protoPayload"]["methodName"].endswith("CreateSink"))
    assert created["resource"] == {"type": "logging_sink", "labels": {
        "project_id": PROJECT, "name": "audited", "destination": "storage.googleapis.com/log-archive"}}
    assert created["protoPayload"]["resourceName"] == f"projects/{PROJECT}/sinks/audited"


# -- exclusions and logs.delete -------------------------------------------------------------------


def test_exclusions_drop_written_entries(world: KeylessServer) -> None:
    base = f"/logging/v2/projects/{PROJECT}/exclusions"
    _ok(world.call("POST", base, body={"name": "no-noise", "filter": 'jsonPayload.noise="yes"'}))
    log = f"projects/{PROJECT}/logs/noisy"
    _ok(write(world, {"logName": log, "entries": [{"jsonPayload": {"noise": "yes", "n": 1}},
                                                   {"jsonPayload": {"noise": "no", "n": 2}}]}))
    assert [e["jsonPayload"]["n"] for e in entries(world, f'logName="{log}"')] == [2]
    unmasked = world.call("PATCH", f"{base}/no-noise", body={"disabled": True})  # Google requires updateMask
    assert unmasked.status_code == 400 and "updateMask is required" in unmasked.text
    _ok(world.call("PATCH", f"{base}/no-noise", params={"updateMask": "disabled"}, body={"disabled": True}))
    _ok(write(world, {"logName": log, "entries": [{"jsonPayload": {"noise": "yes", "n": 3}}]}))
    assert [e["jsonPayload"]["n"] for e in entries(world, f'logName="{log}"')] == [2, 3]
    _ok(world.call("DELETE", f"{base}/no-noise"))
    assert world.call("GET", f"{base}/no-noise").status_code == 404


def test_logs_delete(world: KeylessServer) -> None:
    log = f"projects/{PROJECT}/logs/short%2Flived"
    _ok(write(world, {"logName": log, "entries": [{"textPayload": "a"}, {"textPayload": "b"}]}))
    keep = f"projects/{PROJECT}/logs/kept"
    _ok(write(world, {"logName": keep, "entries": [{"textPayload": "k"}]}))
    _ok(world.call("DELETE", f"/logging/v2/projects/{PROJECT}/logs/short%2Flived"))
    assert not entries(world, f'logName="{log}"') and len(entries(world, f'logName="{keep}"')) == 1
    assert world.call("DELETE", f"/logging/v2/projects/{PROJECT}/logs/short%2Flived").status_code == 404
    required = world.call("DELETE", f"/logging/v2/projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity")
    assert required.status_code == 400 and required.json()["error"]["status"] == "FAILED_PRECONDITION"
    deleted = entries(world, 'protoPayload.methodName="google.logging.v2.LoggingServiceV2.DeleteLog"')
    codes = sorted((e["protoPayload"]["resourceName"], e["protoPayload"]["status"].get("code", 0)) for e in deleted
                   if e["protoPayload"]["authenticationInfo"].get("principalEmail") == "owner@keyless.dev")
    assert codes == [(f"projects/{PROJECT}/logs/cloudaudit.googleapis.com%2Factivity", 9),  # FAILED_PRECONDITION
                     (f"projects/{PROJECT}/logs/short%2Flived", 0), (f"projects/{PROJECT}/logs/short%2Flived", 5)]


# -- gcloud -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gc(world: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> Gcloud:
    _need_gcloud()
    return Gcloud(world, tmp_path_factory.mktemp("gcloud"), project=PROJECT)


@pytest.mark.store_independent  # gcloud's side of the wire: SQLite leg only; the PostgreSQL leg drives the same methods with the discovery client (tests/conformance)
def test_gcloud_logging_write_read_and_sinks(world: KeylessServer, gc: Gcloud, agent: str) -> None:
    log = f"projects/{PROJECT}/logs/gcloud-log"
    created = gc.run("logging", "sinks", "create", "gcloud-sink", "storage.googleapis.com/log-archive",
                     f'--log-filter=logName="{log}"')
    assert f"serviceAccount:{agent}" in created.stderr  # gcloud names the identity to grant
    _ok(grant_bucket(world, "log-archive", "roles/storage.objectCreator", f"serviceAccount:{agent}"))
    gc.run("logging", "write", "gcloud-log", '{"step": "migrate", "ok": true}', "--payload-type=json",
           "--severity=ERROR")
    got = gc.json("logging", "read", f'logName="{log}" AND jsonPayload.step="migrate"', "--limit=10")
    assert [(e["jsonPayload"], e["severity"], e["resource"]["type"]) for e in got] == [
        ({"step": "migrate", "ok": True}, "ERROR", "global")]
    assert [s["name"] for s in gc.json("logging", "sinks", "list")] == ["gcloud-sink"]
    described = gc.json("logging", "sinks", "describe", "gcloud-sink")
    assert (described["destination"], described["writerIdentity"], described["filter"]) == (
        "storage.googleapis.com/log-archive", f"serviceAccount:{agent}", f'logName="{log}"')
    # routed into the bucket
    files = until(lambda: _sink_files(world, "log-archive", "gcloud-log"), "the gcloud sink's file")
    assert [json.loads(line)["jsonPayload"] for text in files.values() for line in text.splitlines()] == \
        [{"step": "migrate", "ok": True}]
    gc.run("logging", "sinks", "delete", "gcloud-sink", "--quiet")
    assert world.call("GET", f"{SINKS}/gcloud-sink").status_code == 404
