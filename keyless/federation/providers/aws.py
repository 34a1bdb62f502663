"""The AWS provider's subject-token verifier: a signed STS GetCallerIdentity request, replayed at AWS.

Follows https://cloud.google.com/iam/docs/workload-identity-federation-with-other-clouds and the STS
v1 `token` reference (subject_token_type `urn:ietf:params:aws:token-type:aws4_request`): the token is
the URL-encoded JSON `{"url", "method", "headers": [{"key", "value"}, ...]}` that google-auth's
`aws.Credentials` builds (AWS SigV4, https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html).
We check its shape, then send it unchanged to AWS STS (or to `sts_endpoint`, keeping the signed `Host`),
and AWS's `GetCallerIdentityResponse` (Arn, Account, UserId) becomes the CEL `assertion`:
`{"arn", "account", "userid"}`. Google's default AWS mapping reads only `assertion.arn`.

Checks before any network call, since the token is hostile: at most 16 KiB; URL-decoded (or raw) JSON
with exactly the keys url, method, headers and an optional empty body; url `https://sts.amazonaws.com`
or `https://sts.REGION.amazonaws.com` (matched on the raw string: no userinfo, port, path, fragment),
query exactly Action=GetCallerIdentity and Version=2011-06-15 in either order; method POST; headers
from a small allowlist, no duplicates, `host` equal to the url's host; `x-goog-cloud-target-resource`
equal to the audience, with or without `https:` (google-auth adds it *after* signing, so it is a
routing check, not integrity-protected); `x-amz-date` within 15 minutes of now; Authorization an
`AWS4-HMAC-SHA256` header for service `sts` whose scope date and region agree with x-amz-date and the
host, and whose SignedHeaders include host and x-amz-date and name only headers present.
Deviations: Google may accept more header names and a form body; we refuse both, and we require
nothing of SignedHeaders beyond what SigV4 itself needs (requiring x-goog-cloud-target-resource would
refuse every token google-auth makes).

Errors are `SubjectTokenRejected` (shared with the OIDC provider; `oauth_error`, `reason`, `detail`):

| reason           | oauth_error     | error_description                                                   | source   |
|------------------|-----------------|---------------------------------------------------------------------|----------|
| too_large        | invalid_request | The subject token is too large (at most 16384 bytes).               | Keyless  |
| malformed        | invalid_grant   | AWS request has invalid format.                                     | observed |
| target_resource  | invalid_grant   | The x-goog-cloud-target-resource header [X] does not match the audience [Y]. | Keyless |
| expired          | invalid_grant   | Received invalid AWS response of type SignatureDoesNotMatch with error message: Signature expired: D is now earlier than E (N - 15 min.) | observed+AWS |
| not_yet_valid    | invalid_grant   | ... Signature not yet current: D is still later than E (N + 15 min.) | observed+AWS |
| aws_rejected     | invalid_grant   | Received invalid AWS response of type CODE with error message: MSG   | observed |
| aws_unreachable  | invalid_grant   | Error connecting to AWS STS to verify the AWS credential.           | Keyless  |
| aws_response     | invalid_grant   | Received an invalid response from AWS STS.                          | Keyless  |
| account          | invalid_grant   | The AWS account [X] of the credential does not match the expected account. | Keyless |

"observed": `AWS request has invalid format.` is quoted from sts.googleapis.com in
https://discuss.google.dev/t/244519; `Received invalid AWS response of type SignatureDoesNotMatch with
error message: ...` from googleapis/google-auth-library-python#844. The stale-date texts are AWS's own
SignatureDoesNotMatch messages, which Google would relay that way; we answer them before calling AWS.

The reply is parsed with `xml.etree` only after bounding it to 64 KiB and refusing any `<!` markup:
with no DOCTYPE no entity can be declared (so no billion-laughs expansion), and ElementTree never
resolves external entities, so defusedxml adds nothing here.
"""

from __future__ import annotations

import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx

from keyless.federation.providers.oidc import SubjectTokenRejected

MAX_TOKEN_BYTES = 16 * 1024
MAX_RESPONSE_BYTES = 64 * 1024
MAX_HEADERS = 16
MAX_CLOCK_SKEW = 15 * 60  # AWS SigV4 allows 15 minutes either way
QUERY = frozenset({("Action", "GetCallerIdentity"), ("Version", "2011-06-15")})
REQUIRED_HEADERS = ("authorization", "host", "x-amz-date", "x-goog-cloud-target-resource")
ALLOWED_HEADERS = frozenset(REQUIRED_HEADERS) | {"x-amz-security-token", "x-amz-content-sha256", "content-type"}

