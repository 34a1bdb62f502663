"""Cloud Asset over gRPC (`google.cloud.asset.v1.AssetService`, the default transport of
google-cloud-asset, issue #20): each RPC is transcoded, by the `google.api.http` rule of Google's
asset_service.proto, to the REST method of keyless.api.cloudasset.rest, so both transports share one
implementation (scope authorisation, Data Access entries, errors), as keyless.api.secretmanager.grpc.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from keyless.api.grpc_transcoding import LazyTranscodingService, PeerResolver, Rule

SERVICE = "google.cloud.asset.v1.AssetService"
PREFIX = "/cloudasset"  # where keyless.app mounts the REST API

def rules() -> list[Rule]:
    """The served RPCs and their HTTP rules (google/cloud/asset/v1/asset_service.proto); google-cloud-asset's
    message types load here, at the first Cloud Asset call (most of a second)."""
    from google.cloud.asset_v1.types import asset_service
    from google.longrunning import operations_pb2

    return [
        Rule("AnalyzeIamPolicy", "get", "/v1/{analysis_query.scope=*/*}:analyzeIamPolicy",
             asset_service.AnalyzeIamPolicyRequest.pb(), asset_service.AnalyzeIamPolicyResponse.pb()),
        Rule("AnalyzeIamPolicyLongrunning", "post", "/v1/{analysis_query.scope=*/*}:analyzeIamPolicyLongrunning",
             asset_service.AnalyzeIamPolicyLongrunningRequest.pb(), operations_pb2.Operation, body="*"),
        Rule("SearchAllIamPolicies", "get", "/v1/{scope=*/*}:searchAllIamPolicies",
             asset_service.SearchAllIamPoliciesRequest.pb(), asset_service.SearchAllIamPoliciesResponse.pb()),
        Rule("SearchAllResources", "get", "/v1/{scope=*/*}:searchAllResources",
             asset_service.SearchAllResourcesRequest.pb(), asset_service.SearchAllResourcesResponse.pb()),
    ]


def asset_service_grpc(app: ASGIApp, peer: PeerResolver | None = None) -> LazyTranscodingService:
    """The gRPC service, answered by `app` (Keyless's ASGI app)."""
    return LazyTranscodingService(SERVICE, rules, app, PREFIX, peer)
