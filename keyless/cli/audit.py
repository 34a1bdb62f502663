"""`keyless audit tail` and `keyless audit read`: Cloud Audit Logs from a running server, through
its entries:list endpoint (https://cloud.google.com/logging/docs/reference/v2/rest/v2/entries/list)
exactly as gcloud logging read would ask, one line per entry.

`tail` polls with a timestamp cursor. An entry is written a moment after its call (the audit
writer batches), so each poll looks back a few seconds and skips the insertIds already shown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from keyless.audit.subject_hint import Provider, hint
from keyless.clock import rfc3339
from keyless.config import Settings

if TYPE_CHECKING:
    from httpx import Response

LOOKBACK = timedelta(seconds=10)  # how late an entry may land behind newer ones


def add_parser(sub: Any, store_flags: Callable[[argparse.ArgumentParser], None],
               settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    """Register `keyless audit ...` on the main parser's subcommands."""
    audit = sub.add_parser("audit", help="read Cloud Audit Logs entries from a running server")
    asub = audit.add_subparsers(dest="audit_command", required=True)

    tail = asub.add_parser("tail", help="follow audit entries live, one line each")
    _common(tail, store_flags)
    tail.add_argument("--filter", default="", help="a Logging query, e.g. 'protoPayload.methodName=\"GenerateAccessToken\"'")
    tail.add_argument("--since", default="1h", help="show entries from this long ago first (e.g. 30s, 10m, 1h, 2d; "
                                                    "default 1h)")
    tail.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    tail.set_defaults(func=lambda a: cmd_tail(a, settings_of(a)))

    read = asub.add_parser("read", help="print the audit entries that match a Logging query")
    read.add_argument("filter", nargs="?", default="", help="a Logging query")
    _common(read, store_flags)
    read.add_argument("--limit", type=int, default=100, help="at most this many entries (default 100)")
    read.add_argument("--order", choices=("desc", "asc"), default="desc", help="by timestamp (default desc)")
    read.add_argument("--format", choices=("line", "json"), default="line")
    read.set_defaults(func=lambda a: cmd_read(a, settings_of(a)))


def _common(p: argparse.ArgumentParser, store_flags: Callable[[argparse.ArgumentParser], None]) -> None:
    p.add_argument("--project", default=os.environ.get("CLOUDSDK_CORE_PROJECT"), help="the project whose logs to read")
    p.add_argument("--token-file", help="a file holding the bearer token (default: the owner's, or $KEYLESS_TOKEN)")
    store_flags(p)


class Reader:
    """entries:list on one server, as one caller."""

    def __init__(self, server: str, token: str, project: str) -> None:
        self.server = server.rstrip("/")
        self.url = self.server + "/logging/v2/entries:list"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.project = project

    def entries(self, filter_text: str, *, order: str, limit: int | None = None) -> Iterator[dict[str, Any]]:
        token, count = "", 0
        while True:
            size = 1000 if limit is None else min(1000, limit - count)
            body: dict[str, Any] = {"resourceNames": [f"projects/{self.project}"], "filter": filter_text,
                                    "orderBy": f"timestamp {order}", "pageSize": size}
            if token:
                body["pageToken"] = token
            import httpx  # here, not at the top: every `keyless` command builds this parser

            r = httpx.post(self.url, json=body, headers=self.headers, timeout=60)
            if r.status_code != 200:
                raise CallFailed(_error_text(r))
            answer = r.json()
            for entry in answer.get("entries", []):
                yield entry
                count += 1
                if limit is not None and count >= limit:
                    return
            token = answer.get("nextPageToken", "")
            if not token:
                return

    def providers(self) -> list[Provider]:
        """The project's providers and their mappings, through the IAM API as the caller (none when
        the caller may not list them)."""
        import httpx  # here, not at the top: every `keyless` command builds this parser

        iam = f"{self.server}/iam/v1/"
        out: list[Provider] = []
        try:
            r = httpx.get(f"{iam}projects/{self.project}/locations/global/workloadIdentityPools", headers=self.headers,
                          timeout=30)
            pools = r.json().get("workloadIdentityPools", []) if r.status_code == 200 else []
            for name in (str(p.get("name", "")) for p in pools[:100]):
                r = httpx.get(f"{iam}{name}/providers", headers=self.headers, timeout=30)
                for p in r.json().get("workloadIdentityPoolProviders", []) if r.status_code == 200 else []:
                    mapping = p.get("attributeMapping") or {}
                    out.append(Provider(pool=name, mapping={str(k): str(v) for k, v in mapping.items()}))
        except (httpx.HTTPError, ValueError, AttributeError):
            pass  # a hint is a courtesy: without the mappings it offers the pool-wide filter only
        return out

    def count(self, filter_text: str) -> int:
        """How many entries match, up to 100."""
        return sum(1 for _ in self.entries(filter_text, order="desc", limit=100))


