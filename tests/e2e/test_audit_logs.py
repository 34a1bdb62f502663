"""Cloud Audit Logs end to end: real federated impersonations and a denied call are recorded,
then read back with the real `gcloud logging read`, google-cloud-logging, raw entries:list and
`keyless audit tail/read`, with the seeds' queries (seed 001 auditing section, seed 002 §8)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import token_for_service_account, token_for_user
from tests.conftest import Gcloud, KeylessServer, _need_gcloud, fresh_database_url
from tests.console.conftest import names

NUMBER = "123456789"
POOL = f"projects/{NUMBER}/locations/global/workloadIdentityPools/github-pool"
AUDIENCE = f"//iam.googleapis.com/{POOL}/providers/github-provider"
IAM = "/iam/v1/projects/my-project"
DEPLOY_SA = "deploy-sa@my-project.iam.gserviceaccount.com"
OTHER_SA = "other-sa@my-project.iam.gserviceaccount.com"
LIST = "/logging/v2/entries:list"
GAT = 'resource.type="service_account" AND protoPayload.methodName="GenerateAccessToken"'
SEED_001_POOL = ('resource.type="service_account"\nprotoPayload.methodName="GenerateAccessToken"\n'
                 'protoPayload.authenticationInfo.principalSubject=~"principalSet://iam.googleapis.com/projects/'
                 f'{NUMBER}/locations/global/workloadIdentityPools/github-pool"')
SEED_001_REPO = ('resource.type="service_account"\nprotoPayload.methodName="GenerateAccessToken"\n'
                 'protoPayload.authenticationInfo.principalSubject=~"attribute.repository/my-org/my-repo"')


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _github_token(srv: KeylessServer, repository: str) -> str:
    out = srv.keyless("token", "github", "--repository", repository, "--audience", f"https:{AUDIENCE}",
                      "--server", srv.base_url)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def impersonate(srv: KeylessServer, repository: str, account: str) -> httpx.Response:
    """A GitHub workflow of `repository` exchanges its token at STS and impersonates `account`."""
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "audience": AUDIENCE,
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "subject_token": _github_token(srv, repository),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}
    sts = httpx.post(f"{srv.base_url}/sts/v1/token", data=form, timeout=30)
    assert sts.status_code == 200, sts.text
    return httpx.post(f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{account}:generateAccessToken",
                      json={"scope": ["https://www.googleapis.com/auth/cloud-platform"]},
                      headers={"Authorization": f"Bearer {sts.json()['access_token']}"}, timeout=30)


def entries(srv: KeylessServer, filter_text: str = "", token: str | None = None, **body: Any) -> list[dict[str, Any]]:
    """Every entry of my-project that matches, following nextPageToken."""
    out: list[dict[str, Any]] = []
    req = {"resourceNames": ["projects/my-project"], "filter": filter_text, **body}
    while True:
        page = _ok(srv.call("POST", LIST, body=req, token=token))
        out += page.get("entries", [])
        if not page.get("nextPageToken"):
            return out
        req["pageToken"] = page["nextPageToken"]


def wait_for(srv: KeylessServer, filter_text: str, count: int) -> list[dict[str, Any]]:
    """The audit writer commits a moment after the call: poll until `count` entries match."""
    deadline = time.monotonic() + 10
    while True:
        found = entries(srv, filter_text)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    server = KeylessServer(tmp_path_factory.mktemp("audit") / "data", fresh_database_url(), "--allow-insecure-issuers")
    assert server.keyless("projects", "create", "my-project", "--number", NUMBER).returncode == 0
    _ok(server.call("POST", f"{IAM}/locations/global/workloadIdentityPools",
                    params={"workloadIdentityPoolId": "github-pool"}, body={}))
    _ok(server.call("POST", f"{IAM}/locations/global/workloadIdentityPools/github-pool/providers",
                    params={"workloadIdentityPoolProviderId": "github-provider"},
                    body={"attributeMapping": {"google.subject": "assertion.sub",
                                               "attribute.repository": "assertion.repository"},
                          "attributeCondition": "assertion.repository_owner == 'my-org'",
                          "oidc": {"issuerUri": f"{server.base_url}/idp/github"}}))
    for account, repo in ((DEPLOY_SA, "my-repo"), (OTHER_SA, "other-repo")):
        _ok(server.call("POST", f"{IAM}/serviceAccounts", body={"accountId": account.split("@")[0]}))
        member = f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/my-org/{repo}"
        _ok(server.call("POST", f"/iam/v1/projects/-/serviceAccounts/{account}:setIamPolicy",
                        body={"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser",
                                                       "members": [member]}]}}))
    policy = _ok(server.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy", body={}))
    policy["bindings"] += [{"role": "roles/viewer", "members": [f"serviceAccount:{DEPLOY_SA}"]},
                           {"role": "roles/logging.viewer", "members": ["user:viewer@example.com"]},
                           {"role": "roles/logging.privateLogViewer", "members": ["user:auditor@example.com"]}]
    policy["auditConfigs"] = [{"service": "iam.googleapis.com", "auditLogConfigs": [{"logType": "DATA_READ"}]}]
    _ok(server.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy",
                    body={"policy": policy, "updateMask": "bindings,etag,auditConfigs"}))
    # the calls the seeds audit: two impersonations from my-repo, one from other-repo,
    _ok(impersonate(server, "my-org/my-repo", DEPLOY_SA))
    _ok(impersonate(server, "my-org/my-repo", DEPLOY_SA))
    _ok(impersonate(server, "my-org/other-repo", OTHER_SA))
    # an out-of-scope call by the service account, denied (and recorded as such),
    denied = server.call("POST", f"{IAM}/serviceAccounts", body={"accountId": "sneaky-sa"},
                         token=token_for_service_account(server, DEPLOY_SA))
    assert denied.status_code == 403, denied.text
    # and out-of-scope impersonation: other-repo may not impersonate deploy-sa (refused, and logged
    # with code 7 as Google logs it: the seeds' missing binding leaves a trace).
    assert impersonate(server, "my-org/other-repo", DEPLOY_SA).status_code == 403
    assert len(wait_for(server, GAT, 4)) == 4
    assert wait_for(server, f'protoPayload.authenticationInfo.principalEmail="{DEPLOY_SA}"', 1)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gc(srv: KeylessServer, tmp_path_factory: pytest.TempPathFactory) -> Gcloud:
    _need_gcloud()
    return Gcloud(srv, tmp_path_factory.mktemp("gcloud"))


# -- gcloud logging read ---------------------------------------------------------------------------


def test_gcloud_logging_read_returns_exactly_the_impersonations(srv: KeylessServer, gc: Gcloud) -> None:
    got = gc.json("logging", "read", GAT, "--project=my-project", "--limit=20")
    assert len(got) == 4
    assert {e["protoPayload"]["methodName"] for e in got} == {"GenerateAccessToken"}
    assert {e["protoPayload"]["serviceName"] for e in got} == {"iamcredentials.googleapis.com"}
    assert sorted(e["protoPayload"]["status"].get("code", 0) for e in got) == [0, 0, 0, 7]
    assert {e["resource"]["type"] for e in got} == {"service_account"}
    assert all(e["logName"] == "projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access" for e in got)
    # newest first (gcloud asks for `timestamp desc`), and the same entries a direct query finds
    stamps = [e["timestamp"] for e in got]
    assert stamps == sorted(stamps, reverse=True)
    assert {e["insertId"] for e in got} == {e["insertId"] for e in entries(srv, GAT)}
    resources = sorted(e["resource"]["labels"]["email_id"] for e in got)
    assert resources == [DEPLOY_SA, DEPLOY_SA, DEPLOY_SA, OTHER_SA]


def test_gcloud_table_format_of_seed_002(srv: KeylessServer, gc: Gcloud) -> None:
    """Seed 002 §8: the service account's calls, including the denied one, as a table."""
    out = gc.run("logging", "read", f'protoPayload.authenticationInfo.principalEmail="{DEPLOY_SA}"',
                 "--project=my-project", "--limit=20",
                 "--format=table(timestamp, protoPayload.methodName, resource.type)").stdout
    lines = out.strip().splitlines()
    assert lines[0].split() == ["TIMESTAMP", "METHOD_NAME", "TYPE"]
    rows = [line.split() for line in lines[1:]]
    assert ["google.iam.admin.v1.CreateServiceAccount", "project"] in [r[1:] for r in rows], out
    assert all(r[0].endswith("Z") for r in rows)
    got = gc.json("logging", "read", f'protoPayload.authenticationInfo.principalEmail="{DEPLOY_SA}"',
                  "--project=my-project", "--limit=20")
    denied = [e for e in got if e["protoPayload"]["methodName"] == "google.iam.admin.v1.CreateServiceAccount"]
    assert denied and denied[0]["protoPayload"]["status"]["code"] == 7  # PERMISSION_DENIED
    assert denied[0]["protoPayload"]["authorizationInfo"][0]["granted"] is False


