"""Drives Keyless with Google's discovery-based client (googleapiclient.discovery.build, from the
static documents it ships) and checks every answer against the called method's response schema.

A family's module lists its flow: steps in order (create what the next steps need, read, change,
delete), each naming a method by its discovery id. `run` calls each step, validates the answer
and keeps it for later steps; `unflowed` says which served methods no step calls.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google.oauth2.credentials
from googleapiclient import discovery as client_discovery
from googleapiclient.errors import HttpError

from tests.conformance import schema
from tests.conformance.discovery import Method, document, methods, prefix
from tests.conformance.schema import problems

Args = dict[str, Any]
Context = dict[str, Any]


def build(server_url: str, token: str, name: str) -> Any:
    """The discovery client of `name` (`iam.v1`) pointed at Keyless, authenticated by `token`.
    `api_endpoint` replaces rootUrl + servicePath: SERVER/iam/ for a servicePath of '', and
    SERVER/storage/v1/ for storage's (media paths keep their own `/upload/storage/v1/`)."""
    doc = document(name)
    api, version = doc["name"], doc["version"]
    credentials = google.oauth2.credentials.Credentials(token)
    options = {"api_endpoint": server_url + prefix(doc) + doc.get("servicePath", "")}
    if any(m.upload_url for m in methods(doc)):
        # The client sends media uploads to rootUrl's scheme with api_endpoint's host
        # (discovery._fix_up_media_path_base_url): https to a plain-HTTP server. The same document
        # with rootUrl at the server is what a client of an http:// endpoint needs.
        return client_discovery.build_from_document({**doc, "rootUrl": server_url + "/"}, credentials=credentials,
                                                    client_options=options)
    return client_discovery.build(api, version, static_discovery=True, credentials=credentials, cache_discovery=False,
                                  client_options=options)


def _resources_of(desc: dict[str, Any], method_id: str, path: tuple[str, ...] = ()) -> list[str] | None:
    """The resources a method sits under in its document (the client's own copy of it)."""
    if any(spec.get("id") == method_id for spec in desc.get("methods", {}).values()):
        return list(path)
    for key, child in desc.get("resources", {}).items():
        found = _resources_of(child, method_id, (*path, key))
        if found is not None:
            return found
    return None


def method_of(client: Any, method_id: str) -> Callable[..., Any]:
    """`iam.projects.serviceAccounts.create` -> client.projects().serviceAccounts().create; where
    the id does not name the resources (`cloudasset.analyzeIamPolicy` is v1().analyzeIamPolicy),
    the document says them."""
    node = client
    *resources, verb = method_id.split(".")[1:]
    resources = _resources_of(client._rootDesc, method_id) or resources
    for resource in resources:
        node = getattr(node, resource.replace("-", "_"))()
    name = verb.replace("-", "_")  # the client's own renaming (discovery.fix_method_name)
    return getattr(node, name) if hasattr(node, name) else getattr(node, name + "_")


@dataclass
class Step:
    """One call of a flow: `args(ctx)` the method's keyword arguments (path, query, `body`)."""

    method: str
    args: Callable[[Context], Args]
    save: str = ""  # keep the answer in ctx under this name
    check: Callable[[Context, Any], None] | None = None  # assertions beyond the schema
    present: list[str] = field(default_factory=list)  # fields Google always returns
    error: int = 0  # the HTTP status expected instead of success


@dataclass
class Flow:
    document: str
    steps: list[Step]
    not_yet: dict[str, str] = field(default_factory=dict)  # served methods no step calls yet: why

    def unflowed(self, served: set[str]) -> set[str]:
        return served - {s.method for s in self.steps} - set(self.not_yet)


def spec_of(name: str, method_id: str) -> Method:
    for m in methods(document(name)):
        if m.id == method_id:
            return m
    raise KeyError(method_id)


def call(client: Any, name: str, step: Step, ctx: Context) -> Any:
    """Make one step's call; check its answer against the response schema."""
    args = step.args(ctx)
    request = method_of(client, step.method)(**args)
    try:
        answer = request.execute()
    except HttpError as exc:
        if step.error and exc.resp.status == step.error:
            answer = json.loads(exc.content or b"{}")
            found = error_problems(name, answer, step.error)
            assert not found, f"{step.method} answered an error outside Google's shape: {found}: {_short(answer)}"
            return answer
        raise AssertionError(f"{step.method}({_short(args)}) answered {exc.resp.status}: "
                             f"{exc.content.decode(errors='replace')[:1500]}") from None
    assert not step.error, f"{step.method} succeeded where {step.error} was expected: {_short(answer)}"
    method = spec_of(name, step.method)
    doc = document(name)
    if method.response_schema is not None:
        found = problems(doc, answer, method.response_schema)
        assert not found, f"{step.method} answered outside its schema {method.response_schema}:\n" + "\n".join(found)
    else:
        assert answer in (None, "", {}), f"{step.method} has no response schema but answered {_short(answer)}"
    lacking = schema.missing(answer, step.present) if isinstance(answer, dict) else step.present
    assert not lacking, f"{step.method} answered without {lacking}: {_short(answer)}"
    if step.check is not None:
        step.check(ctx, answer)
    if step.save:
        ctx[step.save] = answer
    return answer


