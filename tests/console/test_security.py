"""The console's protections against a real `keyless serve`, over plain HTTP and TLS: the session
cookie's flags and names, CSRF refusal on every state change, the one-time link spent once and naming
its principal, the security headers (a CSP without inline script, HSTS over TLS), and no data without
a session. Issue #23 item 9's attacks each have a test that fails if the attack works again: the
cookie as a bearer token, a cookie replayed to another server or after sign-out, a session outliving
or out-scoping its token, a disabled account's session, a redirect built from a hostile Host."""

from __future__ import annotations

import re
import ssl
import time
from pathlib import Path

import httpx
import pytest

from keyless.console import signin
from keyless.errors import PermissionDenied
from keyless.state import ServerState
from keyless.tokens.access import CLOUD_PLATFORM
from tests.api.helpers import server_state, token_for_service_account, token_for_user
from tests.conftest import KeylessServer, free_port, fresh_database_url
from tests.console.conftest import names, sign_in_link

READ_ONLY = "https://www.googleapis.com/auth/devstorage.read_only"
VIEWS = ("/console/graph", "/console/timeline", "/console/changes", "/console/explain")


def _signed_in(srv: KeylessServer) -> httpx.Client:
    client = httpx.Client(base_url=srv.base_url, timeout=30)
    link = sign_in_link(srv)
    assert client.get(link).status_code == 200
    r = client.post("/console/signin", data={"csrf": client.cookies[names(srv).csrf],
                                             "code": link.split("code=")[1]})
    assert r.status_code == 303 and r.headers["location"] == "/console/graph", r.text
    return client


def test_session_cookie_is_httponly_strict_and_not_secure_on_plain_http(module_server: KeylessServer) -> None:
    client = httpx.Client(base_url=module_server.base_url, timeout=30)
    link = sign_in_link(module_server)
    client.get(link)
    name = names(module_server)
    r = client.post("/console/signin", data={"csrf": client.cookies[name.csrf], "code": link.split("code=")[1]})
    cookies = {c.split("=", 1)[0]: c for c in r.headers.get_list("set-cookie")}
    session = cookies[name.session].lower()
    assert "httponly" in session and "samesite=strict" in session and "path=/" in session
    assert "max-age=" in session and "secure" not in session  # Secure only where the console is served over TLS
    assert "httponly" in cookies[name.csrf].lower()
    # the session acts as the owner, with the scopes of the owner's token
    who = client.get("/console/api/whoami").json()
    assert who["member"] == "user:owner@keyless.dev" and who["scopes"] == [CLOUD_PLATFORM]


def test_every_answer_has_a_csp_without_inline_script(module_server: KeylessServer) -> None:
    client = _signed_in(module_server)
    for path in ("/console/signin", *VIEWS, "/console/api/whoami", "/console/static/console.js", "/console/nope"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert "frame-ancestors 'none'" in csp and r.headers["x-frame-options"] == "DENY", path
        assert r.headers["x-content-type-options"] == "nosniff"
    for path in VIEWS:
        html = client.get(path).text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], path  # no inline script ...
        assert " style=" not in html and " on" + "click=" not in html, path  # ... nor inline style or handlers


def test_state_changes_without_the_csrf_token_are_refused(module_server: KeylessServer) -> None:
    client = httpx.Client(base_url=module_server.base_url, timeout=30)
    name = names(module_server)
    link = sign_in_link(module_server)
    client.get(link)
    code = link.split("code=")[1]
    good = client.cookies[name.csrf]
    for data, headers in (({"code": code}, {}), ({"code": code, "csrf": "forged"}, {}),
                          ({"code": code, "csrf": good}, {"Origin": "https://evil.example"})):
        r = client.post("/console/signin", data=data, headers=headers)
        assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"], r.text
        assert name.session not in r.headers.get("set-cookie", "")
    # the refused attempts did not spend the link
    r = client.post("/console/signin", data={"code": code, "csrf": good})
    assert r.status_code == 303
    # signed in, the token must be the session's own: the pre-sign-in one no longer does
    body = {"principal": "user:owner@keyless.dev", "permission": "resourcemanager.projects.get", "resource": "projects/x"}
    for token in (None, good):
        r = client.post("/console/api/explain", json=body, headers={"X-CSRF-Token": token} if token else {})
        assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"], r.text
    r = client.post("/console/signout", data={"csrf": good})
    assert r.status_code == 403 and client.get("/console/api/whoami").status_code == 200  # still signed in
    session_csrf = client.cookies[name.csrf]
    r = client.post("/console/api/explain", json=body, headers={"X-CSRF-Token": session_csrf})
    assert r.status_code != 403, r.text  # past CSRF (the doctor's own answer)
    r = client.post("/console/signout", data={"csrf": session_csrf})
    assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    assert name.session not in client.cookies  # Max-Age=0
    assert client.get("/console/api/whoami").status_code == 401


