"""How a Google JSON API method becomes an HTTP endpoint, the same way for every API.

`endpoint(handler)` reads the system parameters (keyless.api.system_parameters: `fields`,
`prettyPrint`, `userProject`...), reads and bounds the body, parses JSON (Google's messages for
bad JSON), authenticates the bearer token, runs the handler (synchronous domain code) in a worker
thread, renders the result or the error, and writes the call's audit entry: inside the
handler's own write transaction on success (`Call.write()`), in a transaction of its own
when the call failed after the caller was known.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from keyless.api import scopes, system_parameters
from keyless.api.errors import error_body, error_headers, unexpected
from keyless.audit import log as audit
from keyless.audit.data_access import data_access_enabled
from keyless.errors import InvalidArgument, KeylessError
from keyless.iam.evaluate import permission_denied
from keyless.iam.principal import Principal
from keyless.projects import ROOT, project_chain
from keyless.state import ServerState
from keyless.tokens.access import AccessToken

logger = logging.getLogger("keyless.api")


def unexpected_failure(request: Request, exc: Exception, log: logging.Logger = logger) -> KeylessError:
    """An exception no handler expected, as Google's error: 503 UNAVAILABLE (logged as a warning)
    while the database is away, 400 for a NUL PostgreSQL refused, else 500 INTERNAL with the
    traceback in our log."""
    failure = unexpected(exc)
    if failure.http_status == 503:
        log.warning("%s %s: the database is unavailable (%s)", request.method, request.url.path, exc)
    elif failure.http_status == 500:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
    return failure


@dataclass
class Call:
    """One API call as a handler sees it."""

    state: ServerState
    token: AccessToken | None
    params: dict[str, str]
    query: dict[str, list[str]]
    body: dict[str, Any]
    record: audit.AuditRecord | None
    caller_ip: str = ""
    user_agent: str = ""
    audited: bool = field(default=False)

    @property
    def principal(self) -> Principal:
        assert self.token is not None, "endpoint declared without authentication"
        return self.token.principal

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        return self.query.get(name, [])

    def flag(self, name: str) -> bool:
        value = (self.arg(name) or "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"Invalid value for boolean parameter {name}: {value!r}")
        return value in ("true", "1")

    def page(self, items: list[Any], *, default: int = 1000, maximum: int | None = None) -> tuple[list[Any], str | None]:
        """Apply pageSize/pageToken (the token is an offset we issued): no pageSize means `default`,
        one above `maximum` is truncated to it, as the method's documentation says."""
        size_text, token = self.arg("pageSize"), self.arg("pageToken") or "0"
        try:
            size = int(size_text) if size_text else 0
            start = int(token)
        except ValueError as exc:
            raise InvalidArgument("Invalid page token or page size.") from exc
        if not -(2**31) <= size < 2**31:  # pageSize is an int32 in every Google API
            raise InvalidArgument(f"Invalid value at 'page_size' (TYPE_INT32), \"{size_text}\"")
        if size < 0 or start < 0 or start > len(items):
            raise InvalidArgument("Invalid page token or page size.")
        if size == 0:
            size = default
        if maximum is not None:
            size = min(size, maximum)
        end = min(start + size, len(items))
        return items[start:end], (str(end) if end < len(items) else None)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction that also records this call's audit entry if it commits."""
        with self.state.db.write() as s:
            yield s
            if self.record is not None:
                audit.write(s, self.record, self.token.principal if self.token else None,
                            caller_ip=self.caller_ip, user_agent=self.user_agent)
                self.audited = True

    def read(self) -> Any:
        return self.state.db.read()

    def touch(self, *, project_id: str = "", name: str = "", type: str = "",
              labels: dict[str, str] | None = None) -> None:
        """Name the resource this call acts on, for its audit entry."""
        if self.record is None:
            return
        if project_id:
            self.record.project_id = project_id
        if name:
            self.record.resource_name = name
        if type:
            self.record.resource_type = type
        if labels:
            self.record.resource_labels = labels

    def require(self, permission: str, chain: list[str], display: str | None = None) -> None:
        """Authorise this call (and note the decision in its audit record)."""
        decision = self.state.authz.check(self.principal, permission, chain)
        if self.record is not None:
            self.record.authorize(display or chain[0], permission, decision.granted)
        if not decision.granted:
            raise permission_denied(permission, display)


Handler = Callable[[Call], Any]


