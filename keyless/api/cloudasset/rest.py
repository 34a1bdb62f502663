"""Cloud Asset API REST wire: `v1.analyzeIamPolicy`, `v1.analyzeIamPolicyLongrunning`,
`v1.searchAllIamPolicies`, `v1.searchAllResources` and `operations.get` of the cloudasset.v1 discovery document
(https://cloud.google.com/asset-inventory/docs/reference/rest).

Each call is authorised on its scope (projects/P, or the root for an organization):
searchAllIamPolicies needs `cloudasset.assets.searchAllIamPolicies`, searchAllResources
`cloudasset.assets.searchAllResources` (issue #20), analyzeIamPolicy
`cloudasset.assets.analyzeIamPolicy`, `.searchAllIamPolicies` and `.searchAllResources` ("all of
the following", https://cloud.google.com/asset-inventory/docs/access-control), all in
roles/cloudasset.viewer; an unknown project is denied, never confirmed missing. The methods
are ADMIN_READ (https://cloud.google.com/asset-inventory/docs/audit-logging): their Data Access
entries are written only where the scope's auditConfigs enable ADMIN_READ for
cloudasset.googleapis.com.

analyzeIamPolicyLongrunning (keyless.cloudasset.longrunning, issue #20) runs analyzeIamPolicy's
analysis on the request body's `analysisQuery` (the same fields the GET method takes as query
parameters) and also needs, as Google documents for its Cloud Storage destination,
`storage.objects.create` on the destination bucket for the caller. Its operation is read back
with the permission that made it (`cloudasset.assets.analyzeIamPolicy` on the scope).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.routing import Route

from keyless import operations
from keyless.api.http import Call, allowed_fields, data_access_method, object_field, route, string_field
from keyless.audit.data_access import ADMIN_READ
from keyless.cloudasset import analysis, longrunning, resources, search
from keyless.cloudasset.assets import Scope, parse_scope
from keyless.errors import InvalidArgument, NotFound
from keyless.iam.evaluate import permission_denied
from keyless.state import ServerState
from keyless.storage import buckets
from keyless.storage.blobs import BlobStore

SERVICE = "cloudasset.googleapis.com"
PREFIX = "google.cloud.asset.v1.AssetService."
MAX_SELECTORS = 100  # roles or permissions in one accessSelector
MAX_PAGE = 500  # "Page size is capped at 500 even if a larger value is given."
_DURATION = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,9})?s$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,18}(Z|[+-][0-9]{2}:[0-9]{2})$")
Q = "analysisQuery."
# IamPolicyAnalysisQuery's fields (cloudasset.v1), by the query parameter name the GET method gives each
QUERY_FIELDS = {Q + f for f in ("scope", "identitySelector.identity", "resourceSelector.fullResourceName",
                                "accessSelector.roles", "accessSelector.permissions", "conditionContext.accessTime",
                                "options.expandGroups", "options.expandRoles", "options.expandResources",
                                "options.outputResourceEdges", "options.outputGroupEdges",
                                "options.analyzeServiceAccountImpersonation")}
_REPEATED = {Q + "accessSelector.roles", Q + "accessSelector.permissions"}


def _scope(call: Call, permission: str) -> Scope:
    """The request's scope, authorised; the audit record names it."""
    with call.read() as s:
        scope = parse_scope(s, f"{call.params['kind']}/{call.params['scope']}")
    if call.record is not None:
        call.record.resource_name = scope.name
        call.record.resource_type = "audited_resource"
        call.record.resource_labels = {"service": SERVICE, "method": call.record.method}
        if scope.project_id:
            call.record.project_id = scope.project_id
            call.record.resource_labels["project_id"] = scope.project_id
    call.require(permission, scope.chain, scope.name)
    if not scope.exists:  # only the root's holders get this far: Google never confirms a project is missing
        raise permission_denied(permission, scope.name)
    return scope


def _bounded(call: Call, name: str) -> tuple[str, ...]:
    values = call.args(name)
    if len(values) > MAX_SELECTORS or any(len(v) > 256 for v in values):
        raise InvalidArgument(f"{name}: at most {MAX_SELECTORS} values of at most 256 characters.")
    return tuple(values)