def test_a_link_works_once_and_only_from_the_server(module_server: KeylessServer) -> None:
    link = sign_in_link(module_server)
    code = link.split("code=")[1]
    first, second = httpx.Client(base_url=module_server.base_url), httpx.Client(base_url=module_server.base_url)
    csrf = names(module_server).csrf
    for c in (first, second):
        c.get("/console/signin")
    assert first.post("/console/signin", data={"code": code, "csrf": first.cookies[csrf]}).status_code == 303
    again = second.post("/console/signin", data={"code": code, "csrf": second.cookies[csrf]})
    assert again.status_code == 403 and "already used" in again.text
    # a spent link's page says so, and offers no button
    page = second.get(link)
    assert "already used" in page.text and 'id="continue"' not in page.text
    made_up = second.post("/console/signin", data={"code": "x" * 43, "csrf": second.cookies[csrf]})
    assert made_up.status_code == 403
    # only a caller with a token gets a link (for itself)
    r = httpx.post(module_server.base_url + "/console/v1/signInLinks", json={})
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_a_pasted_token_signs_in_as_its_principal_and_a_bad_one_does_not(module_server: KeylessServer) -> None:
    client = httpx.Client(base_url=module_server.base_url, timeout=30)
    client.get("/console/signin")
    name = names(module_server)
    csrf = client.cookies[name.csrf]
    r = client.post("/console/signin", data={"csrf": csrf, "token": "ya29.not-a-token"})
    assert r.status_code == 401 and "UNAUTHENTICATED" in r.text and name.session not in r.headers.get(
        "set-cookie", "")
    r = client.post("/console/signin", data={"csrf": csrf, "token": module_server.owner_token})
    assert r.status_code == 303
    assert client.get("/console/api/whoami").json()["member"] == "user:owner@keyless.dev"


