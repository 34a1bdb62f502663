"""Google's system parameters, read the same way by every JSON API wire (keyless.api.http and the
storage wire): https://cloud.google.com/apis/docs/system-parameters (issue #19).

Each has a query form (`fields`, or `$fields`) and most a header form (`X-Goog-FieldMask`):
- `fields`: a partial response (the field-mask syntax of Google's "partial response" guide:
  `a,b/c,items(id,name),*`); a malformed mask is 400 INVALID_ARGUMENT. Names the answer does not
  have select nothing (Google checks them against the method's schema, which Keyless does not
  hold at run time).
- `prettyPrint` (default true, as on Google: indented JSON), `alt` (`json`, its `json;enum-
  encoding=int` form that Google's REST transports send, and `media` where the method defines it;
  anything else is 400), `$.xgafv` (1 or 2), `callback` (JSONP, as Google renders it).
- `access_token` / `oauth_token`: the bearer token, for callers that cannot send the header.
- `userProject` / `X-Goog-User-Project`: the project billed; the caller needs
  `serviceusage.services.use` on it (403 USER_PROJECT_DENIED otherwise), as on Google.
- `key` / `X-Goog-Api-Key`: Keyless issues no API keys, so every key is unknown and refused as
  Google refuses an unknown key (400 API_KEY_INVALID).
- `quotaUser` / `X-Goog-Quota-User`: accepted and ignored (Google ignores it without an API key).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response

from keyless.errors import InvalidArgument, PermissionDenied
from keyless.iam.principal import Principal
from keyless.projects import find_project, project_chain
from keyless.state import ServerState

JSON_TYPE = "application/json; charset=UTF-8"
JSONP_TYPE = "text/javascript; charset=UTF-8"

# Every query name of a system parameter (with its `$` form), and the header of those that have one.
_QUERY = {"alt", "prettyPrint", "fields", "callback", "key", "quotaUser", "userProject", "access_token",
          "oauth_token", "$.xgafv", "upload_protocol", "uploadType", "userIp", "$outputDefaults", "$unique"}
QUERY_NAMES = frozenset(_QUERY | {"$" + n for n in ("alt", "prettyPrint", "fields", "callback", "key",
                                                      "quotaUser", "userProject")})
HEADERS = {"fields": "x-goog-fieldmask", "key": "x-goog-api-key", "quotaUser": "x-goog-quota-user",
           "userProject": "x-goog-user-project"}

MAX_MASK_CHARS = 4096
MAX_MASK_DEPTH = 16
_NAME = re.compile(r"\*|[A-Za-z_$@][A-Za-z0-9_$@.\-]*")
_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]{0,127}")
_PROJECT = re.compile(r"(?:projects/)?([a-z][a-z0-9-]{4,28}[a-z0-9]|[1-9][0-9]{0,17})")
API_KEY_INVALID = "API key not valid. Please pass a valid API key."

# A parsed field mask: each selected name to its sub-mask, or None for the whole value.
Mask = dict[str, Union["Mask", None]]


@dataclass(frozen=True)
class SystemParameters:
    """The system parameters of one request, validated."""

    alt: str = "json"
    pretty: bool = True
    fields: Mask | None = None
    callback: str | None = None
    user_project: str | None = None
    access_token: str | None = None

    def authorization(self, header: str | None) -> str | None:
        """The Authorization header, or the `access_token` parameter as one (the header wins)."""
        if header:
            return header
        return f"Bearer {self.access_token}" if self.access_token else None

    def render(self, body: Any, status: int = 200, headers: Mapping[str, str] | None = None,
               *, indent: int = 2) -> Response:
        """The JSON answer as these parameters ask: partial (success only), pretty or compact, JSONP.
        Google's One Platform APIs indent by 2; Cloud Storage's JSON API by 1 (`indent`)."""
        if self.fields is not None and status < 300:
            body = select(body, self.fields)
        if self.pretty:
            text = json.dumps(body, indent=indent, ensure_ascii=False) + "\n"
        else:
            text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        out = dict(headers or {})
        if self.callback is None:
            return Response(text.encode(), status_code=status, media_type=JSON_TYPE, headers=out)
        out["X-Content-Type-Options"] = "nosniff"  # never sniffed as anything but script
        return Response(f"// API callback\n{self.callback}({text});".encode(), status_code=status,
                        media_type=JSONP_TYPE, headers=out)


DEFAULT = SystemParameters()


def read(query: QueryParams, headers: Headers, service: str = "", *, media: bool = False) -> SystemParameters:
    """The request's system parameters (InvalidArgument for a bad value), for an API of `service`
    (`media`: the method defines `alt=media`)."""
    def value(name: str) -> str | None:
        found = query.getlist(name) or query.getlist("$" + name)
        if found:
            return found[-1]
        header = HEADERS.get(name)
        return headers.get(header) if header else None

    alt = (value("alt") or "json").split(";", 1)[0].strip()  # `json;enum-encoding=int` (REST transports)
    if alt not in ("json", "media") or (alt == "media" and not media):
        raise InvalidArgument(f"Invalid value for parameter 'alt': {_quote(alt)}. "
                              f"This method answers {'json or media' if media else 'json'}.")
    xgafv = query.get("$.xgafv")
    if xgafv is not None and xgafv not in ("1", "2"):
        raise InvalidArgument(f"Invalid value at 'xgafv' (type.googleapis.com/google.api.Xgafv): {_quote(xgafv)}")
    if value("key") is not None:
        raise InvalidArgument(API_KEY_INVALID, details=[{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
            "domain": "googleapis.com", "metadata": {"service": service}}])
    callback = value("callback")
    if callback is not None and not _CALLBACK.fullmatch(callback):
        raise InvalidArgument(f"Invalid value for parameter 'callback': {_quote(callback)}")
    raw_fields = value("fields")
    user_project = value("userProject")
    if user_project is not None and not _PROJECT.fullmatch(user_project):
        raise InvalidArgument(f"Invalid user project {_quote(user_project)}: it must be a project id or number.")
    return SystemParameters(alt=alt, pretty=_pretty(value("prettyPrint")),
                            fields=parse_mask(raw_fields) if raw_fields else None, callback=callback,
                            user_project=user_project,
                            access_token=query.get("access_token") or query.get("oauth_token"))


def method_query(query: QueryParams, *, keep: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """The request's method parameters: its query without the system parameters (but `keep`)."""
    out: dict[str, list[str]] = {}
    for k, v in query.multi_items():
        if k not in QUERY_NAMES or k in keep:
            out.setdefault(k, []).append(v)
    return out


