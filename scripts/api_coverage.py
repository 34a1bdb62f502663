#!/usr/bin/env python3
"""Writes docs/api-coverage.md: every method of the Google APIs Keyless serves (and of those
issue #20 adds), from Google's own discovery documents, and whether Keyless routes it (issue #19).

"Served" is decided by Keyless's own route table (keyless.app.PREFIXES, what build_app mounts),
so the table cannot claim more than the server routes: a method is served when the route that
takes its HTTP method and path is one written for that shape of path (a catch-all swallowing
several segments of it does not count).

    python scripts/api_coverage.py            # rewrite docs/api-coverage.md
    python scripts/api_coverage.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from starlette.routing import BaseRoute, Match, Mount, Route  # noqa: E402

from tests.conformance.discovery import Method, document, methods  # noqa: E402

OUTPUT = ROOT / "docs" / "api-coverage.md"


@dataclass(frozen=True)
class Family:
    document: str
    only: frozenset[str] = frozenset()  # when set: just these methods (the rest of the API is out of scope)
    note: str = ""


FAMILIES = [
    Family("sts.v1", note="its conformance is tested with STS (tests/api, tests/e2e), not in tests/conformance/"),
    Family("iamcredentials.v1"),
    Family("iam.v1"),
    Family("cloudresourcemanager.v1"),
    Family("cloudresourcemanager.v3"),
    Family("serviceusage.v1"),
    Family("storage.v1"),
    Family("secretmanager.v1"),
    Family("logging.v2"),
    Family("container.v1"),
    Family("pubsub.v1", note="issue #20"),
    Family("cloudasset.v1", only=frozenset({"cloudasset.analyzeIamPolicy", "cloudasset.searchAllIamPolicies",
                                            "cloudasset.searchAllResources"}),
           note="issue #20: the IAM policy analysis and search methods"),
]


# Issue #20's table: the method families the seeds' workloads call, each as (label, discovery
# document, method-id prefixes); its "Done when" asks this table to say each is served in full.
ISSUE_20 = [
    ("STS `sts.token`", "sts.v1", ("sts.token",)),
    ("IAM Credentials `projects.serviceAccounts.*`", "iamcredentials.v1", ("iamcredentials.projects.serviceAccounts.",)),
    ("IAM `projects.locations.workloadIdentityPools.*`", "iam.v1", ("iam.projects.locations.workloadIdentityPools.",)),
    ("IAM `projects.serviceAccounts.*`", "iam.v1", ("iam.projects.serviceAccounts.",)),
    ("IAM roles, permissions, `iamPolicies`", "iam.v1",
     ("iam.roles.", "iam.projects.roles.", "iam.organizations.roles.", "iam.permissions.", "iam.iamPolicies.")),
    ("Resource Manager v1 `projects.*`", "cloudresourcemanager.v1", ("cloudresourcemanager.projects.",)),
    ("Resource Manager v3 `projects.*`", "cloudresourcemanager.v3", ("cloudresourcemanager.projects.",)),
    ("Cloud Storage `buckets`, `objects`, `managedFolders`", "storage.v1",
     ("storage.buckets.", "storage.objects.", "storage.managedFolders.")),
    ("Secret Manager `projects.*`", "secretmanager.v1", ("secretmanager.projects.",)),
    ("Cloud Logging `entries.write/list`, `projects.logs`, `projects.sinks`", "logging.v2",
     ("logging.entries.write", "logging.entries.list", "logging.projects.logs.", "logging.projects.sinks.")),
    ("Pub/Sub `projects.topics`, `projects.subscriptions`", "pubsub.v1",
     ("pubsub.projects.topics.", "pubsub.projects.subscriptions.")),
    ("GKE clusters and node pools", "container.v1", ("container.projects.locations.clusters.",)),
    ("Cloud Asset `analyzeIamPolicy`, `searchAllResources`", "cloudasset.v1",
     ("cloudasset.analyzeIamPolicy", "cloudasset.searchAllResources")),
]


def route_table() -> list[BaseRoute]:
    """The mounts build_app makes for the Google APIs, on a throwaway store."""
    from keyless.app import PREFIXES
    from keyless.config import Settings
    from keyless.state import ServerState

    with tempfile.TemporaryDirectory(prefix="keyless-coverage-") as data_dir:
        state = ServerState(Settings(data_dir=Path(data_dir)))
        try:
            return [Mount(f"/{prefix}", routes=list(routes(state))) for prefix, routes in PREFIXES.items()]
        finally:
            state.db.dispose()


def resolve(routes: list[BaseRoute], http_method: str, path: str) -> tuple[Route, dict[str, Any]] | None:
    """The route Starlette dispatches `http_method path` to (first full match, through mounts)."""
    scope: dict[str, Any] = {"type": "http", "method": http_method, "path": path, "root_path": "",
                             "path_params": {}}
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        if isinstance(route, Mount):
            inner = resolve(route.routes, http_method, path[len(route.path):])
            if inner is not None:
                return inner
            continue
        if isinstance(route, Route):
            return route, dict(child.get("path_params", {}))
    return None


def served(routes: list[BaseRoute], method: Method) -> bool:
    for template in (method.url, method.upload_url):
        if template is None:
            continue
        found = resolve(routes, method.http_method, method.sample_url(template))
        # each of Google's one-segment placeholders must land in one route parameter: not in a catch-all
        # (several segments) nor in a parameter that also swallowed a custom verb (`{pool}` of `p:verb`)
        if found is not None and all("/" not in str(v) and ":" not in str(v) for v in found[1].values()):
            return True
    return False


# Methods of issue #20's families left unserved on purpose, and why (printed beside each).
LEFT_OUT = {
    "secretmanager.projects.secrets.rotateSecret": "Cloud SQL managed rotation: Keyless holds no Cloud SQL",
    "secretmanager.projects.secrets.enableManagedRotation": "Cloud SQL managed rotation: Keyless holds no Cloud SQL",
    "secretmanager.projects.locations.secrets.rotateSecret": "Cloud SQL managed rotation: Keyless holds no Cloud SQL",
    "secretmanager.projects.locations.secrets.enableManagedRotation":
        "Cloud SQL managed rotation: Keyless holds no Cloud SQL",
    "storage.managedFolders.update": "its one mutable field is rapidCacheConfig, for Rapid Cache, which Keyless does not hold",
}


def render() -> str:
    routes = route_table()
    summary, sections = [], []
    for family in FAMILIES:
        doc = document(family.document)
        rows = [(m, served(routes, m)) for m in methods(doc) if not family.only or m.id in family.only]
        count = sum(1 for _, ok in rows if ok)
        title = f"{doc['title']} ({doc['name']} {doc['version']})"
        summary.append(f"| {title} | `{family.document}` | {count} / {len(rows)} | {family.note} |")
        lines = [f"## {title}", "", f"{count} of {len(rows)} methods served.", "",
                 "| method | HTTP | path | served |", "|---|---|---|---|"]
        lines += [f"| `{m.id}` | {m.http_method} | `{m.path}` | {'yes' if ok else 'no'} |" for m, ok in rows]
        sections.append("\n".join(lines))
    issue_rows = []
    for label, name, prefixes in ISSUE_20:
        picked = [m for m in methods(document(name)) if m.id.startswith(prefixes)]
        missing = [m.id for m in picked if not served(routes, m)]
        issue_rows.append(f"| {label} | {len(picked) - len(missing)} / {len(picked)} | "
                          + (", ".join(f"`{m.removeprefix(name.split('.')[0] + '.')}`"
                                       + (f" ({LEFT_OUT[m]})" if m in LEFT_OUT else "") for m in missing) or "—")
                          + " |")
    head = [
        "# Google API coverage",
        "",
        "Generated by `scripts/api_coverage.py` from Google's discovery documents (as",
        "google-api-python-client ships them) and Keyless's route table; "
        "`tests/conformance/test_coverage_table.py`",
        "fails when this file is stale. A method is *served* when Keyless routes its HTTP method and path;",
        "the conformance suite (`tests/conformance/`) calls the served methods with the discovery-based",
        "client and checks the answers against the methods' response schemas.",
        "",
        "| API | discovery document | served / methods | note |",
        "|---|---|---|---|",
        *summary,
        "",
        "## Issue #20's families",
        "",
        "The method families the seeds' workloads call (issue #20's table), by method-id prefix:",
        "",
        "| family | served / methods | not served |",
        "|---|---|---|",
        *issue_rows,
    ]
    return "\n".join(head) + "\n\n" + "\n\n".join(sections) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run python scripts/api_coverage.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