def analyze_iam_policy(call: Call) -> dict[str, Any]:
    scope = _scope(call, "cloudasset.assets.analyzeIamPolicy")
    # "All of the following permissions" (https://cloud.google.com/asset-inventory/docs/access-control)
    for permission in ("cloudasset.assets.searchAllIamPolicies", "cloudasset.assets.searchAllResources"):
        call.require(permission, scope.chain, scope.name)
    saved = call.arg("savedAnalysisQuery")
    if saved:  # Keyless keeps no saved queries
        raise NotFound(f"Saved query {saved[:200]} not found.")
    timeout = call.arg("executionTimeout")
    if timeout is not None and not _DURATION.match(timeout):
        raise InvalidArgument(f"Invalid value at 'execution_timeout' (type.googleapis.com/google.protobuf.Duration), "
                              f"{timeout[:100]!r}")
    access_time = call.arg(Q + "conditionContext.accessTime")
    if access_time is not None:
        try:
            at = datetime.fromisoformat(access_time.replace("Z", "+00:00")) if _TIMESTAMP.match(access_time) else None
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            raise InvalidArgument(f"Invalid value at 'analysis_query.condition_context.access_time' "
                                  f"(type.googleapis.com/google.protobuf.Timestamp), {access_time[:100]!r}")
        if at < datetime.now(UTC) - timedelta(minutes=1):  # "must not be earlier than the current time"
            raise InvalidArgument("analysisQuery.conditionContext.accessTime must not be earlier than the current time.")
    query = analysis.Query(
        identity=call.arg(Q + "identitySelector.identity"),
        resource=call.arg(Q + "resourceSelector.fullResourceName"),
        roles=_bounded(call, Q + "accessSelector.roles"),
        permissions=_bounded(call, Q + "accessSelector.permissions"),
        expand_roles=call.flag(Q + "options.expandRoles"),
        expand_groups=call.flag(Q + "options.expandGroups"),
        expand_resources=call.flag(Q + "options.expandResources") or call.flag(Q + "options.outputResourceEdges"),
        impersonation=call.flag(Q + "options.analyzeServiceAccountImpersonation"))
    if query.identity is not None and len(query.identity) > 512:
        raise InvalidArgument("analysisQuery.identitySelector.identity is longer than 512 characters.")
    return analysis.analyze_iam_policy(call.state, scope, query)


def _query_params(query: Any) -> dict[str, list[str]]:
    """The body's IamPolicyAnalysisQuery as the query parameters analyzeIamPolicy reads (gRPC
    transcoding's mapping of a GET request's fields: dotted paths, repeated fields repeated)."""
    if not isinstance(query, dict):
        raise InvalidArgument("analysisQuery is required.")
    out: dict[str, list[str]] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                name = f"{path}.{key}"
                if name not in QUERY_FIELDS and not any(f.startswith(name + ".") for f in QUERY_FIELDS):
                    raise InvalidArgument(f"Invalid JSON payload received. Unknown name \"{key[:100]}\" at "
                                          f"'{path[:200]}': Cannot find field.")
                walk(inner, name)
        elif path in _REPEATED and isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[path] = list(value)
        elif path in QUERY_FIELDS and path not in _REPEATED and isinstance(value, (str, bool)):
            out[path] = [str(value).lower() if isinstance(value, bool) else value]
        else:
            raise InvalidArgument(f"Invalid value at '{path[:200]}': {str(value)[:100]}")

    walk(query, Q[:-1])
    return out


