"""The console's protections over plain HTTP against a real `keyless serve`: the session cookie's
flags, CSRF refusal on every state change, the one-time link spent once, the security headers
(a CSP without inline script), and no data without a session."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import httpx
import pytest

from keyless.console import signin
from keyless.errors import PermissionDenied
from keyless.state import ServerState
from tests.conftest import KeylessServer, free_port, fresh_database_url
from tests.console.conftest import sign_in_link

VIEWS = ("/console/graph", "/console/timeline", "/console/explain")


def _signed_in(srv: KeylessServer) -> httpx.Client:
    client = httpx.Client(base_url=srv.base_url, timeout=30)
    link = sign_in_link(srv)
    assert client.get(link).status_code == 200
    r = client.post("/console/signin", data={"csrf": client.cookies["keyless_csrf"],
                                             "code": link.split("code=")[1]})
    assert r.status_code == 303 and r.headers["location"] == "/console/graph", r.text
    return client


def test_session_cookie_is_httponly_strict_and_not_secure_on_plain_http(module_server: KeylessServer) -> None:
    client = httpx.Client(base_url=module_server.base_url, timeout=30)
    link = sign_in_link(module_server)
    client.get(link)
    r = client.post("/console/signin", data={"csrf": client.cookies["keyless_csrf"], "code": link.split("code=")[1]})
    cookies = {c.split("=", 1)[0]: c for c in r.headers.get_list("set-cookie")}
    session = cookies["keyless_console"].lower()
    assert "httponly" in session and "samesite=strict" in session and "path=/console" in session
    assert "max-age=" in session and "secure" not in session  # Secure only where the console is served over TLS
    assert "httponly" in cookies["keyless_csrf"].lower()
    # the session acts as the owner
    assert client.get("/console/api/whoami").json() == {"member": "user:owner@keyless.dev"}


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
    link = sign_in_link(module_server)
    client.get(link)
    code = link.split("code=")[1]
    good = client.cookies["keyless_csrf"]
    for data, headers in (({"code": code}, {}), ({"code": code, "csrf": "forged"}, {}),
                          ({"code": code, "csrf": good}, {"Origin": "https://evil.example"})):
        r = client.post("/console/signin", data=data, headers=headers)
        assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"], r.text
        assert "keyless_console" not in r.headers.get("set-cookie", "")
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
    session_csrf = client.cookies["keyless_csrf"]
    r = client.post("/console/api/explain", json=body, headers={"X-CSRF-Token": session_csrf})
    assert r.status_code != 403, r.text  # past CSRF (the doctor's own answer)
    r = client.post("/console/signout", data={"csrf": session_csrf})
    assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    client.cookies.delete("keyless_console", path="/console")  # what the browser does with Max-Age=0
    assert client.get("/console/api/whoami").status_code == 401


def test_a_link_works_once_and_only_from_the_server(module_server: KeylessServer) -> None:
    link = sign_in_link(module_server)
    code = link.split("code=")[1]
    first, second = httpx.Client(base_url=module_server.base_url), httpx.Client(base_url=module_server.base_url)
    for c in (first, second):
        c.get("/console/signin")
    assert first.post("/console/signin", data={"code": code, "csrf": first.cookies["keyless_csrf"]}).status_code == 303
    again = second.post("/console/signin", data={"code": code, "csrf": second.cookies["keyless_csrf"]})
    assert again.status_code == 403 and "already used" in again.text
    made_up = second.post("/console/signin", data={"code": "x" * 43, "csrf": second.cookies["keyless_csrf"]})
    assert made_up.status_code == 403
    # only a caller with a token gets a link (for itself)
    r = httpx.post(module_server.base_url + "/console/v1/signInLinks", json={})
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_a_pasted_token_signs_in_as_its_principal_and_a_bad_one_does_not(module_server: KeylessServer) -> None:
    client = httpx.Client(base_url=module_server.base_url, timeout=30)
    client.get("/console/signin")
    csrf = client.cookies["keyless_csrf"]
    r = client.post("/console/signin", data={"csrf": csrf, "token": "ya29.not-a-token"})
    assert r.status_code == 401 and "UNAUTHENTICATED" in r.text and "keyless_console" not in r.headers.get(
        "set-cookie", "")
    r = client.post("/console/signin", data={"csrf": csrf, "token": module_server.owner_token})
    assert r.status_code == 303
    assert client.get("/console/api/whoami").json()["member"] == "user:owner@keyless.dev"


def test_no_session_no_data(module_server: KeylessServer) -> None:
    anonymous = httpx.Client(base_url=module_server.base_url, timeout=30)
    for path in ("/console/api/projects", "/console/api/graph?project=p", "/console/api/entries?project=p"):
        r = anonymous.get(path)
        assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED", path
    for path in VIEWS:
        r = anonymous.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/console/signin"
    # a session's errors are Google's: a project that does not exist
    client = _signed_in(module_server)
    r = client.get("/console/api/graph", params={"project": "nope", "kind": "pool"})
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"


def test_expired_links_are_refused(state: ServerState) -> None:
    owner = state.tokens.mint(state.owner, ["https://www.googleapis.com/auth/cloud-platform"], 3600)
    link = signin.create_link(state.db, state.tokens, owner, now=1_000)
    with pytest.raises(PermissionDenied, match="expired"):
        signin.redeem(state.db, link.code, now=1_000 + signin.CODE_LIFETIME + 1)
    fresh = signin.create_link(state.db, state.tokens, owner)
    token = signin.redeem(state.db, fresh.code)
    assert state.tokens.verify(token).principal.member == "user:owner@keyless.dev"
    with pytest.raises(PermissionDenied, match="already used"):
        signin.redeem(state.db, fresh.code)


def test_over_tls_the_cookies_are_secure(tmp_path: Path) -> None:
    tls_port = free_port()
    srv = KeylessServer(tmp_path / "data", fresh_database_url(), "--tls-port", str(tls_port))
    try:
        context = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "ca.pem"))
        client = httpx.Client(base_url=f"https://localhost:{tls_port}", verify=context, timeout=30)
        r = client.get("/console/signin")
        assert r.status_code == 200, r.text
        assert "secure" in r.headers["set-cookie"].lower()
        r = client.post("/console/signin", data={"csrf": client.cookies["keyless_csrf"],
                                                 "code": sign_in_link(srv).split("code=")[1]})
        assert r.status_code == 303, r.text
        session = next(c for c in r.headers.get_list("set-cookie") if c.startswith("keyless_console="))
        assert "; secure" in session.lower() and "httponly" in session.lower()
    finally:
        srv.stop()
