"""The patch formats the Kubernetes API accepts on PATCH, as kubectl sends them:

- JSON merge patch (RFC 7386, `application/merge-patch+json`): `kubectl annotate`, `kubectl label`;
- strategic merge patch (`application/strategic-merge-patch+json`,
  https://github.com/kubernetes/community/blob/master/contributors/devel/sig-api-machinery/strategic-merge-patch.md):
  `kubectl apply` (client-side) and `kubectl patch`. Lists of objects with a patch merge key
  (containers by `name`, ports by `containerPort`, ...) merge element by element; the
  directives `$patch` (replace/delete/merge), `$retainKeys`, `$setElementOrder/FIELD` and
  `$deleteFromPrimitiveList/FIELD` are honoured;
- JSON patch (RFC 6902, `application/json-patch+json`): `kubectl patch --type=json`.
"""

from __future__ import annotations

import copy
from typing import Any

from keyless.errors import InvalidArgument

# The patch merge keys of the kinds Keyless serves (Kubernetes' `patchMergeKey` struct tags).
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "ports": "containerPort",
    "imagePullSecrets": "name", "secrets": "name", "hostAliases": "ip", "conditions": "type",
    "topologySpreadConstraints": "topologyKey", "ownerReferences": "uid", "readinessGates": "conditionType",
    "resourceClaims": "name",
}
MAX_DEPTH = 64


def merge_patch(target: Any, patch: Any, depth: int = 0) -> Any:
    """RFC 7386: objects merge, `null` removes, anything else replaces."""
    if depth > MAX_DEPTH:
        raise InvalidArgument("the patch is nested too deeply")
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value, depth + 1)
    return out


def strategic_merge_patch(target: Any, patch: Any, depth: int = 0) -> Any:
    """A strategic merge patch applied to `target` (a copy is returned)."""
    if depth > MAX_DEPTH:
        raise InvalidArgument("the patch is nested too deeply")
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise InvalidArgument(f"Unknown patch type: {str(directive)[:40]}")
    out = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list) and isinstance(value, list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS:
            out[key] = _merge_list(out.get(key), value, MERGE_KEYS[key], depth)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(out.get(key), value, depth + 1)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    for key, order in patch.items():
        if key.startswith("$setElementOrder/") and isinstance(order, list):
            field = key.split("/", 1)[1]
            out[field] = _ordered(out.get(field), order, MERGE_KEYS.get(field))
    return out


def _merge_list(target: Any, patch: list[Any], key: str, depth: int) -> list[Any]:
    items = [copy.deepcopy(i) for i in target] if isinstance(target, list) else []
    for element in patch:
        if not isinstance(element, dict) or key not in element:
            raise InvalidArgument(f"the patch's list elements need their merge key {key!r}")
        at = next((n for n, i in enumerate(items) if isinstance(i, dict) and i.get(key) == element[key]), None)
        if element.get("$patch") == "delete":
            if at is not None:
                items.pop(at)
        elif at is None:
            items.append({k: copy.deepcopy(v) for k, v in element.items() if k != "$patch"})
        else:
            items[at] = strategic_merge_patch(items[at], element, depth + 1)
    return items


def _ordered(items: Any, order: list[Any], key: str | None) -> Any:
    if not isinstance(items, list):
        return items
    ident = (lambda i: i.get(key) if isinstance(i, dict) else i) if key else (lambda i: i)
    wanted = [o.get(key) if key and isinstance(o, dict) else o for o in order]
    rank = {w: n for n, w in enumerate(wanted) if not isinstance(w, (dict, list))}
    return sorted(items, key=lambda i: rank.get(ident(i), len(rank)))


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 operations (add, remove, replace, test, move, copy) on a copy of `target`."""
    if not isinstance(operations, list):
        raise InvalidArgument("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            raise InvalidArgument("a JSON patch operation needs an op and a path")
        kind, path = op.get("op"), op["path"]
        if kind == "test":
            if _get(doc, path) != op.get("value"):
                raise InvalidArgument(f"testing value {path} failed")
        elif kind == "remove":
            doc = _set(doc, path, None, remove=True)
        elif kind in ("add", "replace"):
            if kind == "replace":
                _get(doc, path)
            doc = _set(doc, path, copy.deepcopy(op.get("value")), insert=kind == "add")
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, str(op.get("from"))))
            if kind == "move":
                doc = _set(doc, str(op.get("from")), None, remove=True)
            doc = _set(doc, path, value, insert=True)
        else:
            raise InvalidArgument(f"Unexpected kind: {str(kind)[:20]}")
    return doc


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid JSON pointer {path[:100]!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _get(doc: Any, path: str) -> Any:
    for token in _tokens(path):
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            raise InvalidArgument(f"doc is missing path: {path[:100]}")
    return doc


def _set(doc: Any, path: str, value: Any, *, remove: bool = False, insert: bool = False) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _get(doc, "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens[:-1]))
    last = tokens[-1]
    if isinstance(parent, dict):
        if remove:
            if last not in parent:
                raise InvalidArgument(f"doc is missing path: {path[:100]}")
            del parent[last]
        else:
            parent[last] = value
    elif isinstance(parent, list):
        index = len(parent) if last == "-" else int(last) if last.isdigit() else -1
        if not 0 <= index <= len(parent) or (index == len(parent) and not insert):
            raise InvalidArgument(f"doc is missing path: {path[:100]}")
        if remove:
            parent.pop(index)
        elif insert:
            parent.insert(index, value)
        else:
            parent[index] = value
    else:
        raise InvalidArgument(f"doc is missing path: {path[:100]}")
    return doc
