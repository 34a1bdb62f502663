"""SearchAllIamPolicies (https://cloud.google.com/asset-inventory/docs/reference/rest/v1/TopLevel/searchAllIamPolicies)
over the policies of the doctor's snapshot (keyless.doctor.model), with the query language of
https://cloud.google.com/asset-inventory/docs/searching-iam-policies#query_syntax:

- terms separated by spaces are ANDed (an explicit `AND` is allowed); `-term` or `NOT term` negates;
- `policy:TEXT` matches bindings whose role, members or condition contain TEXT as a word (`*` at its
  end: as a word prefix), `policy=TEXT` a role or member equal to TEXT;
- `policy.role.permissions:PERM` bindings whose role includes a matching permission (these fill
  `explanation.matchedPermissions`); `memberTypes:TYPE` bindings with a member of that type;
- `resource:TEXT` / `resource=NAME` the attached resource's full name; a bare word any of the above.

Only the matching bindings of a policy are returned, as on Google. `OR` and parentheses are not
supported (INVALID_ARGUMENT).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from keyless.cloudasset.assets import Asset, Scope, asset_of, holds, project_index
from keyless.doctor.model import Binding, load
from keyless.errors import InvalidArgument

MAX_QUERY = 2048
MAX_ASSET_TYPES = 100
FIELDS = {"policy", "policy.role.permissions", "memberTypes", "resource"}
ORDER_FIELDS = ("resource", "assetType", "project")
# the asset types of the resources Keyless keeps IAM policies on (keyless.doctor.targets)
ASSET_TYPES = ("cloudresourcemanager.googleapis.com/Organization", "cloudresourcemanager.googleapis.com/Project",
               "iam.googleapis.com/ServiceAccount", "iam.googleapis.com/WorkloadIdentityPool",
               "iam.googleapis.com/WorkloadIdentityPoolProvider", "secretmanager.googleapis.com/Secret",
               "storage.googleapis.com/Bucket", "storage.googleapis.com/ManagedFolder", "pubsub.googleapis.com/Topic",
               "pubsub.googleapis.com/Subscription", "pubsub.googleapis.com/Snapshot", "pubsub.googleapis.com/Schema")
_TERM = re.compile(r"^(?P<field>[A-Za-z.]+)(?P<op>[:=])(?P<value>.+)$")
_WORDS = re.compile(r"[A-Za-z0-9_]+")
_ASSET_TYPE_PATTERN = re.compile(r"[A-Za-z0-9./_*-]{1,256}")


@dataclass(frozen=True)
class Term:
    field: str | None  # None: any field
    exact: bool
    value: str
    negated: bool = False


def parse_query(text: str) -> list[Term]:
    if len(text) > MAX_QUERY:
        raise InvalidArgument(f"The query is longer than {MAX_QUERY} characters.")
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise InvalidArgument(f"Invalid query {text[:200]!r}: {exc}.") from None
    terms: list[Term] = []
    negate = False
    for token in tokens:
        if token == "AND":
            continue
        if token == "NOT":
            negate = True
            continue
        if token in ("OR", "(", ")") or token.startswith("(") or token.endswith(")"):
            raise InvalidArgument(f"Invalid query {text[:200]!r}: OR and parentheses are not supported by Keyless.")
        if token.startswith("-") and len(token) > 1:
            negate, token = True, token[1:]
        m = _TERM.match(token)
        if m is not None and m.group("field") in FIELDS:
            terms.append(Term(m.group("field"), m.group("op") == "=", m.group("value"), negate))
        elif m is not None:
            raise InvalidArgument(f"Invalid query {text[:200]!r}: unsupported field {m.group('field')[:64]!r}.")
        else:
            terms.append(Term(None, False, token, negate))
        negate = False
    return terms


def _contains(text: str, value: str) -> bool:
    """Google's `:` match: every word of `value` is a word of `text` (a trailing `*`: a prefix)."""
    words = [w.lower() for w in _WORDS.findall(text)]
    wanted = _WORDS.findall(value.rstrip("*"))
    if not wanted:
        return False
    prefix = value.endswith("*")
    # the words of value must appear consecutively, the last one as a prefix if asked
    for start in range(len(words) - len(wanted) + 1):
        window = words[start:start + len(wanted)]
        head_ok = all(a == b.lower() for a, b in zip(window[:-1], wanted[:-1], strict=True))
        last, want = window[-1], wanted[-1].lower()
        if head_ok and (last.startswith(want) if prefix else last == want):
            return True
    return False


def _member_type(member: str) -> str:
    kind = member.partition(":")[0]
    return kind


def _binding_matches(term: Term, binding: dict[str, Any], permissions: frozenset[str]) -> tuple[bool, list[str]]:
    """Whether one binding matches one binding-level term; the permissions matched, for the explanation."""
    if term.field == "policy.role.permissions":
        want = term.value.rstrip("*")
        matched = sorted(p for p in permissions
                         if (p.startswith(want) if term.value.endswith("*") else p == term.value)
                         or (not term.exact and _contains(p, term.value)))
        return bool(matched), matched
    if term.field == "memberTypes":
        types = {_member_type(m) for m in binding["members"]}
        return (term.value in types if term.exact else any(_contains(t, term.value) for t in types)), []
    texts = [binding["role"], *binding["members"]]
    condition = binding.get("condition") or {}
    if term.exact:
        return term.value in texts, []
    texts += [str(condition.get(k, "")) for k in ("title", "description", "expression")]
    return any(_contains(t, term.value) for t in texts), []


