"""The console's HTTP surface, mounted at /console/: pages, its static files, sign-in and sign-out,
and the JSON endpoints its script reads. Every JSON endpoint acts as the session's principal, with
the scopes of the token the session was made from, through the server's own handlers or Authorizer
(logging's entries.list handler itself, the doctor's permission), so a viewer without a permission
gets Google's 403 and no data.

Security (issue #23 item 9): the session cookie holds an opaque session id, not a token
(keyless.console.sessions); it is HttpOnly, SameSite=Strict, named for this server, and over TLS
`__Host-` and Secure, with Strict-Transport-Security (but to localhost names, _hsts). Every state change
(sign-in, sign-out, explain) needs the CSRF token (keyless.console.signin); every answer carries a
Content-Security-Policy without inline script or style, frame-ancestors 'none', and a same-origin
referrer policy (a sign-in link's code never leaves the site; same-origin POSTs still name their
Origin, which is checked). Redirects are relative: no Location is built from the Host header.
"""

from __future__ import annotations

import re
import time
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyless import projects
from keyless.api import logging as logging_api
from keyless.api.errors import google_error, json_response
from keyless.api.http import Call, endpoint, read_body, read_json
from keyless.audit import subject_hint
from keyless.audit.filter import parse_timestamp
from keyless.clock import now, rfc3339
from keyless.console import changes, flows, graph, pages, sessions, signin
from keyless.doctor import targets
from keyless.errors import InvalidArgument, KeylessError, NotFound, PermissionDenied, Unauthenticated
from keyless.iam.service_accounts import sa_chain
from keyless.projects import ROOT
from keyless.state import ServerState
from keyless.storage.buckets import with_convenience_members

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
           (b"cache-control", b"no-store")]
HSTS = (b"strict-transport-security", b"max-age=31536000")  # RFC 6797, on TLS answers only (_hsts)
STATIC_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
DOCTOR_PERMISSION = "resourcemanager.projects.getIamPolicy"  # on the explained resource's project
MAX_FORM = 64 * 1024
TIMELINE_PAGE = 200
ACTIVITY = 'log_id("cloudaudit.googleapis.com/activity")'
CHANGES_PAGE = 1000
MAX_CHANGE_ENTRIES = 10_000  # Admin Activity entries one comparison reads at most (then says it stopped)
ACCESS_SECONDS = 5.0  # the doctor's walk for one selected node, at most (then DEADLINE_EXCEEDED)
MAX_ACCESSES = 200
MAX_EXPAND_KEY = 2100  # a box's key: hub:NODE-ID<KIND, a node id (a member) up to ~2,000 characters  # accesses listed in one answer (all of them highlighted)
HISTOGRAM_BUCKETS = 40  # the timeline's histogram: bars over its time range
MAX_BUCKETS = 100
HISTOGRAM_SCAN = 20_000  # entries one histogram reads at most, newest first (then it says so)
INSERT_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class SecurityHeaders:
    """Adds the console's security headers to every response under /console/."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [*HEADERS, HSTS] if _hsts(scope) else HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {n for n, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in headers if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _hsts(scope: Scope) -> bool:
    """Strict-Transport-Security on TLS answers, except to a `localhost` name (RFC 6761): a browser
    applies it to the host on every port (Chromium does for localhost), so it would turn every
    plain-HTTP server the developer runs on localhost, this one's own HTTP port included, into a
    connection error for a year, while loopback traffic crosses no network it could protect."""
    if scope.get("scheme") != "https":
        return False
    host = next((v.decode("latin-1") for n, v in scope.get("headers", []) if n == b"host"), "").lower()
    name = host if host.startswith("[") else host.rsplit(":", 1)[0]
    return not (name == "localhost" or name.endswith(".localhost"))


# -- sessions ----------------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _cookie(state: ServerState, request: Request, base: str) -> str:
    return sessions.cookie_name(base, state.settings.base_url, _secure(request))


async def _session(state: ServerState, request: Request) -> sessions.Session | None:
    """The request's session: its cookie names a live session this server minted."""
    raw = request.cookies.get(_cookie(state, request, sessions.SESSION_COOKIE))
    if not raw:
        return None
    return await run_in_threadpool(sessions.lookup, state.db, state.settings.base_url, raw,
                                   state.inactive_service_accounts)


