"""List filters of secrets and versions (https://cloud.google.com/secret-manager/docs/filtering):
`name:prod`, `labels.env=prod`, `labels.env:*`, `state:ENABLED`, AND/OR/NOT and parentheses.

That syntax (AIP-160) is a subset of the Cloud Logging query language, so the audit log's
parser and evaluator serve here too; a filter is evaluated on a small dict of each resource.
"""

from __future__ import annotations

from typing import Any

from keyless.audit import filter as lq
from keyless.errors import InvalidArgument

MAX_FILTER_CHARS = 1024


class ListFilter:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_FILTER_CHARS:
            raise InvalidArgument(f"The filter is longer than {MAX_FILTER_CHARS} characters.")
        self._tree = lq.parse(text)

    def matches(self, fields: dict[str, Any]) -> bool:
        return lq.matches(self._tree, fields)
