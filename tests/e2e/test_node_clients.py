"""Google's Node.js clients, unmodified, against a real `keyless serve` (issue #15): google-auth-library
with external_account files (file and url credential sources, with and without service account
impersonation), @google-cloud/storage and @google-cloud/secret-manager reading seed 000's
`my-bucket/data.txt` and `api-key` as seed 001's federated GitHub identity, @google-cloud/pubsub
publishing and receiving with that identity as Application Default Credentials, and the denial an
identity without the role gets. The scripts are tests/e2e/node/*.mjs, installed by `npm ci`.

What each needs to reach Keyless (README "Google's Node.js clients"):
- google-auth-library: `token_url` (and `service_account_impersonation_url`) in the file, as
  google-auth; its project lookup goes to `cloud_resource_manager_url` when the file sets it.
- @google-cloud/storage: `apiEndpoint: SERVER` AND `useAuthWithCustomEndpoint: true` (with a custom
  endpoint it otherwise sends no credentials, as for an emulator); or, unchanged, the universe setup:
  `universeDomain`, Keyless's CA in NODE_EXTRA_CA_CERTS and the universe's hosts.
- @google-cloud/secret-manager: no path prefix can be configured (gax builds
  `https://HOST:PORT/v1/...`), so it needs the universe setup: `universeDomain` plus `port` (a port
  inside the universe domain is not understood), gRPC (its default) trusting Keyless's CA through
  GRPC_DEFAULT_SSL_ROOTS_FILE_PATH, or REST (`fallback: true`) through NODE_EXTRA_CA_CERTS.
The universe tests run node in its own mount namespace (`unshare -m`, as test_universe_tls.py) with
the hosts file `keyless env --write-hosts` writes and a resolv.conf naming only loopback, so no name
lookup (grpc-js also asks DNS for a TXT service config) leaves the machine."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from keyless.tokens import idp
from tests.api.helpers import audit_data_access, server_state
from tests.conftest import KeylessServer, free_port, fresh_database_url
from tests.e2e import nodejs
from tests.e2e.test_audit_logs import wait_for
from tests.e2e.test_token_exchange import AUDIENCE, DEPLOY_SA, NUMBER, POOL, REPO_SET

pytestmark = [pytest.mark.usefixtures("node_clients"),
              pytest.mark.store_independent]  # the clients' side of the wire: SQLite leg only

UNIVERSE = "keyless.test"
SECRET = "projects/my-project/secrets/api-key/versions/latest"
OTHER_REPO = "my-org/other-repo"  # passes the provider's condition, holds no role anywhere
needs_namespaces = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                      reason="needs root and unshare(1) to give node its own /etc/hosts")


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    """Seeds 000/001: github-pool and github-provider on Keyless's GitHub issuer, deploy-sa that
    my-org/my-repo may impersonate, my-bucket/data.txt and the api-key secret readable by my-repo's
    principal set and by deploy-sa; Data Access logs on for STS, IAM, Storage and Secret Manager."""
    tls_port = free_port()
    server = KeylessServer(tmp_path_factory.mktemp("node") / "data", fresh_database_url(), "--allow-insecure-issuers",
                           "--tls-port", str(tls_port), "--universe-domain", UNIVERSE)
    server.tls_port = tls_port  # type: ignore[attr-defined]
    # seed 001's project, pool, provider, deploy-sa and binding, as a newcomer makes them
    made = server.keyless("quickstart", "--output-file", str(server.data_dir.parent / "quickstart.json"))
    assert made.returncode == 0, made.stderr
    policy = ok(server.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy", body={}))
    policy["bindings"].append({"role": "roles/viewer", "members": [f"serviceAccount:{DEPLOY_SA}"]})
    ok(server.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy", body={"policy": policy}))
    audit_data_access(server, "my-project", {"sts.googleapis.com": ["ADMIN_READ"], "iam.googleapis.com": ["DATA_READ"],
                                             "storage.googleapis.com": ["DATA_READ"],
                                             "secretmanager.googleapis.com": ["DATA_READ"]})
    readers = [REPO_SET, f"serviceAccount:{DEPLOY_SA}"]
    ok(server.call("POST", "/storage/v1/b", params={"project": "my-project"}, body={"name": "my-bucket"}))
    ok(server.call("POST", "/upload/storage/v1/b/my-bucket/o", params={"uploadType": "media", "name": "data.txt"},
                   raw=b"hello from my-bucket", headers={"Content-Type": "text/plain"}))
    bucket_policy = ok(server.call("GET", "/storage/v1/b/my-bucket/iam"))
    bucket_policy["bindings"].append({"role": "roles/storage.objectViewer", "members": readers})
    ok(server.call("PUT", "/storage/v1/b/my-bucket/iam", body=bucket_policy))
    sm = "/secretmanager/v1/projects/my-project/secrets"
    ok(server.call("POST", sm, params={"secretId": "api-key"}, body={"replication": {"automatic": {}}}))
    ok(server.call("POST", f"{sm}/api-key:addVersion",
                   body={"payload": {"data": base64.b64encode(b"s3cr3t-value").decode()}}))
    ok(server.call("POST", f"{sm}/api-key:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/secretmanager.secretAccessor", "members": readers}]}}))
    yield server
    server.stop()


def credentials(srv: KeylessServer, tmp_path: Path, source: str, *, ref: str, repository: str = "my-org/my-repo",
                impersonate: bool = False, universe: str | None = None) -> Path:
    """The external_account file `gcloud iam workload-identity-pools create-cred-config` writes, with
    Keyless's URLs: plain HTTP by path prefix, or Google's URL shapes on keyless.test's TLS port with
    `universe_domain` = `universe`."""
    if source == "file":  # the token minted in-process as `keyless token github` does, without its start-up second
        (tmp_path / "github.jwt").write_text(idp.github_token(server_state(srv).keys, srv.base_url, repository=repository,
                                                              ref=ref, audience=f"https:{AUDIENCE}"))
        credential_source: dict[str, Any] = {"file": str(tmp_path / "github.jwt")}
    else:  # what google-github-actions/auth writes: the runner's token endpoint, with our audience
        out = srv.keyless("token", "github-actions-env", "--repository", repository, "--ref", ref,
                          "--server", srv.base_url)
        assert out.returncode == 0, out.stderr
        env = dict(line.split("=", 1) for line in out.stdout.splitlines())
        credential_source = {
            "url": env["ACTIONS_ID_TOKEN_REQUEST_URL"] + "&audience=" + quote(f"https:{AUDIENCE}", safe=""),
            "headers": {"Authorization": f"Bearer {env['ACTIONS_ID_TOKEN_REQUEST_TOKEN']}"},
            "format": {"type": "json", "subject_token_field_name": "value"}}
    if universe:
        domain = f"{UNIVERSE}:{srv.tls_port}"  # type: ignore[attr-defined]
        sts, iamcredentials = f"https://sts.{domain}/v1/token", f"https://iamcredentials.{domain}/v1"
        extra = {"universe_domain": universe}
    else:
        sts, iamcredentials = f"{srv.base_url}/sts/v1/token", f"{srv.base_url}/iamcredentials/v1"
        extra = {"cloud_resource_manager_url": f"{srv.base_url}/cloudresourcemanager/v1/projects/"}
    config = {"type": "external_account", "audience": AUDIENCE,
              "subject_token_type": "urn:ietf:params:oauth:token-type:jwt", "token_url": sts,
              "credential_source": credential_source, **extra}
    if impersonate:
        config["service_account_impersonation_url"] = \
            f"{iamcredentials}/projects/-/serviceAccounts/{DEPLOY_SA}:generateAccessToken"
    path = tmp_path / f"{source}-{ref.rsplit('/', 1)[-1]}.json"
    path.write_text(json.dumps(config))
    return path


def subject(ref: str, repository: str = "my-org/my-repo") -> str:
    return f"repo:{repository}:ref:{ref}"


@pytest.fixture(scope="module")
def universe(srv: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What a Node workload is given to use Keyless as Google's hosts of the keyless.test universe:
    the variables `keyless env` prints (Keyless's CA for Node's https and for grpc-js), the hosts
    entries it writes, and a loopback-only resolver."""
    tmp_path = tmp_path_factory.mktemp("universe")
    hosts, resolv = tmp_path / "hosts", tmp_path / "resolv.conf"
    hosts.write_text("127.0.0.1 localhost\n")
    assert srv.keyless("env", "--universe-domain", UNIVERSE, "--write-hosts", str(hosts)).returncode == 0
    resolv.write_text("nameserver 127.0.0.1\n")
    printed = srv.keyless("env", "--universe-domain", UNIVERSE, "--tls-port", str(srv.tls_port))  # type: ignore[attr-defined]
    env = dict(line[len("export "):].split("=", 1) for line in printed.stdout.splitlines() if line.startswith("export "))
    bundle = str(srv.data_dir / "tls" / "bundle.pem")
    assert env["NODE_EXTRA_CA_CERTS"] == env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] == bundle, printed.stdout
    return {"hosts": hosts, "resolv": resolv, "env": env}