def test_no_session_no_data(module_server: KeylessServer) -> None:
    anonymous = httpx.Client(base_url=module_server.base_url, timeout=30)
    for path in ("/console/api/projects", "/console/api/graph?project=p", "/console/api/entries?project=p",
                 "/console/api/iam?project=p", "/console/api/changes?project=p",
                 "/console/api/access?project=p&node=user:a@example.com", "/console/api/histogram?project=p"):
        r = anonymous.get(path)
        assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED", path
    for path in VIEWS:
        r = anonymous.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    # a session's errors are Google's: a project that does not exist
    client = _signed_in(module_server)
    r = client.get("/console/api/graph", params={"project": "nope", "kind": "pool"})
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    r = client.get("/console/api/iam", params={"project": "nope"})
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    # the timeline's time range is a timestamp, or Google's INVALID_ARGUMENT (never folded into the filter raw)
    r = client.get("/console/api/entries", params={"project": "nope", "since": '2026") OR (true'})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = client.get("/console/api/access", params={"project": "nope", "node": "user:a@example.com"})
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
    # the histogram: the timeline's own checks, bounded buckets, and no count without logging.logEntries.list
    for bad in ({"since": '2026") OR (true'}, {"buckets": "0"}, {"buckets": "101"}, {"buckets": "9" * 5000},
                {"buckets": "\u00b2"}):
        r = client.get("/console/api/histogram", params={"project": "nope", **bad})
        assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT", (bad, r.text)
    assert client.get("/console/api/histogram", params={"project": "nope"}).status_code == 404
    stranger = httpx.Client(base_url=module_server.base_url, timeout=30)
    assert _sign_in_with(stranger, module_server, token=token_for_user(module_server, "stranger@example.com")).status_code == 303
    r = stranger.get("/console/api/histogram", params={"project": "nope"})
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    # a point of the "what changed" view is a timestamp or an entry id, never filter text
    r = client.get("/console/api/changes", params={"project": "nope", "to": '2026") OR (true'})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_expired_links_are_refused(state: ServerState) -> None:
    owner = state.tokens.mint(state.owner, [CLOUD_PLATFORM], 3600)
    link = signin.create_link(state.db, owner, now=int(time.time()) - signin.CODE_LIFETIME - 1)
    with pytest.raises(PermissionDenied, match="expired"):
        signin.redeem(state.db, link.code)
    fresh = signin.create_link(state.db, owner)
    assert signin.signs_in_as(state.db, fresh.code) == "user:owner@keyless.dev"
    grant = signin.redeem(state.db, fresh.code)
    assert grant.principal.member == "user:owner@keyless.dev" and grant.expires_at == owner.expires_at
    with pytest.raises(PermissionDenied, match="already used"):
        signin.redeem(state.db, fresh.code)
    assert signin.signs_in_as(state.db, fresh.code) is None
    # a link made with a token about to expire lapses with it, before its five minutes
    short = state.tokens.mint(state.owner, [CLOUD_PLATFORM], 30)
    assert signin.create_link(state.db, short).expires_at == short.expires_at


def _sign_in_with(client: httpx.Client, srv: KeylessServer, *, token: str = "", code: str = "",
                  secure: bool = False) -> httpx.Response:
    client.get("/console/signin")
    form = {"csrf": client.cookies[names(srv, secure).csrf], **({"code": code} if code else {"token": token})}
    return client.post("/console/signin", data=form)


def _session_id(client: httpx.Client, srv: KeylessServer) -> str:
    return str(client.cookies[names(srv).session])


def _replay(srv: KeylessServer, session_id: str, secure: bool = False) -> httpx.Client:
    """A fresh client holding only `session_id` in `srv`'s session cookie (stolen or planted)."""
    client = httpx.Client(base_url=srv.base_url, timeout=30)
    client.cookies.set(names(srv, secure).session, session_id)
    return client


def test_the_session_cookie_is_no_bearer_token(module_server: KeylessServer) -> None:
    client = _signed_in(module_server)
    stolen = _session_id(client, module_server)
    assert not stolen.startswith("ya29.")
    bearer = {"Authorization": f"Bearer {stolen}"}
    for path in ("/cloudresourcemanager/v1/projects", "/iam/v1/projects/-/serviceAccounts",
                 "/storage/v1/b?project=my-project", "/secretmanager/v1/projects/my-project/secrets",
                 "/logging/v2/entries:list", "/doctor/v1/access",
                 "/cloudresourcemanager/v1/projects/my-project:getIamPolicy"):
        method = "POST" if path.endswith((":getIamPolicy", ":list")) else "GET"
        r = httpx.request(method, module_server.base_url + path, headers=bearer, timeout=30)
        assert r.status_code == 401, (path, r.status_code, r.text)
    r = httpx.get(module_server.base_url + "/oauth2/v3/tokeninfo", params={"access_token": stolen}, timeout=30)
    assert r.status_code == 400, r.text
    assert client.get("/console/api/whoami").status_code == 200  # while it is a session cookie still


def test_sign_out_makes_the_old_cookie_useless(module_server: KeylessServer) -> None:
    client = _signed_in(module_server)
    copied = _session_id(client, module_server)
    assert _replay(module_server, copied).get("/console/api/whoami").status_code == 200
    r = client.post("/console/signout", data={"csrf": client.cookies[names(module_server).csrf]})
    assert r.status_code == 303
    replayed = _replay(module_server, copied)
    assert replayed.get("/console/api/whoami").status_code == 401
    r = replayed.get("/console/graph")
    assert r.status_code == 303 and r.headers["location"] == "/console/signin"