def _policy(bindings: list[Binding]) -> list[dict[str, Any]]:
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for b in bindings:
        key = (b.role, repr(sorted((b.condition or {}).items())))
        found = merged.setdefault(key, {"role": b.role, "members": []})
        found["members"].append(b.member)
        if b.condition:
            found["condition"] = dict(b.condition)
    return [{**v, "members": sorted(set(v["members"]))} for v in merged.values()]


def asset_type_filter(patterns: list[str], searchable: tuple[str, ...] = ASSET_TYPES) -> list[re.Pattern[str]]:
    """assetTypes as RE2 expressions; one matching none of the `searchable` types is INVALID_ARGUMENT."""
    if len(patterns) > MAX_ASSET_TYPES:
        raise InvalidArgument(f"At most {MAX_ASSET_TYPES} asset types may be given.")
    compiled = []
    for p in patterns:
        # Google's examples (`compute.googleapis.com.*`, `.*Instance.*`) need nothing more than
        # literals, `.` and two `.*`; groups and nested quantifiers (`(.*.*)*!`) would let one
        # request hold Python's backtracking engine for minutes (RE2 never backtracks).
        if not _ASSET_TYPE_PATTERN.fullmatch(p) or p.count("*") > 2:
            raise InvalidArgument(f"Invalid asset type {p[:200]!r}: Keyless accepts letters, digits, '/', '.', "
                                  "'_', '-' and at most two '*'.")
        rx = re.compile(p)
        if not any(rx.fullmatch(t) for t in searchable):
            raise InvalidArgument(f"The asset type {p[:200]!r} matches no supported asset type.")
        compiled.append(rx)
    return compiled


def order(results: list[dict[str, Any]], order_by: str | None, fields: tuple[str, ...] = ORDER_FIELDS,
          default: str = "resource") -> list[dict[str, Any]]:
    """Cloud Asset's orderBy ("location DESC, name"): comma-separated `fields`, each optionally
    followed by ASC or DESC; by `default` otherwise (searchAllIamPolicies and searchAllResources)."""
    keys: list[tuple[str, bool]] = []
    for part in (order_by or "").split(","):
        words = part.split()
        if not words:
            continue
        if words[0] not in fields or len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise InvalidArgument(f"Invalid order_by {(order_by or '')[:200]!r}: the sortable fields are "
                                  f"{', '.join(fields)}, each optionally followed by DESC.")
        keys.append((words[0], len(words) == 2 and words[1].upper() == "DESC"))
    out = sorted(results, key=lambda r: str(r[default]))
    for name, descending in reversed(keys):
        out.sort(key=lambda r: str(r.get(name, "")), reverse=descending)
    return out


def search_all_iam_policies(state: Any, scope: Scope, query: str, asset_types: list[str],
                            order_by: str | None) -> list[dict[str, Any]]:
    """Every IamPolicySearchResult within `scope` (already authorised) matching the request."""
    terms = parse_query(query)
    types = asset_type_filter(asset_types)
    setup = load(state)
    by_resource: dict[str, list[Binding]] = {}
    for b in setup.bindings:
        by_resource.setdefault(b.resource, []).append(b)
    with state.db.read() as s:
        projects = project_index(s)
        assets = [a for a in (asset_of(s, r, projects, scope.organization) for r in by_resource)
                  if a is not None and holds(scope, a)]
    results = []
    for asset in assets:
        if types and not any(rx.fullmatch(asset.asset_type) for rx in types):
            continue
        found = _search_policy(state, asset, _policy(by_resource[asset.policy_resource]), terms)
        if found is not None:
            results.append(found)
    return order(results, order_by)


def _search_policy(state: Any, asset: Asset, bindings: list[dict[str, Any]], terms: list[Term]) -> dict[str, Any] | None:
    matched_permissions: dict[str, set[str]] = {}
    for term in terms:
        if term.field == "resource":
            hit = asset.full_name == term.value if term.exact else _contains(asset.full_name, term.value)
            if hit == term.negated:
                return None
    kept = []
    for binding in bindings:
        permissions = state.roles.permissions(binding["role"])
        ok = True
        for term in terms:
            if term.field == "resource":
                continue
            hit, perms = _binding_matches(term, binding, permissions)
            if term.field is None and not hit:  # a bare word also matches the resource name
                hit = _contains(asset.full_name, term.value)
            if hit == term.negated:
                ok = False
                break
            if perms and not term.negated:
                matched_permissions.setdefault(binding["role"], set()).update(perms)
        if ok:
            kept.append(binding)
    if not kept:
        return None
    result: dict[str, Any] = {"resource": asset.full_name, "assetType": asset.asset_type,
                              "policy": {"bindings": kept}}
    if asset.project_number:
        result["project"] = f"projects/{asset.project_number}"
    if asset.organization:
        result["organization"] = asset.organization
    if matched_permissions:
        result["explanation"] = {"matchedPermissions": {role: {"permissions": sorted(p)}
                                                        for role, p in sorted(matched_permissions.items())}}
    return result