def test_gcloud_limit_pages_and_ascending_order(gc: Gcloud) -> None:
    got = gc.json("logging", "read", GAT, "--project=my-project", "--limit=2", "--order=asc")
    assert len(got) == 2
    assert got[0]["timestamp"] <= got[1]["timestamp"]
    everything = gc.json("logging", "read", GAT, "--project=my-project", "--order=asc")
    assert [e["insertId"] for e in everything[:2]] == [e["insertId"] for e in got]


def test_gcloud_logging_logs_list(gc: Gcloud) -> None:
    out = gc.run("logging", "logs", "list", "--project=my-project").stdout
    assert "projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access" in out
    assert "projects/my-project/logs/cloudaudit.googleapis.com%2Factivity" in out


def test_gcloud_malformed_filter_is_invalid_argument_with_position(gc: Gcloud) -> None:
    r = gc.run("logging", "read", 'resource.type="service_account" AND (protoPayload.methodName=', "--project=my-project",
               check=False)
    assert r.returncode == 1
    assert "INVALID_ARGUMENT" in r.stderr and "column" in r.stderr, r.stderr


# -- the seeds' queries ----------------------------------------------------------------------------


def test_seed_001_queries_as_google_answers_them(srv: KeylessServer) -> None:
    """Google records the federated principal (principal://.../subject/SUBJECT) in principalSubject,
    never a principalSet:// or attribute.* form (docs/audit-logs.md): the seed's two regexes match
    nothing there, and Keyless answers the same. The forms that do work find exactly the right calls."""
    assert entries(srv, SEED_001_POOL) == []
    assert entries(srv, SEED_001_REPO) == []
    pool = entries(srv, GAT + f'\nprotoPayload.authenticationInfo.principalSubject=~"^principal://iam.googleapis.com/'
                              f'{POOL}/subject/"')
    assert len(pool) == 4
    repo = entries(srv, GAT + '\nprotoPayload.authenticationInfo.principalSubject=~"/subject/repo:my-org/my-repo:"')
    assert len(repo) == 2
    assert {e["resource"]["labels"]["email_id"] for e in repo} == {DEPLOY_SA}
    subject = repo[0]["protoPayload"]["authenticationInfo"]["principalSubject"]
    assert subject == f"principal://iam.googleapis.com/{POOL}/subject/repo:my-org/my-repo:ref:refs/heads/main"
    has = entries(srv, GAT + ' protoPayload.authenticationInfo.principalSubject:"REPO:MY-ORG/OTHER-REPO"')
    assert sorted(e["resource"]["labels"]["email_id"] for e in has) == [DEPLOY_SA, OTHER_SA]  # `:` ignores case


