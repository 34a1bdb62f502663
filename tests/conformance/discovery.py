"""Google's discovery documents, as google-api-python-client ships them (googleapiclient/
discovery_cache/documents/): the APIs' own definitions of every method, its HTTP path, request
and response schemas and scopes (https://developers.google.com/discovery/v1/reference/apis).

Self-contained (it imports nothing of Keyless): the coverage table (scripts/api_coverage.py) and
the conformance suite (tests/conformance/) read the documents through it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient

DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"
_PLACEHOLDER = re.compile(r"\{[+]?([^}]+)\}")


@cache
def document(name: str) -> dict[str, Any]:
    """A discovery document by its file name: `iam.v1`, `storage.v1`, ..."""
    return dict(json.loads((DOCUMENTS / f"{name}.json").read_text()))


def prefix(doc: dict[str, Any]) -> str:
    """Where Keyless serves the API (README, "API prefixes"): Google's path after a prefix named
    after the service; an API whose servicePath already starts with its name (storage/v1/) is
    served at its own path. A client's `api_endpoint` is the server URL, this and the servicePath."""
    return "/" if doc.get("servicePath") else f"/{doc['name']}/"


@dataclass(frozen=True)
class Method:
    """One method of a discovery document."""

    id: str
    http_method: str
    path: str  # Google's path template after the service root (flatPath where there is one)
    url: str  # the template where Keyless serves it: prefix + servicePath + path
    upload_url: str | None  # where media uploads go (Cloud Storage's /upload/storage/v1/...)
    spec: dict[str, Any]
    doc: dict[str, Any]

    @property
    def request_schema(self) -> str | None:
        return self.spec.get("request", {}).get("$ref")

    @property
    def response_schema(self) -> str | None:
        return self.spec.get("response", {}).get("$ref")

    @property
    def scopes(self) -> list[str]:
        return list(self.spec.get("scopes", []))

    def sample_url(self, template: str | None = None) -> str:
        """The template with every placeholder filled by a distinct one-segment value."""
        counter = iter(range(1000))
        return _PLACEHOLDER.sub(lambda _: f"x{next(counter)}", template or self.url)


def methods(doc: dict[str, Any]) -> Iterator[Method]:
    """Every method of the document, resources walked depth first, in the document's order."""
    base = prefix(doc) + doc.get("servicePath", "")

    def walk(node: dict[str, Any]) -> Iterator[Method]:
        for spec in node.get("methods", {}).values():
            path = spec.get("flatPath") or spec["path"]
            upload = spec.get("mediaUpload", {}).get("protocols", {}).get("simple", {}).get("path")
            yield Method(id=spec["id"], http_method=spec["httpMethod"], path=path, url=base + path,
                         upload_url=upload, spec=spec, doc=doc)
        for child in node.get("resources", {}).values():
            yield from walk(child)

    yield from walk(doc)


def schema(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(doc["schemas"][name])