def analyze_iam_policy_longrunning(call: Call) -> dict[str, Any]:
    """analyzeIamPolicy's answer written to outputConfig.gcsDestination.uri; a done Operation."""
    body = call.body
    allowed_fields(body, {"analysisQuery", "outputConfig", "savedAnalysisQuery"}, "")
    output = object_field(body, "outputConfig", "")
    allowed_fields(output, {"gcsDestination", "bigqueryDestination"}, "output_config")
    if "bigqueryDestination" in output:
        raise InvalidArgument("outputConfig.bigqueryDestination is not supported: Keyless serves no BigQuery; "
                              "use outputConfig.gcsDestination.")
    destination = object_field(output, "gcsDestination", "output_config")
    allowed_fields(destination, {"uri"}, "output_config.gcs_destination")
    bucket_name, object_name = longrunning.parse_gcs_uri(destination.get("uri"))
    # analyzeIamPolicy's own reading of the query (its checks, its audit record) on the body's fields
    call.query = _query_params(body.get("analysisQuery"))
    saved = string_field(body, "savedAnalysisQuery", "")
    if saved:
        call.query["savedAnalysisQuery"] = [saved]
    response = analyze_iam_policy(call)
    with call.read() as s:
        scope = parse_scope(s, f"{call.params['kind']}/{call.params['scope']}")
        bucket = buckets.find_bucket(s, bucket_name)
    if bucket is None:
        raise NotFound(f"The destination bucket {bucket_name} does not exist.")
    # as Cloud Storage checks it: with the project convenience members (projectOwner:P...) the caller holds
    caller = buckets.with_convenience_members(call.state.authz, call.principal, bucket.project_id)
    decision = call.state.authz.check(caller, "storage.objects.create", buckets.bucket_chain(bucket),
                                      buckets.bucket_context(bucket_name))
    if call.record is not None:
        call.record.authorize(f"projects/_/buckets/{bucket_name}", "storage.objects.create", decision.granted)
    if not decision.granted:
        raise permission_denied("storage.objects.create", f"projects/_/buckets/{bucket_name}")
    blobs = BlobStore(call.state.settings.data_dir, root=call.state.settings.blob_dir)
    written = ""
    try:
        with call.state.db.write() as s:
            replaced, written = longrunning.write_result(s, blobs, bucket_name, object_name, response)
            operation = longrunning.record_operation(s, scope)
    except BaseException:
        if written:
            blobs.delete(written)
        raise
    if replaced:
        blobs.delete(replaced)
    return operation


def get_operation(call: Call) -> dict[str, Any]:
    """operations.get: readable by whoever may run the analysis on the operation's scope."""
    p = call.params
    name = f"{p['kind']}/{p['scope']}/operations/{p['operation_kind']}/{p['operation']}"
    _scope(call, "cloudasset.assets.analyzeIamPolicy")
    with call.read() as s:
        return operations.get(s, name)


def search_all_iam_policies(call: Call) -> dict[str, Any]:
    scope = _scope(call, "cloudasset.assets.searchAllIamPolicies")
    size = call.arg("pageSize")
    if size is not None and size.lstrip("-").isdigit() and int(size) > MAX_PAGE:
        call.query["pageSize"] = [str(MAX_PAGE)]
    results = search.search_all_iam_policies(call.state, scope, call.arg("query") or "",
                                             list(call.args("assetTypes")), call.arg("orderBy"))
    page, token = call.page(results)
    return {"results": page, **({"nextPageToken": token} if token else {})} if page else {}


def search_all_resources(call: Call) -> dict[str, Any]:
    scope = _scope(call, "cloudasset.assets.searchAllResources")
    size = call.arg("pageSize")
    # "capped at 500 even if a larger value is given. If set to zero or a negative value, server will
    # pick an appropriate default"
    if size is None or (size.lstrip("-").isdigit() and (int(size) > MAX_PAGE or int(size) <= 0)):
        call.query["pageSize"] = [str(MAX_PAGE)]
    with call.read() as s:
        results = resources.search_all_resources(s, scope, call.arg("query") or "", list(call.args("assetTypes")),
                                                 call.arg("orderBy"), call.arg("readMask"))
    page, token = call.page(results)
    return {"results": page, **({"nextPageToken": token} if token else {})} if page else {}


# -- Data Access entries ------------------------------------------------------------------------


def _data_access(method: str, handler: Callable[[Call], Any]) -> Callable[[Call], Any]:
    """Run a method with its audit record, written only if the scope's auditConfigs enable ADMIN_READ
    (an organization scope's are the root's)."""
    return data_access_method(SERVICE, PREFIX + method, handler, ADMIN_READ, root_without_project=True)




def routes(state: ServerState) -> list[Route]:
    def read(path: str, handler: Callable[[Call], Any], method: str, verb: str = "GET") -> Route:
        return route(state, verb, path, _data_access(method, handler), audited=False)

    scope = "/v1/{kind}/{scope}"
    return [
        read(scope + ":analyzeIamPolicy", analyze_iam_policy, "AnalyzeIamPolicy"),
        read(scope + ":analyzeIamPolicyLongrunning", analyze_iam_policy_longrunning, "AnalyzeIamPolicyLongrunning",
             "POST"),
        read(scope + ":searchAllIamPolicies", search_all_iam_policies, "SearchAllIamPolicies"),
        read(scope + ":searchAllResources", search_all_resources, "SearchAllResources"),
        route(state, "GET", scope + "/operations/{operation_kind}/{operation}", get_operation),
    ]
