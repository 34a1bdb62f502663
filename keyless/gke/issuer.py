"""Each GKE cluster's Kubernetes service-account token issuer: projected tokens signed with the
cluster's own RSA key, the OIDC discovery document and JWKS at GKE's issuer URL
(`https://container.googleapis.com/v1/projects/P/locations/L/clusters/C`), as
https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-token-volume
and GKE's Workload Identity describe. Keyless serves the documents under its `/container` prefix.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import time
import uuid
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from keyless.gke.clusters import API, cluster_path
from keyless.store.models import GkeCluster
from keyless.tokens.keys import b64url, own_rsa_key

MAX_LIFETIME = 48 * 3600  # Kubernetes caps projected tokens' expirationSeconds at 48 h


def issuer_url(cluster: GkeCluster) -> str:
    return f"{API}/{cluster_path(cluster)}"


def public_key(cluster: GkeCluster) -> rsa.RSAPublicKey:
    return own_rsa_key(cluster.issuer_key_pem).public_key()


def key_id(cluster: GkeCluster) -> str:
    der = public_key(cluster).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return b64url(hashlib.sha256(der).digest())[:43]


def ksa_uid(cluster: GkeCluster, namespace: str, service_account: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cluster.id}/{namespace}/{service_account}"))


def mint_ksa_token(cluster: GkeCluster, *, namespace: str, service_account: str, audience: str | list[str],
                   pod_name: str | None = None, pod_uid: str | None = None, lifetime: int = 3600) -> str:
    """A projected service-account token of the cluster, as the kubelet mounts it."""
    now = int(time.time())
    lifetime = max(600, min(lifetime, MAX_LIFETIME))
    k8s: dict[str, Any] = {"namespace": namespace,
                           "serviceaccount": {"name": service_account,
                                              "uid": ksa_uid(cluster, namespace, service_account)}}
    if pod_name:
        k8s["pod"] = {"name": pod_name, "uid": pod_uid or str(uuid.uuid4())}
    claims = {"aud": [audience] if isinstance(audience, str) else audience, "exp": now + lifetime, "iat": now, "nbf": now, "iss": issuer_url(cluster),
              "sub": f"system:serviceaccount:{namespace}:{service_account}", "kubernetes.io": k8s}
    head = b64url(json.dumps({"alg": "RS256", "kid": key_id(cluster), "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = own_rsa_key(cluster.issuer_key_pem).sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(sig)}"


def jwks(cluster: GkeCluster) -> dict[str, Any]:
    numbers = public_key(cluster).public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return {"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": key_id(cluster), "n": b64url(n),
                      "e": b64url(e)}]}


def discovery(cluster: GkeCluster, public_base: str) -> dict[str, Any]:
    """The discovery document; `jwks_uri` points where this server serves the JWKS."""
    return {"issuer": issuer_url(cluster),
            "jwks_uri": f"{public_base}/container/v1/{cluster_path(cluster)}/jwks",
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"]}


@functools.lru_cache(maxsize=256)
def _ca_pem(pem: bytes, name: str) -> bytes:
    key = own_rsa_key(pem)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    import datetime as dt

    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(int.from_bytes(hashlib.sha256(pem).digest()[:8], "big"))
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def ca_certificate_b64(cluster: GkeCluster) -> str:
    """masterAuth.clusterCaCertificate: gcloud writes it into the kubeconfig entry."""
    return base64.b64encode(_ca_pem(cluster.issuer_key_pem, cluster.id)).decode()
