"""Crash safety (issue #14): server A is killed (SIGKILL, its whole process group) while
clients on A and B write concurrently: setIamPolicy read-modify-writes with etags, object
uploads, secret versions, and the Admin Activity audit entries those writes make. After A is
started again nothing acknowledged is lost, nothing half-written is visible, no binding is lost
to a concurrent writer (conflicts are 409 ABORTED, as Google answers a stale etag)."""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from keyless.cli.cluster import Cluster, ClusterServer
from tests.scale.world import call, ensure_project, ok

PROJECT, NUMBER = "crash-project", "515151515151"
BUCKET = "crash-bucket-1"
ROLE = "roles/viewer"


@dataclass
class Outcomes:
    acked: dict[str, object] = field(default_factory=dict)  # what a 200 acknowledged
    unknown: set[str] = field(default_factory=set)  # sent, but the connection died before an answer
    conflicts: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def content_of(name: str) -> bytes:
    """Each object's bytes follow from its name, so a half-written object cannot pass for whole."""
    return hashlib.sha256(name.encode()).digest() * (2048 + len(name) * 37)  # ~70-100 KB


@pytest.fixture(scope="module")
def world(cluster: Cluster) -> Iterator[Cluster]:
    ensure_project(cluster, PROJECT, NUMBER)
    a = cluster.servers[0]
    ok(call(a, "POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": BUCKET}))
    ok(call(a, "POST", f"/secretmanager/v1/projects/{PROJECT}/secrets", params={"secretId": "crash-secret"},
            body={"replication": {"automatic": {}}}))
    yield cluster


