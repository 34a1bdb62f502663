"""Cloud Storage's XML API for objects (https://cloud.google.com/storage/docs/xml-api/overview):
GET, HEAD, PUT and DELETE of `/BUCKET/OBJECT`, the requests V4 signed URLs stand for
(https://cloud.google.com/storage/docs/access-control/signed-urls).

A request carrying X-Goog-Signature is authorised as the service account whose key signed it
(keyless.storage.signed_urls), and that account's IAM is then checked as for its token; other
requests carry a bearer token or are anonymous (`allUsers`). Served at `/storage/BUCKET/OBJECT`
(the form of an endpoint with Keyless's prefix, `api_access_endpoint=http://HOST/storage`) and, for
signed URLs, at `/BUCKET/OBJECT` on any host, storage.googleapis.com included: keyless.app sends
every request whose query carries a signature here, with the path the client sent kept in
`SENT_PATH` for the signature check. The handlers are the JSON API's (keyless.api.storage.media,
keyless.api.storage), so permissions, preconditions and Data Access entries are the same; answers
and refusals are the XML API's (`<Error><Code>…</Code><Message>…</Message><Details>…</Details>`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message

from keyless.api import scopes
from keyless.api.errors import google_error
from keyless.api.hosts import SENT_PATH, signed_url
from keyless.api.http import unexpected_failure
from keyless.api.storage import media
from keyless.api.storage.wire import SCOPES_NOT_AUTHORIZED, SERVICE, StorageCall
from keyless.errors import InvalidArgument, KeylessError, NotFound, PermissionDenied
from keyless.iam import service_account_keys
from keyless.iam.directory import AccountInfo
from keyless.state import ServerState, service_account_principal
from keyless.storage import signed_urls
from keyless.storage.buckets import BUCKET_NOT_FOUND
from keyless.storage.names import validate_object_name
from keyless.store.models import ServiceAccount
from keyless.tokens.access import CLOUD_PLATFORM, AccessToken

logger = logging.getLogger("keyless.api.storage")

# The XML API's <Code> and <Message> for each status (https://cloud.google.com/storage/docs/xml-api/reference-status).
CODES = {400: ("InvalidArgument", "Invalid argument."), 401: ("AuthenticationRequired", "Authentication required."),
         403: ("AccessDenied", "Access denied."), 404: ("NoSuchKey", "The specified key does not exist."),
         409: ("Conflict", "Conflict."),
         412: ("PreconditionFailed", "At least one of the pre-conditions you specified did not hold."),
         413: ("EntityTooLarge", "Your proposed upload is larger than the maximum object size."),
         416: ("InvalidRange", "The requested range cannot be satisfied."),
         500: ("InternalError", "We encountered an internal error. Please try again."),
         503: ("ServiceUnavailable", "Service Unavailable.")}
# XML preconditions -> the JSON API's query parameters the shared handlers read
PRECONDITION_HEADERS = {"x-goog-if-generation-match": "ifGenerationMatch",
                        "x-goog-if-metageneration-match": "ifMetagenerationMatch"}
RESPONSE_OVERRIDES = {"response-content-type": "Content-Type", "response-content-disposition": "Content-Disposition"}


def xml_error(error: KeylessError, anonymous: bool) -> Response:
    """The XML API's error body. An anonymous caller IAM refused is 403 AccessDenied here (the
    JSON API's 401); 404 names the bucket or the object."""
    status = error.http_status
    if isinstance(error, signed_urls.SignedUrlRefused):
        code, summary = error.code, error.summary
    elif status == 401 and anonymous:
        status, (code, summary) = 403, CODES[403]
    elif status == 404 and error.message == BUCKET_NOT_FOUND:
        code, summary = "NoSuchBucket", BUCKET_NOT_FOUND
    else:
        code, summary = CODES.get(status, CODES[500])
    extra = error.extra if isinstance(error, signed_urls.SignedUrlRefused) else {}
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{escape(summary)}</Message>"
            f"<Details>{escape(error.message)}</Details>"
            + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items()) + "</Error>")
    # a query's undecodable bytes (kept as surrogates to re-encode them as sent) show as U+FFFD
    return Response(body.encode("utf-8", "replace"), status_code=status, media_type="application/xml; charset=UTF-8")


def _certificates(state: ServerState, account: AccountInfo | None) -> list[str]:
    """PEM certificates of the account's live keys, user- and Google-managed."""
    if account is None or account.disabled:
        return []
    with state.db.read() as s:
        row = s.get(ServiceAccount, account.unique_id)
        if row is None or row.deleted:
            return []
        return list(service_account_keys.certificates(s, row).values())


def _signed_call(state: ServerState, request: Request) -> tuple[AccessToken, str, str]:
    """The signing account's token and the (bucket, object) the signature covers."""
    scope = request.scope
    query: bytes = scope.get("query_string", b"")
    params, issued, expires_at = signed_urls.check_parameters(query, time.time())
    email = params["x-goog-credential"].split("/", 1)[0]
    account = state.directory.find(email) if "@" in email else None
    signed = signed_urls.SignedRequest(request.method, scope.get(SENT_PATH) or scope.get("raw_path", b""), query,
                                       scope["headers"])
    verified = signed_urls.verify(signed, params, issued, expires_at, account, _certificates(state, account))
    bucket, _, name = verified.resource.removeprefix("/").partition("/")
    token = AccessToken(service_account_principal(verified.account), (CLOUD_PLATFORM,), issued, expires_at, "")
    return token, bucket, name


