"""Shared signing state (issue #14): every token one server mints, another accepts; a rotation
on one is seen by all; their JWKS and certificates agree. Signing keys, service account keys
and cluster issuer keys all live in the shared database (keyless/tokens/keys.py)."""

from __future__ import annotations

import base64
import json

import httpx
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from keyless.cli.cluster import Cluster
from keyless.config import Settings
from keyless.state import ServerState
from tests.scale.world import CLOUD, call, eventually, federation, ok


def test_federated_and_service_account_tokens_cross_servers(cluster: Cluster) -> None:
    a, b = cluster.servers
    fed = federation(cluster)
    federated = ok(fed.exchange(a, fed.github_token(cluster)))["access_token"]  # minted by A
    sa_token = ok(fed.generate_access_token(b, federated))["accessToken"]  # accepted by B, which mints
    info = ok(httpx.get(f"{a.base_url}/oauth2/v3/tokeninfo", params={"access_token": sa_token}))  # A accepts
    assert info["email"] == fed.sa_email
    # the owner token A wrote into its own data dir works on B
    assert call(b, "GET", f"/iam/v1/projects/{fed.project}/serviceAccounts", token=a.owner_token).status_code == 200


def test_id_tokens_and_signatures_verify_with_the_other_servers_keys(cluster: Cluster) -> None:
    a, b = cluster.servers
    fed = federation(cluster)
    ok(call(a, "POST", f"{fed.sa_path}:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/iam.serviceAccountTokenCreator", "members": ["user:owner@keyless.dev"]}]}}))
    creds = f"/iamcredentials/v1/projects/-/serviceAccounts/{fed.sa_email}"
    id_token = ok(call(a, "POST", f"{creds}:generateIdToken", body={"audience": "https://app.example", "includeEmail": True}))["token"]
    jwks = ok(httpx.get(f"{b.base_url}/oauth2/v3/certs"))
    kid = jwt.get_unverified_header(id_token)["kid"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid)).key
    claims = jwt.decode(id_token, key, algorithms=["RS256"], audience="https://app.example")
    assert claims["email"] == fed.sa_email

    signed = ok(call(a, "POST", f"{creds}:signBlob", body={"payload": base64.b64encode(b"hello").decode()}))
    certs = ok(httpx.get(f"{b.base_url}/robot/v1/metadata/x509/{fed.sa_email}"))
    public = x509.load_pem_x509_certificate(certs[signed["keyId"]].encode()).public_key()
    public.verify(base64.b64decode(signed["signedBlob"]), b"hello", padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]


def test_cluster_issued_ksa_token_is_exchanged_on_the_other_server(cluster: Cluster) -> None:
    from keyless.gke.clusters import find_cluster
    from keyless.gke.issuer import mint_ksa_token

    a, b = cluster.servers
    fed = federation(cluster)
    pool = f"{fed.project}.svc.id.goog"
    loc = f"/container/v1/projects/{fed.project}/locations/europe-west2"
    ok(call(a, "POST", f"{loc}/clusters", body={"cluster": {"name": "c1", "workloadIdentityConfig": {
        "workloadPool": pool}}}))
    state = ServerState(Settings(data_dir=a.data_dir, database_url=cluster.database_url))
    try:
        with state.db.read() as s:
            row = find_cluster(s, fed.project, "c1")
        assert row is not None
        token = mint_ksa_token(row, namespace="prod", service_account="app", audience=pool)
    finally:
        state.db.dispose()
    issuer = f"https://container.googleapis.com/v1/projects/{fed.project}/locations/europe-west2/clusters/c1"
    r = httpx.post(f"{b.base_url}/sts/v1/token", data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "audience": f"identitynamespace:{pool}:{issuer}",
        "scope": CLOUD, "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "subject_token": token, "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"})
    assert r.status_code == 200, r.text
    assert ok(httpx.get(f"{a.base_url}/container/v1{loc[len('/container/v1'):]}/clusters/c1/jwks")) == \
        ok(httpx.get(f"{b.base_url}/container/v1{loc[len('/container/v1'):]}/clusters/c1/jwks"))


def test_rotation_on_one_server_is_seen_by_all(cluster: Cluster) -> None:
    a, b = cluster.servers
    before = ok(httpx.get(f"{b.base_url}/oauth2/v3/certs"))
    assert before == ok(httpx.get(f"{a.base_url}/oauth2/v3/certs"))
    # A third process rotating, as server A's key ring does when its key is due.
    state = ServerState(Settings(data_dir=a.data_dir, database_url=cluster.database_url))
    try:
        kid = state.keys.rotate("id")
    finally:
        state.db.dispose()

    def both_publish() -> bool:
        return all(kid in json.dumps(httpx.get(f"{s.base_url}/oauth2/v3/certs").json()) for s in (a, b))

    eventually(both_publish, timeout=2.0)
    assert ok(httpx.get(f"{a.base_url}/oauth2/v3/certs")) == ok(httpx.get(f"{b.base_url}/oauth2/v3/certs"))
    # both now sign with the new key
    fed = federation(cluster)
    ok(call(a, "POST", f"{fed.sa_path}:setIamPolicy", body={"policy": {"bindings": [
        {"role": "roles/iam.serviceAccountTokenCreator", "members": ["user:owner@keyless.dev"]}]}}))
    for srv in (a, b):
        token = ok(call(srv, "POST", f"/iamcredentials/v1/projects/-/serviceAccounts/{fed.sa_email}:generateIdToken",
                        body={"audience": "x"}))["token"]
        assert jwt.get_unverified_header(token)["kid"] == kid
