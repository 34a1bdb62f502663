"""IAM (iam.googleapis.com v1) through Google's discovery-based client: every served method
called in a realistic order, each answer checked against its response schema (issue #19)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.conformance import harness
from tests.conformance.harness import Flow, Step
from tests.conftest import KeylessServer

DOC = "iam.v1"
PROJECT = "conformance-iam"
P = f"projects/{PROJECT}"
SA_EMAIL = f"conformance-sa@{PROJECT}.iam.gserviceaccount.com"
SA = f"{P}/serviceAccounts/{SA_EMAIL}"
POOLS = f"{P}/locations/global/workloadIdentityPools"
POOL = f"{POOLS}/conformance-pool"
PROVIDER = f"{POOL}/providers/conformance-oidc"
PROVIDER_KEY = f"{PROVIDER}/keys/conformance-key"
ROLE = f"{P}/roles/conformanceRole"
TRUST_POOL = f"{POOLS}/conformance-td"
NAMESPACE = f"{TRUST_POOL}/namespaces/conformance-ns"
IDENTITY = f"{NAMESPACE}/managedIdentities/conformance-mi"
RULE_SA = "//compute.googleapis.com/projects/123/type/Instance/attached_service_account.uid/12345"
RULE_VM = "//compute.googleapis.com/projects/456/uid/zones/us-central1-a/instances/789"
RULE_RUN = "//run.googleapis.com/projects/123/type/Service/*"
ORG = "organizations/123456789"
ORG_ROLE = f"{ORG}/roles/orgRole"


def self_signed_certificate() -> bytes:
    """An RSA-2048 key's self-signed certificate, as a user uploading their own key makes one."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conformance")])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def jwt_parts(jwt: str) -> tuple[bytes, bytes]:
    head, body, signature = jwt.split(".")
    return f"{head}.{body}".encode(), base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))


def verified(ctx: dict[str, Any], key_id: str, data: bytes, signature: bytes) -> None:
    """The signature verifies with the certificate Keyless publishes for `key_id` (raises if not)."""
    certificates = httpx.get(f"{ctx['base_url']}/robot/v1/metadata/x509/{SA_EMAIL}").json()
    public = x509.load_pem_x509_certificate(certificates[key_id].encode()).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


def key_name(ctx: dict[str, Any]) -> str:
    return str(ctx["key"]["name"])


def op_name(ctx: dict[str, Any], save: str) -> str:
    return str(ctx[save]["name"])


def done(ctx: dict[str, Any], answer: dict[str, Any]) -> None:
    assert answer.get("done") is True and "response" in answer, answer