# -- google-auth-library --------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["file", "url"])
def test_google_auth_library_federated_token(srv: KeylessServer, tmp_path: Path, source: str) -> None:
    """Without impersonation: the STS token is the federated principal's own, and reads what that
    principal set was granted (data.txt), through a request the Node client authorises itself."""
    ref = f"refs/heads/node-{source}-direct"
    out = nodejs.run("google_auth.mjs", {
        "keyFilename": str(credentials(srv, tmp_path, source, ref=ref)),
        "get": [f"{srv.base_url}/storage/v1/b/my-bucket/o/data.txt?alt=media"]})
    assert out["client"] == "IdentityPoolClient" and out["serviceAccount"] is None, out
    assert out["get"] == [{"status": 200, "body": "hello from my-bucket"}]
    # the project lookup reached Keyless at cloud_resource_manager_url; the principal set holds no
    # role on the project itself, and the Node client surfaces Google's 403
    assert out["projectId"]["error"]["status"] == 403
    assert out["projectId"]["error"]["message"] == ("Permission 'resourcemanager.projects.get' denied on resource "
                                                    f"'//cloudresourcemanager.googleapis.com/projects/{NUMBER}' "
                                                    "(or it may not exist).")
    info = ok(httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": out["token"]}))
    principal = f"principal://iam.googleapis.com/{POOL}/subject/{subject(ref)}"
    assert info["sub"] == principal
    # the exchange is audited with the GitHub subject, its mapped principal, and Node's user agent
    entries = wait_for(srv, 'protoPayload.methodName="google.identity.sts.v1.SecurityTokenService.ExchangeToken" AND '
                         f'protoPayload.authenticationInfo.principalSubject="{subject(ref)}"', 1)
    assert len(entries) == 1, entries
    payload = entries[0]["protoPayload"]
    assert payload["metadata"]["mapped_principal"] == principal
    assert payload["requestMetadata"]["callerSuppliedUserAgent"] == "node-fetch"  # gaxios, under google-auth-library
    assert entries[0]["logName"] == "projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access"


@pytest.mark.parametrize("source", ["file", "url"])
def test_google_auth_library_impersonates_the_service_account(srv: KeylessServer, tmp_path: Path,
                                                              source: str) -> None:
    """With `service_account_impersonation_url`: the token is deploy-sa's, and the client's project
    lookup (at `cloud_resource_manager_url`) finds my-project with it."""
    ref = f"refs/heads/node-{source}-impersonated"
    out = nodejs.run("google_auth.mjs", {
        "keyFilename": str(credentials(srv, tmp_path, source, ref=ref, impersonate=True)),
        "get": [f"{srv.base_url}/cloudresourcemanager/v1/projects/my-project"]})
    assert out["client"] == "IdentityPoolClient" and out["serviceAccount"] == DEPLOY_SA, out
    assert out["projectId"] == "my-project"
    assert out["get"][0]["status"] == 200 and out["get"][0]["body"]["projectNumber"] == NUMBER
    info = ok(httpx.get(f"{srv.base_url}/oauth2/v3/tokeninfo", params={"access_token": out["token"]}))
    assert info["email"] == DEPLOY_SA
    principal = f"principal://iam.googleapis.com/{POOL}/subject/{subject(ref)}"
    entries = wait_for(srv, f'protoPayload.methodName="GenerateAccessToken" AND '
                         f'protoPayload.authenticationInfo.principalSubject="{principal}"', 1)
    assert len(entries) == 1, entries
    assert entries[0]["resource"]["labels"]["email_id"] == DEPLOY_SA
    assert entries[0]["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"].startswith(
        "google-api-nodejs-client/10.9.1")
    exchanges = wait_for(srv, f'protoPayload.authenticationInfo.principalSubject="{subject(ref)}"', 1)
    assert [e["protoPayload"]["methodName"] for e in exchanges] == [
        "google.identity.sts.v1.SecurityTokenService.ExchangeToken"]


def test_google_auth_library_refusal_names_the_cause(srv: KeylessServer, tmp_path: Path) -> None:
    """A repository outside the principal set may exchange but not impersonate: the Node client
    surfaces IAM Credentials' 403 with Google's message."""
    out = nodejs.run("google_auth.mjs", {"keyFilename": str(credentials(
        srv, tmp_path, "file", ref="refs/heads/node-refused", repository=OTHER_REPO, impersonate=True))})
    assert out["error"]["status"] == 403, out
    assert "iam.serviceAccounts.getAccessToken" in out["error"]["message"]
    assert out["error"]["body"]["error"]["status"] == "PERMISSION_DENIED"


# -- @google-cloud/storage ------------------------------------------------------------------------

def test_storage_reads_the_seed_object_by_api_endpoint(srv: KeylessServer, tmp_path: Path) -> None:
    objects = [["my-bucket", "data.txt"]]
    allowed = nodejs.run("storage.mjs", {"objects": objects, "options": {
        "keyFilename": str(credentials(srv, tmp_path, "file", ref="refs/heads/node-storage")),
        "apiEndpoint": srv.base_url, "useAuthWithCustomEndpoint": True}})
    assert allowed == {"apiEndpoint": srv.base_url, "downloads": [{"data": "hello from my-bucket"}]}
    # the client's ApiError for a failed download carries Google's JSON error body as its message
    denied = nodejs.run("storage.mjs", {"objects": objects, "options": {
        "keyFilename": str(credentials(srv, tmp_path, "file", ref="refs/heads/node-storage-denied",
                                       repository=OTHER_REPO)),
        "apiEndpoint": srv.base_url, "useAuthWithCustomEndpoint": True}})
    other = f"principal://iam.googleapis.com/{POOL}/subject/{subject('refs/heads/node-storage-denied', OTHER_REPO)}"
    error = denied["downloads"][0]["error"]
    assert (error["name"], error["code"]) == ("ApiError", 403), error
    body = json.loads(error["message"])["error"]
    assert body["code"] == 403 and body["errors"][0]["reason"] == "forbidden"
    assert body["message"] == (f"{other} does not have storage.objects.get access to the Google Cloud Storage "
                               "object. Permission 'storage.objects.get' denied on resource (or it may not exist).")
    # Without useAuthWithCustomEndpoint the client sends no credentials to a custom endpoint (as to an
    # emulator): Keyless answers as Google does an anonymous caller.
    anonymous = nodejs.run("storage.mjs", {"objects": objects, "options": {
        "keyFilename": str(credentials(srv, tmp_path, "file", ref="refs/heads/node-storage")),
        "apiEndpoint": srv.base_url}})
    assert anonymous["downloads"][0]["error"]["code"] == 401
    assert json.loads(anonymous["downloads"][0]["error"]["message"])["error"]["message"].startswith(
        "Anonymous caller does not have storage.objects.get")


@needs_namespaces
def test_storage_unchanged_through_the_universe(srv: KeylessServer, universe: dict[str, Any], tmp_path: Path) -> None:
    """Only `universeDomain` set: the client reaches https://storage.keyless.test:PORT and sends the
    federated token (no custom endpoint, so no useAuthWithCustomEndpoint); with impersonation, its
    own google-auth-library (9.x) calls https://iamcredentials.keyless.test:PORT for deploy-sa's token."""
    domain = f"{UNIVERSE}:{srv.tls_port}"  # type: ignore[attr-defined]
    ref = "refs/heads/node-storage-universe"
    for impersonate in (False, True):
        folder = tmp_path / str(impersonate)
        folder.mkdir()
        out = nodejs.run("storage.mjs", {"objects": [["my-bucket", "data.txt"]], "options": {
            "keyFilename": str(credentials(srv, folder, "file", ref=ref, universe=domain, impersonate=impersonate)),
            "universeDomain": domain}}, **universe)
        assert out == {"apiEndpoint": f"https://storage.{domain}", "downloads": [{"data": "hello from my-bucket"}]}
    reads = wait_for(srv, 'protoPayload.methodName="storage.objects.get" AND protoPayload.authenticationInfo.'
                       f'principalSubject:"{subject(ref)}"', 1)
    assert len(reads) == 1 and reads[0]["protoPayload"]["status"].get("code", 0) == 0, reads
    principal = f"principal://iam.googleapis.com/{POOL}/subject/{subject(ref)}"
    minted = wait_for(srv, f'protoPayload.methodName="GenerateAccessToken" AND '
                        f'protoPayload.authenticationInfo.principalSubject="{principal}"', 1)
    assert len(minted) == 1, minted
    after = minted[0]["timestamp"]
    reads = wait_for(srv, 'protoPayload.methodName="storage.objects.get" AND '
                       f'protoPayload.authenticationInfo.principalEmail="{DEPLOY_SA}" AND timestamp>="{after}"', 1)
    assert len(reads) == 1 and reads[0]["protoPayload"]["status"].get("code", 0) == 0, reads


# -- @google-cloud/secret-manager -----------------------------------------------------------------

@needs_namespaces
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_secret_manager_through_the_universe(srv: KeylessServer, universe: dict[str, Any], tmp_path: Path,
                                             transport: str) -> None:
    """`universeDomain` and `port` set (plus `fallback: true` for REST): api-key is read as the
    federated identity; another repository's identity gets Google's PERMISSION_DENIED, as the client
    shapes it. The client appends its own port to `secretmanager.UNIVERSE` (a universe domain with a
    port becomes `HOST:PORT:443`), and refuses credentials of another universe: on a TLS port other
    than 443 the file's universe_domain is the bare domain and `port` names the TLS port."""
    port = srv.tls_port  # type: ignore[attr-defined]
    extra = {"fallback": True} if transport == "rest" else {}
    runs = {}
    for repository in ("my-org/my-repo", OTHER_REPO):
        ref = f"refs/heads/node-secret-{transport}"
        folder = tmp_path / repository.split("/")[1]
        folder.mkdir()
        path = credentials(srv, folder, "file", ref=ref, repository=repository, universe=UNIVERSE)
        runs[repository] = nodejs.run("secret_manager.mjs", {"names": [SECRET], "options": {
            "keyFilename": str(path), "universeDomain": UNIVERSE, "port": port, **extra}}, **universe)
    allowed, denied = runs["my-org/my-repo"], runs[OTHER_REPO]
    assert allowed["apiEndpoint"] == f"secretmanager.{UNIVERSE}"
    assert allowed["versions"] == [{"name": f"projects/{NUMBER}/secrets/api-key/versions/1", "data": "s3cr3t-value"}]
    message = ("Permission 'secretmanager.versions.access' denied for resource "
               "'projects/my-project/secrets/api-key/versions/latest' (or it may not exist).")
    error = denied["versions"][0]["error"]
    if transport == "grpc":  # grpc-js's error as gax decorates it: status, Google's message, ErrorInfo's reason
        assert (error["code"], error["details"], error["reason"]) == (7, message, "IAM_PERMISSION_DENIED"), error
        assert error["message"] == f"7 PERMISSION_DENIED: {message}"
    else:  # gax's REST fallback lets gaxios throw on the 403: Google's JSON error body is the message
        assert (error["name"], error["code"]) == ("GaxiosError", 403), error
        body = json.loads(error["message"])["error"]
        assert (body["status"], body["message"]) == ("PERMISSION_DENIED", message)
        assert body["details"][0]["reason"] == "IAM_PERMISSION_DENIED"
    entries = wait_for(srv, 'protoPayload.methodName="google.cloud.secretmanager.v1.SecretManagerService.'
                         'AccessSecretVersion" AND protoPayload.authenticationInfo.principalSubject:'
                         f'"ref:refs/heads/node-secret-{transport}"', count=2)
    assert sorted(e["protoPayload"]["status"].get("code", 0) for e in entries) == [0, 7], entries


# -- @google-cloud/pubsub -------------------------------------------------------------------------

@needs_namespaces
def test_pubsub_publishes_and_receives_with_adc_through_the_universe(srv: KeylessServer, universe: dict[str, Any],
                                                                    tmp_path: Path) -> None:
    """@google-cloud/pubsub with Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS: the
    federated external_account file) and the universe setup (`universeDomain`, `port`), over gRPC
    (its only transport): my-repo's principal set publishes to `orders` and receives the message by
    streaming pull; other-repo's may publish too (roles/pubsub.publisher on the topic) but holds no
    roles/pubsub.subscriber on the subscription, and its stream is refused with PERMISSION_DENIED."""
    ps = "/pubsub/v1/projects/my-project"
    other_set = REPO_SET.replace("my-org/my-repo", OTHER_REPO)
    ok(srv.call("PUT", f"{ps}/topics/orders", body={}))
    ok(srv.call("PUT", f"{ps}/subscriptions/orders-sub", body={"topic": "projects/my-project/topics/orders"}))
    ok(srv.call("POST", f"{ps}/topics/orders:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/pubsub.publisher", "members": [REPO_SET, other_set]}]}}))
    ok(srv.call("POST", f"{ps}/subscriptions/orders-sub:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/pubsub.subscriber", "members": [REPO_SET]}]}}))
    runs = {}
    for repository in ("my-org/my-repo", OTHER_REPO):
        folder = tmp_path / repository.split("/")[1]
        folder.mkdir()
        path = credentials(srv, folder, "file", ref="refs/heads/node-pubsub", repository=repository, universe=UNIVERSE)
        runs[repository] = nodejs.run("pubsub.mjs", {
            "options": {"universeDomain": UNIVERSE, "port": srv.tls_port,  # type: ignore[attr-defined]
                        "projectId": "my-project"},
            "topic": "orders", "subscription": "orders-sub", "data": f"order from {repository}"},
            env={**universe["env"], "GOOGLE_APPLICATION_CREDENTIALS": str(path)},
            hosts=universe["hosts"], resolv=universe["resolv"])
    allowed, denied = runs["my-org/my-repo"], runs[OTHER_REPO]
    assert allowed["received"] == {"id": allowed["published"], "data": "order from my-org/my-repo",
                                   "attributes": {"origin": "node"}}, allowed
    # other-repo's publish went through (the owner pulls it); its subscriber stream did not.
    assert isinstance(denied["published"], str), denied
    pulled = ok(srv.call("POST", f"{ps}/subscriptions/orders-sub:pull", body={"maxMessages": 10}))
    assert [m["message"]["messageId"] for m in pulled["receivedMessages"]] == [denied["published"]]
    error = denied["received"]["error"]
    assert (error["code"], error["details"]) == (7, "User not authorized to perform this action."), denied