INVALID_FORMAT = "AWS request has invalid format."

_REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}"
_URL = re.compile(rf"https://(sts(?:\.({_REGION}))?\.amazonaws\.com)/?\?([A-Za-z0-9=&._-]{{1,128}})", re.ASCII)
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([A-Z0-9]{16,128})/([0-9]{8})/([a-z0-9-]{1,32})/sts/aws4_request,"
    r" ?SignedHeaders=([a-z0-9;-]{1,512}), ?Signature=([0-9a-f]{64})", re.ASCII)
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z", re.ASCII)
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}", re.ASCII)
_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:(?:iam|sts)::([0-9]{12}):[\x21-\x7e]{1,1900}", re.ASCII)
_ACCOUNT = re.compile(r"[0-9]{12}", re.ASCII)
_USERID = re.compile(r"[\x21-\x7e]{1,256}", re.ASCII)
_ERROR_CODE = re.compile(r"[A-Za-z0-9._-]{1,100}", re.ASCII)


def _rejected(reason: str, description: str, detail: str = "", oauth_error: str = "invalid_grant"
              ) -> SubjectTokenRejected:
    return SubjectTokenRejected(description, reason=reason, oauth_error=oauth_error, detail=detail)


def _malformed(detail: str) -> SubjectTokenRejected:
    return _rejected("malformed", INVALID_FORMAT, detail)


def _bad_response(detail: str) -> SubjectTokenRejected:
    return _rejected("aws_response", "Received an invalid response from AWS STS.", detail)


def _strip_https(resource: str) -> str:
    return resource[len("https:"):] if resource.startswith("https://") else resource


def _format_amz_date(seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))


class SignedRequest:
    """A subject token that passed every check we can make without AWS: ready to replay."""

    __slots__ = ("host", "query", "method", "headers")

    def __init__(self, host: str, query: str, method: str, headers: dict[str, str]) -> None:
        self.host = host
        self.query = query
        self.method = method
        self.headers = headers  # lower-case names, as signed or added by the client