def state_is(state: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def check(ctx: dict[str, Any], answer: dict[str, Any]) -> None:
        assert answer["done"] and answer["response"]["state"] == state, answer
    return check


def rules_are(*rules: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def check(ctx: dict[str, Any], answer: dict[str, Any]) -> None:
        assert [r["googleCloudResource"] for r in answer.get("attestationRules", [])] == list(rules), answer
    return check


def rule_response(method: str) -> Callable[[dict[str, Any], dict[str, Any]], None]:
    def check(ctx: dict[str, Any], answer: dict[str, Any]) -> None:
        assert answer["done"] and answer["response"] == {
            "@type": f"type.googleapis.com/google.iam.v1.{method}Response"}, answer
    return check


FLOW = Flow(DOC, [
    # Service accounts
    Step("iam.projects.serviceAccounts.create", lambda c: {"name": P, "body": {
        "accountId": "conformance-sa",
        "serviceAccount": {"displayName": "Conformance", "description": "made by the discovery client",
                           "email": "ignored@example.com", "uniqueId": "1", "disabled": True}}},
         save="sa", present=["name", "projectId", "uniqueId", "email", "oauth2ClientId", "etag"],
         check=lambda c, a: (a["email"] == SA_EMAIL and a.get("disabled") is not True) or pytest.fail(str(a))),
    Step("iam.projects.serviceAccounts.get", lambda c: {"name": SA}, present=["name", "email", "uniqueId"]),
    Step("iam.projects.serviceAccounts.get", lambda c: {"name": f"{P}/serviceAccounts/nobody@{PROJECT}.iam.gserviceaccount.com"},
         error=404),
    Step("iam.projects.serviceAccounts.list", lambda c: {"name": P, "pageSize": 10},
         check=lambda c, a: SA_EMAIL in [x["email"] for x in a["accounts"]] or pytest.fail(str(a))),
    Step("iam.projects.serviceAccounts.patch", lambda c: {"name": SA, "body": {
        "serviceAccount": {"description": "patched", "email": SA_EMAIL}, "updateMask": "description"}},
         save="sa_patched", check=lambda c, a: a["description"] == "patched" or pytest.fail(str(a))),
    Step("iam.projects.serviceAccounts.update", lambda c: {"name": SA, "body": {
        "displayName": "Conformance 2", "description": "updated", "etag": c["sa_patched"]["etag"], "email": SA_EMAIL,
        "projectId": PROJECT, "uniqueId": c["sa"]["uniqueId"], "oauth2ClientId": c["sa"]["oauth2ClientId"],
        "name": SA}},
         check=lambda c, a: a["displayName"] == "Conformance 2" or pytest.fail(str(a))),
    Step("iam.projects.serviceAccounts.getIamPolicy", lambda c: {"resource": SA, "options_requestedPolicyVersion": 3},
         save="sa_policy"),
    Step("iam.projects.serviceAccounts.setIamPolicy", lambda c: {"resource": SA, "body": {
        "policy": {"bindings": [{"role": "roles/iam.serviceAccountTokenCreator",
                                 "members": ["user:someone@example.com", "user:owner@keyless.dev"]}],
                   "etag": c["sa_policy"].get("etag")},
        "updateMask": "bindings,etag"}}, present=["etag"]),
    # the deprecated signing methods (IAM Credentials' signBlob/signJwt under IAM v1's names)
    Step("iam.projects.serviceAccounts.signBlob", lambda c: {"name": SA, "body": {
        "bytesToSign": base64.b64encode(b"conformance").decode()}}, present=["keyId", "signature"],
         check=lambda c, a: verified(c, a["keyId"], b"conformance", base64.b64decode(a["signature"]))),
    Step("iam.projects.serviceAccounts.signJwt", lambda c: {"name": SA, "body": {
        "payload": json.dumps({"sub": SA_EMAIL, "aud": "https://example.com", "iat": 2_000_000_000})}},
         present=["keyId", "signedJwt"],
         check=lambda c, a: verified(c, a["keyId"], *jwt_parts(a["signedJwt"]))),
    Step("iam.projects.serviceAccounts.signBlob", lambda c: {"name": SA, "body": {"bytesToSign": "not base64!"}},
         error=400),
    Step("iam.projects.serviceAccounts.testIamPermissions", lambda c: {"resource": SA, "body": {
        "permissions": ["iam.serviceAccounts.get", "iam.serviceAccounts.actAs"]}},
         check=lambda c, a: len(a["permissions"]) == 2 or pytest.fail(str(a))),
    Step("iam.projects.serviceAccounts.keys.create", lambda c: {"name": SA, "body": {
        "privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE", "keyAlgorithm": "KEY_ALG_RSA_2048"}},
         save="key", present=["name", "privateKeyData", "privateKeyType", "keyAlgorithm", "validAfterTime"]),
    Step("iam.projects.serviceAccounts.keys.upload", lambda c: {"name": SA, "body": {
        "publicKeyData": base64.b64encode(self_signed_certificate()).decode()}},
         present=["name", "keyAlgorithm", "keyOrigin", "keyType", "validAfterTime", "validBeforeTime"],
         check=lambda c, a: a["keyOrigin"] == "USER_PROVIDED" or pytest.fail(str(a))),
    Step("iam.projects.serviceAccounts.keys.upload", lambda c: {"name": SA, "body": {
        "publicKeyData": base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").decode()}},
         error=400),
    Step("iam.projects.serviceAccounts.keys.get", lambda c: {"name": key_name(c), "publicKeyType": "TYPE_X509_PEM_FILE"},
         present=["name", "keyAlgorithm", "keyType"]),
    Step("iam.projects.serviceAccounts.keys.list", lambda c: {"name": SA, "keyTypes": "USER_MANAGED"},
         check=lambda c, a: key_name(c) in [k["name"] for k in a["keys"]] or pytest.fail(str(a))),
    Step("iam.projects.serviceAccounts.keys.disable", lambda c: {"name": key_name(c), "body": {}}),
    Step("iam.projects.serviceAccounts.keys.enable", lambda c: {"name": key_name(c), "body": {}}),
    Step("iam.projects.serviceAccounts.keys.delete", lambda c: {"name": key_name(c)}),
    Step("iam.projects.serviceAccounts.disable", lambda c: {"name": SA, "body": {}}),
    Step("iam.projects.serviceAccounts.enable", lambda c: {"name": SA, "body": {}}),
    Step("iam.projects.serviceAccounts.delete", lambda c: {"name": SA}),
    Step("iam.projects.serviceAccounts.undelete", lambda c: {
        "name": f"projects/-/serviceAccounts/{c['sa']['uniqueId']}", "body": {}},
         check=lambda c, a: a["restoredAccount"]["email"] == SA_EMAIL or pytest.fail(str(a))),
    # Roles
    Step("iam.roles.list", lambda c: {"pageSize": 5, "view": "BASIC"},
         check=lambda c, a: len(a["roles"]) == 5 and "nextPageToken" in a or pytest.fail(str(a))),
    Step("iam.roles.get", lambda c: {"name": "roles/iam.workloadIdentityUser"},
         present=["name", "title", "includedPermissions", "etag", "stage"]),
    Step("iam.permissions.queryTestablePermissions", lambda c: {"body": {
        "fullResourceName": f"//cloudresourcemanager.googleapis.com/{P}", "pageSize": 5}},
         check=lambda c, a: len(a["permissions"]) == 5 or pytest.fail(str(a))),
    Step("iam.roles.queryGrantableRoles", lambda c: {"body": {
        "fullResourceName": f"//cloudresourcemanager.googleapis.com/{P}", "pageSize": 3, "view": "FULL"}},
         check=lambda c, a: (len(a["roles"]) == 3 and "nextPageToken" in a
                             and all("includedPermissions" in r for r in a["roles"])) or pytest.fail(str(a))),
    Step("iam.roles.queryGrantableRoles", lambda c: {"body": {
        "fullResourceName": f"//iam.googleapis.com/{SA}", "pageSize": 1000}},
         check=lambda c, a: ("roles/iam.serviceAccountTokenCreator" in [r["name"] for r in a["roles"]]
                             and "roles/storage.objectViewer" not in [r["name"] for r in a["roles"]])
         or pytest.fail(str(a))),
    Step("iam.roles.queryGrantableRoles", lambda c: {"body": {"fullResourceName": "projects/not-full"}}, error=400),
    Step("iam.iamPolicies.queryAuditableServices", lambda c: {"body": {
        "fullResourceName": f"//cloudresourcemanager.googleapis.com/{P}"}},
         check=lambda c, a: "iam.googleapis.com" in [x["name"] for x in a["services"]] or pytest.fail(str(a))),
    Step("iam.iamPolicies.lintPolicy", lambda c: {"body": {
        "fullResourceName": f"//cloudresourcemanager.googleapis.com/{P}",
        "condition": {"title": "ok", "expression": "request.time < timestamp('2030-01-01T00:00:00Z')"}}},
         check=lambda c, a: a == {} or pytest.fail(str(a))),
    Step("iam.iamPolicies.lintPolicy", lambda c: {"body": {
        "condition": {"title": "broken", "expression": "request.time < timestamp('2030-01-01') &&"}}},
         check=lambda c, a: [(r["validationUnitName"], r["severity"], r["fieldName"]) for r in a["lintResults"]] == [
             ("LintValidationUnits/ConditionCompileCheck", "ERROR", "condition.expression"),
             ("LintValidationUnits/ConditionTimestampCheck", "ERROR", "condition.expression")]
         or pytest.fail(str(a))),
    Step("iam.projects.roles.create", lambda c: {"parent": P, "body": {
        "roleId": "conformanceRole", "role": {"title": "Conformance", "description": "a custom role",
                                              "includedPermissions": ["iam.serviceAccounts.get"], "stage": "GA"}}},
         save="role", present=["name", "title", "includedPermissions", "etag", "stage"]),
    Step("iam.projects.roles.get", lambda c: {"name": ROLE}, present=["name", "etag"]),
    Step("iam.projects.roles.list", lambda c: {"parent": P, "view": "FULL", "showDeleted": True},
         check=lambda c, a: ROLE in [r["name"] for r in a["roles"]] or pytest.fail(str(a))),
    Step("iam.projects.roles.patch", lambda c: {"name": ROLE, "updateMask": "description", "body": {
        "description": "patched", "etag": c["role"]["etag"]}},
         check=lambda c, a: a["description"] == "patched" or pytest.fail(str(a))),
    Step("iam.projects.roles.delete", lambda c: {"name": ROLE}, save="deleted_role",
         check=lambda c, a: a.get("deleted") is True or pytest.fail(str(a))),
    Step("iam.projects.roles.undelete", lambda c: {"name": ROLE, "body": {"etag": c["deleted_role"]["etag"]}},
         check=lambda c, a: not a.get("deleted") or pytest.fail(str(a))),
    # An organization's custom roles (Keyless's root stands for every organization)
    Step("iam.organizations.roles.create", lambda c: {"parent": ORG, "body": {
        "roleId": "orgRole", "role": {"title": "Org role", "includedPermissions": ["storage.objects.get"],
                                      "stage": "BETA"}}},
         save="org_role", present=["name", "title", "includedPermissions", "etag", "stage"],
         check=lambda c, a: a["name"] == ORG_ROLE or pytest.fail(str(a))),
    Step("iam.organizations.roles.create", lambda c: {"parent": ORG, "body": {"roleId": "orgRole", "role": {}}},
         error=409),
    Step("iam.organizations.roles.get", lambda c: {"name": ORG_ROLE}, present=["name", "etag"]),
    Step("iam.organizations.roles.list", lambda c: {"parent": ORG, "view": "FULL"},
         check=lambda c, a: [r["name"] for r in a["roles"]] == [ORG_ROLE] or pytest.fail(str(a))),
    Step("iam.organizations.roles.patch", lambda c: {"name": ORG_ROLE, "updateMask": "includedPermissions", "body": {
        "includedPermissions": ["storage.objects.get", "storage.objects.list"], "etag": c["org_role"]["etag"]}},
         check=lambda c, a: len(a["includedPermissions"]) == 2 or pytest.fail(str(a))),
    Step("iam.organizations.roles.delete", lambda c: {"name": ORG_ROLE}, save="deleted_org_role",
         check=lambda c, a: a.get("deleted") is True or pytest.fail(str(a))),
    Step("iam.organizations.roles.list", lambda c: {"parent": ORG}, check=lambda c, a: a == {} or pytest.fail(str(a))),
    Step("iam.organizations.roles.undelete", lambda c: {"name": ORG_ROLE, "body": {
        "etag": c["deleted_org_role"]["etag"]}}, check=lambda c, a: not a.get("deleted") or pytest.fail(str(a))),
    Step("iam.organizations.roles.get", lambda c: {"name": "organizations/0x1/roles/orgRole"}, error=400),
    # Workload Identity Federation
    Step("iam.projects.locations.workloadIdentityPools.create", lambda c: {
        "parent": f"{P}/locations/global", "workloadIdentityPoolId": "conformance-pool", "body": {
            "displayName": "Conformance pool", "description": "pool", "disabled": False,
            "state": "DELETED", "name": "ignored", "expireTime": "2000-01-01T00:00:00Z"}},
         save="pool_op", check=done),
    Step("iam.projects.locations.workloadIdentityPools.operations.get", lambda c: {"name": op_name(c, "pool_op")},
         check=done),
    Step("iam.projects.locations.workloadIdentityPools.get", lambda c: {"name": POOL},
         present=["name", "state", "displayName"],  # the output-only state given on create was ignored
         check=lambda c, a: a["state"] == "ACTIVE" or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.list", lambda c: {"parent": f"{P}/locations/global",
                                                                        "pageSize": 10, "showDeleted": True},
         check=lambda c, a: POOL in [p["name"].replace(c["pool_prefix"], P) for p in a["workloadIdentityPools"]]
         or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.patch", lambda c: {
        "name": POOL, "updateMask": "description", "body": {"description": "patched"}}, check=done),
    Step("iam.projects.locations.workloadIdentityPools.getIamPolicy", lambda c: {"resource": POOL, "body": {
        "options": {"requestedPolicyVersion": 3}}}, save="pool_policy", present=["etag"]),
    Step("iam.projects.locations.workloadIdentityPools.setIamPolicy", lambda c: {"resource": POOL, "body": {
        "policy": {"bindings": [{"role": "roles/iam.workloadIdentityPoolViewer", "members": ["user:v@example.com"]}],
                   "etag": c["pool_policy"]["etag"]}}},
         check=lambda c, a: a["bindings"][0]["members"] == ["user:v@example.com"] or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.testIamPermissions", lambda c: {"resource": POOL, "body": {
        "permissions": ["iam.workloadIdentityPools.get", "iam.workloadIdentityPoolProviders.create"]}},
         check=lambda c, a: len(a["permissions"]) == 2 or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.getIamPolicy", lambda c: {
        "resource": f"{POOLS}/no-such-pool", "body": {}}, error=404),
    Step("iam.projects.locations.workloadIdentityPools.providers.create", lambda c: {
        "parent": POOL, "workloadIdentityPoolProviderId": "conformance-oidc", "body": {
            "displayName": "OIDC", "description": "GitHub Actions", "disabled": False,
            "attributeMapping": {"google.subject": "assertion.sub", "attribute.repository": "assertion.repository"},
            "attributeCondition": "assertion.repository_owner == 'my-org'",
            "oidc": {"issuerUri": "https://token.actions.githubusercontent.com",
                     "allowedAudiences": ["https://iam.googleapis.com/" + POOL]},
            "state": "ACTIVE", "name": "ignored"}},
         save="provider_op", check=done),
    Step("iam.projects.locations.workloadIdentityPools.providers.operations.get",
         lambda c: {"name": op_name(c, "provider_op")}, check=done),
    Step("iam.projects.locations.workloadIdentityPools.providers.get", lambda c: {"name": PROVIDER},
         present=["name", "state", "attributeMapping", "oidc.issuerUri"]),
    Step("iam.projects.locations.workloadIdentityPools.providers.list", lambda c: {"parent": POOL, "pageSize": 5},
         check=lambda c, a: len(a["workloadIdentityPoolProviders"]) == 1 or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.providers.patch", lambda c: {
        "name": PROVIDER, "updateMask": "displayName,oidc.allowedAudiences",
        "body": {"displayName": "OIDC 2", "oidc": {"allowedAudiences": ["aud-1", "aud-2"]}}}, check=done),
    Step("iam.projects.locations.workloadIdentityPools.providers.keys.create", lambda c: {
        "parent": PROVIDER, "workloadIdentityPoolProviderKeyId": "conformance-key", "body": {
            "use": "ENCRYPTION", "keyData": {"keySpec": "RSA_2048", "key": "ignored"}, "state": "DELETED"}},
         save="key_op", check=done),
    Step("iam.projects.locations.workloadIdentityPools.providers.keys.operations.get",
         lambda c: {"name": op_name(c, "key_op")}, check=done),
    Step("iam.projects.locations.workloadIdentityPools.providers.keys.get", lambda c: {"name": PROVIDER_KEY},
         present=["name", "state", "use", "keyData.format", "keyData.key", "keyData.keySpec", "keyData.notAfterTime"],
         check=lambda c, a: (a["state"] == "ACTIVE" and a["keyData"]["key"].startswith("-----BEGIN CERTIFICATE-----"))
         or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.providers.keys.create", lambda c: {
        "parent": PROVIDER, "workloadIdentityPoolProviderKeyId": "bad-spec", "body": {
            "use": "ENCRYPTION", "keyData": {"keySpec": "RSA_1024"}}}, error=400),
    Step("iam.projects.locations.workloadIdentityPools.providers.keys.delete", lambda c: {"name": PROVIDER_KEY},
         check=lambda c, a: (a["response"]["state"] == "DELETED" and "expireTime" in a["response"])
         or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.providers.keys.list", lambda c: {"parent": PROVIDER},
         check=lambda c, a: a == {} or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.providers.keys.undelete", lambda c: {
        "name": PROVIDER_KEY, "body": {}}, check=done),
    Step("iam.projects.locations.workloadIdentityPools.providers.keys.list", lambda c: {
        "parent": PROVIDER, "showDeleted": True, "pageSize": 5},
         check=lambda c, a: [k["name"].rsplit("/", 1)[1] for k in a["workloadIdentityPoolProviderKeys"]]
         == ["conformance-key"] or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.providers.delete", lambda c: {"name": PROVIDER}, check=done),
    Step("iam.projects.locations.workloadIdentityPools.providers.undelete", lambda c: {"name": PROVIDER, "body": {}},
         check=done),
    Step("iam.projects.locations.workloadIdentityPools.delete", lambda c: {"name": POOL}, check=done),
    Step("iam.projects.locations.workloadIdentityPools.undelete", lambda c: {"name": POOL, "body": {}}, check=done),
    # Managed Workload Identity: a TRUST_DOMAIN pool, its namespace, managed identity, attestation rules
    Step("iam.projects.locations.workloadIdentityPools.create", lambda c: {
        "parent": f"{P}/locations/global", "workloadIdentityPoolId": "conformance-td",
        "body": {"mode": "TRUST_DOMAIN", "description": "trust domain"}},
         check=lambda c, a: a["response"]["mode"] == "TRUST_DOMAIN" or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.providers.create", lambda c: {
        "parent": TRUST_POOL, "workloadIdentityPoolProviderId": "no-providers-here", "body": {
            "oidc": {"issuerUri": "https://token.actions.githubusercontent.com"},
            "attributeMapping": {"google.subject": "assertion.sub"}}}, error=400),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.create", lambda c: {
        "parent": POOL, "workloadIdentityPoolNamespaceId": "federation-only", "body": {}}, error=400),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.create", lambda c: {
        "parent": TRUST_POOL, "workloadIdentityPoolNamespaceId": "conformance-ns", "body": {
            "description": "namespace", "disabled": False, "state": "DELETED", "name": "ignored",
            "ownerService": {"principalSubject": "ignored"}}}, save="ns_op", check=state_is("ACTIVE")),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.operations.get",
         lambda c: {"name": op_name(c, "ns_op")}, check=done),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.get", lambda c: {"name": NAMESPACE},
         present=["name", "state", "description"],
         check=lambda c, a: a["name"] == NAMESPACE.replace(P, c["pool_prefix"]) or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.create", lambda c: {
        "parent": TRUST_POOL, "workloadIdentityPoolNamespaceId": "gcp-reserved", "body": {}}, error=400),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.create", lambda c: {
        "parent": TRUST_POOL, "workloadIdentityPoolNamespaceId": "conformance-ns", "body": {}}, error=409),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.list", lambda c: {"parent": TRUST_POOL,
                                                                                   "pageSize": 5},
         check=lambda c, a: len(a["workloadIdentityPoolNamespaces"]) == 1 or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.patch", lambda c: {
        "name": NAMESPACE, "updateMask": "description", "body": {"description": "patched"}},
         check=lambda c, a: a["response"]["description"] == "patched" or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.create", lambda c: {
        "parent": NAMESPACE, "workloadIdentityPoolManagedIdentityId": "conformance-mi", "body": {
            "description": "identity", "state": "DELETED", "name": "ignored"}},
         save="mi_op", check=state_is("ACTIVE")),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.operations.get",
         lambda c: {"name": op_name(c, "mi_op")}, check=done),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.get", lambda c: {"name": IDENTITY},
         present=["name", "state"]),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.list", lambda c: {
        "parent": NAMESPACE}, check=lambda c, a: len(a["workloadIdentityPoolManagedIdentities"]) == 1
         or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.patch", lambda c: {
        "name": IDENTITY, "updateMask": "disabled", "body": {"disabled": True}},
         check=lambda c, a: a["response"]["disabled"] is True or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.addAttestationRule", lambda c: {
        "resource": IDENTITY, "body": {"attestationRule": {"googleCloudResource": RULE_SA}}},
         check=rule_response("AddAttestationRule")),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.addAttestationRule", lambda c: {
        "resource": IDENTITY, "body": {"attestationRule": {"googleCloudResource": RULE_SA}}}, error=409),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.addAttestationRule", lambda c: {
        "resource": IDENTITY, "body": {"attestationRule": {"googleCloudResource": RULE_RUN}}}, error=400),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.setAttestationRules", lambda c: {
        "resource": IDENTITY, "body": {"attestationRules": [{"googleCloudResource": RULE_SA},
                                                            {"googleCloudResource": RULE_VM}]}},
         check=rule_response("SetAttestationRules")),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.listAttestationRules", lambda c: {
        "resource": IDENTITY, "filter": "container_ids(projects/456)"}, check=rules_are(RULE_VM)),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.removeAttestationRule", lambda c: {
        "resource": IDENTITY, "body": {"attestationRule": {"googleCloudResource": RULE_SA}}},
         check=rule_response("RemoveAttestationRule")),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.listAttestationRules", lambda c: {
        "resource": IDENTITY, "pageSize": 1}, check=rules_are(RULE_VM)),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.workloadSources.operations.get",
         lambda c: {"name": f"{IDENTITY}/workloadSources/project-123/operations/none"}, error=404),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.delete", lambda c: {
        "name": IDENTITY}, check=state_is("DELETED")),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.list", lambda c: {
        "parent": NAMESPACE}, check=lambda c, a: a == {} or pytest.fail(str(a))),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.undelete", lambda c: {
        "name": IDENTITY, "body": {}}, check=state_is("ACTIVE")),
    Step("iam.projects.locations.workloadIdentityPools.addAttestationRule", lambda c: {
        "resource": TRUST_POOL, "body": {"attestationRule": {"googleCloudResource": RULE_RUN}}},
         check=rule_response("AddAttestationRule")),
    Step("iam.projects.locations.workloadIdentityPools.listAttestationRules", lambda c: {"resource": TRUST_POOL},
         check=rules_are(RULE_RUN)),
    Step("iam.projects.locations.workloadIdentityPools.removeAttestationRule", lambda c: {
        "resource": TRUST_POOL, "body": {"attestationRule": {"googleCloudResource": RULE_RUN}}},
         check=rule_response("RemoveAttestationRule")),
    Step("iam.projects.locations.workloadIdentityPools.setAttestationRules", lambda c: {
        "resource": TRUST_POOL, "body": {"attestationRules": [{"googleCloudResource": RULE_VM}]}},
         check=rule_response("SetAttestationRules")),
    Step("iam.projects.locations.workloadIdentityPools.addAttestationRule", lambda c: {
        "resource": POOL, "body": {"attestationRule": {"googleCloudResource": RULE_RUN}}}, error=400),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.delete", lambda c: {"name": NAMESPACE},
         check=state_is("DELETED")),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.managedIdentities.undelete", lambda c: {
        "name": IDENTITY, "body": {}}, error=400),
    Step("iam.projects.locations.workloadIdentityPools.namespaces.undelete", lambda c: {
        "name": NAMESPACE, "body": {}}, check=state_is("ACTIVE")),
])


