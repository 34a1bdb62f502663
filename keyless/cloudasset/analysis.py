"""AnalyzeIamPolicy (https://cloud.google.com/asset-inventory/docs/reference/rest/v1/TopLevel/analyzeIamPolicy):
which identities have what access to which resources, answered by the doctor's analysis
(keyless.doctor.access) and rendered as Google's AnalyzeIamPolicyResponse, one result per IAM
policy binding.

What is Keyless's own: groups are not expanded (Keyless has no group directory) and resources
are not expanded below the resource a policy is attached to; asking for either is answered with
a `nonCriticalErrors` entry and `fullyExplored: false`, the way Google reports a part it did not
explore. Access reached by impersonating service accounts (`analyzeServiceAccountImpersonation`)
is one IamPolicyAnalysis per impersonated account, whose query names that account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from keyless.cloudasset.assets import Asset, Scope, asset_of, holds, policy_resource, project_index
from keyless.doctor import access
from keyless.errors import InvalidArgument, NotFound


@dataclass(frozen=True)
class Query:
    """An IamPolicyAnalysisQuery, as the request's query parameters gave it."""

    identity: str | None = None
    resource: str | None = None  # a full resource name
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    expand_roles: bool = False
    expand_groups: bool = False
    expand_resources: bool = False
    impersonation: bool = False

    def as_json(self, scope: Scope) -> dict[str, Any]:
        body: dict[str, Any] = {"scope": scope.name}
        if self.resource is not None:
            body["resourceSelector"] = {"fullResourceName": self.resource}
        if self.identity is not None:
            body["identitySelector"] = {"identity": self.identity}
        if self.roles or self.permissions:
            body["accessSelector"] = {k: list(v) for k, v in (("roles", self.roles),
                                                             ("permissions", self.permissions)) if v}
        options = {k: True for k, v in (("expandGroups", self.expand_groups), ("expandRoles", self.expand_roles),
                                        ("expandResources", self.expand_resources),
                                        ("analyzeServiceAccountImpersonation", self.impersonation)) if v}
        if options:
            body["options"] = options
        return body


def analyze_iam_policy(state: Any, scope: Scope, query: Query) -> dict[str, Any]:
    """The AnalyzeIamPolicyResponse for `query` within `scope` (already authorised)."""
    if query.identity is None and query.resource is None:
        raise InvalidArgument("At least one of analysisQuery.resourceSelector and analysisQuery.identitySelector "
                              "must be specified.")
    accesses: list[access.Access]
    try:
        setup, analysis = access.analyze(state, identity=query.identity,
                                         resource=policy_resource(query.resource) if query.identity is None
                                         and query.resource is not None else None,
                                         identity_flag="analysisQuery.identitySelector.identity")
        accesses = analysis.accesses
        if query.identity is not None and query.resource is not None:
            chain = set(access.resource_chain(state, policy_resource(query.resource)))
            accesses = [a for a in accesses if a.resource in chain]
    except NotFound:
        setup, accesses = None, []  # a resource that does not exist: nobody has access to it
    if query.roles:
        accesses = [a for a in accesses if a.role in query.roles]
    if query.permissions:
        accesses = [a for a in accesses if set(a.permissions) & set(query.permissions)]
    with state.db.read() as s:
        projects = project_index(s)
        named = {r: asset_of(s, r, projects, scope.organization) for r in {a.resource for a in accesses}}
    assets = {r: a for r, a in named.items() if a is not None and holds(scope, a)}
    accesses = [a for a in accesses if a.resource in assets]
    members = _members(setup.bindings if setup is not None else [])
    errors = _unexplored(query)
    main = {"analysisQuery": query.as_json(scope),
            "analysisResults": _results(query, [a for a in accesses if not a.via], assets, members),
            "fullyExplored": not errors}
    if errors:
        main["nonCriticalErrors"] = errors
    response: dict[str, Any] = {"mainAnalysis": main, "fullyExplored": not errors}
    if query.impersonation:
        by_account: dict[str, list[access.Access]] = {}
        for a in accesses:
            if a.via:
                by_account.setdefault(a.via[-1].account, []).append(a)
        response["serviceAccountImpersonationAnalysis"] = [
            {"analysisQuery": {**query.as_json(scope), "identitySelector": {"identity": f"serviceAccount:{account}"}},
             "analysisResults": _results(query, found, assets, members, f"serviceAccount:{account}"),
             "fullyExplored": True}
            for account, found in sorted(by_account.items())]
    return response


def _unexplored(query: Query) -> list[dict[str, str]]:
    out = []
    if query.expand_groups:
        out.append({"code": "UNIMPLEMENTED", "cause": "Keyless has no group directory: groups are listed as bound, "
                                                      "not expanded to their members."})
    if query.expand_resources:
        out.append({"code": "UNIMPLEMENTED", "cause": "Keyless does not expand resources: each access is listed on "
                                                      "the resource its policy is attached to."})
    return out


def _members(bindings: list[Any]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    """Each binding (resource, role, condition expression) of the snapshot, as Google's Binding."""
    out: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for b in bindings:
        expression = (b.condition or {}).get("expression") or None
        found = out.setdefault((b.resource, b.role, expression), {"role": b.role, "members": []})
        if b.member not in found["members"]:
            found["members"].append(b.member)
        if b.condition:
            found["condition"] = dict(b.condition)
    return out


def _results(query: Query, accesses: list[access.Access], assets: dict[str, Asset],
             members: dict[tuple[str, str, str | None], dict[str, Any]],
             identity: str | None = None) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str, str | None], list[access.Access]] = {}
    for a in accesses:
        grouped.setdefault((a.resource, a.role, a.condition), []).append(a)
    out = []
    for key, found in sorted(grouped.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or "")):
        resource, role, condition = key
        asset = assets[resource]
        granted = found[0].permissions
        if query.permissions:
            listed = [{"permission": p} for p in sorted(set(granted) & set(query.permissions))]
        elif query.expand_roles:
            listed = [{"permission": p} for p in granted]
        else:
            listed = [{"role": role}]
        acl: dict[str, Any] = {"resources": [{"fullResourceName": query.resource or asset.full_name}],
                               "accesses": listed}
        if condition:
            acl["conditionEvaluation"] = {"evaluationValue": "CONDITIONAL"}
        names = [identity] if identity else sorted({a.identity for a in found})
        binding = members.get(key) or {"role": role, "members": sorted({a.member for a in found})}
        out.append({"attachedResourceFullName": asset.full_name,
                    "iamBinding": {**binding, "members": sorted(binding["members"])},
                    "accessControlLists": [acl],
                    "identityList": {"identities": [{"name": n} for n in names]},
                    "fullyExplored": True})
    return out