def parse_subject_token(subject_token: str, *, audience: str, now: float,
                        max_clock_skew: int = MAX_CLOCK_SKEW) -> SignedRequest:
    """Decode and check a serialized GetCallerIdentity request; raise SubjectTokenRejected otherwise."""
    if len(subject_token) > MAX_TOKEN_BYTES or len(subject_token.encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
        raise _rejected("too_large", f"The subject token is too large (at most {MAX_TOKEN_BYTES} bytes).",
                        oauth_error="invalid_request")
    text = subject_token.strip()
    if not text.startswith("{"):  # google-auth URL-encodes the JSON; accept it raw too
        try:
            text = unquote(text, errors="strict")
        except UnicodeDecodeError as exc:
            raise _malformed("the subject token is not URL-encoded UTF-8") from exc
    try:
        token = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _malformed("the subject token is not JSON") from exc
    if not isinstance(token, dict) or not {"url", "method", "headers"} <= set(token) <= {
            "url", "method", "headers", "body"}:
        raise _malformed("the subject token must be a JSON object with url, method, headers (and body)")
    if token.get("body", "") not in ("", None):
        raise _malformed("the GetCallerIdentity request must have an empty body")
    url, method, raw_headers = token["url"], token["method"], token["headers"]

    if not isinstance(url, str) or (m := _URL.fullmatch(url)) is None:
        raise _malformed(f"the url must be https://sts[.REGION].amazonaws.com?Action=GetCallerIdentity&"
                         f"Version=2011-06-15, got {str(url)[:200]!r}")
    host, host_region, query = m.group(1), m.group(2) or "us-east-1", m.group(3)
    pairs = [p.partition("=") for p in query.split("&")]
    if len(pairs) != len(QUERY) or {(k, v) for k, _, v in pairs} != QUERY:
        raise _malformed(f"the url's query must be Action=GetCallerIdentity&Version=2011-06-15, got {query!r}")
    if method != "POST":
        raise _malformed(f"the method must be POST, got {str(method)[:20]!r}")

    if not isinstance(raw_headers, list) or not 0 < len(raw_headers) <= MAX_HEADERS:
        raise _malformed(f"headers must be a list of at most {MAX_HEADERS} {{key, value}} objects")
    headers: dict[str, str] = {}
    for item in raw_headers:
        if not isinstance(item, dict) or set(item) != {"key", "value"}:
            raise _malformed("each header must be an object with exactly key and value")
        key, value = item["key"], item["value"]
        if not isinstance(key, str) or not isinstance(value, str) or not _HEADER_NAME.fullmatch(key):
            raise _malformed("header keys and values must be strings")
        name = key.lower()
        if name not in ALLOWED_HEADERS:
            raise _malformed(f"header {key!r} is not allowed")
        if name in headers:
            raise _malformed(f"header {key!r} appears twice")
        if not value or len(value) > 4096 or any(c < " " or c > "~" for c in value):
            raise _malformed(f"header {key!r} has an empty or non-printable value")
        headers[name] = value
    missing = [h for h in REQUIRED_HEADERS if h not in headers]
    if missing:
        raise _malformed(f"missing required header(s): {', '.join(missing)}")
    if headers["host"].lower() != host:
        raise _malformed(f"the host header {headers['host'][:100]!r} does not match the url's host {host!r}")

    target = headers["x-goog-cloud-target-resource"]
    if _strip_https(target) != _strip_https(audience):
        raise _rejected("target_resource", f"The x-goog-cloud-target-resource header [{target[:300]}] does not "
                        f"match the audience [{audience[:300]}].")

    auth = _AUTHORIZATION.fullmatch(headers["authorization"])
    if auth is None:
        raise _malformed("the Authorization header is not an AWS4-HMAC-SHA256 signature for sts")
    scope_date, scope_region, signed = auth.group(2), auth.group(3), auth.group(4).split(";")
    amz_date = headers["x-amz-date"]
    if not _AMZ_DATE.fullmatch(amz_date):
        raise _malformed(f"x-amz-date {amz_date[:40]!r} is not in ISO 8601 basic format")
    try:  # by hand: time.strptime's lazy import is not thread-safe
        signed_at = datetime(int(amz_date[0:4]), int(amz_date[4:6]), int(amz_date[6:8]), int(amz_date[9:11]),
                             int(amz_date[11:13]), int(amz_date[13:15]), tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise _malformed(f"x-amz-date {amz_date!r} is not a valid time") from exc
    if scope_date != amz_date[:8]:
        raise _malformed("the credential scope date does not match x-amz-date")
    if scope_region != host_region:
        raise _malformed(f"the credential scope region {scope_region!r} does not match the host {host!r}")
    if "host" not in signed or "x-amz-date" not in signed or any(h not in headers for h in signed):
        raise _malformed("SignedHeaders must include host and x-amz-date and only headers that are present")

    prefix = "Received invalid AWS response of type SignatureDoesNotMatch with error message: "
    if signed_at < now - max_clock_skew:
        raise _rejected("expired", f"{prefix}Signature expired: {amz_date} is now earlier than "
                        f"{_format_amz_date(now - max_clock_skew)} ({_format_amz_date(now)} - 15 min.)")
    if signed_at > now + max_clock_skew:
        raise _rejected("not_yet_valid", f"{prefix}Signature not yet current: {amz_date} is still later than "
                        f"{_format_amz_date(now + max_clock_skew)} ({_format_amz_date(now)} + 15 min.)")
    return SignedRequest(host=host, query=query, method=method, headers=headers)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _parse_xml(body: bytes) -> ET.Element:
    if b"<!" in body:  # DOCTYPE, ENTITY, CDATA, comments: AWS sends none, and no DTD means no entities
        raise ValueError("markup declarations are not accepted")
    return ET.fromstring(body)


def _child_text(element: ET.Element, *path: str) -> str | None:
    for name in path:
        found = next((c for c in element if _local(c.tag) == name), None)
        if found is None:
            return None
        element = found
    return (element.text or "").strip()


def parse_caller_identity(status: int, body: bytes) -> dict[str, Any]:
    """Turn AWS STS's XML reply into the assertion, or raise SubjectTokenRejected."""
    try:
        root = _parse_xml(body)
    except (ET.ParseError, ValueError) as exc:
        raise _bad_response(f"HTTP {status}, unparsable XML: {exc}") from exc
    if status != 200:
        # AWS: ErrorResponse/Error/{Code,Message}; moto wraps the Error in an extra Errors element.
        error = next((e for e in root.iter() if _local(e.tag) == "Error"), None)
        code = _child_text(error, "Code") if error is not None and _local(root.tag) == "ErrorResponse" else None
        message = (_child_text(error, "Message") if error is not None else None) or ""
        if code is None or not _ERROR_CODE.fullmatch(code):
            raise _bad_response(f"HTTP {status} without an AWS error code")
        message = "".join(c if " " <= c <= "~" else " " for c in message[:1000])
        raise _rejected("aws_rejected", f"Received invalid AWS response of type {code} with error message: "
                        f"{message}", f"HTTP {status}")
    if _local(root.tag) != "GetCallerIdentityResponse":
        raise _bad_response(f"unexpected XML root {_local(root.tag)[:100]!r}")
    arn = _child_text(root, "GetCallerIdentityResult", "Arn")
    account = _child_text(root, "GetCallerIdentityResult", "Account")
    userid = _child_text(root, "GetCallerIdentityResult", "UserId")
    if arn is None or account is None or userid is None:
        raise _bad_response("GetCallerIdentityResult lacks Arn, Account or UserId")
    m = _ARN.fullmatch(arn)
    if m is None or not _ACCOUNT.fullmatch(account) or m.group(1) != account or not _USERID.fullmatch(userid):
        raise _bad_response(f"implausible identity: arn={arn[:200]!r} account={account[:20]!r}")
    return {"arn": arn, "account": account, "userid": userid}


class AwsVerifier:
    """Verifies AWS subject tokens by replaying them at AWS STS; one instance serves every AWS provider."""

    def __init__(self, sts_endpoint: str | None = None, *, timeout: float = 5.0,
                 max_clock_skew: int = MAX_CLOCK_SKEW, trust_env: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        """`sts_endpoint` (e.g. moto's `http://127.0.0.1:PORT`) receives every request instead of the
        signed host, which is still sent as `Host` so the signature holds."""
        if sts_endpoint is not None and not re.fullmatch(r"https?://[A-Za-z0-9.\[\]:-]+/?", sts_endpoint):
            raise ValueError(f"sts_endpoint must be scheme://host[:port], got {sts_endpoint!r}")
        self.sts_endpoint = sts_endpoint.rstrip("/") if sts_endpoint else None
        self.timeout = timeout
        self.max_clock_skew = max_clock_skew
        self._trust_env = trust_env
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=self.timeout, follow_redirects=False,
                                                trust_env=self._trust_env, transport=self._transport)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def verify(self, subject_token: str, *, account_id: str, audience: str,
               now: float | None = None) -> dict[str, Any]:
        """Return `{"arn", "account", "userid"}` for a token AWS accepts from account `account_id`."""
        request = parse_subject_token(subject_token, audience=audience,
                                      now=time.time() if now is None else now,
                                      max_clock_skew=self.max_clock_skew)
        base = self.sts_endpoint or f"https://{request.host}"
        deadline = time.monotonic() + self.timeout
        try:
            headers = {**request.headers, "accept-encoding": "identity"}  # unsigned; keeps iter_raw plain
            with self._http().stream(request.method, f"{base}/?{request.query}", headers=headers,
                                     content=b"") as response:
                body = bytearray()
                for chunk in response.iter_raw():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise _bad_response(f"reply larger than {MAX_RESPONSE_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("AWS STS reply took too long")
                status = response.status_code
                encoding = response.headers.get("content-encoding", "identity").lower()
        except httpx.HTTPError as exc:
            raise _rejected("aws_unreachable", "Error connecting to AWS STS to verify the AWS credential.",
                            f"{type(exc).__name__}: {exc}") from exc
        if encoding not in ("identity", ""):
            raise _bad_response(f"unexpected content-encoding {encoding[:40]!r}")
        identity = parse_caller_identity(status, bytes(body))
        if identity["account"] != account_id:
            raise _rejected("account", f"The AWS account [{identity['account']}] of the credential does not "
                            "match the expected account.", f"expected {account_id}, arn {identity['arn']}")
        return identity


__all__ = ["AwsVerifier", "SignedRequest", "parse_caller_identity", "parse_subject_token"]