@pytest.fixture(scope="module")
def ctx(module_server: KeylessServer) -> dict[str, Any]:
    r = module_server.call("POST", "/cloudresourcemanager/v1/projects", body={"projectId": PROJECT})
    assert r.status_code == 200, r.text
    number = r.json()["response"]["projectNumber"]
    return {"pool_prefix": f"projects/{number}", "base_url": module_server.base_url}


def test_every_served_method_has_a_step() -> None:
    assert not FLOW.unflowed(harness.served_methods(DOC))


@pytest.fixture(scope="module")
def flowed(client: Callable[[str], Any], ctx: dict[str, Any]) -> dict[str, Any]:
    return harness.run(client(DOC), FLOW, ctx)


def test_flow(flowed: dict[str, Any]) -> None:
    assert flowed["called"] == [s.method for s in FLOW.steps]


@pytest.mark.parametrize("method_id", harness.body_methods(FLOW))
def test_every_defined_request_field_is_known(client: Callable[[str], Any], flowed: dict[str, Any],
                                              method_id: str) -> None:
    harness.probe_fields(client(DOC), FLOW, method_id, flowed,
                         {"workloadIdentityPoolId": "fields-probe", "workloadIdentityPoolProviderId": "fields-probe",
                          "workloadIdentityPoolProviderKeyId": "fields-probe",
                          "workloadIdentityPoolNamespaceId": "fields-probe",
                          "workloadIdentityPoolManagedIdentityId": "fields-probe"})


def test_defined_fields_of_features_keyless_lacks_are_refused_by_name(client: Callable[[str], Any],
                                                                      ctx: dict[str, Any]) -> None:
    from googleapiclient.errors import HttpError

    request = client(DOC).projects().locations().workloadIdentityPools().providers().create(
        parent=POOL, workloadIdentityPoolProviderId="saml-provider",
        body={"saml": {"idpMetadataXml": "<xml/>"}, "attributeMapping": {"google.subject": "assertion.sub"}})
    with pytest.raises(HttpError) as refused:
        request.execute()
    assert refused.value.resp.status == 400
    assert "does not implement SAML providers" in refused.value.content.decode()


def test_system_parameters_through_the_client(client: Callable[[str], Any], flowed: dict[str, Any]) -> None:
    """The discovery client's own `fields` and `prettyPrint` arguments (every method has them)."""
    accounts = client(DOC).projects().serviceAccounts()
    answer = accounts.list(name=P, fields="accounts(email,uniqueId)", prettyPrint=False).execute()
    assert answer["accounts"] and all(set(a) == {"email", "uniqueId"} for a in answer["accounts"])
    assert accounts.get(name=SA, fields="email").execute() == {"email": SA_EMAIL}