def test_signing_in_again_ends_the_previous_session(module_server: KeylessServer) -> None:
    client = _signed_in(module_server)
    first = _session_id(client, module_server)
    r = _sign_in_with(client, module_server, token=token_for_user(module_server, "second@example.com"))
    assert r.status_code == 303 and _session_id(client, module_server) != first
    assert client.get("/console/api/whoami").json()["member"] == "user:second@example.com"
    assert _replay(module_server, first).get("/console/api/whoami").status_code == 401


def test_a_session_has_its_tokens_scopes_and_ends_with_it(module_server: KeylessServer) -> None:
    """A devstorage.read_only token valid a few seconds: its session (pasted, or through a sign-in
    link the token asked for) has only that scope and ends when the token does."""
    st = server_state(module_server)
    narrow = st.tokens.mint(st.owner, [READ_ONLY], 4)
    link = httpx.post(module_server.base_url + "/console/v1/signInLinks", json={}, timeout=30,
                      headers={"Authorization": f"Bearer {narrow.token}"})
    assert link.status_code == 200, link.text
    assert link.json()["expiresAt"] <= narrow.expires_at  # the link lapses with the token, too
    by_link, pasted = (httpx.Client(base_url=module_server.base_url, timeout=30) for _ in range(2))
    r = _sign_in_with(by_link, module_server, code=link.json()["url"].split("code=")[1])
    assert r.status_code == 303, r.text
    assert _sign_in_with(pasted, module_server, token=narrow.token).status_code == 303
    for client in (by_link, pasted):
        who = client.get("/console/api/whoami").json()
        assert who["scopes"] == [READ_ONLY] and who["expiresAt"] <= narrow.expires_at, who
    set_cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(names(module_server).session))
    assert int(set_cookie.lower().split("max-age=")[1].split(";")[0]) <= 4
    time.sleep(max(0.0, narrow.expires_at - time.time()) + 1.1)
    for client in (by_link, pasted):  # the cookie is replayed although the browser would have dropped it
        assert _replay(module_server, _session_id(client, module_server)).get("/console/api/whoami").status_code == 401


def test_a_disabled_service_accounts_session_stops_working(module_server: KeylessServer) -> None:
    path = "/iam/v1/projects/console-sa-project/serviceAccounts"
    r = module_server.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": "console-sa-project"})
    assert r.status_code == 200, r.text
    r = module_server.call("POST", path, body={"accountId": "console-sa"})
    assert r.status_code == 200, r.text
    email = r.json()["email"]
    client = httpx.Client(base_url=module_server.base_url, timeout=30)
    assert _sign_in_with(client, module_server, token=token_for_service_account(module_server, email)).status_code == 303
    assert client.get("/console/api/whoami").json()["member"] == f"serviceAccount:{email}"
    assert module_server.call("POST", f"{path}/{email}:disable", body={}).status_code == 200
    assert client.get("/console/api/whoami").status_code == 401
    # revoked, not merely suspended: enabling the account again does not bring the session back
    assert module_server.call("POST", f"{path}/{email}:enable", body={}).status_code == 200
    assert client.get("/console/api/whoami").status_code == 401


def test_the_link_page_names_the_principal(module_server: KeylessServer) -> None:
    page = httpx.get(sign_in_link(module_server), timeout=30).text
    assert "You will be signed in as" in page and "user:owner@keyless.dev" in page
    other = token_for_user(module_server, "someone@example.com")
    link = httpx.post(module_server.base_url + "/console/v1/signInLinks", json={}, timeout=30,
                      headers={"Authorization": f"Bearer {other}"}).json()
    page = httpx.get(link["url"], timeout=30).text
    assert "You will be signed in as <strong id=\"member\">user:someone@example.com</strong>" in page


def test_redirects_are_relative_whatever_the_host_header(module_server: KeylessServer) -> None:
    hostile = {"Host": "evil.example"}
    for path, location in (("/console", "/console/"), ("/console/", "/console/signin"),
                           ("/console/graph/", "/console/graph"), ("/console/signin/?code=x", "/console/signin?code=x"),
                           ("/console/graph", "/console/signin")):
        r = httpx.get(module_server.base_url + path, headers=hostile, timeout=30)
        assert r.status_code in (303, 307) and r.headers["location"] == location, (path, r.headers.get("location"))
    assert "strict-transport-security" not in httpx.get(module_server.base_url + "/console/signin").headers