class CallFailed(Exception):
    pass


def _error_text(r: Response) -> str:
    try:
        err = r.json()["error"]
        return f"{err.get('status', r.status_code)}: {err.get('message', '')}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {r.status_code}: {r.text[:200]}"


def line(entry: dict[str, Any]) -> str:
    """One entry as a terminal line: time, severity, log, service, method, who, what, outcome."""
    payload = entry.get("protoPayload") or {}
    auth = payload.get("authenticationInfo") or {}
    who = auth.get("principalEmail") or auth.get("principalSubject") or "-"
    log = unquote(str(entry.get("logName", ""))).rsplit("/", 1)[-1]
    status = payload.get("status") or {}
    outcome = "OK" if not status.get("code") else f"code={status.get('code')} {status.get('message', '')}".strip()
    return "  ".join([str(entry.get("timestamp", "")), f"{entry.get('severity', 'DEFAULT'):<8}", f"{log:<12}",
                      str(payload.get("serviceName", "-")), str(payload.get("methodName", "-")), who,
                      str(payload.get("resourceName", "") or "-"), outcome])


def parse_since(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if not text or text[-1] not in units or not text[:-1].isdigit():
        raise ValueError(f"--since wants a number and a unit (s, m, h, d), e.g. 10m; got {text!r}")
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


def _reader(args: argparse.Namespace, settings: Settings) -> Reader:
    if not args.project:
        raise ValueError("--project is required (or set CLOUDSDK_CORE_PROJECT)")
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    elif os.environ.get("KEYLESS_TOKEN"):
        token = os.environ["KEYLESS_TOKEN"].strip()
    else:
        token = settings.owner_token_file.read_text().strip()
    return Reader(settings.base_url, token, args.project)


def cmd_read(args: argparse.Namespace, settings: Settings) -> int:
    reader = _reader(args, settings)
    shown = 0
    try:
        for entry in reader.entries(args.filter, order=args.order, limit=max(args.limit, 1)):
            print(json.dumps(entry) if args.format == "json" else line(entry), flush=True)
            shown += 1
        if not shown:
            found = hint(args.filter, reader.providers, reader.count)
            if found:
                print(found, file=sys.stderr)
    except CallFailed as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from httpx import HTTPError

    reader = _reader(args, settings)
    cursor = datetime.now(UTC) - parse_since(args.since)
    shown: dict[str, datetime] = {}  # insertId -> timestamp, for the look-back window
    while True:
        clause = f'timestamp>="{rfc3339(cursor - LOOKBACK)}"'
        filter_text = f"{clause} AND ({args.filter})" if args.filter.strip() else clause
        try:
            for entry in reader.entries(filter_text, order="asc"):
                insert_id = str(entry.get("insertId", ""))
                if insert_id in shown:
                    continue
                when = _when(entry)
                shown[insert_id] = when
                cursor = max(cursor, when)
                print(line(entry), flush=True)
        except CallFailed as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
        except HTTPError as exc:  # the server restarting: keep following
            print(f"(waiting for the server: {exc})", file=sys.stderr, flush=True)
        horizon = cursor - LOOKBACK
        shown = {k: v for k, v in shown.items() if v >= horizon}
        time.sleep(max(args.interval, 0.1))


def _when(entry: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(entry.get("timestamp", "")).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime.now(UTC)