def _auth(srv: ClusterServer, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def iam_client(srv: ClusterServer, token: str, who: str, out: Outcomes, stop: threading.Event) -> None:
    crm = f"{srv.base_url}/cloudresourcemanager/v1/projects/{PROJECT}"
    n = 0
    with httpx.Client(headers=_auth(srv, token), timeout=10) as http:
        while not stop.is_set():
            n += 1
            member = f"user:{who}-{n}@example.com"
            try:
                policy = http.post(f"{crm}:getIamPolicy", json={}).json()
                bindings = policy.get("bindings", [])
                for b in bindings:
                    if b["role"] == ROLE:
                        b["members"].append(member)
                        break
                else:
                    bindings.append({"role": ROLE, "members": [member]})
                r = http.post(f"{crm}:setIamPolicy", json={"policy": {"bindings": bindings, "etag": policy["etag"]}})
            except (httpx.TransportError, KeyError, ValueError):
                with out.lock:
                    out.unknown.add(member)
                time.sleep(0.05)
                continue
            with out.lock:
                if r.status_code == 200:
                    out.acked[member] = True
                elif r.status_code == 409 and r.json()["error"]["status"] == "ABORTED":
                    out.conflicts += 1
                else:
                    out.unexpected.append(f"{r.status_code} {r.text[:200]}")


def uploader(srv: ClusterServer, token: str, who: str, out: Outcomes, stop: threading.Event) -> None:
    url = f"{srv.base_url}/upload/storage/v1/b/{BUCKET}/o"
    n = 0
    with httpx.Client(headers=_auth(srv, token), timeout=10) as http:
        while not stop.is_set():
            n += 1
            name = f"{who}/object-{n}"
            try:
                r = http.post(url, params={"uploadType": "media", "name": name}, content=content_of(name))
            except httpx.TransportError:
                with out.lock:
                    out.unknown.add(name)
                time.sleep(0.05)
                continue
            with out.lock:
                if r.status_code == 200:
                    out.acked[name] = r.json()["md5Hash"]
                else:
                    out.unexpected.append(f"{r.status_code} {r.text[:200]}")
            stop.wait(0.03)  # enough objects to straddle the kill, few enough to read back quickly


def secret_adder(srv: ClusterServer, token: str, who: str, out: Outcomes, stop: threading.Event) -> None:
    url = f"{srv.base_url}/secretmanager/v1/projects/{PROJECT}/secrets/crash-secret:addVersion"
    n = 0
    with httpx.Client(headers=_auth(srv, token), timeout=10) as http:
        while not stop.is_set():
            n += 1
            payload = f"{who}-{n}"
            try:
                r = http.post(url, json={"payload": {"data": base64.b64encode(payload.encode()).decode()}})
            except httpx.TransportError:
                with out.lock:
                    out.unknown.add(payload)
                time.sleep(0.05)
                continue
            with out.lock:
                if r.status_code == 200:
                    out.acked[r.json()["name"]] = payload
                else:
                    out.unexpected.append(f"{r.status_code} {r.text[:200]}")
            stop.wait(0.03)


def test_kill_9_during_concurrent_writes_loses_nothing_acknowledged(world: Cluster) -> None:
    a, b = world.servers
    token = a.owner_token  # valid on both (shared keys)
    iam, objects, versions = Outcomes(), Outcomes(), Outcomes()
    stop = threading.Event()
    threads = [threading.Thread(target=iam_client, args=(srv, token, f"iam{i}", iam, stop))
               for i, srv in enumerate((a, a, b, b))]
    threads += [threading.Thread(target=uploader, args=(srv, token, f"up{i}", objects, stop))
                for i, srv in enumerate((a, a, b))]
    threads += [threading.Thread(target=secret_adder, args=(srv, token, f"sec{i}", versions, stop))
                for i, srv in enumerate((a, b))]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        a.kill()  # SIGKILL: the server, its workers and its audit writer, mid-request
        time.sleep(0.7)
        a.start()
        time.sleep(0.7)
    finally:
        stop.set()
        for t in threads:
            t.join(30)

    for out in (iam, objects, versions):
        assert out.unexpected == [], out.unexpected
    assert len(iam.acked) >= 4 and iam.conflicts > 0, (len(iam.acked), iam.conflicts)  # they did contend
    assert len(objects.acked) >= 3 and len(versions.acked) >= 2

    # IAM: every acknowledged binding is in the policy, on both servers
    policies = [ok(call(srv, "POST", f"/cloudresourcemanager/v1/projects/{PROJECT}:getIamPolicy", body={}))
                for srv in (a, b)]
    assert policies[0] == policies[1]
    members = {m for bnd in policies[0]["bindings"] if bnd["role"] == ROLE for m in bnd["members"]}
    assert set(iam.acked) <= members, set(iam.acked) - members
    assert members <= set(iam.acked) | iam.unknown  # and nothing that was never sent

    # Objects: every acknowledged upload reads back whole from B; nothing listed is partial
    listed = ok(call(b, "GET", f"/storage/v1/b/{BUCKET}/o"))["items"]
    names = {o["name"] for o in listed}
    assert set(objects.acked) <= names
    with httpx.Client(base_url=b.base_url, headers=_auth(b, token), timeout=30) as http:
        for o in listed:
            assert o["name"] in objects.acked or o["name"] in objects.unknown
            got = http.get(f"/download/storage/v1/b/{BUCKET}/o/{o['name']}", params={"alt": "media"})
            assert got.status_code == 200 and got.content == content_of(o["name"]), o["name"]
            if o["name"] in objects.acked:
                assert o["md5Hash"] == objects.acked[o["name"]]

        # Secret versions: every acknowledged version reads back from B with its payload
        for name, payload in versions.acked.items():
            got = ok(http.get(f"/secretmanager/v1/{name}:access"))
            assert base64.b64decode(got["payload"]["data"]).decode() == payload
    listed_versions = ok(call(b, "GET", f"/secretmanager/v1/projects/{PROJECT}/secrets/crash-secret/versions"))
    assert {v["name"] for v in listed_versions["versions"]} >= set(versions.acked)

    # Audit: each committed setIamPolicy wrote its Admin Activity entry in the same transaction
    entries = []
    page = ""
    while True:
        body = {"resourceNames": [f"projects/{PROJECT}"], "pageSize": 1000,
                "filter": 'protoPayload.methodName="SetIamPolicy" AND severity="NOTICE"', **({"pageToken": page}
                                                                                              if page else {})}
        got = ok(call(b, "POST", "/logging/v2/entries:list", body=body))
        entries += got.get("entries", [])
        page = got.get("nextPageToken", "")
        if not page:
            break
    committed = len(members)  # each committed write added exactly one member
    assert committed == len(entries), (committed, len(entries))