def _pretty(text: str | None) -> bool:
    if text is None:
        return True
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise InvalidArgument(f"Invalid value for parameter 'prettyPrint': {_quote(text)}. Expected true or false.")
    return lowered in ("true", "1")


def _quote(text: str) -> str:
    return json.dumps(text[:100])


def check_user_project(state: ServerState, principal: Principal, user_project: str, service: str) -> None:
    """Google's check of the project a call is billed to: `serviceusage.services.use` on it. An
    unknown project is refused in the same words (nothing learnt about which projects exist)."""
    match = _PROJECT.fullmatch(user_project)
    assert match is not None  # read() validated it
    with state.db.read() as s:
        row = find_project(s, match.group(1), include_deleted=False)
    if row is not None and state.authz.check(principal, "serviceusage.services.use",
                                             project_chain(row.project_id)).granted:
        return
    name = match.group(1)
    raise PermissionDenied(
        f"Caller does not have required permission to use project {name}. Grant the caller the "
        "roles/serviceusage.serviceUsageConsumer role, or a custom role with the serviceusage.services.use "
        f"permission, by visiting https://console.developers.google.com/iam-admin/iam/project?project={name} "
        "and then retry. Propagation of the refusal may take a few minutes.",
        details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "USER_PROJECT_DENIED",
                  "domain": "googleapis.com", "metadata": {"consumer": f"projects/{name}", "service": service}}])


# -- the field mask of a partial response ----------------------------------------------------------

def parse_mask(text: str) -> Mask:
    """Parse `fields` (`a,b/c,d(e,f/g),*`); InvalidArgument, in Google's words, when malformed."""
    if len(text) > MAX_MASK_CHARS:
        raise InvalidArgument(f"Invalid field selection: longer than {MAX_MASK_CHARS} characters.")
    parser = _MaskParser(text)
    mask = parser.selections(0)
    if parser.pos != len(text):
        raise parser.error()
    return mask


class _MaskParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self) -> InvalidArgument:
        return InvalidArgument(f"Invalid field selection {self.text[:200]}")

    def selections(self, depth: int) -> Mask:
        if depth > MAX_MASK_DEPTH:
            raise self.error()
        mask: Mask = {}
        while True:
            path = [self.name()]
            while self.peek() == "/":
                self.pos += 1
                path.append(self.name())
            sub: Mask | None = None
            if self.peek() == "(":
                self.pos += 1
                sub = self.selections(depth + 1)
                if self.peek() != ")":
                    raise self.error()
                self.pos += 1
            _merge(mask, path, sub)
            if self.peek() != ",":
                return mask
            self.pos += 1

    def name(self) -> str:
        while self.peek() == " ":
            self.pos += 1
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.error()
        self.pos = match.end()
        while self.peek() == " ":
            self.pos += 1
        return match.group()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""


def _merge(mask: Mask, path: list[str], sub: Mask | None) -> None:
    node = mask
    for i, name in enumerate(path):
        last = i == len(path) - 1
        if name in node and node[name] is None:
            return  # the whole value is already selected
        if last:
            if sub is None:
                node[name] = None
            else:
                existing = node.get(name) or {}
                for key, value in sub.items():
                    _merge(existing, [key], value)
                node[name] = existing
            return
        child = node.get(name)
        if child is None:
            child = node[name] = {}
        node = child


def select(value: Any, mask: Mask | None) -> Any:
    """`value` cut down to `mask` (arrays: each element); objects left empty by it are dropped."""
    if mask is None:
        return value
    if isinstance(value, list):
        return [select(item, mask) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in mask:
            sub = mask[key]
        elif "*" in mask:
            sub = mask["*"]
        else:
            continue
        chosen = select(item, sub)
        if sub is not None and isinstance(item, dict) and not chosen:
            continue
        out[key] = chosen
    return out
