"""Secret Manager over gRPC (`google.cloud.secretmanager.v1.SecretManagerService`, the default
transport of google-cloud-secret-manager): each RPC is transcoded, by the `google.api.http` rule
of Google's service.proto, to the REST method of keyless.api.secretmanager.rest, so both transports
share one implementation (authorisation, audit entries, errors).
"""

from __future__ import annotations

from google.cloud.secretmanager_v1.types import resources, service
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import empty_pb2
from starlette.types import ASGIApp

from keyless.api.grpc_transcoding import PeerResolver, Rule, TranscodingService

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
PREFIX = "/secretmanager"  # where keyless.app mounts the REST API

_SECRET = "projects/*/secrets/*"
_VERSION = _SECRET + "/versions/*"



def _regional(rule: Rule) -> Rule:
    """The rule with its additional binding for regional secrets (`projects/*/locations/*/secrets`),
    as service.proto declares one for each RPC (issue #20)."""
    regional = rule.uri.replace("{parent=projects/*}", "{parent=projects/*/locations/*}").replace(
        "projects/*/secrets", "projects/*/locations/*/secrets")
    return Rule(rule.rpc, rule.verb, rule.uri, rule.request, rule.response, rule.body, (regional,))


# google/cloud/secretmanager/v1/service.proto, global resources and, as additional bindings, regional ones.
RULES = [_regional(rule) for rule in [
    Rule("ListSecrets", "get", "/v1/{parent=projects/*}/secrets",
         service.ListSecretsRequest.pb(), service.ListSecretsResponse.pb()),
    Rule("CreateSecret", "post", "/v1/{parent=projects/*}/secrets",
         service.CreateSecretRequest.pb(), resources.Secret.pb(), body="secret"),
    Rule("AddSecretVersion", "post", "/v1/{parent=" + _SECRET + "}:addVersion",
         service.AddSecretVersionRequest.pb(), resources.SecretVersion.pb(), body="*"),
    Rule("GetSecret", "get", "/v1/{name=" + _SECRET + "}", service.GetSecretRequest.pb(), resources.Secret.pb()),
    Rule("UpdateSecret", "patch", "/v1/{secret.name=" + _SECRET + "}",
         service.UpdateSecretRequest.pb(), resources.Secret.pb(), body="secret"),
    Rule("DeleteSecret", "delete", "/v1/{name=" + _SECRET + "}", service.DeleteSecretRequest.pb(),
         empty_pb2.Empty),
    Rule("ListSecretVersions", "get", "/v1/{parent=" + _SECRET + "}/versions",
         service.ListSecretVersionsRequest.pb(), service.ListSecretVersionsResponse.pb()),
    Rule("GetSecretVersion", "get", "/v1/{name=" + _VERSION + "}",
         service.GetSecretVersionRequest.pb(), resources.SecretVersion.pb()),
    Rule("AccessSecretVersion", "get", "/v1/{name=" + _VERSION + "}:access",
         service.AccessSecretVersionRequest.pb(), service.AccessSecretVersionResponse.pb()),
    Rule("DisableSecretVersion", "post", "/v1/{name=" + _VERSION + "}:disable",
         service.DisableSecretVersionRequest.pb(), resources.SecretVersion.pb(), body="*"),
    Rule("EnableSecretVersion", "post", "/v1/{name=" + _VERSION + "}:enable",
         service.EnableSecretVersionRequest.pb(), resources.SecretVersion.pb(), body="*"),
    Rule("DestroySecretVersion", "post", "/v1/{name=" + _VERSION + "}:destroy",
         service.DestroySecretVersionRequest.pb(), resources.SecretVersion.pb(), body="*"),
    Rule("SetIamPolicy", "post", "/v1/{resource=" + _SECRET + "}:setIamPolicy",
         iam_policy_pb2.SetIamPolicyRequest, policy_pb2.Policy, body="*"),
    Rule("GetIamPolicy", "get", "/v1/{resource=" + _SECRET + "}:getIamPolicy",
         iam_policy_pb2.GetIamPolicyRequest, policy_pb2.Policy),
    Rule("TestIamPermissions", "post", "/v1/{resource=" + _SECRET + "}:testIamPermissions",
         iam_policy_pb2.TestIamPermissionsRequest, iam_policy_pb2.TestIamPermissionsResponse, body="*"),
]]


def secret_manager_service(app: ASGIApp, peer: PeerResolver | None = None) -> TranscodingService:
    """The gRPC service, answered by `app` (Keyless's ASGI app)."""
    return TranscodingService(SERVICE, RULES, app, PREFIX, peer)