def test_seed_001_data_access_config_governs_what_is_recorded(srv: KeylessServer) -> None:
    """Without DATA_READ for iam.googleapis.com, GenerateAccessToken is not recorded (seed 001)."""
    policy = _ok(srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy", body={}))
    configs = policy.pop("auditConfigs")
    _ok(srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy",
                 body={"policy": {**policy, "auditConfigs": []}, "updateMask": "auditConfigs,etag"}))
    try:
        _ok(impersonate(srv, "my-org/my-repo", DEPLOY_SA))
        time.sleep(0.5)
        assert len(entries(srv, GAT)) == 4
        # the configuration change itself is an Admin Activity entry
        changes = entries(srv, 'log_id("cloudaudit.googleapis.com/activity") protoPayload.methodName="SetIamPolicy"')
        assert changes
    finally:
        policy = _ok(srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy", body={}))
        _ok(srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy",
                     body={"policy": {**policy, "auditConfigs": configs}, "updateMask": "auditConfigs,etag"}))


# -- entries:list directly -------------------------------------------------------------------------


def test_order_by_and_paging_are_consistent(srv: KeylessServer) -> None:
    asc = entries(srv, "", orderBy="timestamp asc", pageSize=2)
    desc = entries(srv, "", orderBy="timestamp desc", pageSize=3)
    assert len(asc) >= 8
    assert [e["insertId"] for e in asc] == [e["insertId"] for e in reversed(desc)]
    assert [e["timestamp"] for e in asc] == sorted(e["timestamp"] for e in asc)
    assert len({e["insertId"] for e in asc}) == len(asc)


