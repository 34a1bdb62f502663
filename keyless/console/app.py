"""The console's HTTP surface, mounted at /console/: pages, its static files, sign-in and sign-out,
and the JSON endpoints its script reads. Every JSON endpoint acts as the session's principal through
the server's own handlers or Authorizer (logging's entries.list handler itself, the doctor's
permission), so a viewer without a permission gets Google's 403 and no data.

Security: the session cookie is HttpOnly, SameSite=Strict and Secure over TLS; every state change
(sign-in, sign-out, explain) needs the CSRF token (keyless.console.signin); every answer carries a
Content-Security-Policy without inline script or style, frame-ancestors 'none', and a same-origin
referrer policy (a sign-in link's code never leaves the site; same-origin POSTs still name their
Origin, which is checked).
"""

from __future__ import annotations

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
from keyless.audit.filter import parse_timestamp
from keyless.console import flows, graph, pages, signin
from keyless.doctor import targets
from keyless.errors import InvalidArgument, KeylessError, NotFound, PermissionDenied, Unauthenticated
from keyless.iam.evaluate import permission_denied
from keyless.projects import ROOT
from keyless.state import ServerState
from keyless.storage.buckets import with_convenience_members
from keyless.tokens.access import AccessToken

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
           (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
           (b"cache-control", b"no-store")]
STATIC_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
DOCTOR_PERMISSION = "resourcemanager.projects.getIamPolicy"  # on the root, as GET /doctor/v1/access
MAX_FORM = 64 * 1024
TIMELINE_PAGE = 200


