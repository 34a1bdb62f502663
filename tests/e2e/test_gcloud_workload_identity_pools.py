"""Workload identity pools and providers, as seed 001 creates them, through the real gcloud."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Gcloud, KeylessServer

pytestmark = [pytest.mark.gcloud, pytest.mark.store_independent]  # gcloud's side of the wire: SQLite leg only; the PostgreSQL leg drives the same methods with the discovery client (tests/conformance)
POOLS = "projects/123456789/locations/global/workloadIdentityPools"


@pytest.fixture(scope="module")
def g(module_gcloud: Gcloud, module_server: KeylessServer) -> Gcloud:
    out = module_server.keyless("projects", "create", "my-project", "--number", "123456789")
    assert out.returncode == 0, out.stderr
    return module_gcloud


def test_seed_001_github_pool_and_provider(g: Gcloud) -> None:
    g.run("iam", "workload-identity-pools", "create", "github-pool", "--project=my-project", "--location=global",
          "--display-name=GitHub Actions pool")
    pool = g.json("iam", "workload-identity-pools", "describe", "github-pool", "--project=my-project",
                  "--location=global")
    assert pool == {"name": f"{POOLS}/github-pool", "displayName": "GitHub Actions pool", "state": "ACTIVE"}

    g.run("iam", "workload-identity-pools", "providers", "create-oidc", "github-provider", "--project=my-project",
          "--location=global", "--workload-identity-pool=github-pool", "--display-name=GitHub provider",
          "--attribute-mapping=google.subject=assertion.sub,attribute.repository=assertion.repository,"
          "attribute.ref=assertion.ref",
          "--attribute-condition=assertion.repository_owner == 'my-org'",
          "--issuer-uri=https://token.actions.githubusercontent.com")
    prov = g.json("iam", "workload-identity-pools", "providers", "describe", "github-provider",
                  "--project=my-project", "--location=global", "--workload-identity-pool=github-pool")
    assert prov["name"] == f"{POOLS}/github-pool/providers/github-provider"
    assert prov["state"] == "ACTIVE"
    assert prov["attributeMapping"] == {"google.subject": "assertion.sub",
                                        "attribute.repository": "assertion.repository",
                                        "attribute.ref": "assertion.ref"}
    assert prov["attributeCondition"] == "assertion.repository_owner == 'my-org'"
    assert prov["oidc"] == {"issuerUri": "https://token.actions.githubusercontent.com"}

    g.run("iam", "workload-identity-pools", "providers", "update-oidc", "github-provider", "--project=my-project",
          "--location=global", "--workload-identity-pool=github-pool",
          "--attribute-condition=assertion.repository_owner == 'my-org' && (assertion.ref == 'refs/heads/main' "
          "|| assertion.ref.startsWith('refs/heads/release/'))")
    prov = g.json("iam", "workload-identity-pools", "providers", "describe", "github-provider",
                  "--project=my-project", "--location=global", "--workload-identity-pool=github-pool")
    assert "refs/heads/release/" in prov["attributeCondition"]
    assert prov["attributeMapping"]["attribute.ref"] == "assertion.ref"  # untouched by the update


def test_bad_cel_is_refused_with_the_compiler_message(g: Gcloud) -> None:
    g.run("iam", "workload-identity-pools", "create", "cel-pool", "--project=my-project", "--location=global")
    r = g.run("iam", "workload-identity-pools", "providers", "create-oidc", "bad-condition", "--project=my-project",
              "--location=global", "--workload-identity-pool=cel-pool", "--attribute-mapping=google.subject=assertion.sub",
              "--attribute-condition=assertion.repository_owner ==", "--issuer-uri=https://issuer.example.com",
              check=False)
    assert r.returncode != 0 and "INVALID_ARGUMENT" in r.stderr
    r = g.run("iam", "workload-identity-pools", "providers", "create-oidc", "no-subject", "--project=my-project",
              "--location=global", "--workload-identity-pool=cel-pool",
              "--attribute-mapping=attribute.repository=assertion.repository",
              "--issuer-uri=https://issuer.example.com", check=False)
    assert r.returncode != 0 and "google.subject" in r.stderr
    listed = g.json("iam", "workload-identity-pools", "providers", "list", "--project=my-project",
                    "--location=global", "--workload-identity-pool=cel-pool")
    assert not listed


def test_aws_provider_from_seed_001(g: Gcloud) -> None:
    g.run("iam", "workload-identity-pools", "create", "aws-pool", "--project=my-project", "--location=global")
    g.run("iam", "workload-identity-pools", "providers", "create-aws", "aws-provider", "--project=my-project",
          "--location=global", "--workload-identity-pool=aws-pool", "--account-id=123456789012")
    prov = g.json("iam", "workload-identity-pools", "providers", "describe", "aws-provider", "--project=my-project",
                  "--location=global", "--workload-identity-pool=aws-pool")
    assert prov["aws"] == {"accountId": "123456789012"}
    assert prov["attributeMapping"]["google.subject"] == "assertion.arn"


def test_uploaded_jwks_and_audiences(g: Gcloud, tmp_path: Path) -> None:
    jwks = {"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "e": "AQAB",
                      "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"}]}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    g.run("iam", "workload-identity-pools", "create", "k8s-pool", "--project=my-project", "--location=global")
    g.run("iam", "workload-identity-pools", "providers", "create-oidc", "cluster-provider", "--project=my-project",
          "--location=global", "--workload-identity-pool=k8s-pool", "--issuer-uri=https://kubernetes.example.com",
          "--allowed-audiences=sts.example.com,other-aud", "--attribute-mapping=google.subject=assertion.sub",
          f"--jwk-json-path={path}")
    prov = g.json("iam", "workload-identity-pools", "providers", "describe", "cluster-provider",
                  "--project=my-project", "--location=global", "--workload-identity-pool=k8s-pool")
    assert prov["oidc"]["allowedAudiences"] == ["sts.example.com", "other-aud"]
    assert json.loads(prov["oidc"]["jwksJson"]) == jwks


def test_pool_update_delete_undelete_and_list(g: Gcloud) -> None:
    g.run("iam", "workload-identity-pools", "create", "temp-pool", "--project=my-project", "--location=global")
    g.run("iam", "workload-identity-pools", "update", "temp-pool", "--project=my-project", "--location=global",
          "--description=for a while", "--disabled")
    pool = g.json("iam", "workload-identity-pools", "describe", "temp-pool", "--project=my-project",
                  "--location=global")
    assert pool["description"] == "for a while" and pool["disabled"] is True

    g.run("iam", "workload-identity-pools", "delete", "temp-pool", "--project=my-project", "--location=global",
          "--quiet")
    pool = g.json("iam", "workload-identity-pools", "describe", "temp-pool", "--project=my-project",
                  "--location=global")
    assert pool["state"] == "DELETED" and "expireTime" in pool
    names = [p["name"] for p in g.json("iam", "workload-identity-pools", "list", "--project=my-project",
                                       "--location=global")]
    assert f"{POOLS}/temp-pool" not in names
    names = [p["name"] for p in g.json("iam", "workload-identity-pools", "list", "--project=my-project",
                                       "--location=global", "--show-deleted")]
    assert f"{POOLS}/temp-pool" in names
    again = g.run("iam", "workload-identity-pools", "create", "temp-pool", "--project=my-project",
                  "--location=global", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr.lower()
    g.run("iam", "workload-identity-pools", "undelete", "temp-pool", "--project=my-project", "--location=global")
    assert g.json("iam", "workload-identity-pools", "describe", "temp-pool", "--project=my-project",
                  "--location=global")["state"] == "ACTIVE"


def test_provider_delete_undelete(g: Gcloud) -> None:
    g.run("iam", "workload-identity-pools", "create", "prov-pool", "--project=my-project", "--location=global")
    g.run("iam", "workload-identity-pools", "providers", "create-oidc", "short-provider", "--project=my-project",
          "--location=global", "--workload-identity-pool=prov-pool", "--issuer-uri=https://issuer.example.com",
          "--attribute-mapping=google.subject=assertion.sub")
    args = ("--project=my-project", "--location=global", "--workload-identity-pool=prov-pool")
    g.run("iam", "workload-identity-pools", "providers", "delete", "short-provider", *args, "--quiet")
    assert g.json("iam", "workload-identity-pools", "providers", "describe", "short-provider", *args)["state"] == "DELETED"
    g.run("iam", "workload-identity-pools", "providers", "undelete", "short-provider", *args)
    assert g.json("iam", "workload-identity-pools", "providers", "describe", "short-provider", *args)["state"] == "ACTIVE"


def test_pool_iam_policy_binding_grants_on_the_pool_and_its_providers_only(g: Gcloud) -> None:
    """`gcloud iam workload-identity-pools add-iam-policy-binding` (the pool's own policy, issue #20):
    a grant there reaches the pool and its providers, not the project's other pools."""
    from sqlalchemy import select

    from keyless.store.models import AuditEntry
    from tests.api.helpers import server_state, token_for_user

    srv = g.server
    base = f"/iam/v1/{POOLS}"
    for pool in ("granted-pool", "other-pool"):  # through the API: gcloud's part here is the policy commands
        assert srv.call("POST", f"/iam/v1/projects/my-project/locations/global/workloadIdentityPools"
                                f"?workloadIdentityPoolId={pool}", body={}).status_code == 200
    assert srv.call("POST", f"{base}/granted-pool/providers?workloadIdentityPoolProviderId=granted-provider", body={
        "attributeMapping": {"google.subject": "assertion.sub"},
        "oidc": {"issuerUri": "https://issuer.example.com"}}).status_code == 200
    g.run("iam", "workload-identity-pools", "add-iam-policy-binding", "granted-pool", "--project=my-project",
          "--location=global", "--member=user:pool-viewer@example.com",
          "--role=roles/iam.workloadIdentityPoolViewer")
    policy = g.json("iam", "workload-identity-pools", "get-iam-policy", "granted-pool", "--project=my-project",
                    "--location=global")
    assert {"role": "roles/iam.workloadIdentityPoolViewer", "members": ["user:pool-viewer@example.com"]} \
        in policy["bindings"]

    viewer = token_for_user(srv, "pool-viewer@example.com")
    assert srv.call("GET", f"{base}/granted-pool", token=viewer).status_code == 200
    assert srv.call("GET", f"{base}/granted-pool/providers/granted-provider", token=viewer).status_code == 200
    denied = srv.call("GET", f"{base}/other-pool", token=viewer)
    assert denied.status_code == 403 and denied.json()["error"]["status"] == "PERMISSION_DENIED", denied.text
    # a viewer of the pool may not grant itself more on it
    refused = srv.call("POST", f"{base}/granted-pool:setIamPolicy", token=viewer, body={"policy": {"bindings": [
        {"role": "roles/iam.workloadIdentityPoolAdmin", "members": ["user:pool-viewer@example.com"]}]}})
    assert refused.status_code == 403, refused.text
    tested = srv.call("POST", f"{base}/granted-pool:testIamPermissions", token=viewer, body={"permissions": [
        "iam.workloadIdentityPools.get", "iam.workloadIdentityPools.setIamPolicy"]})
    assert tested.json() == {"permissions": ["iam.workloadIdentityPools.get"]}
    assert srv.call("POST", f"{base}/other-pool:testIamPermissions", token=viewer,
                    body={"permissions": ["iam.workloadIdentityPools.get"]}).json() == {}

    g.run("iam", "workload-identity-pools", "remove-iam-policy-binding", "granted-pool", "--project=my-project",
          "--location=global", "--member=user:pool-viewer@example.com",
          "--role=roles/iam.workloadIdentityPoolViewer")
    assert srv.call("GET", f"{base}/granted-pool", token=viewer).status_code == 403
    with server_state(srv).db.read() as s:
        methods = [e.method_name for e in s.scalars(select(AuditEntry).where(
            AuditEntry.resource_name == f"{POOLS}/granted-pool")).all()]
    assert methods.count("google.iam.v1.WorkloadIdentityPools.SetIamPolicy") == 2, methods


def test_provider_keys_through_gcloud(g: Gcloud) -> None:
    """`gcloud iam workload-identity-pools providers keys create/describe` (issue #20): the public
    certificate is answered, the private key never; reading keys does not let one make them."""
    from cryptography import x509

    from tests.api.helpers import token_for_user

    srv = g.server
    base = f"/iam/v1/{POOLS}"
    assert srv.call("POST", "/iam/v1/projects/my-project/locations/global/workloadIdentityPools"
                            "?workloadIdentityPoolId=keyed-pool", body={}).status_code == 200
    assert srv.call("POST", f"{base}/keyed-pool/providers?workloadIdentityPoolProviderId=keyed-provider", body={
        "attributeMapping": {"google.subject": "assertion.sub"},
        "oidc": {"issuerUri": "https://issuer.example.com"}}).status_code == 200
    where = ["--project=my-project", "--location=global", "--workload-identity-pool=keyed-pool",
             "--provider=keyed-provider"]
    g.run("iam", "workload-identity-pools", "providers", "keys", "create", "my-key", *where, "--use=ENCRYPTION",
          "--spec=RSA_2048")
    key = g.json("iam", "workload-identity-pools", "providers", "keys", "describe", "my-key", *where)
    assert key["name"] == f"{POOLS}/keyed-pool/providers/keyed-provider/keys/my-key"
    assert (key["state"], key["use"], key["keyData"]["format"], key["keyData"]["keySpec"]) == (
        "ACTIVE", "ENCRYPTION", "RSA_X509_PEM", "RSA_2048")
    cert = x509.load_pem_x509_certificate(key["keyData"]["key"].encode())
    assert cert.public_key().key_size == 2048  # type: ignore[union-attr]

    viewer = token_for_user(srv, "key-viewer@example.com")
    policy = srv.call("POST", f"{base}/keyed-pool:getIamPolicy", body={}).json()
    policy["bindings"] = [{"role": "roles/iam.workloadIdentityPoolViewer", "members": ["user:key-viewer@example.com"]}]
    assert srv.call("POST", f"{base}/keyed-pool:setIamPolicy", body={"policy": policy}).status_code == 200
    listed = srv.call("GET", f"{base}/keyed-pool/providers/keyed-provider/keys", token=viewer)
    assert listed.status_code == 200 and "PRIVATE KEY" not in listed.text, listed.text
    assert len(listed.json()["workloadIdentityPoolProviderKeys"]) == 1
    made = srv.call("POST", f"{base}/keyed-pool/providers/keyed-provider/keys?workloadIdentityPoolProviderKeyId=k2",
                    token=viewer, body={"use": "ENCRYPTION", "keyData": {"keySpec": "RSA_2048"}})
    assert made.status_code == 403, made.text
    gone = srv.call("DELETE", f"{base}/keyed-pool/providers/keyed-provider/keys/my-key", token=viewer)
    assert gone.status_code == 403, gone.text


def test_managed_workload_identities_through_gcloud(g: Gcloud, tmp_path: Path) -> None:
    """Google's walk-through of managed workload identities for Compute Engine
    (https://cloud.google.com/iam/docs/create-managed-workload-identities, issue #20) with gcloud 528's
    GA commands: a TRUST_DOMAIN pool, a namespace, a managed identity and its attestation policy.
    (gcloud's namespace-level attestation-rule and workload-source commands are hidden and call
    methods v1 does not define.)"""
    pool = ["--project=my-project", "--location=global", "--workload-identity-pool=mwi-pool"]
    g.run("iam", "workload-identity-pools", "create", "mwi-pool", "--project=my-project", "--location=global",
          "--mode=TRUST_DOMAIN")
    g.run("iam", "workload-identity-pools", "namespaces", "create", "mwi-ns", *pool, "--description=Compute workloads")
    g.run("iam", "workload-identity-pools", "managed-identities", "create", "mwi-id", *pool, "--namespace=mwi-ns")
    identity = [*pool, "--namespace=mwi-ns"]
    by_uid = "//compute.googleapis.com/projects/123456789/type/Instance/attached_service_account.uid/1234567890"
    by_vm = "//compute.googleapis.com/projects/987654321/uid/zones/us-central1-a/instances/42"
    g.run("iam", "workload-identity-pools", "managed-identities", "add-attestation-rule", "mwi-id", *identity,
          f"--google-cloud-resource={by_uid}")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"attestationRules": [{"googleCloudResource": by_uid},
                                                       {"googleCloudResource": by_vm}]}))
    g.run("iam", "workload-identity-pools", "managed-identities", "set-attestation-rules", "mwi-id", *identity,
          f"--policy-file={policy}")
    listed = g.json("iam", "workload-identity-pools", "managed-identities", "list-attestation-rules", "mwi-id",
                    *identity, "--container-id-filter=projects/987654321")
    assert listed == [{"googleCloudResource": by_vm}]
    namespaces = g.json("iam", "workload-identity-pools", "namespaces", "list", *pool)
    assert namespaces == [{"name": f"{POOLS}/mwi-pool/namespaces/mwi-ns", "description": "Compute workloads",
                           "state": "ACTIVE"}]