def test_log_names_logid_and_severity(srv: KeylessServer) -> None:
    data_access = entries(srv, 'logName="projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access"')
    assert len(data_access) == 4
    assert entries(srv, 'logName="projects/my-project/logs/cloudaudit.googleapis.com/data_access"') == data_access
    assert entries(srv, 'log_id("cloudaudit.googleapis.com/data_access")') == data_access
    errors = entries(srv, "severity>=ERROR")
    assert errors and all(e["protoPayload"]["status"]["code"] != 0 for e in errors)
    one = data_access[0]
    assert entries(srv, f'insertId="{one["insertId"]}"') == [one]
    later = entries(srv, f'timestamp>"{one["timestamp"]}" AND log_id("cloudaudit.googleapis.com/data_access")')
    assert [e["insertId"] for e in later] == [e["insertId"] for e in data_access[1:]]
    logs = _ok(srv.call("GET", "/logging/v2/projects/my-project/logs"))["logNames"]
    assert "projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access" in logs
    assert "projects/my-project/logs/cloudaudit.googleapis.com%2Factivity" in logs


def test_permissions_and_private_logs(srv: KeylessServer) -> None:
    stranger = token_for_user(srv, "stranger@example.com")
    r = srv.call("POST", LIST, token=stranger, body={"resourceNames": ["projects/my-project"]})
    assert r.status_code == 403
    assert r.json()["error"]["status"] == "PERMISSION_DENIED"
    assert "logging.logEntries.list" in r.json()["error"]["message"]
    # roles/logging.viewer reads Admin Activity but not the private Data Access log
    viewer = entries(srv, "", token=token_for_user(srv, "viewer@example.com"))
    assert viewer and not any("data_access" in e["logName"] for e in viewer)
    assert entries(srv, GAT, token=token_for_user(srv, "viewer@example.com")) == []
    # roles/logging.privateLogViewer reads both
    auditor = entries(srv, "", token=token_for_user(srv, "auditor@example.com"))
    assert len([e for e in auditor if "data_access" in e["logName"]]) == 4
    assert len(auditor) == len(entries(srv, ""))


