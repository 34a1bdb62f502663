"""Regional secrets (Secret Manager `projects/P/locations/L/secrets/S`, issue #20) with
google-cloud-secret-manager's REST transport at its regional endpoint, Google's regional host
name, delayed destruction, and the attacks a location must stop: a regional secret and a global
one of the same id are two secrets with two policies. gcloud's `secrets create --location` runs in
test_secret_manager.py's gcloud test."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import google.oauth2.credentials
import pytest
from google.api_core import exceptions
from sqlalchemy import select, update

from keyless.store.models import SmSecret, SmSecretVersion
from tests.api.helpers import server_state, token_for_service_account
from tests.conftest import KeylessServer

PROJECT = "regional-project"
REGION = "us-central1"
APP_SA = f"app-sa@{PROJECT}.iam.gserviceaccount.com"
SM = f"/secretmanager/v1/projects/{PROJECT}"
REGIONAL = f"{SM}/locations/{REGION}/secrets"


def ok(resp: Any) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def srv(module_server: KeylessServer) -> KeylessServer:
    srv = module_server
    ok(srv.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": PROJECT}))
    ok(srv.call("POST", f"/iam/v1/projects/{PROJECT}/serviceAccounts", body={"accountId": "app-sa"}))
    # the rotation notifications' topic, publishable by the Secret Manager service agent (issue #20)
    number = ok(srv.call("GET", f"/cloudresourcemanager/v1/projects/{PROJECT}"))["projectNumber"]
    ok(srv.call("PUT", f"/pubsub/v1/projects/{PROJECT}/topics/rotation", body={}))
    ok(srv.call("POST", f"/pubsub/v1/projects/{PROJECT}/topics/rotation:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/pubsub.publisher",
         "members": [f"serviceAccount:service-{number}@gcp-sa-secretmanager.iam.gserviceaccount.com"]}]}}))
    # the same id twice: a global secret and a regional one, each with its own value
    ok(srv.call("POST", f"{SM}/secrets", params={"secretId": "api-key"}, body={"replication": {"automatic": {}}}))
    ok(srv.call("POST", f"{SM}/secrets/api-key:addVersion", body={"payload": {"data": b64(b"global-value")}}))
    ok(srv.call("POST", REGIONAL, params={"secretId": "api-key"}, body={}))
    ok(srv.call("POST", f"{REGIONAL}/api-key:addVersion", body={"payload": {"data": b64(b"regional-value")}}))
    # least privilege: app-sa may read the regional secret only
    ok(srv.call("POST", f"{REGIONAL}/api-key:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{APP_SA}"]}]}}))
    return srv


def client(srv: KeylessServer, token: str) -> Any:
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient(
        credentials=google.oauth2.credentials.Credentials(token), transport="rest",
        client_options={"api_endpoint": f"{srv.base_url}/secretmanager"})


def test_regional_client_reads_its_secret_and_not_the_global_one(srv: KeylessServer) -> None:
    sm = client(srv, token_for_service_account(srv, APP_SA))
    name = f"projects/{PROJECT}/locations/{REGION}/secrets/api-key/versions/latest"
    response = sm.access_secret_version(request={"name": name})
    assert response.payload.data == b"regional-value"
    assert "/locations/us-central1/secrets/api-key/versions/1" in response.name
    # without the location in the lookup this would read (or be granted) the other secret
    with pytest.raises(exceptions.Forbidden) as denied:
        sm.access_secret_version(request={"name": f"projects/{PROJECT}/secrets/api-key/versions/latest"})
    assert "secretmanager.versions.access" in denied.value.message
    with pytest.raises(exceptions.Forbidden):
        sm.access_secret_version(request={"name": f"projects/{PROJECT}/locations/europe-west1/secrets/api-key/"
                                                  "versions/latest"})


def test_regional_client_creates_lists_and_deletes(srv: KeylessServer) -> None:
    from google.cloud import secretmanager

    sm = client(srv, srv.owner_token)
    parent = f"projects/{PROJECT}/locations/{REGION}"
    secret = sm.create_secret(request={"parent": parent, "secret_id": "rotated", "secret": {
        "topics": [{"name": f"projects/{PROJECT}/topics/rotation"}],
        "rotation": {"next_rotation_time": datetime.now(UTC) + timedelta(days=7), "rotation_period": "604800s"},
        "version_destroy_ttl": "86400s", "ttl": "3600s"}})
    assert secret.name.endswith("/locations/us-central1/secrets/rotated")
    assert secret.rotation.rotation_period.total_seconds() == 604800
    assert not secret.replication  # a regional secret has no replication policy
    version = sm.add_secret_version(request={"parent": secret.name, "payload": {"data": b"v1"}})
    destroyed = sm.destroy_secret_version(request={"name": version.name})
    assert destroyed.state == secretmanager.SecretVersion.State.DISABLED  # versionDestroyTtl delays it
    assert destroyed.scheduled_destroy_time.timestamp() > (datetime.now(UTC) + timedelta(hours=23)).timestamp()
    names = [s.name for s in sm.list_secrets(request={"parent": parent})]
    assert {"api-key", "rotated"} <= {n.rsplit("/", 1)[1] for n in names}
    assert all("/locations/us-central1/" in n for n in names)
    sm.delete_secret(request={"name": secret.name})
    with pytest.raises(exceptions.NotFound):
        sm.get_secret(request={"name": secret.name})
    global_names = [s.name.rsplit("/", 1)[1] for s in sm.list_secrets(request={"parent": f"projects/{PROJECT}"})]
    assert global_names == ["api-key"]


def test_a_scheduled_destruction_that_is_due_destroys(srv: KeylessServer) -> None:
    path = f"{REGIONAL}/delayed"
    ok(srv.call("POST", REGIONAL, params={"secretId": "delayed"}, body={"versionDestroyTtl": "86400s"}))
    ok(srv.call("POST", f"{path}:addVersion", body={"payload": {"data": b64(b"soon gone")}}))
    scheduled = ok(srv.call("POST", f"{path}/versions/1:destroy", body={}))
    assert scheduled["state"] == "DISABLED" and "scheduledDestroyTime" in scheduled
    enabled = ok(srv.call("POST", f"{path}/versions/1:enable", body={}))  # cancels the destruction
    assert enabled["state"] == "ENABLED" and "scheduledDestroyTime" not in enabled
    assert base64.b64decode(ok(srv.call("GET", f"{path}/versions/1:access"))["payload"]["data"]) == b"soon gone"
    ok(srv.call("POST", f"{path}/versions/1:destroy", body={}))
    with server_state(srv).db.write() as s:  # the day has passed
        uid = select(SmSecret.uid).where(SmSecret.secret_id == "delayed").scalar_subquery()
        s.execute(update(SmSecretVersion).where(SmSecretVersion.secret_uid == uid)
                  .values(scheduled_destroy_time=datetime.now(UTC) - timedelta(seconds=1)))
    got = ok(srv.call("GET", f"{path}/versions/1"))
    assert got["state"] == "DESTROYED" and "destroyTime" in got, got
    r = srv.call("GET", f"{path}/versions/1:access")
    assert r.status_code == 400 and "DESTROYED" in r.json()["error"]["message"], r.text
    r = srv.call("POST", f"{path}/versions/1:enable", body={})  # too late to cancel
    assert r.status_code == 400 and r.json()["error"]["status"] == "FAILED_PRECONDITION", r.text


def test_google_s_regional_host_name_reaches_secret_manager(srv: KeylessServer) -> None:
    body = ok(srv.call("GET", f"/v1/projects/{PROJECT}/locations/{REGION}/secrets",
                       headers={"Host": f"secretmanager.{REGION}.rep.googleapis.com"}))
    assert "api-key" in [s["name"].rsplit("/", 1)[1] for s in body["secrets"]], body
    # another API's name under .rep. is not a regional endpoint Keyless knows
    r = srv.call("GET", f"/v1/projects/{PROJECT}/serviceAccounts", headers={"Host": "iam.us-central1.rep.googleapis.com"})
    assert r.status_code == 404


def test_locations(srv: KeylessServer) -> None:
    listed = ok(srv.call("GET", f"{SM}/locations", params={"pageSize": 5}))
    assert len(listed["locations"]) == 5 and "nextPageToken" in listed
    assert ok(srv.call("GET", f"{SM}/locations/{REGION}"))["locationId"] == REGION
    assert srv.call("GET", f"{SM}/locations/moon-base1").status_code == 404


def soon(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


TOPICS = [{"name": f"projects/{PROJECT}/topics/t"}]


@pytest.mark.parametrize(("path", "body", "fragment"), [
    (f"{SM}/locations/moon-base1/secrets", {}, "not a supported location"),
    (REGIONAL, {"replication": {"automatic": {}}}, "must not be set for a regional secret"),
    (REGIONAL, {"rotation": {"nextRotationTime": soon(3600)}}, "topics must be set"),
    (REGIONAL, {"topics": TOPICS, "rotation": {"nextRotationTime": soon(60)}}, "at least 300s"),
    (REGIONAL, {"topics": TOPICS, "rotation": {"rotationPeriod": "86400s"}}, "next_rotation_time must be set"),
    (REGIONAL, {"topics": TOPICS, "rotation": {"nextRotationTime": soon(3600), "rotationPeriod": "60s"}},
     "at least 3600s"),
    (REGIONAL, {"versionDestroyTtl": "60s"}, "at least 86400s"),
    (REGIONAL, {"expireTime": "2001-01-01T00:00:00Z"}, "must be in the future"),
    (REGIONAL, {"ttl": "-5s"}, "ttl"),
])
def test_bad_regional_secrets_are_refused(srv: KeylessServer, path: str, body: dict[str, Any], fragment: str) -> None:
    r = srv.call("POST", path, params={"secretId": "refused"}, body=body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]["message"], r.text
    assert srv.call("GET", f"{REGIONAL}/refused").status_code == 404  # nothing was stored


def test_policy_analyzer_tells_the_regional_secret_from_the_global_one(srv: KeylessServer) -> None:
    """Cloud Asset's analysis of the regional secret: app-sa's grant there, attached to its name."""
    number = ok(srv.call("GET", f"/cloudresourcemanager/v1/projects/{PROJECT}"))["projectNumber"]
    regional = f"//secretmanager.googleapis.com/projects/{number}/locations/{REGION}/secrets/api-key"
    body = ok(srv.call("GET", f"/cloudasset/v1/projects/{PROJECT}:analyzeIamPolicy", params={
        "analysisQuery.resourceSelector.fullResourceName": regional,
        "analysisQuery.accessSelector.permissions": "secretmanager.versions.access"}))
    mine = [r for r in body["mainAnalysis"]["analysisResults"] if r["attachedResourceFullName"] == regional]
    assert [r["identityList"]["identities"] for r in mine] == [[{"name": f"serviceAccount:{APP_SA}"}]], body
    body = ok(srv.call("GET", f"/cloudasset/v1/projects/{PROJECT}:analyzeIamPolicy", params={
        "analysisQuery.resourceSelector.fullResourceName": regional.replace(f"/locations/{REGION}", ""),
        "analysisQuery.identitySelector.identity": f"serviceAccount:{APP_SA}"}))
    assert body["mainAnalysis"].get("analysisResults", []) == [], body
