"""Labels on topics, subscriptions and snapshots (https://cloud.google.com/pubsub/docs/labels):
at most 64; keys start with a lowercase letter, keys and values are lowercase letters, digits,
`_` and `-`, at most 63 characters."""

from __future__ import annotations

import re
from typing import Any

from keyless.errors import InvalidArgument

KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def validate_labels(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidArgument(f"Invalid value at '{where}.labels': expected a map of strings.")
    if len(raw) > 64:
        raise InvalidArgument(f"Invalid {where} labels: at most 64 labels are allowed.")
    for k, v in raw.items():
        if not isinstance(k, str) or not KEY.match(k) or not isinstance(v, str) or not VALUE.match(v):
            raise InvalidArgument(f"Invalid label: {str(k)[:80]!r}: {str(v)[:80]!r}. Label keys must start with a "
                                  "lowercase letter; keys and values contain only lowercase letters, digits, "
                                  "underscores and dashes (at most 63 characters).")
    return dict(raw)