def _csrf_cookie(state: ServerState, request: Request, session: sessions.Session | None) -> str:
    """The CSRF token pages embed: the session's when signed in, else the visitor's cookie (or a new one)."""
    if session is not None:
        return signin.session_csrf(session.id)
    return request.cookies.get(_cookie(state, request, sessions.CSRF_COOKIE)) or signin.new_csrf()


def _set_cookies(state: ServerState, response: Response, request: Request, csrf: str,
                 session: sessions.Session | None = None) -> Response:
    """HttpOnly, SameSite=Strict, Path=/ (as `__Host-` requires), Secure over TLS."""
    secure = _secure(request)
    response.set_cookie(_cookie(state, request, sessions.CSRF_COOKIE), csrf, path="/", httponly=True,
                        samesite="strict", secure=secure)
    if session is not None:
        max_age = max(1, session.token.expires_at - int(time.time()))
        response.set_cookie(_cookie(state, request, sessions.SESSION_COOKIE), session.id, max_age=max_age, path="/",
                            httponly=True, samesite="strict", secure=secure)
    return response


async def _form(request: Request) -> dict[str, str]:
    body = await read_body(request, MAX_FORM)
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _origin_ok(request: Request) -> bool:
    """A browser's cross-site POST names its origin: refuse one that is not this host."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1] == request.headers.get("host", "")


def _csrf_ok(state: ServerState, request: Request, sent: str | None, session: sessions.Session | None) -> bool:
    return _origin_ok(request) and signin.csrf_valid(request.cookies.get(_cookie(state, request, sessions.CSRF_COOKIE)),
                                                      sent, session.id if session else None)


def _forbidden_csrf() -> Response:
    return google_error(PermissionDenied(signin.CSRF_FAILED))


# -- the app -----------------------------------------------------------------------------------


def build(state: ServerState) -> ASGIApp:
    static = {name: (resources.files("keyless.console") / "static" / name).read_bytes()
              for name in ("console.js", "console.css")}

    async def index(request: Request) -> Response:
        target = "/console/graph" if await _session(state, request) else "/console/signin"
        return RedirectResponse(target, status_code=303)

    async def signin_page(request: Request) -> Response:
        session = await _session(state, request)
        code = request.query_params.get("code", "")
        if session is not None and not code:
            return RedirectResponse("/console/graph", status_code=303)
        csrf = _csrf_cookie(state, request, None)
        member = await run_in_threadpool(signin.signs_in_as, state.db, code) if code else None
        error = signin.ALREADY_USED if code and member is None else ""
        page = pages.signin(csrf, code if member else "", error=error, member=member or "")
        return _set_cookies(state, HTMLResponse(page), request, csrf)

    async def signin_post(request: Request) -> Response:
        try:
            form = await _form(request)
        except InvalidArgument as error:
            return google_error(error)
        if not _csrf_ok(state, request, form.get(signin.CSRF_FIELD), None):
            return _forbidden_csrf()
        try:
            if form.get("code"):
                grant = await run_in_threadpool(signin.redeem, state.db, form["code"])
            else:
                grant = await run_in_threadpool(state.authenticate, f"Bearer {form.get('token', '').strip()}")
            session = await run_in_threadpool(sessions.create, state.db, state.settings.base_url, grant)
        except KeylessError as error:
            csrf = _csrf_cookie(state, request, None)
            page = pages.signin(csrf, error=f"{error.status}: {error.message}")
            return _set_cookies(state, HTMLResponse(page, status_code=error.http_status), request, csrf)
        replaced = await _session(state, request)
        if replaced is not None:  # signing in again (another link, another token) ends the old session
            await run_in_threadpool(sessions.revoke, state.db, replaced.id)
        response = RedirectResponse("/console/graph", status_code=303)
        return _set_cookies(state, response, request, signin.session_csrf(session.id), session)

    async def signout(request: Request) -> Response:
        try:
            form = await _form(request)
        except InvalidArgument as error:
            return google_error(error)
        session = await _session(state, request)
        if not _csrf_ok(state, request, form.get(signin.CSRF_FIELD), session):
            return _forbidden_csrf()
        if session is not None:
            await run_in_threadpool(sessions.revoke, state.db, session.id)
        response = RedirectResponse("/console/signin", status_code=303)
        response.delete_cookie(_cookie(state, request, sessions.SESSION_COOKIE), path="/", httponly=True,
                               samesite="strict", secure=_secure(request))
        return _set_cookies(state, response, request, signin.new_csrf())

    def view(name: str) -> Any:
        async def show(request: Request) -> Response:
            session = await _session(state, request)
            if session is None:
                return RedirectResponse("/console/signin", status_code=303)
            return HTMLResponse(pages.page(name, session.token.principal.member, signin.session_csrf(session.id)))
        return show

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in static:
            return google_error(NotFound(f"The requested URL {request.url.path} was not found on this server."))
        return Response(static[name], media_type=STATIC_TYPES[name.rsplit(".", 1)[1]],
                        headers={"cache-control": "no-cache"})

    def api(handler: Any, *, state_change: bool = False) -> Any:
        """A JSON endpoint acting as the session's principal (a Call, as the APIs' handlers get)."""

        async def run(request: Request) -> Response:
            session = await _session(state, request)
            try:
                if session is None:
                    raise Unauthenticated("Sign in to the console first (the session is missing or expired).")
                if state_change and not _csrf_ok(state, request, request.headers.get(signin.CSRF_HEADER), session):
                    return _forbidden_csrf()
                body = await read_json(request, state.settings.max_body_bytes) if request.method == "POST" else {}
                query: dict[str, list[str]] = {}
                for k, v in request.query_params.multi_items():
                    query.setdefault(k, []).append(v)
                call = Call(state=state, token=session.token, params={}, query=query, body=body, record=None)
                return json_response(await run_in_threadpool(handler, call))
            except KeylessError as error:
                return google_error(error)

        return run

    routes = [
        Route("/", index), Route("/signin", signin_page), Route("/signin", signin_post, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        *(Route(f"/{v}", view(v)) for v, _ in pages.VIEWS),
        Route("/static/{name}", static_file),
        Route("/v1/signInLinks", endpoint(state, create_link, audited=False), methods=["POST"]),
        Route("/api/whoami", api(whoami)), Route("/api/projects", api(list_projects)),
        Route("/api/graph", api(get_graph)), Route("/api/changes", api(get_changes)),
        Route("/api/access", api(get_access)), Route("/api/entries", api(list_entries)),
        Route("/api/histogram", api(get_histogram)), Route("/api/iam", api(get_iam)),
        Route("/api/explain", api(explain, state_change=True), methods=["POST"]),
    ]
    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path.endswith("/") and path.startswith("/console/") and scope.get("method") in ("GET", "HEAD"):
            # Starlette's own slash redirect would build an absolute URL from the Host header
            await relative_redirect(path.rstrip("/"), scope.get("query_string", b""))(scope, receive, send)
            return
        await google_error(NotFound(f"The requested URL {path} was not found on this server."))(scope, receive, send)

    return SecurityHeaders(Router(routes=routes, default=not_found, redirect_slashes=False))


def relative_redirect(path: str, query: bytes = b"") -> Response:
    """A 307 to a path on this server: a relative Location, so no Host header can point it elsewhere."""
    return RedirectResponse(path + ("?" + query.decode("latin-1") if query else ""), status_code=307)


async def root(request: Request) -> Response:
    """GET /console (mounted by keyless.app beside /console/): to /console/, relatively."""
    return relative_redirect("/console/", request.scope.get("query_string", b""))


# -- JSON handlers (synchronous domain code, as the APIs' handlers) -----------------------------


def create_link(call: Call) -> dict[str, Any]:
    """POST /console/v1/signInLinks (bearer token): a one-time sign-in link for the caller."""
    assert call.token is not None
    link = signin.create_link(call.state.db, call.token)
    return {"url": f"{call.state.settings.base_url}/console/signin?code={link.code}", "expiresAt": link.expires_at,
            "member": call.token.principal.member}


def whoami(call: Call) -> dict[str, Any]:
    """Who the session acts as, with which scopes, until when (the token it was made from)."""
    assert call.token is not None
    return {"member": call.principal.member, "scopes": list(call.token.scopes), "expiresAt": call.token.expires_at}


def list_projects(call: Call) -> dict[str, Any]:
    """The projects the viewer may get (resourcemanager.projects.get), as projects.list filters."""
    with call.read() as s:
        rows = [(p.project_id, p.project_number) for p in projects.list_projects(s)]
    visible = [{"projectId": pid, "projectNumber": number} for pid, number in rows
               if call.state.authz.check(call.principal, "resourcemanager.projects.get",
                                         projects.project_chain(pid)).granted]
    return {"projects": visible}


def _graph_project(call: Call) -> str:
    """The project a graph question is about, once the viewer may read its policy (the doctor's permission)."""
    project_id = call.arg("project") or ""
    with call.read() as s:
        row = projects.find_project(s, project_id, include_deleted=False) if project_id else None
    chain = projects.project_chain(row.project_id) if row else [f"projects/{project_id}", ROOT]
    call.state.authz.require(call.principal, "resourcemanager.projects.getIamPolicy", chain, f"projects/{project_id}")
    if row is None:
        raise NotFound(f"Project '{project_id[:100]}' not found.")
    return str(row.project_id)


def _viewer_allows(call: Call) -> graph.Allowed:
    """Whether the viewer holds a permission on a resource (a bucket's convenience members included)."""

    def allowed(permission: str, chain: list[str], target: targets.Target | None) -> bool:
        principal = call.principal
        if target is not None and target.kind in ("bucket", "managed folder"):  # projectOwner:P & co., as Storage checks
            principal = with_convenience_members(call.state.authz, principal, target.project_id)
        context = target.context if target is not None else None
        return call.state.authz.check(principal, permission, chain, context).granted

    return allowed


def get_graph(call: Call) -> dict[str, Any]:
    from keyless.doctor.model import load

    project_id = _graph_project(call)
    kinds = {k for k in call.args("kind") if k} or None
    if kinds and not kinds <= set(graph.KINDS):
        raise InvalidArgument(f"Unknown node kind: {sorted(kinds - set(graph.KINDS))[0][:50]!r}.")
    allowed = _viewer_allows(call)
    started = time.perf_counter()
    whole = graph.build(call.state, load(call.state), project_id, allowed)
    total = len(whole.nodes)
    notes = graph.condense(whole, legacy=call.arg("legacy") == "1",
                           expand=frozenset(k[:MAX_EXPAND_KEY] for k in call.args("expand")[:50]))
    shown = graph.layout(graph.select(whole, kinds, call.arg("q") or ""))
    out = shown.as_json(total=total)
    out["folded"] = notes
    out["buildSeconds"] = round(time.perf_counter() - started, 4)
    return out


def get_access(call: Call) -> dict[str, Any]:
    """A selected node, answered by the doctor's access analysis (keyless.doctor.access): for a
    principal (a service account, a member, a KSA) every resource and permission it reaches,
    directly, through principal sets it belongs to, by impersonation and through workload identity;
    for a resource every identity that reaches it. The answer is the graph nodes it touches (to
    highlight) and its accesses, leaving out those that rest on a policy the viewer may not read;
    bounded by ACCESS_SECONDS (DEADLINE_EXCEEDED past it)."""
    from keyless.doctor import access
    from keyless.doctor.identities import principal_of
    from keyless.doctor.model import load

    project_id = _graph_project(call)
    node = call.arg("node") or ""
    if not node or len(node) > 2000:
        raise InvalidArgument("node: name the selected graph node (its id).")
    started = time.monotonic()
    setup = load(call.state)
    analyzer = access.Analyzer(call.state, setup, deadline=started + ACCESS_SECONDS)
    if node.startswith("resource:"):
        direction, found = "reachedBy", analyzer.resource(access.resource_chain(call.state, node[len("resource:"):]))
    else:
        principal = principal_of(call.state, node, flag="node")
        direction, found = "reaches", analyzer.identity(principal)
    allowed = _viewer_allows(call)
    cache: dict[str, Any] = {}
    nodes: set[str] = {node}
    shown: list[dict[str, Any]] = []
    hidden = 0
    with call.read() as s:
        for a in found:
            accounts = [setup.account_by_email(h.account) for h in a.via]
            policies = [a.resource, *(sa_chain(acc)[0] for acc in accounts if acc is not None)]
            if not all(graph.policy_readable(s, setup, r, allowed, cache) for r in policies):
                hidden += 1
                continue
            nodes.update((f"resource:{a.resource}", f"grant:{a.role}@{a.resource}", graph.node_id(a.member),
                          graph.node_id(a.identity), *(f"serviceAccount:{h.account.lower()}" for h in a.via)))
            target = setup.account_of_resource(a.resource)
            if target is not None:  # a grant on an account's own policy: that account is reached
                nodes.add(f"serviceAccount:{target.email.lower()}")
            if len(shown) < MAX_ACCESSES:
                shown.append(a.as_json(setup))
    return {"node": node, "project": project_id, "direction": direction, "nodes": sorted(nodes), "accesses": shown,
            "total": len(found) - hidden, "hidden": hidden, "seconds": round(time.monotonic() - started, 4)}


def get_iam(call: Call) -> dict[str, Any]:
    """The project's IAM page: each principal with its roles and each role with its principals,
    from the project's allow policy and those it inherits (marked with where they come from; an
    ancestor's only where the viewer may read its policy, as the Cloud Console's IAM page shows)."""
    from keyless.iam.policy import get_policy_row

    project_id = call.arg("project") or ""
    with call.read() as s:
        row = projects.find_project(s, project_id, include_deleted=False) if project_id else None
    chain = projects.project_chain(row.project_id) if row else [f"projects/{project_id}", ROOT]
    call.state.authz.require(call.principal, DOCTOR_PERMISSION, chain, f"projects/{project_id}")
    if row is None:
        raise NotFound(f"Project '{project_id[:100]}' not found.")
    hidden: list[str] = []
    readable = [chain[0]]
    for i, ancestor in enumerate(chain[1:], start=1):
        if call.state.authz.check(call.principal, DOCTOR_PERMISSION, chain[i:]).granted:
            readable.append(ancestor)
        else:
            hidden.append(f"roles inherited from {ancestor}: permission {DOCTOR_PERMISSION} denied")
    with call.read() as s:
        policies = {r: get_policy_row(s, r) for r in readable}
    by_member: dict[str, list[dict[str, Any]]] = {}
    by_role: dict[str, list[dict[str, Any]]] = {}
    for resource in readable:
        policy = policies[resource]
        for b in policy.bindings if policy is not None else []:
            condition = (b.get("condition") or {})
            for member in b.get("members", []):
                grant: dict[str, Any] = {"inherited": resource != chain[0], "from": resource}
                if condition:
                    grant["condition"] = {k: condition[k] for k in ("title", "expression") if condition.get(k)}
                by_member.setdefault(member, []).append({"role": b["role"], **grant})
                by_role.setdefault(b["role"], []).append({"member": member, **grant})
    return {"project": row.project_id, "hidden": hidden,
            "byPrincipal": [{"member": m, "roles": g} for m, g in sorted(by_member.items())],
            "byRole": [{"role": r, "members": g} for r, g in sorted(by_role.items())]}


def list_entries(call: Call) -> dict[str, Any]:
    """The timeline: logging's own entries.list handler (same parser, same permissions), newest
    first; `after` narrows to entries newer than a timestamp (the live tail's poll)."""
    project_id, filter_text, after = call.arg("project") or "", call.arg("filter") or "", call.arg("after") or ""
    since, page_token = call.arg("since") or "", call.arg("pageToken") or ""
    if since:  # the time range: entries at or after `since`, as Logs Explorer's range adds to the query
        if parse_timestamp(since) is None:
            raise InvalidArgument(f"Invalid timestamp {since[:40]!r}.")
        filter_text = f'({filter_text}) AND timestamp>="{since}"' if filter_text.strip() else f'timestamp>="{since}"'
    next_token: list[str] = []

    def page(text: str, token: str = "") -> list[dict[str, Any]]:
        inner = Call(state=call.state, token=call.token, params={}, query={}, record=None,
                     body={"resourceNames": [f"projects/{project_id}"], "filter": text,
                           "orderBy": "timestamp desc", "pageSize": TIMELINE_PAGE, "pageToken": token})
        answer = logging_api.list_entries(inner)
        next_token[:] = [answer["nextPageToken"]] if answer.get("nextPageToken") else []
        found: list[dict[str, Any]] = answer.get("entries", [])
        return found

    if page_token:  # the next page of the same query: older entries, and no flows (they are the first page's)
        entries = page(filter_text, page_token)
        return {"entries": entries, **({"nextPageToken": next_token[0]} if next_token else {})}
    if not after:
        entries = page(filter_text)
        out: dict[str, Any] = {"entries": entries, "flows": flows.group(entries)}
        if next_token:
            out["nextPageToken"] = next_token[0]
        found = None if entries else subject_hint.hint(filter_text, lambda: _providers(call, project_id),
                                                       lambda text: len(page(text)))
        if found:
            out["hint"] = found  # why seed 001's principalSet/attribute queries find nothing, and what does
        return out
    if parse_timestamp(after) is None:
        raise InvalidArgument(f"Invalid timestamp {after[:40]!r}.")
    newer = f'({filter_text}) AND timestamp>"{after}"' if filter_text.strip() else f'timestamp>"{after}"'
    entries = page(newer)
    # a new entry may complete an older flow: flows are regrouped over the whole latest page
    return {"entries": entries, "flows": flows.group(page(filter_text)) if entries else None}


def get_histogram(call: Call) -> dict[str, Any]:
    """The timeline's histogram: the entries matching its filter over its whole time range (`since`
    up to now; without it, from the oldest match), counted per bucket and severity on the server, as
    Logs Explorer counts the range and not the entries loaded. The same filter parser and permission
    as entries.list; at most MAX_BUCKETS buckets and HISTOGRAM_SCAN entries read (past it the answer
    says from where on older entries are not counted)."""
    from keyless.api.logging.entries import readable_project
    from keyless.audit import query

    project_id, filter_text, since = call.arg("project") or "", call.arg("filter") or "", call.arg("since") or ""
    start = parse_timestamp(since) if since else None
    if since and start is None:
        raise InvalidArgument(f"Invalid timestamp {since[:40]!r}.")
    raw = call.arg("buckets") or str(HISTOGRAM_BUCKETS)
    if not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_BUCKETS:
        raise InvalidArgument(f"buckets: a number from 1 to {MAX_BUCKETS}.")
    call.state.audit.flush()  # the entries this process queued count, as entries.list reads them
    end = now()
    with call.read() as s:
        readable, private = readable_project(call, s, project_id, "logging.logEntries.list")
        found = query.histogram(s, [readable], filter_text, start=start, end=end, buckets=int(raw),
                                private={readable} if private else set(), scan_limit=HISTOGRAM_SCAN)
    out: dict[str, Any] = {"start": rfc3339(found.start), "end": rfc3339(found.end), "scanned": found.scanned,
                           "buckets": [{"bad": bad, "ok": ok} for bad, ok in found.counts],
                           "total": sum(bad + ok for bad, ok in found.counts)}
    if found.stopped_at is not None:
        out["capped"] = (f"counted the newest {found.scanned:,} entries read (the cap): "
                         f"entries before {rfc3339(found.stopped_at)} are not counted")
    return out


def _read_entries(call: Call, project_id: str, text: str, order: str, size: int,
                  token: str = "") -> dict[str, Any]:
    """One page of logging's own entries.list as the viewer (its parser, its permissions)."""
    inner = Call(state=call.state, token=call.token, params={}, query={}, record=None,
                 body={"resourceNames": [f"projects/{project_id}"], "filter": text, "orderBy": order,
                       "pageSize": size, "pageToken": token})
    return logging_api.list_entries(inner)


def _point(call: Call, project_id: str, value: str, name: str) -> str:
    """A point of the log: a timestamp as given, or the timestamp of the Admin Activity entry with
    that insertId (the entry chosen on the page); RFC 3339 either way, quoted into the filter."""
    if not value:
        return ""
    at = parse_timestamp(value)
    if at is not None:
        return rfc3339(at)
    if not INSERT_ID.fullmatch(value):
        raise InvalidArgument(f"{name}: {value[:40]!r} is neither a timestamp nor an audit entry's insertId.")
    found = _read_entries(call, project_id, f'{ACTIVITY} AND insertId="{value}"', "timestamp desc", 1)
    if not found.get("entries"):
        raise InvalidArgument(f"{name}: no Admin Activity entry {value!r} in project {project_id[:100]}.")
    return str(found["entries"][0]["timestamp"])


def get_changes(call: Call) -> dict[str, Any]:
    """What changed in the identity graph between two points of the Admin Activity log (keyless.
    console.changes): after `from` (exclusive: the state that entry left) up to `to` (inclusive),
    each a timestamp or an entry's insertId; either missing is the log's start or end. The entries
    are read through logging's entries.list as the viewer, so logging.logEntries.list decides."""
    project_id = call.arg("project") or ""
    start = _point(call, project_id, call.arg("from") or "", "from")
    end = _point(call, project_id, call.arg("to") or "", "to")
    if start and end and end < start:  # both RFC 3339 in UTC with microseconds: ordered as text
        raise InvalidArgument("from is after to: choose the earlier point first.")
    text = ACTIVITY + (f' AND timestamp>"{start}"' if start else "") + (f' AND timestamp<="{end}"' if end else "")
    entries: list[dict[str, Any]] = []
    token, truncated = "", False
    while True:
        page = _read_entries(call, project_id, text, "timestamp asc", CHANGES_PAGE, token)
        entries.extend(page.get("entries", []))
        token = page.get("nextPageToken", "")
        if not token:
            break
        if len(entries) >= MAX_CHANGE_ENTRIES:
            truncated = True
            break
    latest = _read_entries(call, project_id, ACTIVITY, "timestamp desc", TIMELINE_PAGE).get("entries", [])
    points = [{"insertId": e.get("insertId"), "timestamp": e.get("timestamp"),
               "method": (e.get("protoPayload") or {}).get("methodName", ""),
               "resource": changes.resource_of(e)} for e in latest]
    out: dict[str, Any] = {"project": project_id, "from": start, "to": end, "read": len(entries),
                           "changes": changes.diff(entries), "points": points}
    if truncated:
        out["truncated"] = (f"only the first {len(entries)} Admin Activity entries after {start or 'the start'} "
                            "were compared: choose a later 'from' or an earlier 'to'")
    return out


def _providers(call: Call, project_id: str) -> list[subject_hint.Provider]:
    """The project's providers, for a viewer who may list them (as projects.locations.
    workloadIdentityPools.providers.list would answer)."""
    from keyless.federation.pools import list_pools, list_providers

    if not call.state.authz.check(call.principal, "iam.workloadIdentityPoolProviders.list",
                                  projects.project_chain(project_id)).granted:
        return []
    with call.state.db.read() as s:
        project = projects.find_project(s, project_id, include_deleted=False)
        if project is None:
            return []
        return [subject_hint.Provider(pool=pool.name, mapping=dict(row.attribute_mapping or {}))
                for pool in list_pools(s, project.project_number, False)[:100] for row in list_providers(s, pool, False)]


def explain(call: Call) -> dict[str, Any]:
    """The doctor's explain (keyless.doctor.explain) for the viewer, who must be able to read the
    policies it is about: resourcemanager.projects.getIamPolicy on the resource's project (and on
    the impersonated account's), and the logs of an explained entry's project, as Policy
    Troubleshooter asks. Levels of the hierarchy above what the viewer may read (the root, for a
    project's own owner) are listed without their bindings."""
    import json as json_module

    from keyless.doctor import explain as doctor

    body = call.body
    allowed = {"principal", "serviceAccount", "token", "provider", "entry", "pod", "cluster", "permission",
               "resource"}
    unknown = set(body) - allowed
    if unknown:
        raise InvalidArgument(f"Unknown field {sorted(unknown)[0][:50]!r}.")
    text = {k: str(v).strip() for k, v in body.items() if isinstance(v, str) and v.strip()}
    summary = ""
    if text.get("entry"):
        entry = doctor.find_entry(call.state, text["entry"])
        _require_logs(call, entry)
        refused = doctor.refused_exchange(entry)
        if refused is not None:
            out: dict[str, Any] = json_module.loads(doctor.render_json(refused))
            out["entry"] = f"audit entry {text['entry'][:64]}: a refused token exchange"
            return out
        q, summary = doctor.question_of_entry(call.state, text["entry"])
        q.names = doctor.FORM_NAMES
    else:
        q = doctor.Question(permission=text.get("permission", ""), resource=text.get("resource", ""),
                            pod=text.get("pod"), cluster=text.get("cluster"), token=text.get("token"),
                            provider=text.get("provider"), principal=text.get("principal"),
                            service_account=text.get("serviceAccount"), names=doctor.FORM_NAMES)
        if not q.resource:
            raise InvalidArgument("Name a resource, such as projects/PROJECT or projects/_/buckets/BUCKET.")
    with call.read() as s:
        target = targets.resolve(s, q.resource)
    projects_read = {target.project_id} if target.project_id else set()
    if q.service_account and q.service_account.endswith(".iam.gserviceaccount.com"):
        projects_read.add(q.service_account.split("@", 1)[-1].split(".", 1)[0])
    for project_id in sorted(projects_read):
        call.state.authz.require(call.principal, DOCTOR_PERMISSION, projects.project_chain(project_id),
                                 f"projects/{project_id}")
    if not projects_read:  # the root or a folder: its own policy
        call.state.authz.require(call.principal, DOCTOR_PERMISSION, target.chain, target.chain[0])
    # levels the viewer may not read: the per-level table and the role step leave their bindings out
    q.unreadable = frozenset(r for i, r in enumerate(target.chain)
                             if not call.state.authz.check(call.principal, DOCTOR_PERMISSION, target.chain[i:]).granted)
    ex = doctor.explain(call.state, q)
    out = json_module.loads(doctor.render_json(ex))
    for level in out.get("policies", []):
        if level["resource"] in q.unreadable:
            level["bindings"], level["hidden"] = [], f"permission {DOCTOR_PERMISSION} denied on this level"
    if summary:
        out["entry"] = summary
    return out


def _require_logs(call: Call, entry: dict[str, Any]) -> None:
    """An entry is explained to whoever may list it: logging.privateLogEntries.list for Data
    Access entries, logging.logEntries.list for the rest, on its project."""
    log_name = str(entry.get("logName") or "")
    project_id = log_name.split("/")[1] if log_name.startswith("projects/") else ""
    permission = "logging.privateLogEntries.list" if "data_access" in log_name else "logging.logEntries.list"
    call.state.authz.require(call.principal, permission, projects.project_chain(project_id),
                             f"projects/{project_id}")
