"""gRPC methods served by transcoding to Keyless's own REST endpoints, as Google's front ends
do (https://github.com/googleapis/googleapis/blob/master/google/api/http.proto): each request
is turned into the HTTP/JSON call its `google.api.http` rule describes and run through the same
ASGI app, so authentication, IAM checks, audit entries and error messages are the REST ones;
the answer comes back as the gRPC response message, or as the gRPC status and message
(with google.rpc.Status details in `grpc-status-details-bin`) of Google's error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.api_core import path_template, rest_helpers
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2  # noqa: F401  (details' types must be known to ParseDict)
from starlette.types import ASGIApp
from starlette.types import Message as AsgiMessage

logger = logging.getLogger("keyless.grpc")

# Caller metadata passed on to the REST endpoint (the rest are gRPC's own).
FORWARDED_METADATA = ("authorization", "user-agent", "x-goog-api-client", "x-goog-request-params",
                      "x-goog-user-project")
INVALID_RESOURCE = "Invalid resource field value in the request."
# HTTP status -> gRPC code, for answers that carry no google.rpc status name.
HTTP_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
              403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
              409: grpc.StatusCode.ABORTED, 429: grpc.StatusCode.RESOURCE_EXHAUSTED,
              501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE}


@dataclass(frozen=True)
class Rule:
    """One RPC and its HTTP rule (verb, URI template, body field) from the service's proto."""

    rpc: str
    verb: str
    uri: str
    request: type[Message]
    response: type[Message]
    body: str = ""
    additional: tuple[str, ...] = ()  # additional_bindings: more URI templates, same verb and body


# Where the REST call of a gRPC connection comes from: the relay (keyless.tls.alpn) knows the
# client's address; gRPC only sees the relay's socket, named after it.
PeerResolver = Callable[[str], tuple[str, int] | None]


class TranscodingService(grpc.GenericRpcHandler):
    """A gRPC service whose methods are `rules`, answered by `app` under the path `prefix`."""

    def __init__(self, service: str, rules: list[Rule], app: ASGIApp, prefix: str,
                 peer: PeerResolver | None = None) -> None:
        self._app, self._prefix, self._peer = app, prefix.rstrip("/"), peer or (lambda _: None)
        self._handlers = {f"/{service}/{rule.rpc}": grpc.unary_unary_rpc_method_handler(
            self._method(rule), request_deserializer=rule.request.FromString,
            response_serializer=lambda m: m.SerializeToString()) for rule in rules}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._handlers.get(handler_call_details.method)

    def _method(self, rule: Rule) -> Callable[..., Any]:
        async def run(request: Message, context: grpc.aio.ServicerContext) -> Message:
            try:
                transcoded = path_template.transcode(
                    [{"method": rule.verb, "uri": uri, **({"body": rule.body} if rule.body else {})}
                     for uri in (rule.uri, *rule.additional)], request)
                query = rest_helpers.flatten_query_params(_json(transcoded["query_params"]), strict=True)
            except (ValueError, TypeError):
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, INVALID_RESOURCE)
            body = json.dumps(_json(transcoded["body"])).encode() if "body" in transcoded else b""
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            headers = [(k.encode(), metadata[k].encode("latin-1", "replace")) for k in FORWARDED_METADATA
                       if k in metadata]
            if body:
                headers.append((b"content-type", b"application/json"))
            try:
                status, answer = await call_asgi(self._app, rule.verb.upper(), self._prefix + transcoded["uri"],
                                                 query, body, headers, self._peer(context.peer()))
            except Exception:  # a bug: Google's shape, the traceback in our log
                logger.exception("%s failed", rule.rpc)
                await _abort(context, grpc.StatusCode.INTERNAL, "Internal error encountered.")
            return await _response(context, rule, status, answer)

        return run


class LazyTranscodingService(grpc.GenericRpcHandler):
    """A TranscodingService built when its first call arrives: its `rules()` import the service's
    message types (google-cloud-logging's or google-cloud-asset's take most of a second), which a
    process serving only other APIs over gRPC then never pays for."""

    def __init__(self, service: str, rules: Callable[[], list[Rule]], app: ASGIApp, prefix: str,
                 peer: PeerResolver | None = None) -> None:
        self._name, self._rules, self._app, self._prefix, self._peer = service, rules, app, prefix, peer
        self._service: TranscodingService | None = None

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if not handler_call_details.method.startswith(f"/{self._name}/"):
            return None
        if self._service is None:
            self._service = TranscodingService(self._name, self._rules(), self._app, self._prefix, self._peer)
        return self._service.service(handler_call_details)


def _json(message: Any) -> dict[str, Any]:
    if isinstance(message, Message):
        return json_format.MessageToDict(message)
    return dict(message or {})


async def _response(context: grpc.aio.ServicerContext, rule: Rule, status: int, answer: bytes) -> Message:
    try:
        document = json.loads(answer) if answer.strip() else {}
    except ValueError:
        document = None
    if status == 200 and isinstance(document, dict):
        try:
            return json_format.ParseDict(document, rule.response(), ignore_unknown_fields=True)
        except json_format.ParseError:
            logger.exception("%s: the REST answer does not fit %s", rule.rpc, rule.response.DESCRIPTOR.full_name)
            await _abort(context, grpc.StatusCode.INTERNAL, "Internal error encountered.")
    await abort_with_answer(context, status, answer)


async def abort_with_answer(context: grpc.aio.ServicerContext, status: int, answer: bytes) -> NoReturn:
    """End the call with the gRPC status of a REST error answer (Google's error body)."""
    try:
        document = json.loads(answer) if answer.strip() else {}
    except ValueError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        await _abort(context, HTTP_CODES.get(status, grpc.StatusCode.UNKNOWN), answer.decode(errors="replace")[:500])
    code = getattr(grpc.StatusCode, str(error.get("status")), None) or HTTP_CODES.get(status, grpc.StatusCode.UNKNOWN)
    await _abort(context, code, str(error.get("message", "")), error.get("details"))


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str,
                 details: Any = None) -> NoReturn:
    """End the call with `code` and `message`; Google's error details travel as a google.rpc.Status."""
    if isinstance(details, list) and details:
        status = status_pb2.Status(code=code.value[0], message=message)
        try:
            json_format.ParseDict({"details": details}, status, ignore_unknown_fields=True)
            context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
        except (json_format.ParseError, DecodeError, TypeError):
            pass  # a detail of a type this process does not know: the code and message still go
    await context.abort(code, message)
    raise AssertionError("context.abort raises")


async def call_asgi(app: ASGIApp, method: str, path: str, query: list[tuple[str, str]], body: bytes,
                    headers: list[tuple[bytes, bytes]], client: tuple[str, int] | None) -> tuple[int, bytes]:
    """Run one HTTP request through `app` in this process; its status and body."""
    raw_path = urllib.parse.quote(path, safe="/:%")
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "2",
             "method": method, "scheme": "https", "path": urllib.parse.unquote(path), "raw_path": raw_path.encode(),
             "query_string": urllib.parse.urlencode(query).encode(), "root_path": "",
             "headers": [(b"content-length", str(len(body)).encode()), *headers], "client": client, "server": None}
    done = asyncio.Event()
    delivered = False
    status, chunks = 500, []

    async def receive() -> AsgiMessage:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: AsgiMessage) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    return status, b"".join(chunks)
