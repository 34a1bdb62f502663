"""The same Pub/Sub REST requests sent to Keyless and to Google's Pub/Sub emulator (issue #20): prints,
as a Markdown table, each request where the two answer differently (HTTP status and google.rpc
status, or message). The emulator is the gcloud component `pubsub-emulator` (Debian package
google-cloud-cli-pubsub-emulator, Java); production Pub/Sub's own wording, where known, is what
Keyless follows (e.g. "Resource not found (resource=ID)." in GoogleCloudPlatform and googleapis
issue threads, where the emulator says "Topic not found"), so a difference in wording is expected;
a difference in status is a question to answer.

    .venv/bin/python scripts/pubsub_emulator_diff.py
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pubsub import emulator_path, start_emulator  # noqa: E402
from tests.conftest import KeylessServer  # noqa: E402

P = "parity-proj"


def b(data: bytes) -> str:
    return base64.b64encode(data).decode()


T, S = f"projects/{P}/topics", f"projects/{P}/subscriptions"
CASES: list[tuple[str, str, object]] = [
 ("PUT", f"{T}/good-topic", {}),
 ("PUT", f"{T}/good-topic", {}),
 ("PUT", f"{T}/t", {}),
 ("PUT", f"{T}/goog-topic", {}),
 ("PUT", f"{T}/bad%20name", {}),
 ("PUT", f"{T}/1abc", {}),
 ("PUT", f"{T}/" + "a"*256, {}),
 ("GET", f"{T}/missing-topic", None),
 ("DELETE", f"{T}/missing-topic", None),
 ("PUT", f"{S}/sub-missing-topic", {"topic": f"{T}/missing-topic"}),
 ("PUT", f"{S}/good-sub", {"topic": f"{T}/good-topic"}),
 ("PUT", f"{S}/good-sub", {"topic": f"{T}/good-topic"}),
 ("PUT", f"{S}/sub-ack5", {"topic": f"{T}/good-topic", "ackDeadlineSeconds": 5}),
 ("PUT", f"{S}/sub-ack700", {"topic": f"{T}/good-topic", "ackDeadlineSeconds": 700}),
 ("PUT", f"{S}/sub-ret1s", {"topic": f"{T}/good-topic", "messageRetentionDuration": "1s"}),
 ("PUT", f"{S}/sub-ret8d", {"topic": f"{T}/good-topic", "messageRetentionDuration": "691200s"}),
 ("PUT", f"{S}/sub-filter", {"topic": f"{T}/good-topic", "filter": "attributes.x = "}),
 ("PUT", f"{S}/sub-dl4", {"topic": f"{T}/good-topic", "deadLetterPolicy": {"deadLetterTopic": f"{T}/good-topic", "maxDeliveryAttempts": 4}}),
 ("PUT", f"{S}/sub-retry", {"topic": f"{T}/good-topic", "retryPolicy": {"minimumBackoff": "60s", "maximumBackoff": "10s"}}),
 ("PUT", f"{S}/sub-exp", {"topic": f"{T}/good-topic", "expirationPolicy": {"ttl": "3600s"}}),
 ("PUT", f"{S}/sub-push", {"topic": f"{T}/good-topic", "pushConfig": {"pushEndpoint": "not a url"}}),
 ("GET", f"{S}/missing-sub", None),
 ("DELETE", f"{S}/missing-sub", None),
 ("POST", f"{T}/good-topic:publish", {"messages": []}),
 ("POST", f"{T}/good-topic:publish", {"messages": [{}]}),
 ("POST", f"{T}/good-topic:publish", {"messages": [{"data": "!!notb64"}]}),
 ("POST", f"{T}/good-topic:publish", {"messages": [{"data": b(b"x"), "attributes": {"googfoo": "1"}}]}),
 ("POST", f"{T}/good-topic:publish", {"messages": [{"data": b(b"x"), "attributes": {"k"*257: "1"}}]}),
 ("POST", f"{T}/good-topic:publish", {"messages": [{"data": b(b"x"), "attributes": {"k": "v"*1025}}]}),
 ("POST", f"{T}/good-topic:publish", {"messages": [{"data": b(b"x"), "orderingKey": "k"*1025}]}),
 ("POST", f"{T}/missing-topic:publish", {"messages": [{"data": b(b"x")}]}),
 ("POST", f"{S}/good-sub:pull", {"maxMessages": 0}),
 ("POST", f"{S}/good-sub:pull", {"maxMessages": -1}),
 ("POST", f"{S}/missing-sub:pull", {"maxMessages": 1}),
 ("POST", f"{S}/good-sub:acknowledge", {"ackIds": []}),
 ("POST", f"{S}/good-sub:acknowledge", {"ackIds": ["garbage"]}),
 ("POST", f"{S}/good-sub:modifyAckDeadline", {"ackIds": ["garbage"], "ackDeadlineSeconds": 601}),
 ("POST", f"{S}/good-sub:modifyAckDeadline", {"ackIds": [], "ackDeadlineSeconds": 10}),
 ("POST", f"{S}/good-sub:seek", {}),
 ("POST", f"{S}/good-sub:seek", {"snapshot": f"projects/{P}/snapshots/missing-snap"}),
 ("PUT", f"projects/{P}/snapshots/snap-missing-sub", {"subscription": f"{S}/missing-sub"}),
 ("PUT", f"projects/{P}/snapshots/good-snap", {"subscription": f"{S}/good-sub"}),
 ("GET", f"projects/{P}/snapshots/missing-snap", None),
 ("PATCH", f"{T}/good-topic", {"topic": {"labels": {"a": "b"}}}),
 ("PATCH", f"{T}/good-topic", {"topic": {"labels": {"a": "b"}}, "updateMask": "nothing"}),
 ("PATCH", f"{S}/good-sub", {"subscription": {"ackDeadlineSeconds": 20}}),
 ("PATCH", f"{S}/good-sub", {"subscription": {"topic": f"{T}/other"}, "updateMask": "topic"}),
 ("GET", f"{T}?pageSize=-1", None),
 ("GET", f"{T}?pageToken=garbage", None),
 ("GET", f"{T}/good-topic/subscriptions", None),
 ("POST", f"{S}/good-sub:detach", None),
 ("PUT", f"{T}/label-topic", {"labels": {"UPPER": "x"}}),
 ("PUT", f"{T}/ret-topic", {"messageRetentionDuration": "60s"}),
 ("POST", f"{S}/good-sub:modifyPushConfig", {"pushConfig": {"pushEndpoint": "ftp://x"}}),
]


def answer(resp: httpx.Response) -> tuple[int, str, str]:
    try:
        body = resp.json()
    except ValueError:
        return resp.status_code, "-", resp.text[:80]
    if isinstance(body, dict) and "error" in body:
        return resp.status_code, str(body["error"].get("status")), str(body["error"].get("message"))
    return resp.status_code, "OK", ""


def main() -> None:
    path = emulator_path()
    if path is None:
        raise SystemExit("no pubsub-emulator component beside gcloud, or no java")
    with tempfile.TemporaryDirectory(prefix="keyless-pubsub-diff-") as tmp:
        srv = KeylessServer(Path(tmp) / "data", None)
        emulator, port = start_emulator(path)
        try:
            assert srv.keyless("projects", "create", P).returncode == 0
            print("| request | Keyless | emulator |\n|---|---|---|")
            same = wording = 0
            for method, name, body in CASES:
                ours = answer(srv.call(method, "/pubsub/v1/" + name, body=body))
                try:
                    theirs = answer(httpx.request(method, f"http://127.0.0.1:{port}/v1/{name}",
                                                  content=None if body is None else json.dumps(body),
                                                  headers={"Content-Type": "application/json"}, timeout=5))
                except httpx.TimeoutException:
                    theirs = (0, "-", "no answer in 5 s")
                if ours == theirs:
                    same += 1
                    continue
                wording += ours[:2] == theirs[:2]
                short = name.replace(f"projects/{P}/", "")[:48]
                text = json.dumps(body)[:60] if body else ""
                print(f"| {method} {short} {text} | {ours[0]} {ours[1]}: {ours[2][:90]} "
                      f"| {theirs[0]} {theirs[1]}: {theirs[2][:90]} |")
            print(f"\n{len(CASES)} requests: {same} answered the same, {wording} with the same status in other words, "
                  f"{len(CASES) - same - wording} with another status.")
        finally:
            srv.stop()
            emulator.terminate()


if __name__ == "__main__":
    main()
