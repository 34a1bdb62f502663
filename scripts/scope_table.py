#!/usr/bin/env python3
"""Generates keyless/api/scopes.json, the OAuth scopes each API method accepts (issue #19), from
Google's discovery documents: each method lists `scopes`, any one of which lets a token call it.

The table is keyed by Keyless's own route identity, `HTTP_METHOD /PREFIX/PATH` with every path
variable written `{}` (keyless.api.scopes.route_key), and lists the routes Keyless serves under
its Google API prefixes (keyless.app.PREFIXES): a discovery method's path is placed under the
prefix its host is served at (keyless.api.hosts.API_HOSTS), media uploads under /upload and
/resumable as the documents' `mediaUpload.protocols` say; a route no method matches must be named
in ALIASES, or the script fails. The server never reads discovery
documents (google-api-python-client is a test dependency); tests/api/test_scopes.py fails when
the shipped table differs from what this script writes.

    python scripts/scope_table.py            # rewrite keyless/api/scopes.json
    python scripts/scope_table.py --check    # exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keyless.api.hosts import API_HOSTS  # noqa: E402
from keyless.api.scopes import TABLE, route_key  # noqa: E402

# The discovery documents of the API versions Keyless serves.
DOCUMENTS = ["iam.v1", "iamcredentials.v1", "cloudresourcemanager.v1", "cloudresourcemanager.v3", "serviceusage.v1",
             "storage.v1", "secretmanager.v1", "logging.v2", "container.v1", "pubsub.v1",
             "cloudasset.v1"]
# Keyless routes that are no discovery method of their own, and the method whose scopes they take:
# a resumable upload's later requests (PUT a chunk, DELETE to cancel) continue objects.insert;
# /download/storage/v1/... is objects.get's media download (googleapiclient's useMediaDownloadService);
# the XML API (/storage/BUCKET/OBJECT) has no discovery document: its methods are the JSON API's;
# Secret Manager's getIamPolicy is also served as POST (its gRPC transcoding's verb elsewhere);
# Service Usage's `{+name}` path is `{v1Id}/{v1Id1}` in the document's flatPath.
# Scopes Google accepts beyond what a document lists: IAM Credentials takes .../auth/iam, the scope
# google-auth's impersonated credentials give their source (google/auth/iam.py _IAM_SCOPE), so every
# impersonation by a scoped source (an external account, a key file) relies on it.
EXTRA_SCOPES = {"iamcredentials.googleapis.com": ["https://www.googleapis.com/auth/iam"]}
ALIASES = {
    "POST /secretmanager/v1/projects/{}/secrets/{}:getIamPolicy": "GET /secretmanager/v1/projects/{}/secrets/{}:getIamPolicy",
    "POST /secretmanager/v1/projects/{}/locations/{}/secrets/{}:getIamPolicy":
        "GET /secretmanager/v1/projects/{}/locations/{}/secrets/{}:getIamPolicy",
    "POST /serviceusage/v1/projects/{}/services/{}:enable": "POST /serviceusage/v1/{}/{}/services/{}:enable",
    "PUT /upload/storage/v1/b/{}/o": "POST /upload/storage/v1/b/{}/o",
    "DELETE /upload/storage/v1/b/{}/o": "POST /upload/storage/v1/b/{}/o",
    "PUT /resumable/upload/storage/v1/b/{}/o": "POST /resumable/upload/storage/v1/b/{}/o",
    "DELETE /resumable/upload/storage/v1/b/{}/o": "POST /resumable/upload/storage/v1/b/{}/o",
    "GET /download/storage/v1/b/{}/o/{}": "GET /storage/v1/b/{}/o/{}",
    "POST /pubsub/v1/projects/{}/topics/{}:getIamPolicy": "GET /pubsub/v1/projects/{}/topics/{}:getIamPolicy",
    "POST /pubsub/v1/projects/{}/subscriptions/{}:getIamPolicy": "GET /pubsub/v1/projects/{}/subscriptions/{}:getIamPolicy",
    "POST /pubsub/v1/projects/{}/snapshots/{}:getIamPolicy": "GET /pubsub/v1/projects/{}/snapshots/{}:getIamPolicy",
    "POST /pubsub/v1/projects/{}/schemas/{}:getIamPolicy": "GET /pubsub/v1/projects/{}/schemas/{}:getIamPolicy",
    # the XML API's object requests (keyless.api.storage.xml_api) take their JSON twins' scopes
    "GET /storage/{}/{}": "GET /storage/v1/b/{}/o/{}",
    "PUT /storage/{}/{}": "POST /upload/storage/v1/b/{}/o",
    "DELETE /storage/{}/{}": "DELETE /storage/v1/b/{}/o/{}",
}


def documents_dir() -> Path:
    import googleapiclient

    return Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


def _methods(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from (resource.get("methods") or {}).values()
    for child in (resource.get("resources") or {}).values():
        yield from _methods(child)


def entries(document: dict[str, Any]) -> Iterator[tuple[str, str, str, list[str]]]:
    """(route key, service host, method id, scopes) for every method of one discovery document."""
    host = urlsplit(document["rootUrl"]).hostname or ""
    prefix = API_HOSTS[host.split(".", 1)[0]]
    service_path = "/" + document.get("servicePath", "")
    for method in _methods(document):
        scopes = sorted(method.get("scopes") or [])
        if scopes:
            scopes = sorted({*scopes, *EXTRA_SCOPES.get(host, [])})
        verb = method["httpMethod"]
        path = service_path + (method.get("flatPath") or method["path"])
        yield route_key(verb, f"/{prefix}{path}" if prefix else path), host, method["id"], scopes
        for protocol in ((method.get("mediaUpload") or {}).get("protocols") or {}).values():
            yield route_key(verb, protocol["path"]), host, method["id"], scopes


def keyless_routes() -> list[str]:
    """The route keys Keyless serves under the prefixes of Google APIs."""
    from keyless.api.scopes import PREFIX_SERVICES
    from keyless.app import PREFIXES

    keys = []
    for prefix, routes in PREFIXES.items():
        if prefix in PREFIX_SERVICES:
            for route in routes(None):  # type: ignore[arg-type]  # building routes only closes over the state
                keys += [route_key(m, f"/{prefix}{route.path}") for m in route.methods or () if m != "HEAD"]
    return sorted(set(keys))


def build(directory: Path) -> dict[str, Any]:
    methods: dict[str, tuple[str, str, list[str]]] = {}
    for name in DOCUMENTS:
        document = json.loads((directory / f"{name}.json").read_text())
        for key, host, method_id, scopes in entries(document):
            methods.setdefault(key, (host, method_id, scopes))
    scope_sets: list[list[str]] = []
    routes: dict[str, list[Any]] = {}
    for key in keyless_routes():
        found = methods.get(ALIASES.get(key, key))
        if found is None:
            raise SystemExit(f"no discovery method for Keyless's route {key!r}: add it to ALIASES")
        host, method_id, scopes = found
        if scopes not in scope_sets:
            scope_sets.append(scopes)
        routes[key] = [scope_sets.index(scopes), host, method_id]
    return {"generatedBy": "scripts/scope_table.py", "documents": DOCUMENTS, "scopeSets": scope_sets,
            "routes": routes}


def render(table: dict[str, Any]) -> str:
    lines = ["{", f' "generatedBy": {json.dumps(table["generatedBy"])},',
             f' "documents": {json.dumps(table["documents"])},', ' "scopeSets": [']
    lines += [f"  {json.dumps(s)}," for s in table["scopeSets"]]
    lines[-1] = lines[-1].rstrip(",")
    lines += [" ],", ' "routes": {']
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in table["routes"].items()]
    lines[-1] = lines[-1].rstrip(",")
    lines += [" }", "}", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if keyless/api/scopes.json is stale")
    args = parser.parse_args()
    text = render(build(documents_dir()))
    path = Path(str(TABLE))
    if args.check:
        if path.read_text() != text:
            print(f"{path} is stale: run scripts/scope_table.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