class SecurityHeaders:
    """Adds the console's security headers to every response under /console/."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {n for n, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- sessions ----------------------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _session(state: ServerState, request: Request) -> AccessToken | None:
    raw = request.cookies.get(signin.SESSION_COOKIE)
    if not raw:
        return None
    try:
        return state.authenticate(f"Bearer {raw}")
    except KeylessError:
        return None


def _csrf_cookie(request: Request, token: AccessToken | None) -> str:
    """The CSRF token pages embed: the session's when signed in, else the visitor's cookie (or a new one)."""
    if token is not None:
        return signin.session_csrf(token.token)
    return request.cookies.get(signin.CSRF_COOKIE) or signin.new_csrf()


def _set_cookies(response: Response, request: Request, csrf: str, session: str | None = None,
                 max_age: int | None = None) -> Response:
    secure = _secure(request)
    response.set_cookie(signin.CSRF_COOKIE, csrf, path="/console", httponly=True, samesite="strict", secure=secure)
    if session is not None:
        response.set_cookie(signin.SESSION_COOKIE, session, max_age=max_age, path="/console", httponly=True,
                            samesite="strict", secure=secure)
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


def _csrf_ok(request: Request, sent: str | None, token: AccessToken | None) -> bool:
    return _origin_ok(request) and signin.csrf_valid(request.cookies.get(signin.CSRF_COOKIE), sent,
                                                      token.token if token else None)


def _forbidden_csrf() -> Response:
    return google_error(PermissionDenied(signin.CSRF_FAILED))


# -- the app -----------------------------------------------------------------------------------


def build(state: ServerState) -> ASGIApp:
    static = {name: (resources.files("keyless.console") / "static" / name).read_bytes()
              for name in ("console.js", "console.css")}

    async def index(request: Request) -> Response:
        target = "/console/graph" if _session(state, request) else "/console/signin"
        return RedirectResponse(target, status_code=303)

    async def signin_page(request: Request) -> Response:
        token = _session(state, request)
        code = request.query_params.get("code", "")
        if token is not None and not code:
            return RedirectResponse("/console/graph", status_code=303)
        csrf = _csrf_cookie(request, None)
        return _set_cookies(HTMLResponse(pages.signin(csrf, code)), request, csrf)

    async def signin_post(request: Request) -> Response:
        try:
            form = await _form(request)
        except InvalidArgument as error:
            return google_error(error)
        if not _csrf_ok(request, form.get(signin.CSRF_FIELD), None):
            return _forbidden_csrf()
        try:
            if form.get("code"):
                session = await run_in_threadpool(signin.redeem, state.db, form["code"])
            else:
                session = form.get("token", "").strip()
            token = await run_in_threadpool(state.authenticate, f"Bearer {session}")
        except KeylessError as error:
            csrf = _csrf_cookie(request, None)
            page = pages.signin(csrf, error=f"{error.status}: {error.message}")
            return _set_cookies(HTMLResponse(page, status_code=error.http_status), request, csrf)
        max_age = max(1, token.expires_at - int(time.time())) if token.expires_at else None
        response = RedirectResponse("/console/graph", status_code=303)
        return _set_cookies(response, request, signin.session_csrf(token.token), token.token, max_age)

    async def signout(request: Request) -> Response:
        try:
            form = await _form(request)
        except InvalidArgument as error:
            return google_error(error)
        if not _csrf_ok(request, form.get(signin.CSRF_FIELD), _session(state, request)):
            return _forbidden_csrf()
        response = RedirectResponse("/console/signin", status_code=303)
        response.delete_cookie(signin.SESSION_COOKIE, path="/console", httponly=True, samesite="strict",
                               secure=_secure(request))
        return _set_cookies(response, request, signin.new_csrf())

    def view(name: str) -> Any:
        async def show(request: Request) -> Response:
            token = _session(state, request)
            if token is None:
                return RedirectResponse("/console/signin", status_code=303)
            return HTMLResponse(pages.page(name, token.principal.member, signin.session_csrf(token.token)))
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
            token = _session(state, request)
            try:
                if token is None:
                    raise Unauthenticated("Sign in to the console first (the session is missing or expired).")
                if state_change and not _csrf_ok(request, request.headers.get(signin.CSRF_HEADER), token):
                    return _forbidden_csrf()
                body = await read_json(request, state.settings.max_body_bytes) if request.method == "POST" else {}
                query: dict[str, list[str]] = {}
                for k, v in request.query_params.multi_items():
                    query.setdefault(k, []).append(v)
                call = Call(state=state, token=token, params={}, query=query, body=body, record=None)
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
        Route("/api/graph", api(get_graph)), Route("/api/entries", api(list_entries)),
        Route("/api/explain", api(explain, state_change=True), methods=["POST"]),
    ]
    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        await google_error(NotFound(f"The requested URL {path} was not found on this server."))(scope, receive, send)

    return SecurityHeaders(Router(routes=routes, default=not_found))


# -- JSON handlers (synchronous domain code, as the APIs' handlers) -----------------------------


def create_link(call: Call) -> dict[str, Any]:
    """POST /console/v1/signInLinks (bearer token): a one-time sign-in link for the caller."""
    assert call.token is not None
    link = signin.create_link(call.state.db, call.state.tokens, call.token)
    return {"url": f"{call.state.settings.base_url}/console/signin?code={link.code}", "expiresAt": link.expires_at}


def whoami(call: Call) -> dict[str, Any]:
    return {"member": call.principal.member}


def list_projects(call: Call) -> dict[str, Any]:
    """The projects the viewer may get (resourcemanager.projects.get), as projects.list filters."""
    with call.read() as s:
        rows = [(p.project_id, p.project_number) for p in projects.list_projects(s)]
    visible = [{"projectId": pid, "projectNumber": number} for pid, number in rows
               if call.state.authz.check(call.principal, "resourcemanager.projects.get",
                                         projects.project_chain(pid)).granted]
    return {"projects": visible}


def get_graph(call: Call) -> dict[str, Any]:
    from keyless.doctor.model import load

    project_id = call.arg("project") or ""
    with call.read() as s:
        row = projects.find_project(s, project_id, include_deleted=False) if project_id else None
    chain = projects.project_chain(row.project_id) if row else [f"projects/{project_id}", ROOT]
    call.state.authz.require(call.principal, "resourcemanager.projects.getIamPolicy", chain, f"projects/{project_id}")
    if row is None:
        raise NotFound(f"Project '{project_id[:100]}' not found.")
    kinds = {k for k in call.args("kind") if k} or None
    if kinds and not kinds <= set(graph.KINDS):
        raise InvalidArgument(f"Unknown node kind: {sorted(kinds - set(graph.KINDS))[0][:50]!r}.")
    def allowed(permission: str, chain: list[str], target: targets.Target | None) -> bool:
        principal = call.principal
        if target is not None and target.kind == "bucket":  # projectOwner:P & co., as Cloud Storage checks
            principal = with_convenience_members(call.state.authz, principal, target.project_id)
        context = target.context if target is not None else None
        return call.state.authz.check(principal, permission, chain, context).granted

    started = time.perf_counter()
    whole = graph.build(call.state, load(call.state), row.project_id, allowed)
    shown = graph.layout(graph.select(whole, kinds, call.arg("q") or ""))
    out = shown.as_json(total=len(whole.nodes))
    out["buildSeconds"] = round(time.perf_counter() - started, 4)
    return out


def list_entries(call: Call) -> dict[str, Any]:
    """The timeline: logging's own entries.list handler (same parser, same permissions), newest
    first; `after` narrows to entries newer than a timestamp (the live tail's poll)."""
    project_id, filter_text, after = call.arg("project") or "", call.arg("filter") or "", call.arg("after") or ""

    def page(text: str) -> list[dict[str, Any]]:
        inner = Call(state=call.state, token=call.token, params={}, query={}, record=None,
                     body={"resourceNames": [f"projects/{project_id}"], "filter": text,
                           "orderBy": "timestamp desc", "pageSize": TIMELINE_PAGE})
        found: list[dict[str, Any]] = logging_api.list_entries(inner).get("entries", [])
        return found

    if not after:
        entries = page(filter_text)
        return {"entries": entries, "flows": flows.group(entries)}
    if parse_timestamp(after) is None:
        raise InvalidArgument(f"Invalid timestamp {after[:40]!r}.")
    newer = f'({filter_text}) AND timestamp>"{after}"' if filter_text.strip() else f'timestamp>"{after}"'
    entries = page(newer)
    # a new entry may complete an older flow: flows are regrouped over the whole latest page
    return {"entries": entries, "flows": flows.group(page(filter_text)) if entries else None}


def explain(call: Call) -> dict[str, Any]:
    """The doctor's explain (keyless.doctor.explain) for the viewer, who must be able to read every
    policy it walks: resourcemanager.projects.getIamPolicy on the root, as GET /doctor/v1/access."""
    import json as json_module

    from keyless.doctor import explain as doctor

    if not call.state.authz.check(call.principal, DOCTOR_PERMISSION, [ROOT]).granted:
        raise permission_denied(DOCTOR_PERMISSION, "the root")
    body = call.body
    allowed = {"principal", "serviceAccount", "token", "provider", "entry", "pod", "cluster", "permission",
               "resource"}
    unknown = set(body) - allowed
    if unknown:
        raise InvalidArgument(f"Unknown field {sorted(unknown)[0][:50]!r}.")
    text = {k: str(v).strip() for k, v in body.items() if isinstance(v, str) and v.strip()}
    summary = ""
    if text.get("entry"):
        q, summary = doctor.question_of_entry(call.state, text["entry"])
    else:
        q = doctor.Question(permission=text.get("permission", ""), resource=text.get("resource", ""),
                            pod=text.get("pod"), cluster=text.get("cluster"), token=text.get("token"),
                            provider=text.get("provider"), principal=text.get("principal"),
                            service_account=text.get("serviceAccount"))
        if not q.resource:
            raise InvalidArgument("Name a resource, such as projects/PROJECT or projects/_/buckets/BUCKET.")
    ex = doctor.explain(call.state, q)
    out: dict[str, Any] = json_module.loads(doctor.render_json(ex))
    if summary:
        out["entry"] = summary
    return out
