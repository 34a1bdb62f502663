"""The console in a real browser (Debian's chromium, headless, driven by Playwright) against a real
`keyless serve` holding seed 001's setup from `keyless quickstart`, with planted mistakes: sign in
through the one-time link, read the identity graph, filter and tail the audit timeline, explain a
missing workloadIdentityUser binding and a denied audit entry, and a principal without permission
sees Google's 403 reason and no data.

With KEYLESS_CONSOLE_SCREENSHOTS=DIR the tests also save a PNG of each view there (the README's
docs/console/ pictures are made that way).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import expect

from tests.api.helpers import token_for_user
from tests.conftest import KeylessServer, free_port, fresh_database_url
from tests.console.conftest import DEPLOY_SA, OTHER_SA, POOL, PROJECT, PROVIDER, names, seed_001, sign_in_link
from tests.e2e.test_audit_logs import _github_token, impersonate
from tests.gke.pod_helpers import make_cluster

pytestmark = pytest.mark.store_independent  # runs on the SQLite leg only (tests/conftest.py)

EXCHANGE = "google.identity.sts.v1.SecurityTokenService.ExchangeToken"
KSA = f"{PROJECT}.svc.id.goog[production/my-app]"
WIDE_SA = f"wide-sa@{PROJECT}.iam.gserviceaccount.com"
CI_SA = f"ci-deploy@{PROJECT}.iam.gserviceaccount.com"
REPO_SET = f"principalSet://iam.googleapis.com/{POOL}/attribute.repository/my-org/my-repo"
OWNER = "user:owner@keyless.dev"
TIMEOUT = 15_000  # ms: what the browser waits for a view to fill at most


def _grant(srv: KeylessServer, path: str, role: str, member: str, condition: dict[str, str] | None = None) -> None:
    policy = srv.call("POST", f"{path}:getIamPolicy", body={"options": {"requestedPolicyVersion": 3}}).json()
    binding: dict[str, Any] = {"role": role, "members": [member]}
    if condition:
        binding["condition"] = condition
        policy["version"] = 3
    policy.setdefault("bindings", []).append(binding)
    r = srv.call("POST", f"{path}:setIamPolicy", body={"policy": policy})
    assert r.status_code == 200, r.text


def _apply(srv: KeylessServer, docs: list[dict[str, Any]]) -> None:
    """Kubernetes objects applied to my-cluster with `keyless k8s apply -f`, as a user would (one command)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump_all(docs, f)
    try:
        out = srv.keyless("k8s", "apply", "-f", f.name, "--cluster", "my-cluster", "--project", PROJECT)
    finally:
        os.unlink(f.name)
    assert out.returncode == 0, out.stderr


def _exchange_form(subject_token: str) -> dict[str, str]:
    return {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "audience": f"//iam.googleapis.com/{PROVIDER}", "scope": "https://www.googleapis.com/auth/cloud-platform",
            "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "subject_token": subject_token, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeylessServer]:
    srv = seed_001(tmp_path_factory.mktemp("console"))
    iam = f"/iam/v1/projects/{PROJECT}/serviceAccounts"
    for account in ("other-sa", "wide-sa", "ci-deploy"):
        assert srv.call("POST", iam, body={"accountId": account}).status_code == 200
    # a pool-wide binding (the doctor's KL004) and a conditional grant, to show on their edges
    _grant(srv, f"{iam}/{WIDE_SA}", "roles/iam.workloadIdentityUser", f"principalSet://iam.googleapis.com/{POOL}/*")
    _grant(srv, f"/cloudresourcemanager/v1/projects/{PROJECT}", "roles/storage.objectViewer",
           f"serviceAccount:{DEPLOY_SA}", {"title": "deploy buckets",
                                           "expression": 'resource.name.startsWith("projects/_/buckets/deploy-")'})
    # GKE: a cluster whose KSA production/my-app is annotated with deploy-sa, which it may impersonate
    # and two KSAs the doctor faults: annotated with an account that has no binding for it (KL013), and
    # with an annotation that is not an email (KL012)
    make_cluster(srv)
    _apply(srv, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "production"}},
                 *({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {
                     "name": name, "namespace": "production", "annotations": {"iam.gke.io/gcp-service-account": gsa}}}
                   for name, gsa in (("my-app", DEPLOY_SA), ("other-app", OTHER_SA), ("bad-app", "deploy-sa")))])
    # a secret deploy-sa may read, and a pool whose provider no binding follows any more
    secrets = f"/secretmanager/v1/projects/{PROJECT}/secrets"
    assert srv.call("POST", secrets, params={"secretId": "db-password"},
                    body={"replication": {"automatic": {}}}).status_code == 200
    assert srv.call("POST", f"{secrets}/db-password:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/secretmanager.secretAccessor", "members": [f"serviceAccount:{DEPLOY_SA}"]}]}}).status_code == 200
    pools = f"/iam/v1/projects/{PROJECT}/locations/global/workloadIdentityPools"
    assert srv.call("POST", pools, params={"workloadIdentityPoolId": "lonely-pool"}, body={}).status_code == 200
    lonely = srv.call("POST", f"{pools}/lonely-pool/providers", params={"workloadIdentityPoolProviderId": "lonely-provider"},
                      body={"attributeMapping": {"google.subject": "assertion.sub"},
                            "attributeCondition": "assertion.repository_owner == 'my-org'",
                            "oidc": {"issuerUri": f"{srv.base_url}/idp/github"}})
    assert lonely.status_code == 200, lonely.text
    _grant(srv, f"{iam}/{DEPLOY_SA}", "roles/iam.workloadIdentityUser", f"serviceAccount:{KSA}")
    # ci-sa admitted the repository's workflows, then someone narrowed it away: its workflow is refused
    _grant(srv, f"{iam}/{CI_SA}", "roles/iam.workloadIdentityUser", REPO_SET)
    assert srv.call("POST", f"{iam}/{CI_SA}:setIamPolicy", body={"policy": {"bindings": []}}).status_code == 200
    assert impersonate(srv, "my-org/my-repo", CI_SA).status_code == 403
    # another organisation's workflow: the provider's attribute condition refuses the exchange (audited, diagnosed)
    refused = httpx.post(f"{srv.base_url}/sts/v1/token", data=_exchange_form(_github_token(srv, "evil-org/repo")),
                         timeout=30)
    assert refused.status_code in (400, 403), refused.text
    # a workflow of the repository impersonates deploy-sa, then makes a call it may not (denied, audited)
    made = impersonate(srv, "my-org/my-repo", DEPLOY_SA)
    assert made.status_code == 200, made.text
    denied = httpx.post(f"{srv.base_url}{iam}", json={"accountId": "sneaky-sa"}, timeout=30,
                        headers={"Authorization": f"Bearer {made.json()['accessToken']}"})
    assert denied.status_code == 403, denied.text
    yield srv
    srv.stop()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1600, "height": 950})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "403" not in m.text
            and "400" not in m.text else None)
    yield page
    context.close()
    assert not errors, errors  # no script error, no CSP violation