class BodyTooLarge(InvalidArgument):
    """A request body over the endpoint's limit (Google's frontends: 400 with this message)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request payload size exceeds the limit: {limit} bytes.")
        self.limit = limit


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with `BodyTooLarge` past `limit` bytes: the one way every endpoint
    reads a body (issue #23). A declared Content-Length over the limit is refused before anything
    is read; a streamed body is counted as it arrives, so at most `limit` bytes plus one chunk are
    ever held. What the client still sends after the refusal is discarded by the server."""
    for name, value in request.scope["headers"]:  # not request.headers: this is every exchange's path
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise InvalidArgument("Invalid Content-Length header.") from None
            if length > limit:
                raise BodyTooLarge(limit)
            break
    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty), bounded by `limit` bytes."""
    raw = await read_body(request, limit)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"Invalid JSON payload received. {_json_problem(exc)}") from exc
    if not isinstance(body, dict):
        raise InvalidArgument("Invalid JSON payload received. Expected an object at the top level.")
    if b"\\u0000" in raw and has_nul(body):  # a NUL only arrives escaped: no walk without one
        raise InvalidArgument("Invalid JSON payload received. A string contains a NUL character (\\u0000).")
    return body


def has_nul(value: Any) -> bool:
    """Whether a parsed JSON value holds a NUL in any string (no name or store takes one: PostgreSQL
    refuses it, SQLite would store it; issue #23 item 8). Iterative: the depth is the parser's."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"Unexpected token at line {exc.lineno}, column {exc.colno}: {exc.msg}."
    if isinstance(exc, UnicodeDecodeError):
        return "The body is not valid UTF-8."
    return "The JSON is nested too deeply."


def endpoint(state: ServerState, handler: Handler, *, service: str = "", method: str = "",
             authenticated: bool = True, audited: bool = True, inline: bool = False) -> Callable[[Request], Any]:
    """Wrap a synchronous handler as an ASGI endpoint (see the module docstring).

    `inline` runs the handler on the event loop: only for hot-path handlers that work from
    in-memory caches (a cache miss then costs one short store read on the loop)."""

    async def run(request: Request) -> Response:
        call: Call | None = None
        params = system_parameters.DEFAULT
        try:
            params = system_parameters.read(request.query_params, request.headers, service)
            body = await read_json(request, state.settings.max_body_bytes) \
                if request.method in ("POST", "PUT", "PATCH") else {}
            token = state.authenticate(params.authorization(request.headers.get("authorization")), service) \
                if authenticated else None
            if token is not None:
                scopes.require(token, request.scope.get(scopes.SCOPE_KEY))
            record = audit.AuditRecord(service=service, method=method) if audited and method else None
            call = Call(state=state, token=token, params=dict(request.path_params),
                        query=system_parameters.method_query(request.query_params), body=body,
                        record=record, caller_ip=request.client.host if request.client else "",
                        user_agent=request.headers.get("user-agent", ""))
            act = handler if params.user_project is None or token is None else _billed(handler, params, service)
            # the userProject check reads the store: never on the event loop
            result = act(call) if inline and act is handler else await run_in_threadpool(act, call)
        except KeylessError as error:
            if call is not None and call.record is not None and call.token is not None and not call.audited:
                await run_in_threadpool(_audit_failure, state, call, error)
            return params.render(error_body(error), error.http_status, error_headers(error))
        except Exception as exc:  # a bug, or the database away: Google's shape, the traceback in our log
            failure = unexpected_failure(request, exc)
            return params.render(error_body(failure), failure.http_status)
        if isinstance(result, Response):
            return result
        return params.render(result if result is not None else {})

    return run


def data_access_method(service: str, method: str, handler: Handler, log_type: str,
                       *, root_without_project: bool = False) -> Handler:
    """`handler` with a Data Access record of its own (`method` of `service`), written (batched,
    keyless.audit) only where the auditConfigs of the record's project enable `log_type` for the
    caller, as Google writes ADMIN_READ and DATA_READ entries only when asked. A record naming no
    project is written by the root's auditConfigs when `root_without_project` (Cloud Asset's
    organization scopes), else not at all (nothing identifiable was read). A refused call's record
    is decided here, so the endpoint does not write it again."""

    def run(call: Call) -> Any:
        call.record = audit.AuditRecord(service=service, method=method, log=audit.DATA_ACCESS)
        try:
            result = handler(call)
        except KeylessError as error:
            _submit_data_access(call, service, log_type, error, root_without_project)
            call.record = None
            raise
        _submit_data_access(call, service, log_type, None, root_without_project)
        return result

    return run


def _submit_data_access(call: Call, service: str, log_type: str, error: KeylessError | None,
                        root_without_project: bool) -> None:
    record = call.record
    if record is None or call.token is None:
        return
    project_id = record.resource_labels.get("project_id")
    if project_id:
        chain = project_chain(project_id)
    elif root_without_project and record.resource_name:
        chain = [ROOT]
    else:
        return
    if data_access_enabled(call.state.authz.audit_configs(chain), service, log_type, call.principal.member_keys):
        call.state.audit.submit(record, call.principal, caller_ip=call.caller_ip, user_agent=call.user_agent,
                                error=error)


def _billed(handler: Handler, params: system_parameters.SystemParameters, service: str) -> Handler:
    """`handler` after Google's check of the caller's `userProject` (keyless.api.system_parameters)."""
    assert params.user_project is not None

    def run(call: Call) -> Any:
        system_parameters.check_user_project(call.state, call.principal, params.user_project or "", service)
        return handler(call)

    return run


def _audit_failure(state: ServerState, call: Call, error: KeylessError) -> None:
    assert call.record is not None
    if not call.record.resource_name:
        return  # nothing identifiable was touched (e.g. a malformed name)
    try:
        with state.db.write() as s:
            audit.write(s, call.record, call.token.principal if call.token else None,
                        caller_ip=call.caller_ip, user_agent=call.user_agent, error=error)
    except Exception:
        logger.exception("could not write the audit entry of a failed call")


def route(state: ServerState, http_method: str, path: str, handler: Handler, **options: Any) -> Route:
    return Route(path, endpoint(state, handler, **options), methods=[http_method])


def allowed_fields(body: dict[str, Any], allowed: set[str], where: str) -> None:
    """Google refuses unknown fields: 'Unknown name "x" at 'where': Cannot find field.'"""
    for name in body:
        if name not in allowed:
            at = f" at '{where}'" if where else ""
            raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{name}\"{at}: Cannot find field.")


def string_field(body: dict[str, Any], name: str, where: str, default: str = "") -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidArgument(f"Invalid value at '{where}.{name}' (TYPE_STRING), {json.dumps(value)}")
    return value


def object_field(body: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"Invalid value at '{where}.{name}': expected an object, got {json.dumps(value)[:100]}")
    return value


def update_mask(call: Call, body_mask: Any = None) -> list[str] | None:
    raw = call.arg("updateMask") or body_mask
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidArgument("updateMask must be a comma-separated string of field paths.")
    return [p.strip() for p in raw.split(",") if p.strip()]