@pytest.mark.parametrize("body, fragment", [
    ({"filter": 'a="b" AND'}, "line 1, column 10"),
    ({"filter": 'resource.type="x"\n  AND (b=1'}, "line 2"),
    ({"filter": "x=~\"(a)\\\\1\""}, "backreferences"),
    ({"filter": "a" * 20_001}, "too long"),
    ({"filter": "(" * 100 + "a" + ")" * 100}, "nested"),
    ({"filter": "severity>=LOUD"}, "invalid severity"),
    ({"orderBy": "insertId desc"}, "orderBy"),
    ({"pageToken": "garbage"}, "page token"),
    ({"pageSize": -1}, "page_size"),
    ({"resourceNames": ["projects/../etc"]}, "Invalid resource name"),
    ({"resourceNames": []}, "resourceNames"),
    ({"unknown": 1}, "Unknown name"),
])
def test_hostile_requests_are_invalid_argument(srv: KeylessServer, body: dict[str, Any], fragment: str) -> None:
    r = srv.call("POST", LIST, body={"resourceNames": ["projects/my-project"], **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert fragment in r.json()["error"]["message"]


def test_catastrophic_regex_is_linear(srv: KeylessServer) -> None:
    start = time.monotonic()
    assert entries(srv, 'protoPayload.resourceName=~"^(a+)+$" OR protoPayload.methodName=~"(x+x+)+y"') == []
    assert time.monotonic() - start < 5


# -- client libraries and the keyless CLI ----------------------------------------------------------


def test_google_cloud_logging_client_list_entries(srv: KeylessServer) -> None:
    from google.cloud import logging as cloud_logging
    from google.oauth2.credentials import Credentials

    client = cloud_logging.Client(project="my-project", credentials=Credentials(srv.owner_token),
                                  client_options={"api_endpoint": f"{srv.base_url}/logging"}, _use_grpc=False)
    got = list(client.list_entries(filter_=GAT, order_by=cloud_logging.DESCENDING, page_size=2))
    assert len(got) == 4
    assert {e.resource.type for e in got} == {"service_account"}
    assert all(e.log_name == "cloudaudit.googleapis.com%2Fdata_access" or "data_access" in e.log_name for e in got)
    payload = got[0].payload
    assert (payload["methodName"] if isinstance(payload, dict) else payload.method_name) == "GenerateAccessToken"


def test_keyless_audit_read(srv: KeylessServer) -> None:
    out = srv.keyless("audit", "read", GAT, "--project", "my-project", "--server", srv.base_url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4 and all("GenerateAccessToken" in line and "data_access" in line for line in lines)
    assert sum("code=7" in line for line in lines) == 1
    bad = srv.keyless("audit", "read", "a=", "--project", "my-project", "--server", srv.base_url)
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr
    js = srv.keyless("audit", "read", GAT, "--project", "my-project", "--server", srv.base_url, "--format", "json",
                     "--limit", "1")
    assert json.loads(js.stdout)["protoPayload"]["methodName"] == "GenerateAccessToken"


def test_keyless_audit_read_and_the_console_say_why_seed_001_queries_find_nothing(srv: KeylessServer) -> None:
    """Seed 001's principalSet:// and attribute.repository/ queries find nothing (as on Google); the
    CLI and the console say why and print the filter that works, which finds the right calls."""
    from keyless.audit.subject_hint import suggested_filters

    for seed, wanted, accounts in ((SEED_001_POOL, f'=~"^principal://iam.googleapis.com/{POOL}/subject/"',
                                    {DEPLOY_SA, OTHER_SA}),
                                   (SEED_001_REPO, f'=~"^principal://iam.googleapis.com/{POOL}/subject/repo:my-org/my-repo:"',
                                    {DEPLOY_SA})):
        out = srv.keyless("audit", "read", seed, "--project", "my-project", "--server", srv.base_url)
        assert out.returncode == 0 and out.stdout == "", out
        assert "attributes are not logged" in out.stderr, out.stderr
        [suggested] = suggested_filters(out.stderr)
        assert suggested.startswith(GAT.replace(" AND ", "\n")) and suggested.endswith(wanted), suggested
        found = entries(srv, suggested)
        assert found and {e["resource"]["labels"]["email_id"] for e in found} == accounts
        assert f"finds {len(found)} entr" in out.stderr
        # the console's timeline says the same
        console = httpx.Client(base_url=srv.base_url, timeout=30)
        console.get("/console/signin")
        r = console.post("/console/signin", data={"csrf": console.cookies[names(srv).csrf], "token": srv.owner_token})
        assert r.status_code == 303
        page = _ok(console.get("/console/api/entries", params={"project": "my-project", "filter": seed}))
        assert page["entries"] == [] and suggested_filters(page["hint"]) == [suggested]
    # a query that finds entries, or one of another kind, gets no hint
    out = srv.keyless("audit", "read", 'protoPayload.methodName="NoSuchMethod"', "--project", "my-project",
                      "--server", srv.base_url)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""


def test_keyless_audit_tail_follows_new_entries(srv: KeylessServer) -> None:
    cmd = [sys.executable, "-m", "keyless.cli.main", "audit", "tail", "--project", "my-project",
           "--filter", 'protoPayload.methodName="GenerateAccessToken"', "--interval", "0.2",
           "--server", srv.base_url, "--data-dir", str(srv.data_dir)]
    if srv.database_url:
        cmd += ["--database", srv.database_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True).start()
    try:
        before = len(entries(srv, GAT))
        seen = [lines.get(timeout=20) for _ in range(before)]
        assert all("GenerateAccessToken" in line for line in seen)
        _ok(impersonate(srv, "my-org/other-repo", OTHER_SA))
        fresh = lines.get(timeout=20)  # tail prints the new entry as it lands
        assert "GenerateAccessToken" in fresh and "subject/repo:my-org/other-repo" in fresh
        with pytest.raises(queue.Empty):  # and nothing twice
            lines.get(timeout=1.5)
    finally:
        proc.kill()
        proc.wait(10)


def test_caller_ip_is_the_connection_s_not_a_header_s(srv: KeylessServer) -> None:
    """callerIp is where the call came from: a client on the same machine cannot write another
    address into the audit log with X-Forwarded-For (as no caller can on Google)."""
    r = srv.call("POST", "/iam/v1/projects/my-project/serviceAccounts", body={"accountId": "spoofing-sa"},
                 headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"})
    assert r.status_code == 200, r.text
    made = [e for e in entries(srv, 'protoPayload.methodName:"CreateServiceAccount"') if "spoofing-sa" in json.dumps(e)]
    assert made and all(e["protoPayload"]["requestMetadata"]["callerIp"] == "127.0.0.1" for e in made), made
    assert entries(srv, 'protoPayload.requestMetadata.callerIp="203.0.113.9"') == []


def test_a_trusted_proxy_names_the_caller(tmp_path: Path) -> None:
    """Behind a reverse proxy (`--trusted-proxy`), its X-Forwarded-For is the caller's address."""
    behind = KeylessServer(tmp_path / "data", fresh_database_url(), "--trusted-proxy", "127.0.0.1")
    try:
        assert behind.keyless("projects", "create", "my-project", "--number", "123456789012").returncode == 0
        r = behind.call("POST", "/iam/v1/projects/my-project/serviceAccounts", body={"accountId": "proxied-sa"},
                        headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 200, r.text
        made = [e for e in entries(behind, 'protoPayload.methodName:"CreateServiceAccount"')
                if "proxied-sa" in json.dumps(e)]
        assert [e["protoPayload"]["requestMetadata"]["callerIp"] for e in made] == ["203.0.113.9"]
    finally:
        behind.stop()


# -- refusals and the IAM Credentials entries as Google writes them (issue #19) ----------------------


def _set_audit_configs(srv: KeylessServer, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace my-project's auditConfigs; returns the previous ones."""
    policy = _ok(srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:getIamPolicy", body={}))
    before = policy.pop("auditConfigs", [])
    _ok(srv.call("POST", "/cloudresourcemanager/v1/projects/my-project:setIamPolicy",
                 body={"policy": {**policy, "auditConfigs": configs}, "updateMask": "auditConfigs,etag"}))
    return before


def test_refused_google_auth_impersonation_is_recorded_with_code_7(srv: KeylessServer, gc: Gcloud,
                                                                   tmp_path: Path) -> None:
    """The seeds' common mistake, a missing workloadIdentityUser binding, as google-auth meets it: the
    external account's impersonation is refused, and the refusal is the Data Access entry Google
    writes (iamcredentials.googleapis.com, status 7, the permission not granted)."""
    import google.auth
    import google.auth.transport.requests
    from google.auth import exceptions

    _ok(srv.call("POST", f"{IAM}/serviceAccounts", body={"accountId": "unbound-sa"}))
    unbound = "unbound-sa@my-project.iam.gserviceaccount.com"
    (tmp_path / "token").write_text(_github_token(srv, "my-org/my-repo"))
    config = {"universe_domain": "localhost", "type": "external_account", "audience": AUDIENCE,
              "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
              "token_url": f"{srv.base_url}/sts/v1/token", "credential_source": {"file": str(tmp_path / "token")},
              "service_account_impersonation_url":
                  f"{srv.base_url}/iamcredentials/v1/projects/-/serviceAccounts/{unbound}:generateAccessToken"}
    (tmp_path / "cred.json").write_text(json.dumps(config))
    creds, _ = google.auth.load_credentials_from_file(str(tmp_path / "cred.json"))
    creds = creds.with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
    with pytest.raises(exceptions.RefreshError, match="iam.serviceAccounts.getAccessToken"):
        creds.refresh(google.auth.transport.requests.Request())
    query = f'protoPayload.serviceName="iamcredentials.googleapis.com" AND resource.labels.email_id="{unbound}"'
    assert len(wait_for(srv, query, 1)) == 1
    got = gc.json("logging", "read", f"{query} AND severity>=ERROR", "--project=my-project")
    assert len(got) == 1
    entry, payload = got[0], got[0]["protoPayload"]
    assert payload["methodName"] == "GenerateAccessToken"
    assert payload["status"]["code"] == 7 and "iam.serviceAccounts.getAccessToken" in payload["status"]["message"]
    assert payload["authenticationInfo"]["principalSubject"] == \
        f"principal://iam.googleapis.com/{POOL}/subject/repo:my-org/my-repo:ref:refs/heads/main"
    assert payload["authorizationInfo"] == [{"resource": payload["resourceName"], "granted": False,
                                             "permission": "iam.serviceAccounts.getAccessToken",
                                             "permissionType": "ADMIN_READ"}]
    assert entry["logName"] == "projects/my-project/logs/cloudaudit.googleapis.com%2Fdata_access"
    out = srv.keyless("audit", "read", query, "--project", "my-project", "--server", srv.base_url)
    assert out.returncode == 0 and "code=7" in out.stdout and "iamcredentials.googleapis.com" in out.stdout, out


def test_iam_credentials_entries_follow_iam_googleapis_com_either_read_type(srv: KeylessServer) -> None:
    """Google logs the IAM Credentials methods (ADMIN_READ of iamcredentials.googleapis.com) where
    iam.googleapis.com's Data Access logs are on; they cannot be enabled for iamcredentials alone."""
    before = len(entries(srv, GAT))
    previous = _set_audit_configs(srv, [{"service": "iamcredentials.googleapis.com", "auditLogConfigs": [
        {"logType": "ADMIN_READ"}, {"logType": "DATA_READ"}]}])
    try:
        _ok(impersonate(srv, "my-org/my-repo", DEPLOY_SA))
        time.sleep(0.5)
        assert len(entries(srv, GAT)) == before  # not on their own
        _set_audit_configs(srv, [{"service": "iam.googleapis.com", "auditLogConfigs": [{"logType": "ADMIN_READ"}]}])
        _ok(impersonate(srv, "my-org/my-repo", DEPLOY_SA))
        assert len(wait_for(srv, GAT, before + 1)) == before + 1
        _set_audit_configs(srv, [{"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]}])
        _ok(impersonate(srv, "my-org/my-repo", DEPLOY_SA))
        assert len(wait_for(srv, GAT, before + 2)) == before + 2
    finally:
        _set_audit_configs(srv, previous)


def test_refused_exchange_status_is_the_code_of_its_http_status(srv: KeylessServer) -> None:
    """An ExchangeToken refusal answered 400 is INVALID_ARGUMENT (3) in its entry, as Google writes
    it, not INTERNAL (13)."""
    previous = _set_audit_configs(srv, [{"service": "sts.googleapis.com", "auditLogConfigs": [
        {"logType": "ADMIN_READ"}]}])
    try:
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "audience": AUDIENCE,
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
                "subject_token": _github_token(srv, "not-my-org/repo"),
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}
        r = httpx.post(f"{srv.base_url}/sts/v1/token", data=form, timeout=30)
        assert r.status_code == 400 and r.json()["error"] == "unauthorized_client", r.text
        found = wait_for(srv, 'protoPayload.methodName:"ExchangeToken" AND severity=ERROR', 1)
        assert [e["protoPayload"]["status"]["code"] for e in found] == [3]
        assert "attribute condition" in found[0]["protoPayload"]["status"]["message"]
    finally:
        _set_audit_configs(srv, previous)