def test_another_server_refuses_this_servers_session(tmp_path: Path) -> None:
    """Two servers on one host (cookies ignore ports) sharing one database: a session cookie of A,
    stolen by B or planted in B's name, is refused by B, and the two never share a cookie name.
    A third server behind A's public URL (a second replica) shares A's sessions, sign-out included."""
    url = fresh_database_url() or f"sqlite:///{tmp_path / 'shared.db'}"
    a = KeylessServer(tmp_path / "a", url)
    b = KeylessServer(tmp_path / "b", url)
    replica = KeylessServer(tmp_path / "replica", url, "--public-url", a.base_url)
    try:
        assert names(a).session != names(b).session and names(a).csrf != names(b).csrf
        client = _signed_in(a)
        stolen = _session_id(client, a)
        assert _replay(a, stolen).get("/console/api/whoami").status_code == 200
        at_b = _replay(b, stolen)
        at_b.cookies.set(names(a).session, stolen)  # under either name
        assert at_b.get("/console/api/whoami").status_code == 401
        r = at_b.get("/console/graph")
        assert r.status_code == 303 and r.headers["location"] == "/console/signin"
        assert client.get("/console/api/whoami").status_code == 200  # A's own session is untouched
        # the replica: same server identity, same store, so the same session; its sign-out is A's too
        at_replica = httpx.Client(base_url=replica.base_url, timeout=30)
        at_replica.cookies.set(names(a).session, stolen)
        at_replica.cookies.set(names(a).csrf, signin.session_csrf(stolen))
        assert at_replica.get("/console/api/whoami").json()["member"] == "user:owner@keyless.dev"
        r = at_replica.post("/console/signout", data={"csrf": signin.session_csrf(stolen)})
        assert r.status_code == 303, r.text
        assert client.get("/console/api/whoami").status_code == 401
    finally:
        for srv in (a, b, replica):
            srv.stop()


def test_over_tls_host_prefixed_secure_cookies_and_hsts(tmp_path: Path) -> None:
    tls_port = free_port()
    srv = KeylessServer(tmp_path / "data", fresh_database_url(), "--tls-port", str(tls_port))
    try:
        context = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "ca.pem"))
        client = httpx.Client(base_url=f"https://localhost:{tls_port}", verify=context, timeout=30)
        name = names(srv, secure=True)
        assert name.session.startswith("__Host-") and name.csrf.startswith("__Host-")
        r = client.get("/console/signin")
        assert r.status_code == 200, r.text
        # no HSTS to a localhost name: it would hold every port of localhost, this server's HTTP one too
        assert "strict-transport-security" not in r.headers
        by_address = httpx.get(f"https://127.0.0.1:{tls_port}/console/signin", verify=context, timeout=30)
        assert by_address.headers["strict-transport-security"] == "max-age=31536000"
        csrf_cookie = r.headers["set-cookie"]
        assert csrf_cookie.startswith(name.csrf + "=") and "; secure" in csrf_cookie.lower()
        r = _sign_in_with(client, srv, code=sign_in_link(srv).split("code=")[1], secure=True)
        assert r.status_code == 303, r.text
        session = next(c for c in r.headers.get_list("set-cookie") if c.startswith(name.session + "="))
        flags = [f.strip().lower() for f in session.split(";")[1:]]
        assert "secure" in flags and "httponly" in flags and "path=/" in flags
        assert not any(f.startswith("domain=") for f in flags)  # __Host-: no Domain
        assert client.get("/console/api/whoami").json()["member"] == "user:owner@keyless.dev"
        # the plain-HTTP listener of the same server neither reads nor sets the __Host- cookie
        plain = httpx.Client(base_url=srv.base_url, timeout=30)
        plain.cookies.set(name.session, client.cookies[name.session])
        assert plain.get("/console/api/whoami").status_code == 401
    finally:
        srv.stop()