# google.rpc.Code names by HTTP status (https://cloud.google.com/apis/design/errors#handling_errors)
STATUSES = {400: {"INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE"}, 401: {"UNAUTHENTICATED"},
            403: {"PERMISSION_DENIED"}, 404: {"NOT_FOUND"}, 409: {"ABORTED", "ALREADY_EXISTS"},
            429: {"RESOURCE_EXHAUSTED"}, 501: {"UNIMPLEMENTED"}, 503: {"UNAVAILABLE"}}


def error_problems(name: str, answer: Any, status: int) -> list[str]:
    """What is wrong with an error answer: Google's `{"error": {"code", "message", "status",
    "details"}}`, or Cloud Storage's `{"error": {"code", "message", "errors": [...]}}`."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if not isinstance(error, dict) or set(answer) != {"error"}:
        return ["not an {error: ...} object"]
    found = [] if error.get("code") == status else [f"code {error.get('code')!r}, not {status}"]
    if not isinstance(error.get("message"), str) or not error["message"]:
        found.append("no message")
    if document(name)["name"] == "storage":
        allowed = {"code", "message", "errors"}
        items = error.get("errors")
        if not isinstance(items, list) or not items or not all({"message", "domain", "reason"} <= set(i)
                                                                for i in items):
            found.append("errors[] lacks message/domain/reason")
    else:
        allowed = {"code", "message", "status", "details"}
        if error.get("status") not in STATUSES.get(status, set()):
            found.append(f"status {error.get('status')!r} is not a google.rpc code of HTTP {status}")
        if not all(isinstance(d, dict) and "@type" in d for d in error.get("details", [])):
            found.append("details without @type")
    extra = set(error) - allowed
    return found + ([f"undefined fields {sorted(extra)}"] if extra else [])


def run(client: Any, flow: Flow, ctx: Context) -> Context:
    """Every step of `flow` in order (ctx["called"]: the method ids called, in order)."""
    ctx.setdefault("called", [])
    for step in flow.steps:
        call(client, flow.document, step, ctx)
        ctx["called"].append(step.method)
    return ctx


def served_methods(name: str) -> set[str]:
    """The methods docs/api-coverage.md says Keyless serves (the table is kept current by
    test_coverage_table)."""
    section = _coverage_sections()[name]
    return {m for m, ok in section if ok}


_SECTIONS: dict[str, list[tuple[str, bool]]] = {}


def _coverage_sections() -> dict[str, list[tuple[str, bool]]]:
    if not _SECTIONS:
        root = Path(__file__).resolve().parents[2]
        if str(root / "scripts") not in sys.path:
            sys.path.insert(0, str(root / "scripts"))
        import api_coverage  # noqa: PLC0415 (scripts/ is not a package)

        routes = api_coverage.route_table()
        for family in api_coverage.FAMILIES:
            doc = document(family.document)
            _SECTIONS[family.document] = [(m.id, api_coverage.served(routes, m)) for m in methods(doc)
                                          if not family.only or m.id in family.only]
    return _SECTIONS


def body_methods(flow: Flow) -> list[str]:
    """The flow's methods that take a request body."""
    return list(dict.fromkeys(s.method for s in flow.steps if spec_of(flow.document, s.method).request_schema))


def probe_fields(client: Any, flow: Flow, method_id: str, ctx: Context, fresh: dict[str, str] | None = None) -> None:
    """Call `method_id` as its flow step does but with a body setting every field its request
    schema defines (placeholder values, output-only fields too): the server may refuse a value but
    never a defined field as unknown, and never fails (5xx). `fresh`: query arguments replaced (ids
    of resources to create, so the probe makes its own)."""
    method = spec_of(flow.document, method_id)
    assert method.request_schema is not None
    body = schema.full_body(document(flow.document), method.request_schema)
    assert not problems(document(flow.document), body, method.request_schema)
    step = next(s for s in flow.steps if s.method == method_id)
    args = {**step.args(ctx), "body": body}
    args.update({k: v for k, v in (fresh or {}).items() if k in args})
    try:
        method_of(client, method_id)(**args).execute()
    except HttpError as exc:
        text = exc.content.decode(errors="replace")
        assert exc.resp.status < 500, text
        assert "Unknown name" not in text and "Cannot find field" not in text, text


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 600 else text[:600] + "..."