def _call(state: ServerState, request: Request) -> StorageCall:
    if signed_url(request.scope.get("query_string", b"")):
        token: AccessToken | None
        token, bucket, name = _signed_call(state, request)
    else:
        authorization = request.headers.get("authorization")
        token = state.authenticate(authorization, SERVICE, downscoped=True) if authorization else None
        needed: scopes.MethodScopes | None = request.scope.get(scopes.SCOPE_KEY)
        if token is not None and needed is not None and not needed.allows(token):
            raise PermissionDenied(SCOPES_NOT_AUTHORIZED)
        bucket, name = request.path_params["bucket"], request.path_params["object"]
    query: dict[str, list[str]] = {}
    for k, v in request.query_params.multi_items():
        query.setdefault(k, []).append(v)
    for header, arg in PRECONDITION_HEADERS.items():
        if request.headers.get(header) is not None:
            query[arg] = [request.headers[header]]
    return StorageCall(state=state, token=token, params={"bucket": bucket, "object": name}, query=query, body={},
                       record=None, caller_ip=request.client.host if request.client else "",
                       user_agent=request.headers.get("user-agent", ""), request=request,
                       base_url=f"{request.url.scheme}://{request.url.netloc}")


async def _serve(call: StorageCall) -> Response:
    from keyless.api.storage.json_api import delete_object  # it mounts these routes: import it when called

    assert call.request is not None
    method = call.request.method
    if method == "GET":
        response = await media.download(call)
        for arg, header in RESPONSE_OVERRIDES.items():
            if call.arg(arg):
                response.headers[header] = call.arg(arg) or ""
        return response
    if method == "HEAD":
        obj, f = await run_in_threadpool(media.open_object, call)
        f.close()
        return Response(status_code=200, headers={**media.object_headers(obj), "Content-Length": str(obj.size)})
    if method == "PUT":
        received = _content_sha256(call)
        stored = await media.upload_media(call, validate_object_name(call.params["object"]), received=received)
        return Response(status_code=200, headers=_stored_headers(stored))
    await run_in_threadpool(delete_object, call)
    return Response(status_code=204)


def _content_sha256(call: StorageCall) -> Callable[[], None] | None:
    """With `X-Goog-Content-SHA256: HEX` (the payload hash a V4 signature may cover), hash the body
    as it streams in and refuse it, before it is stored, if it is another."""
    assert call.request is not None
    claimed = (call.header("x-goog-content-sha256") or signed_urls.UNSIGNED_PAYLOAD).strip()
    if claimed == signed_urls.UNSIGNED_PAYLOAD:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{64}", claimed):
        raise InvalidArgument("X-Goog-Content-SHA256 must be the body's SHA-256 in hex, or UNSIGNED-PAYLOAD.")
    digest = hashlib.sha256()
    request = call.request

    async def receive() -> Message:
        message = await request.receive()
        if message["type"] == "http.request":
            digest.update(message.get("body", b""))
        return message

    call.request = Request(request.scope, receive)

    def check() -> None:
        if not hmac.compare_digest(digest.hexdigest(), claimed.lower()):
            raise InvalidArgument("The X-Goog-Content-SHA256 you specified did not match what was received.")

    return check


def _stored_headers(stored: dict[str, Any]) -> dict[str, str]:
    md5 = base64.b64decode(stored.get("md5Hash", "")).hex()
    return {"ETag": f'"{md5}"', "x-goog-generation": str(stored["generation"]),
            "x-goog-metageneration": str(stored["metageneration"]),
            "x-goog-hash": f"crc32c={stored.get('crc32c', '')},md5={stored.get('md5Hash', '')}",
            "x-goog-stored-content-length": str(stored.get("size", "0"))}


def xml_endpoint(state: ServerState) -> Any:
    async def run(request: Request) -> Response:
        if request.path_params.get("bucket") == "v1":  # the JSON API's path, no route of it matched
            return google_error(NotFound(f"The requested URL {request.url.path} was not found on this server."))
        call: StorageCall | None = None
        try:
            call = await run_in_threadpool(_call, state, request)
            return await _serve(call)
        except KeylessError as error:
            return xml_error(error, call is not None and call.token is None)
        except Exception as exc:  # a bug, or the database away: the XML shape, the traceback in our log
            return xml_error(unexpected_failure(request, exc, logger), call is not None and call.token is None)

    return run


def routes(state: ServerState) -> list[Route]:
    """Mounted under /storage, after the JSON API's routes (no bucket is named `v1`: names have
    at least three characters)."""
    return [Route("/{bucket}/{object:path}", xml_endpoint(state), methods=["GET", "HEAD", "PUT", "DELETE"])]