def _shot(page: Any, name: str) -> None:
    where = os.environ.get("KEYLESS_CONSOLE_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=False)


def _sign_in(page: Any, srv: KeylessServer) -> None:
    """As the owner, through a one-time link asked of the API (`keyless console` asks the same; the
    first test runs that command)."""
    made = srv.call("POST", "/console/v1/signInLinks")
    assert made.status_code == 200, made.text
    page.goto(made.json()["url"])
    page.click("#continue")
    page.wait_for_url("**/console/graph")


def test_one_time_link_signs_the_owner_in_once(world: KeylessServer, page: Any) -> None:
    link = sign_in_link(world)
    page.goto(link)
    assert page.text_content("#member") == OWNER  # the page says who the link signs in as
    _shot(page, "signin")
    page.click("#continue")
    page.wait_for_url("**/console/graph")
    assert page.text_content("#who") == OWNER
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies[names(world).session]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and not session["value"].startswith("ya29.")
    page.wait_for_selector("svg.graph .node")  # the view's requests are done before the cookies go
    # the link is spent: a second use (another browser) is refused with the reason, and no button
    page.context.clear_cookies()
    page.goto(link)
    assert "already used" in page.text_content("#error") and page.locator("#continue").count() == 0
    page.goto(world.base_url + "/console/graph")
    page.wait_for_url("**/console/signin")  # no session, no view


def test_graph_of_seed_001(world: KeylessServer, page: Any) -> None:
    _sign_in(page, world)
    page.wait_for_selector("svg.graph .node")
    labels = page.locator("svg.graph .node title").all_text_contents()  # full labels (the drawn ones are cut)
    for expected in ("github-pool", "github-provider", "every identity in github-pool", "repository: my-org/my-repo", "deploy-sa",
                     "other-sa", "roles/storage.objectViewer", f"projects/{PROJECT}",
                     "cluster: my-cluster", "namespace: production", "ksa: production/my-app"):
        assert any(expected in label for label in labels), (expected, labels)
    # the impersonation edge carries its role; the conditional grant is dashed; KL004 is on its edge
    assert "workloadIdentityUser" in page.locator("svg.graph text.edge-label").all_text_contents()
    assert page.locator("svg.graph path.edge.conditional").count() == 1
    # GKE: the KSA is annotated with deploy-sa and holds workloadIdentityUser on it (two edges)
    to_gsa = page.locator(f'svg.graph path.edge[data-source="serviceAccount:{KSA}"]'
                          f'[data-target="serviceAccount:{DEPLOY_SA}"]')
    assert to_gsa.count() == 2
    assert page.locator("svg.graph path.edge.finding").count() >= 1
    page.locator("svg.graph .node", has_text="deploy-sa").first.click()
    details = page.locator("#details")
    assert DEPLOY_SA in details.text_content()
    page.locator("svg.graph .node", has_text="github-provider").first.click()
    assert "assertion.repository_owner == 'my-org'" in details.text_content()  # the provider's condition
    page.click("#details .close")  # the panel floats over the graph's right-hand columns
    page.locator("svg.graph .node.kind-resource", has_text=f"projects/{PROJECT}").click()
    assert "KL022" in details.text_content()  # the doctor: key creation still allowed in the project
    page.click("#details .close")
    page.locator(f'svg.graph path.edge.finding[data-target="serviceAccount:{WIDE_SA}"]').click(force=True)
    assert "KL004" in details.text_content()
    page.locator("#canvas").evaluate("c => { c.scrollLeft = 0; }")
    _shot(page, "graph")
    # filtering by text keeps the matches and every path through them: the whole-pool member, its
    # provider and its pool, not the neighbour only
    page.fill("#q", "wide-sa")
    page.click("#apply")
    expect(page.locator("svg.graph .node")).to_have_count(4)
    expect(page.locator("#status")).to_contain_text(re.compile(r"^4 of 3\d nodes"))
    assert page.locator("svg.graph .node.kind-pool", has_text="github-pool").count() == 1


def test_timeline_filters_groups_and_tails(world: KeylessServer, page: Any) -> None:
    _sign_in(page, world)
    page.goto(world.base_url + "/console/timeline")
    page.wait_for_selector(".entries details")
    # exchange -> impersonation -> the GSA's (denied) call, as one flow
    flow = page.locator(".flow").first
    assert "/subject/repo:my-org/my-repo" in flow.locator(".subject").text_content()
    assert DEPLOY_SA in flow.locator(".subject").text_content()
    assert [s.strip() for s in flow.locator(".flow-step .step").all_text_contents()] == [
        "exchange", "impersonation", "call · PERMISSION_DENIED"]
    _shot(page, "timeline")
    # the Logging filter language, as entries.list parses it
    page.fill("#filter", 'protoPayload.serviceName="sts.googleapis.com"')
    page.click("#apply")
    expect(page.locator(".entries .method").filter(has_not_text=EXCHANGE)).to_have_count(0)
    assert page.locator(".entries .method", has_text=EXCHANGE).count() >= 1
    entry = page.locator(".entries details").first
    entry.locator("summary").click()
    assert '"serviceName": "sts.googleapis.com"' in entry.locator("pre").text_content()
    # live tail: a new exchange appears without reloading
    before = page.locator(".entries details").count()
    form = _exchange_form(_github_token(world, "my-org/my-repo"))
    assert httpx.post(f"{world.base_url}/sts/v1/token", data=form, timeout=30).status_code == 200
    expect(page.locator(".entries details")).to_have_count(before + 1)
    # seed 001's attribute query finds nothing (as on Google): the page says why and what works
    page.fill("#filter", 'protoPayload.methodName="GenerateAccessToken" '
                         'protoPayload.authenticationInfo.principalSubject=~"attribute.repository/my-org/my-repo"')
    page.click("#apply")
    expect(page.locator("#query-hint pre")).to_contain_text("attributes are not logged")
    assert f'{POOL}/subject/repo:my-org/my-repo:"' in page.text_content("#query-hint pre")
    expect(page.locator(".entries details")).to_have_count(0)
    # a filter that does not parse: entries.list's own INVALID_ARGUMENT
    page.fill("#filter", 'protoPayload.methodName="unterminated')
    page.click("#apply")
    page.wait_for_selector("#error:not([hidden])")
    assert "INVALID_ARGUMENT" in page.text_content("#error")


def test_explain_a_missing_workload_identity_user_binding(world: KeylessServer, page: Any) -> None:
    _sign_in(page, world)
    page.goto(world.base_url + "/console/explain")
    page.check('input[name="who"][value="token"]')
    page.fill("#provider", PROVIDER)
    page.fill("#token", _github_token(world, "my-org/my-repo"))
    page.fill("#serviceAccount", OTHER_SA)
    page.fill("#permission", "resourcemanager.projects.get")
    page.fill("#resource", f"projects/{PROJECT}")
    page.click("#run")
    first = page.locator("#chain li.first-failure")
    first.wait_for()
    assert first.get_attribute("data-step") == "binding"
    steps = page.locator("#chain li").evaluate_all("els => els.map(e => [e.dataset.step, e.className])")
    assert [s for s, _ in steps][:5] == ["provider", "token", "condition", "mapping", "binding"]
    assert all("pass" in c for _, c in steps[:4])
    failure = page.text_content("#failure")
    assert "Missing workloadIdentityUser binding" in failure
    assert (f"gcloud iam service-accounts add-iam-policy-binding {OTHER_SA} --role=roles/iam.workloadIdentityUser"
            in failure)
    assert "DENIED" in page.text_content("#verdict")
    _shot(page, "explain")


def test_explain_a_denied_audit_entry_from_the_timeline(world: KeylessServer, page: Any) -> None:
    _sign_in(page, world)
    page.goto(world.base_url + "/console/timeline?filter=" + "protoPayload.status.code%3D7")
    page.locator(".entries details.failed").first.locator("summary").click()
    page.locator(".entries details.failed .explain-link").first.click()
    page.wait_for_url("**/console/explain?entry=*")
    first = page.locator("#chain li.first-failure")
    first.wait_for()
    assert first.get_attribute("data-step") == "role"
    assert "iam.serviceAccounts.create" in page.text_content("#verdict")
    assert f"serviceAccount:{DEPLOY_SA}" in page.text_content("#failure")


def test_a_principal_without_permission_sees_the_reason_and_no_data(world: KeylessServer, page: Any) -> None:
    page.goto(world.base_url + "/console/signin")
    page.fill("#token", token_for_user(world, "nobody@example.com"))
    page.click("#signin")
    page.wait_for_url("**/console/graph")
    assert page.text_content("#who") == "user:nobody@example.com"
    page.goto(world.base_url + f"/console/graph?project={PROJECT}")
    page.wait_for_selector("#error:not([hidden])")
    assert "PERMISSION_DENIED" in page.text_content("#error")
    assert "resourcemanager.projects.getIamPolicy" in page.text_content("#error")
    assert page.locator("svg.graph").count() == 0
    assert page.locator("#project option", has_text=PROJECT).count() == 1  # only what the URL named
    _shot(page, "denied")
    page.goto(world.base_url + f"/console/timeline?project={PROJECT}")
    page.wait_for_selector("#error:not([hidden])")
    assert "logging.logEntries.list" in page.text_content("#error")
    assert page.locator(".entries details").count() == 0
    page.goto(world.base_url + f"/console/changes?project={PROJECT}")  # the changes read the same log
    expect(page.locator("#error")).to_contain_text("logging.logEntries.list")
    assert page.locator("#changes tr.change").count() == 0 and page.locator("#points li").count() == 0
    page.goto(world.base_url + f"/console/iam?project={PROJECT}")
    page.wait_for_selector("#error:not([hidden])")
    assert "resourcemanager.projects.getIamPolicy" in page.text_content("#error")
    assert page.locator("#iam-table tbody tr").count() == 0
    page.goto(world.base_url + "/console/explain")
    page.fill("#principal", f"serviceAccount:{DEPLOY_SA}")
    page.fill("#permission", "resourcemanager.projects.get")
    page.fill("#resource", f"projects/{PROJECT}")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert "PERMISSION_DENIED" in page.text_content("#error") and page.locator("#chain li").count() == 0
    page.click("#signout")
    page.wait_for_url("**/console/signin")
    assert not [c for c in page.context.cookies() if c["name"] == names(world).session]


def test_sign_out_forgets_the_last_project(world: KeylessServer, page: Any) -> None:
    """The last project is kept in localStorage while signed in; sign-out clears it, so the next
    person to sign in on this browser does not inherit it."""
    _sign_in(page, world)
    page.wait_for_selector("svg.graph .node")  # the view's requests are done before signing out
    page.select_option("#project", PROJECT)
    assert page.evaluate("localStorage.getItem('keyless.project')") == PROJECT
    page.click("#signout")
    page.wait_for_url("**/console/signin")
    assert page.evaluate("localStorage.length") == 0


def test_over_tls_the_browser_keeps_a_host_prefixed_session(chromium: Any, tmp_path: Path) -> None:
    """Chromium accepts the `__Host-` cookies (Secure, Path=/, no Domain) over TLS, signs in with
    them, and is signed out for good: the old cookie put back is refused."""
    tls_port = free_port()
    srv = KeylessServer(tmp_path / "data", fresh_database_url(), "--tls-port", str(tls_port))
    context = chromium.new_context(ignore_https_errors=True)  # Keyless's own CA, not the system's
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(sign_in_link(srv).replace(srv.base_url, f"https://localhost:{tls_port}"))
        page.click("#continue")
        page.wait_for_url("**/console/graph")
        assert page.text_content("#who") == OWNER
        name = names(srv, secure=True)
        session = next(c for c in context.cookies() if c["name"] == name.session)
        assert session["secure"] and session["httpOnly"] and session["path"] == "/"
        page.click("#signout")
        page.wait_for_url("**/console/signin")
        context.add_cookies([{k: session[k] for k in ("name", "value", "domain", "path", "secure", "httpOnly")}])
        page.goto(f"https://localhost:{tls_port}/console/graph")
        page.wait_for_url("**/console/signin")
    finally:
        context.close()
        srv.stop()



def test_a_project_iam_admin_sees_the_project_policy_and_not_the_rest(world: KeylessServer, page: Any) -> None:
    """roles/resourcemanager.projectIamAdmin reads the project's policy, but not the pools, clusters,
    service accounts' own policies or the logs: the graph is cut to that, and says what is left out."""
    viewer = "iam-admin@example.com"
    _grant(world, f"/cloudresourcemanager/v1/projects/{PROJECT}", "roles/resourcemanager.projectIamAdmin",
           f"user:{viewer}")
    page.goto(world.base_url + "/console/signin")
    page.fill("#token", token_for_user(world, viewer))
    page.click("#signin")
    page.wait_for_url("**/console/graph")
    page.wait_for_selector("svg.graph .node")
    labels = page.locator("svg.graph .node title").all_text_contents()
    assert any("roles/storage.objectViewer" in label for label in labels), labels  # the project's own grant
    for hidden in ("github-pool", "github-provider", "my-cluster", "other-sa", "wide-sa", "my-org/my-repo"):
        assert not any(hidden in label for label in labels), (hidden, labels)
    notes = page.text_content("#hidden")
    for permission in ("iam.workloadIdentityPools.list", "container.clusters.list", "iam.serviceAccounts.list",
                       "iam.serviceAccounts.getIamPolicy"):
        assert permission in notes, notes
    # the doctor's answer for the project leaves out what rests on policies they may not read: the
    # repository's workflows reach the project through deploy-sa, whose own policy is not theirs to read
    page.locator(f'svg.graph .node.kind-resource[data-id="resource:projects/{PROJECT}"]').click()
    page.wait_for_selector('body[data-access="done"]')
    expect(page.locator("#path-status")).to_contain_text("left out (policies you may not read)")
    assert page.locator("#access-list li").count() >= 1
    assert "via" not in page.text_content("#access-list") and "my-org/my-repo" not in page.text_content("#access-list")
    page.goto(world.base_url + f"/console/timeline?project={PROJECT}")
    page.wait_for_selector("#error:not([hidden])")
    assert "logging.logEntries.list" in page.text_content("#error")
    # the IAM table: the project's own bindings, and the root's left out (not readable to them)
    page.goto(world.base_url + f"/console/iam?project={PROJECT}")
    expect(page.locator(f'#iam-table tr[data-key="user:{viewer}"]')).to_contain_text("projectIamAdmin")
    assert "//keyless.dev/root" in page.text_content("#hidden")
    assert page.locator("#iam-table .inherited").count() == 0


# -- issue #21: explain ------------------------------------------------------------------------


def test_explain_speaks_the_form_and_shows_each_policy_level(world: KeylessServer, page: Any) -> None:
    """The page names its own fields (no CLI flag), takes the principalSet its placeholder shows,
    and lists Policy Troubleshooter's view: each level's bindings, with "contains the permission"
    and "member matches"."""
    _sign_in(page, world)
    page.goto(world.base_url + "/console/explain")
    assert "principalSet://" in page.get_attribute("#principal", "placeholder")
    page.fill("#principal", "bogus")
    page.fill("#permission", "resourcemanager.projects.get")
    page.fill("#resource", f"projects/{PROJECT}")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    error = page.text_content("#error")
    assert error.startswith("400 INVALID_ARGUMENT: Principal") and "--" not in error, error
    page.fill("#principal", REPO_SET)
    page.fill("#serviceAccount", DEPLOY_SA)
    page.fill("#permission", "storage.objects.get")
    page.click("#run")
    expect(page.locator("#verdict")).to_contain_text("storage.objects.get")
    expect(page.locator("#error")).to_be_hidden()
    steps = page.locator("#chain li").evaluate_all("els => els.map(e => [e.dataset.step, e.className])")
    assert [s for s, _ in steps][:3] == ["principal", "binding", "service account"]
    assert all("pass" in c for _, c in steps[:3]), steps  # the set holds workloadIdentityUser on deploy-sa
    level = page.locator('#policies section.level[data-resource="projects/my-project"]')
    viewer = level.locator("tr", has_text="roles/storage.objectViewer")
    # deploy-sa's conditional objectViewer: the role has the permission, the member matches, the condition is false
    assert [c.strip() for c in viewer.locator("td").all_text_contents()[2:4]] == ["yes", "yes"]
    assert "→ false" in viewer.locator("td.cond").text_content()
    owner = level.locator("tr", has_text="roles/owner")  # Google's owner role has no object access
    assert [c.strip() for c in owner.locator("td").all_text_contents()[2:4]] == ["no", "no"]
    assert page.locator('#policies section.level[data-resource="//keyless.dev/root"]').count() == 1


def test_a_project_owner_explains_without_reading_the_root(world: KeylessServer, page: Any) -> None:
    """roles/owner on the project is enough (not getIamPolicy on the root); the root's bindings are
    not shown to them. A projectIamAdmin, who may not list the logs, cannot explain an entry."""
    viewer = "project-owner@example.com"
    _grant(world, f"/cloudresourcemanager/v1/projects/{PROJECT}", "roles/owner", f"user:{viewer}")
    page.goto(world.base_url + "/console/signin")
    page.fill("#token", token_for_user(world, viewer))
    page.click("#signin")
    page.wait_for_url("**/console/graph")
    page.goto(world.base_url + "/console/explain")
    page.fill("#principal", f"serviceAccount:{DEPLOY_SA}")
    page.fill("#permission", "resourcemanager.projects.get")
    page.fill("#resource", f"projects/{PROJECT}")
    page.click("#run")
    expect(page.locator("#verdict")).to_contain_text("DENIED")
    expect(page.locator("#error")).to_be_hidden()
    root = page.locator('#policies section.level[data-resource="//keyless.dev/root"]')
    assert "not shown" in root.text_content() and root.locator("tr").count() == 0
    assert page.locator('#policies section.level[data-resource="projects/my-project"] tr').count() >= 2
    # the owner, granted through the root's binding: the role step does not name that binding either
    page.fill("#principal", OWNER)
    page.click("#run")
    expect(page.locator("#verdict")).to_contain_text("GRANTED")
    steps = page.locator('#chain li[data-step="role"], #chain li[data-step="iam condition"]').all_text_contents()
    assert "a binding on //keyless.dev/root: bindings not shown" in steps[0], steps
    assert not [s for s in steps if "on //keyless.dev/root to" in s or "roles/owner on //keyless.dev/root" in s], steps


def test_a_refused_exchange_in_the_timeline_and_explained(world: KeylessServer, page: Any) -> None:
    _sign_in(page, world)
    page.goto(world.base_url + "/console/timeline")
    refused = page.locator(".entries details.failed", has_text="ExchangeToken").first
    summary = refused.locator("summary")
    assert "no principal (refused)" in summary.locator(".who").text_content()
    assert "status" not in summary.locator(".denied").text_content()  # the code's name, not its number
    summary.click()
    assert "attribute condition" in refused.locator(".diagnosis").text_content()
    # a refused attempt is a flow of its own
    flow = page.locator(".flow.refused").first
    assert f"refused exchange for {PROVIDER}" in flow.locator(".subject").text_content()
    refused.locator(".explain-link").click()
    page.wait_for_url("**/console/explain?entry=*")
    first = page.locator("#chain li.first-failure")
    first.wait_for()
    assert first.get_attribute("data-step") == "condition"
    assert "--attribute-condition" in page.text_content("#failure")
    assert "evil-org" in page.text_content("#failure")


def test_explaining_a_subject_denial_restores_the_removed_repository_set(world: KeylessServer, page: Any) -> None:
    from tests.e2e.test_audit_logs import entries

    denied = entries(world, f'protoPayload.methodName="GenerateAccessToken" AND protoPayload.status.code=7 '
                            f'AND resource.labels.email_id="{CI_SA}"')
    assert denied, "the denied impersonation of ci-sa is logged"
    _sign_in(page, world)
    page.goto(world.base_url + f"/console/explain?entry={denied[0]['insertId']}")
    page.locator("#chain li.first-failure").wait_for()
    fix = page.text_content("#failure .fix")
    assert f'--member="{REPO_SET}"' in fix and "restores the binding removed" in fix, fix
    assert "/subject/" not in fix  # not the one branch's subject


def test_a_project_iam_admin_cannot_explain_an_entry(world: KeylessServer, page: Any) -> None:
    """getIamPolicy on the project is not a right to read its logs: explaining an entry needs both."""
    from tests.e2e.test_audit_logs import entries

    viewer = "iam-admin-2@example.com"
    _grant(world, f"/cloudresourcemanager/v1/projects/{PROJECT}", "roles/resourcemanager.projectIamAdmin",
           f"user:{viewer}")
    denied = entries(world, "protoPayload.status.code=7")
    page.goto(world.base_url + "/console/signin")
    page.fill("#token", token_for_user(world, viewer))
    page.click("#signin")
    page.wait_for_url("**/console/graph")
    page.goto(world.base_url + f"/console/explain?entry={denied[0]['insertId']}")
    page.wait_for_selector("#error:not([hidden])")
    assert "logging." in page.text_content("#error") and page.locator("#chain li").count() == 0


# -- issue #21: the timeline as Logs Explorer -----------------------------------------------------


def test_timeline_reads_like_logs_explorer(world: KeylessServer, page: Any) -> None:
    """Service accounts by email, nothing cut, JSON wrapped; severity quick filters, a time range, a
    histogram of what is shown, a value clicked into the filter, and paging past the first 200."""
    _sign_in(page, world)
    page.goto(world.base_url + "/console/timeline")
    page.wait_for_selector(".entries details")
    impersonation = page.locator(".entries details", has_text="GenerateAccessToken").first
    assert DEPLOY_SA in impersonation.locator(".res").text_content() or CI_SA in impersonation.locator(".res").text_content()
    cut = page.locator(".entries summary span").evaluate_all(
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)")
    assert cut == []  # every method, principal and resource shown whole
    impersonation.locator("summary").click()
    assert impersonation.locator("pre").evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"
    shown = page.locator(".entries details").count()
    assert shown < 200  # one page: the server's histogram counts what the page shows
    expect(page.locator("#histogram svg")).to_have_attribute("data-total", str(shown))
    bars = page.locator("#histogram rect.bar").evaluate_all("els => els.reduce((n, e) => n + Number(e.dataset.count), 0)")
    assert bars == shown
    # click a value: protoPayload.methodName="…GenerateAccessToken" joins the filter
    impersonation.locator('pre a.field[data-path="protoPayload.methodName"]').click()
    expect(page.locator("#filter")).to_have_value(re.compile(r'^protoPayload\.methodName="[^"]*GenerateAccessToken"$'))
    expect(page.locator(".entries .method").filter(has_not_text="GenerateAccessToken")).to_have_count(0)
    # severity: ERROR and above only (the refused exchange), then all again
    page.fill("#filter", "")
    page.click('.sev-filter[data-severity="ERROR"]')
    expect(page.locator('.entries details:not([data-severity="ERROR"])')).to_have_count(0)
    assert page.locator(".entries details").count() >= 1
    page.click('.sev-filter[data-severity=""]')
    expect(page.locator(".entries details")).to_have_count(shown)
    # the time range reaches the server: nothing at or after a minute from now
    future = page.evaluate("""async () => { const r = await fetch('/console/api/entries?project=my-project&since=' +
        new Date(Date.now() + 60000).toISOString()); return (await r.json()).entries.length; }""")
    assert future == 0
    page.select_option("#range", "3600")
    expect(page.locator(".entries details")).to_have_count(shown)  # all of this world is from the last hour
    # paging: 200 more exchanges, then the page after the first 200
    sts = 'protoPayload.serviceName="sts.googleapis.com"'

    def sts_entries() -> list[dict[str, object]]:  # every page: entries.list may answer short pages with a token
        found: list[dict[str, object]] = []
        body: dict[str, object] = {"resourceNames": [f"projects/{PROJECT}"], "filter": sts, "pageSize": 1000}
        while True:
            answer = world.call("POST", "/logging/v2/entries:list", body=body).json()
            found += answer.get("entries", [])
            if not answer.get("nextPageToken"):
                return found
            body["pageToken"] = answer["nextPageToken"]

    before = len(sts_entries())
    token = _github_token(world, "my-org/my-repo")
    with httpx.Client(timeout=30) as client:
        for _ in range(200):
            assert client.post(f"{world.base_url}/sts/v1/token", data=_exchange_form(token)).status_code == 200
    # Data Access entries reach the store from the audit sink's thread: wait for all 200
    deadline = time.monotonic() + 30
    while len(every := sts_entries()) < before + 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    while len(again := sts_entries()) != len(every) and time.monotonic() < deadline:  # and no more arrive
        every = again
        time.sleep(0.3)
    page.uncheck("#tail")
    page.fill("#filter", sts)
    page.click("#apply")
    expect(page.locator(".entries details")).to_have_count(200)
    # the histogram counts the whole range on the server, not the 200 entries loaded
    assert len(every) >= before + 200 > 200
    expect(page.locator("#histogram svg")).to_have_attribute("data-total", str(len(every)))
    expect(page.locator("#histogram-note")).to_be_hidden()  # under the scan cap: nothing left uncounted
    page.click("#more")
    expect(page.locator(".entries details")).not_to_have_count(200)
    assert page.locator(".entries details").count() > 200
    assert len(set(page.locator(".entries details").evaluate_all("els => els.map(e => e.dataset.insertId)"))) == \
        page.locator(".entries details").count()  # no entry twice


# -- issue #21: the graph --------------------------------------------------------------------------

GEOMETRY = """() => {
  const svg = document.querySelector("svg.graph"), origin = svg.getBoundingClientRect();
  const box = (r) => ({ x: r.left - origin.left, y: r.top - origin.top, w: r.width, h: r.height });
  const nodes = [...svg.querySelectorAll(".node")].map((g) => ({ id: g.dataset.id, ...box(g.querySelector("rect").getBoundingClientRect()),
    label: g.querySelector("title").textContent.replace(/^[a-zA-Z]+: /, ""), drawn: g.querySelector("text").textContent }));
  const labels = [...svg.querySelectorAll("text.edge-label")].map((t) => box(t.getBoundingClientRect()));
  const under = [];
  for (const p of svg.querySelectorAll("path.edge")) {
    const length = p.getTotalLength();
    for (let at = 0; at <= length; at += 4) {
      const pt = p.getPointAtLength(at);
      const hit = nodes.find((n) => n.id !== p.dataset.source && n.id !== p.dataset.target &&
        pt.x > n.x + 1 && pt.x < n.x + n.w - 1 && pt.y > n.y + 1 && pt.y < n.y + n.h - 1);
      if (hit) { under.push([p.dataset.source, p.dataset.target, hit.id]); break; }
    }
  }
  return { height: Number(svg.getAttribute("height")), nodes, labels, under };
}"""


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"] and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]


def test_graph_shows_gke_findings_by_severity_and_draws_cleanly(world: KeylessServer, page: Any) -> None:
    _sign_in(page, world)
    page.wait_for_selector("svg.graph .node")
    details = page.locator("#details")
    ksa = f"serviceAccount:{PROJECT}.svc.id.goog[production/other-app]"
    # KL013: the KSA's annotation edge to other-sa, which has no workloadIdentityUser binding for it
    page.locator(f'svg.graph path.edge.finding[data-source="{ksa}"][data-target="serviceAccount:{OTHER_SA}"]').click(force=True)
    assert "KL013" in details.text_content()
    page.click("#details .close")
    bad = f"serviceAccount:{PROJECT}.svc.id.goog[production/bad-app]"
    found = page.locator(f'svg.graph .finding[data-id="{bad}"], svg.graph path.finding[data-source="{bad}"]')
    found.first.click(force=True)
    assert "KL012" in details.text_content()
    page.click("#details .close")
    # severity: a warning is amber, not red; a provider no binding follows says so
    lonely = page.locator("svg.graph .node.kind-provider", has_text="lonely-provider")
    assert "sev-warning" in lonely.get_attribute("class")
    assert lonely.locator("rect").evaluate("r => getComputedStyle(r).stroke") == "rgb(227, 116, 0)"  # amber
    whole_pool = page.locator(f'svg.graph path.edge.finding[data-target="serviceAccount:{WIDE_SA}"]')  # KL004
    assert whole_pool.evaluate("p => getComputedStyle(p).stroke") == "rgb(217, 48, 37)"  # red
    lonely.click()
    assert "Provider leads nowhere" in details.text_content()
    page.click("#details .close")
    geometry = page.evaluate(GEOMETRY)
    # nothing clipped: the last row's box ends inside the drawing
    assert max(n["y"] + n["h"] for n in geometry["nodes"]) <= geometry["height"]
    # no edge passes under a box it does not join (owner → roles/owner is not read as owner → deploy-sa)
    assert geometry["under"] == []
    # edge labels sit apart from each other and off every box
    labels = geometry["labels"]
    assert labels and not [(a, b) for i, a in enumerate(labels) for b in labels[i + 1:] if _overlap(a, b)]
    assert not [(a, n["id"]) for a in labels for n in geometry["nodes"] if _overlap(a, n)]
    # a grant box says what it is on, role above resource, both inside the box (issue #21: "which bucket?")
    grants = page.locator('svg.graph .node.kind-grant[data-id^="grant:"]').evaluate_all("""gs => gs.map((g) => {
      const r = g.querySelector("rect").getBoundingClientRect();
      return { id: g.dataset.id, texts: [...g.querySelectorAll("text")].map((t) => t.textContent),
               outside: [...g.querySelectorAll("text")].filter((t) => { const b = t.getBoundingClientRect();
                 return b.left < r.left || b.right > r.right || b.top < r.top || b.bottom > r.bottom; }).length }; })""")
    on = {g["id"]: g["texts"] for g in grants}
    assert on[f"grant:roles/storage.objectViewer@projects/{PROJECT}"] == ["storage.objectViewer", f"project {PROJECT}"]
    secret = next(texts for i, texts in on.items() if i.startswith("grant:roles/secretmanager.secretAccessor@")
                  and i.endswith("/secrets/db-password"))
    assert secret == ["secretmanager.secretAccessor", "secret db-password"]
    assert [g for g in grants if len(g["texts"]) != 2 or g["outside"]] == []
    # long labels keep whole trailing segments: never cut through the middle of a name
    secret = next(n for n in geometry["nodes"] if n["label"].endswith("secrets/db-password"))
    assert secret["drawn"] != secret["label"] and secret["drawn"].endswith("/secrets/db-password")
    for n in geometry["nodes"]:
        if n["drawn"] != n["label"] and "/" in n["drawn"]:
            pieces = n["drawn"].lstrip("…").strip("/").split("/")
            assert all(p in n["label"].split("/") for p in pieces[:-1] if p), n


def test_iam_table_by_principal_and_by_role(world: KeylessServer, page: Any) -> None:
    """The Cloud Console's IAM page: principal → roles and role → principals, inherited marked."""
    _sign_in(page, world)
    page.goto(world.base_url + f"/console/iam?project={PROJECT}")
    deploy = page.locator(f'#iam-table tr[data-key="serviceAccount:{DEPLOY_SA}"]')
    expect(deploy).to_contain_text("roles/storage.objectViewer")
    assert "condition: deploy buckets" in deploy.text_content() and deploy.locator(".inherited").count() == 0
    owner = page.locator(f'#iam-table tr[data-key="{OWNER}"] li.inherited', has_text="roles/owner")
    assert "inherited from //keyless.dev/root" in owner.text_content()  # the bootstrap owner's root binding
    page.click('.view-by .by[data-by="role"]')
    viewer = page.locator('#iam-table tr[data-key="roles/storage.objectViewer"]')
    expect(viewer).to_contain_text(f"serviceAccount:{DEPLOY_SA}")
    page.fill("#q", "objectViewer")
    expect(page.locator("#iam-table tbody tr")).to_have_count(1)
    _shot(page, "iam")


def test_selecting_a_node_highlights_every_path_through_it(world: KeylessServer, page: Any) -> None:
    """deploy-sa: what reaches it (the repository's workflows through the provider and pool, the KSA
    in its cluster) and what it reaches (its grants and their resources); the rest is dimmed."""
    _sign_in(page, world)
    page.wait_for_selector("svg.graph .node")
    page.locator(f'svg.graph .node[data-id="serviceAccount:{DEPLOY_SA}"]').click()
    page.wait_for_selector('body[data-access="done"]')
    on = set(page.locator("svg.graph .node.on-path").evaluate_all("els => els.map(e => e.dataset.id)"))
    for upstream in (POOL, PROVIDER, REPO_SET, f"serviceAccount:{KSA}", "cluster:"):
        assert any(i.startswith(upstream) for i in on), (upstream, on)
    for downstream in (f"resource:projects/{PROJECT}", "secrets/db-password", "grant:roles/storage.objectViewer"):
        assert any(downstream in i for i in on), (downstream, on)
    for elsewhere in (f"serviceAccount:{OTHER_SA}", f"serviceAccount:{WIDE_SA}"):
        assert elsewhere not in on
    assert page.locator(f'svg.graph .node.reaches[data-id="{PROVIDER}"]').count() == 1
    assert page.locator(f'svg.graph .node.reached[data-id="resource:projects/{PROJECT}"]').count() == 1
    other = page.locator(f'svg.graph .node[data-id="serviceAccount:{OTHER_SA}"]')
    assert float(other.evaluate("e => getComputedStyle(e).opacity")) < 0.5
    assert "reach it" in page.text_content("#path-status")
    page.click("#details .close")
    assert float(other.evaluate("e => getComputedStyle(e).opacity")) == 1


def test_selected_paths_are_the_doctor_access_analysis(world: KeylessServer, page: Any) -> None:
    """A principal: what the doctor's access analysis says it reaches, which the graph's edges do
    not show (the repository's workflows are identities of the pool, so the pool-wide binding lets
    them impersonate wide-sa); a resource: who reaches it, by impersonation and through workload
    identity (the KSA, the workflows, through deploy-sa), and not other-sa. One request per selection."""
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/console/api/access" in r.url else None)
    _sign_in(page, world)
    page.wait_for_selector("svg.graph .node")
    page.locator(f'svg.graph .node[data-id="{REPO_SET}"]').click()
    page.wait_for_selector('body[data-access="done"]')
    assert page.locator(f'svg.graph .node.reached[data-id="serviceAccount:{WIDE_SA}"]').count() == 1
    assert page.locator(f'svg.graph .node.reached[data-id="serviceAccount:{DEPLOY_SA}"]').count() == 1
    assert page.locator('svg.graph .node.kind-resource.reached[data-id$="secrets/db-password"]').count() == 1
    assert page.locator(f'svg.graph .node.on-path[data-id="serviceAccount:{OTHER_SA}"]').count() == 0
    assert "The doctor: it reaches" in page.text_content("#path-status")
    assert f"via {DEPLOY_SA}" in page.text_content("#access-list")
    # a resource: who reaches the secret
    page.click("#details .close")
    page.locator('svg.graph .node.kind-resource[data-id$="secrets/db-password"]').click()
    page.wait_for_selector('body[data-access="done"]')
    expect(page.locator("#path-status")).to_contain_text("identities reach it")
    for who in (f"serviceAccount:{DEPLOY_SA}", f"serviceAccount:{KSA}", REPO_SET):
        assert page.locator(f'svg.graph .node.reaches[data-id="{who}"]').count() == 1, who
    expect(page.locator("#access-list li", has_text=KSA).first).to_contain_text(f"via {DEPLOY_SA}")
    for not_who in (f"serviceAccount:{OTHER_SA}", f"serviceAccount:{WIDE_SA}"):
        assert page.locator(f'svg.graph .node.on-path[data-id="{not_who}"]').count() == 0, not_who
    assert len(asked) == 2, asked
    # the endpoint: the doctor's permission, and no node is INVALID_ARGUMENT
    nobody = httpx.get(f"{world.base_url}/console/api/access", params={"project": PROJECT, "node": REPO_SET})
    assert nobody.status_code == 401 and nobody.json()["error"]["status"] == "UNAUTHENTICATED"
    missing = page.request.get(f"{world.base_url}/console/api/access?project={PROJECT}")
    assert missing.status == 400 and missing.json()["error"]["status"] == "INVALID_ARGUMENT"


# -- issue #21: what changed -------------------------------------------------------------------


def test_what_changed_between_two_points_of_the_admin_activity_log(world: KeylessServer, page: Any) -> None:
    """After a point, a service account is made, disabled, given a key and a conditional binding, a
    binding is added and taken back, and a provider's attribute condition is edited: the view shows
    each net change with its condition and the entry that made it (opened in the timeline, where
    setIamPolicy's entry carries serviceData.policyDelta as Google's does), and nothing for the
    binding that came and went; the whole log's comparison leaves out ci-deploy's removed grant too."""
    iam = f"/iam/v1/projects/{PROJECT}/serviceAccounts"
    fresh = f"fresh-sa@{PROJECT}.iam.gserviceaccount.com"
    provider = f"/iam/v1/projects/{PROJECT}/locations/global/workloadIdentityPools/lonely-pool/providers/lonely-provider"
    mark = world.call("POST", "/logging/v2/entries:list", body={
        "resourceNames": [f"projects/{PROJECT}"], "orderBy": "timestamp desc", "pageSize": 1,
        "filter": 'log_id("cloudaudit.googleapis.com/activity")'}).json()["entries"][0]
    assert world.call("POST", iam, body={"accountId": "fresh-sa"}).status_code == 200
    assert world.call("POST", f"{iam}/{fresh}:disable").status_code == 200
    key = world.call("POST", f"{iam}/{fresh}/keys", body={})
    assert key.status_code == 200, key.text
    condition = {"title": "office hours", "expression": "request.time.getHours('UTC') < 18"}
    _grant(world, f"{iam}/{fresh}", "roles/iam.serviceAccountTokenCreator", "user:alice@example.com", condition)
    _grant(world, f"{iam}/{fresh}", "roles/iam.serviceAccountUser", "user:temp@example.com")
    policy = world.call("POST", f"{iam}/{fresh}:getIamPolicy", body={"options": {"requestedPolicyVersion": 3}}).json()
    policy["bindings"] = [b for b in policy["bindings"] if b["role"] != "roles/iam.serviceAccountUser"]
    assert world.call("POST", f"{iam}/{fresh}:setIamPolicy", body={"policy": policy}).status_code == 200
    edited = world.call("PATCH", provider, params={"updateMask": "attributeCondition"},
                        body={"attributeCondition": "assertion.repository_owner == 'other-org'"})
    assert edited.status_code == 200, edited.text
    # the removal's entry, as entries.list returns it: Google's AuditData policyDelta
    removal = world.call("POST", "/logging/v2/entries:list", body={
        "resourceNames": [f"projects/{PROJECT}"], "orderBy": "timestamp desc", "pageSize": 1,
        "filter": 'protoPayload.methodName="google.iam.admin.v1.SetIAMPolicy"'}).json()["entries"][0]
    assert removal["protoPayload"]["serviceData"] == {
        "@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
        "policyDelta": {"bindingDeltas": [{"action": "REMOVE", "role": "roles/iam.serviceAccountUser",
                                           "member": "user:temp@example.com"}]}}
    _sign_in(page, world)
    page.goto(world.base_url + f"/console/changes?project={PROJECT}&from={mark['insertId']}")
    rows = page.locator("#changes tr.change")
    expect(rows).to_have_count(5)
    assert [r.get_attribute("data-kind") + " " + r.get_attribute("data-action") for r in rows.all()] == [
        "serviceAccount created", "serviceAccount disabled", "key created", "binding added", "provider edited"]
    assert fresh in rows.nth(0).text_content() and fresh in rows.nth(2).text_content()
    binding = rows.nth(3)
    assert binding.get_attribute("data-resource") == f"projects/-/serviceAccounts/{fresh}"
    assert "roles/iam.serviceAccountTokenCreator" in binding.text_content()
    assert "user:alice@example.com" in binding.text_content()
    assert "request.time.getHours('UTC') < 18" in binding.locator(".condition").text_content()
    assert "temp@example.com" not in page.text_content("#changes")  # added and taken back: no change
    assert "'other-org'" in rows.nth(4).text_content() and "attributeCondition" in rows.nth(4).text_content()
    _shot(page, "changes")
    # the entry that made the binding, in the timeline's entry view: one entry, opened, with its delta
    binding.locator("a.entry-link").click()
    page.wait_for_url("**/console/timeline?**")
    opened = page.locator(".entries details[open]")
    expect(opened).to_have_count(1)
    assert page.locator(".entries details").count() == 1
    text = opened.locator("pre").text_content()
    assert '"action": "ADD"' in text and '"member": "user:alice@example.com"' in text and "office hours" in text
    # points chosen on the page: up to the key's creation is the account, its disabling and its key only
    page.goto(world.base_url + f"/console/changes?project={PROJECT}&from={mark['insertId']}")
    page.locator("#points li", has_text="CreateServiceAccountKey").first.locator(".pick-to").click()
    expect(rows).to_have_count(3)
    # the whole log: wide-sa's pool-wide binding is there, ci-deploy's grant (added, then removed) is not
    page.fill("#from", "")
    page.fill("#to", "")
    page.click("#compare")
    expect(page.locator("#changes tr.change.binding", has_text=f"principalSet://iam.googleapis.com/{POOL}/*")).to_have_count(1)
    wide = page.locator("#changes tr.change.binding", has_text=REPO_SET)
    assert wide.count() >= 1 and all(CI_SA not in r.get_attribute("data-resource") for r in wide.all())
    # a point that is neither a timestamp nor an entry id: INVALID_ARGUMENT, nothing quoted into the filter
    page.fill("#from", 'x" OR insertId!="')
    page.click("#compare")
    expect(page.locator("#error")).to_contain_text("INVALID_ARGUMENT")
    assert page.locator("#changes tr.change").count() == 0


def test_graph_folds_grants_and_automatic_bucket_bindings(world: KeylessServer, page: Any) -> None:
    """A role granted on many buckets is one box (expandable), the buckets only it reaches one box,
    Cloud Storage's automatic projectOwner:/projectEditor:/projectViewer: bindings are folded unless
    asked for, and a provider is named with its pool. (Runs last: it adds buckets to the world.)"""
    for i in range(6):
        bucket = f"{PROJECT}-release-{i}"
        assert world.call("POST", "/storage/v1/b", params={"project": PROJECT}, body={"name": bucket}).status_code == 200
        policy = world.call("GET", f"/storage/v1/b/{bucket}/iam").json()
        policy["bindings"].append({"role": "roles/storage.objectViewer", "members": [f"serviceAccount:{OTHER_SA}"]})
        assert world.call("PUT", f"/storage/v1/b/{bucket}/iam", body=policy).status_code == 200
    entry = world.call("POST", "/logging/v2/entries:list", body={  # Cloud Storage's entry names its delta too
        "resourceNames": [f"projects/{PROJECT}"], "orderBy": "timestamp desc", "pageSize": 1,
        "filter": 'protoPayload.methodName="storage.setIamPermissions"'}).json()["entries"][0]
    assert entry["protoPayload"]["serviceData"]["policyDelta"]["bindingDeltas"] == [
        {"action": "ADD", "role": "roles/storage.objectViewer", "member": f"serviceAccount:{OTHER_SA}"}]
    _sign_in(page, world)
    page.wait_for_selector("svg.graph .node")
    assert page.locator("svg.graph .node.kind-provider", has_text="github-pool/github-provider").count() == 1
    group = page.locator('svg.graph .node[data-id="grants:roles/storage.objectViewer@bucket"]')
    assert "storage.objectViewer on 6 buckets" in group.locator("title").text_content()
    assert page.locator('svg.graph .node[data-id="resources:roles/storage.objectViewer@bucket"]').count() == 1
    assert page.locator('svg.graph .node[data-id^="resource:projects/_/buckets/"]').count() == 0
    assert page.locator('svg.graph .node[data-id^="projectOwner:"]').count() == 0
    expect(page.locator("#folded")).to_contain_text("automatic legacy bucket bindings")
    # the automatic bindings, when asked for
    page.check("#legacy")
    expect(page.locator('svg.graph .node[data-id="projectOwner:my-project"]')).to_have_count(1)
    page.uncheck("#legacy")
    expect(page.locator('svg.graph .node[data-id="projectOwner:my-project"]')).to_have_count(0)
    # expanded: one box per grant, one per bucket
    page.locator('svg.graph .node[data-id="grants:roles/storage.objectViewer@bucket"]').click()
    page.click("#details .expand")
    expect(page.locator('svg.graph .node[data-id^="grant:roles/storage.objectViewer@projects/_/buckets/"]')).to_have_count(6)
    assert page.locator('svg.graph .node[data-id^="resource:projects/_/buckets/"]').count() == 6
    ons = page.locator('svg.graph .node[data-id^="grant:roles/storage.objectViewer@projects/_/buckets/"] text.on')
    assert sorted(ons.all_text_contents()) == [f"gs://{PROJECT}-release-{i}" for i in range(6)]  # which bucket, no click


def test_a_hub_folds_its_many_members_into_one_expandable_box(world: KeylessServer, page: Any) -> None:
    """Thirty users granted secretAccessor on db-password: more than HUB_EDGES members of one grant are
    one box, "30 members", expandable into thirty; the doctor's answer for the secret lights the box
    up (its members reach it). (Runs last: it adds bindings to the world.)"""
    secret = f"/secretmanager/v1/projects/{PROJECT}/secrets/db-password"
    policy = world.call("POST", f"{secret}:getIamPolicy").json()
    policy["bindings"].append({"role": "roles/secretmanager.secretAccessor",
                               "members": [f"user:reader-{i:02d}@example.com" for i in range(30)]})
    assert world.call("POST", f"{secret}:setIamPolicy", body={"policy": policy}).status_code == 200
    _sign_in(page, world)
    page.wait_for_selector("svg.graph .node")
    box = page.locator('svg.graph .node.kind-member[data-id^="hub:grant:roles/secretmanager.secretAccessor@"]')
    expect(box).to_have_count(1)
    assert "30 members" in box.locator("title").text_content()
    assert page.locator('svg.graph .node[data-id^="user:reader-"]').count() == 0
    assert page.locator(f'svg.graph .node[data-id="serviceAccount:{DEPLOY_SA}"]').count() == 1  # not a leaf: kept
    expect(page.locator("#folded")).to_contain_text("30 members of")
    # selecting the secret: the doctor's answer names the readers, so their box is on the path
    page.locator('svg.graph .node.kind-resource[data-id$="secrets/db-password"]').click()
    page.wait_for_selector('body[data-access="done"]')
    assert page.locator('svg.graph .node.reaches[data-id^="hub:grant:roles/secretmanager.secretAccessor@"]').count() == 1
    page.click("#details .close")
    box.click()
    page.click("#details .expand")
    expect(page.locator('svg.graph .node[data-id^="user:reader-"]')).to_have_count(30)
    assert page.locator('svg.graph .node[data-id^="hub:"]').count() == 0
